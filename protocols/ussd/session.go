package ussd

import (
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
// Sessions are linked into the LRU list themselves: one allocation a
// dialogue, not two.
type session struct {
	id         string
	caller     charging.SubscriberID
	lastSeen   time.Time
	input      string // serviceCode + "\x00" + text of the finished request
	final      string // its END body; "" while the dialogue goes on
	prev, next *session
}

// sessions is an LRU of sessions with idle expiry. Safe for concurrent use.
// At the gateway's peak every request is a new dialogue, so the table is a
// map insert and an eviction per request: one map look-up per request, by
// touch, and finish writes through the pointer touch returned.
type sessions struct {
	max  int
	idle time.Duration
	mu   struct {
		sync.Mutex
		byID map[string]*session
		// head is the most recently used, tail the least.
		head, tail *session
	}
}

func newSessions(max int, idle time.Duration) *sessions {
	s := &sessions{max: max, idle: idle}
	s.mu.byID = make(map[string]*session)
	return s
}

// touch returns session id bound to caller at now, creating it if needed,
// and the final body of the request input if that request was answered in
// this session already (a gateway's retry); ok is false if id is bound to
// another caller. The session is for finish only: its fields belong to s's
// lock.
func (s *sessions) touch(id string, caller charging.SubscriberID, now time.Time, input string) (ss *session, final string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if ss = s.mu.byID[id]; ss != nil {
		if ss.caller != caller {
			return nil, "", false
		}
		ss.lastSeen = now
		s.unlinkLocked(ss)
		s.pushFrontLocked(ss)
		if ss.input == input {
			final = ss.final
		}
		return ss, final, true
	}
	for len(s.mu.byID) >= s.max && s.mu.tail != nil {
		s.removeLocked(s.mu.tail)
	}
	ss = &session{id: id, caller: caller, lastSeen: now}
	s.mu.byID[id] = ss
	s.pushFrontLocked(ss)
	return ss, "", true
}

// finish records final as the body of ss's request input. A session
// evicted meanwhile is no longer in the table: writing it is harmless.
func (s *sessions) finish(ss *session, input, final string) {
	s.mu.Lock()
	ss.input, ss.final = input, final
	s.mu.Unlock()
}

// sweepLocked removes up to sweepMax sessions idle past the limit, oldest
// first (the LRU's tail is the least recently seen).
func (s *sessions) sweepLocked(now time.Time) {
	for i := 0; i < sweepMax; i++ {
		ss := s.mu.tail
		if ss == nil || now.Sub(ss.lastSeen) < s.idle {
			return
		}
		s.removeLocked(ss)
	}
}

func (s *sessions) removeLocked(ss *session) {
	delete(s.mu.byID, ss.id)
	s.unlinkLocked(ss)
}

func (s *sessions) pushFrontLocked(ss *session) {
	ss.prev, ss.next = nil, s.mu.head
	if s.mu.head != nil {
		s.mu.head.prev = ss
	} else {
		s.mu.tail = ss
	}
	s.mu.head = ss
}

func (s *sessions) unlinkLocked(ss *session) {
	if ss.prev != nil {
		ss.prev.next = ss.next
	} else {
		s.mu.head = ss.next
	}
	if ss.next != nil {
		ss.next.prev = ss.prev
	} else {
		s.mu.tail = ss.prev
	}
	ss.prev, ss.next = nil, nil
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.byID)
}
