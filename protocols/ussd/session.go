package ussd

import (
	"container/list"
	"sync"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// Session limits.
const (
	// SessionsMax bounds the sessions remembered at once. A session is
	// about 200 bytes, so the bound costs at most 20 MB; far above the
	// concurrent USSD dialogues of a national network (a handset holds
	// one, for under 3 minutes). Beyond it the least recently used session
	// is forgotten, which only loses its retry cache: the menu position
	// travels in every request's text.
	SessionsMax = 100_000
	// SessionIdleMax: networks end a USSD dialogue after 2–3 minutes of
	// silence; a session idle longer is over.
	SessionIdleMax = 3 * time.Minute
	// SessionIDBytesMax bounds the gateway's session ID.
	SessionIDBytesMax = 64
	// sweepMax bounds expired sessions removed per request, so that one
	// request never pays for a large backlog.
	sweepMax = 64
)

// session is what the handler remembers of one dialogue: the caller it is
// bound to, and the final text of an intent already run, so that a gateway
// retrying the same request gets the same answer without running it twice.
type session struct {
	id       string
	caller   charging.SubscriberID
	lastSeen time.Time
	input    string // serviceCode + "\x00" + text of the finished request
	final    string // its END body; "" while the dialogue goes on
}

// sessions is an LRU of sessions with idle expiry. Safe for concurrent use.
type sessions struct {
	max  int
	idle time.Duration
	mu   struct {
		sync.Mutex
		byID map[string]*list.Element
		lru  list.List // front: most recently used
	}
}

func newSessions(max int, idle time.Duration) *sessions {
	s := &sessions{max: max, idle: idle}
	s.mu.byID = make(map[string]*list.Element)
	return s
}

// touch returns a copy of session id bound to caller at now, creating it if
// needed; ok is false if id is bound to another caller.
func (s *sessions) touch(id string, caller charging.SubscriberID, now time.Time) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if e, found := s.mu.byID[id]; found {
		ss := e.Value.(*session)
		if ss.caller != caller {
			return session{}, false
		}
		ss.lastSeen = now
		s.mu.lru.MoveToFront(e)
		return *ss, true
	}
	for s.mu.lru.Len() >= s.max {
		s.removeLocked(s.mu.lru.Back())
	}
	ss := &session{id: id, caller: caller, lastSeen: now}
	s.mu.byID[id] = s.mu.lru.PushFront(ss)
	return *ss, true
}

// finish records the final body of session id for input.
func (s *sessions) finish(id, input, final string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, found := s.mu.byID[id]; found {
		ss := e.Value.(*session)
		ss.input, ss.final = input, final
	}
}

// sweepLocked removes up to sweepMax sessions idle past the limit, oldest
// first (the LRU's back is the least recently seen).
func (s *sessions) sweepLocked(now time.Time) {
	for i := 0; i < sweepMax; i++ {
		e := s.mu.lru.Back()
		if e == nil || now.Sub(e.Value.(*session).lastSeen) < s.idle {
			return
		}
		s.removeLocked(e)
	}
}

func (s *sessions) removeLocked(e *list.Element) {
	delete(s.mu.byID, e.Value.(*session).id)
	s.mu.lru.Remove(e)
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.lru.Len()
}
