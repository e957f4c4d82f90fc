package actors

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ocs-engine/ocs/charging"
)

var itemPool = sync.Pool{New: func() any { return new(commitItem) }}

// subscriber is the actor owning one account. Everything here runs on one
// goroutine at a time (the actor's mailbox run).
type subscriber struct {
	engine *Engine
	// account is ahead of the disk by the changes in pending.
	account charging.Account
	// pending holds the request records of changes handed to the committer
	// and not yet durable, oldest first: a retry that arrives before its
	// original is durable must find it here, since the store cannot.
	pending []pendingChange
	trimmed uint64
	// durable counts this actor's changes made durable; the committer
	// advances it, the actor reads it to trim pending.
	durable atomic.Uint64
	// entry and reservationsSeen belong to the command being handled.
	entry            *entry
	reservationsSeen int32
	lastState        charging.State
	loaded           bool
	exists           bool
	// sinceRecord counts the journal-only changes handed to the committer
	// since the last one that rewrote the account record; see finish.
	sinceRecord uint8
}

// recordEvery bounds the journal entries written after an account's record
// (charging.Change.JournalOnly), which an activation reads and folds: the
// record is rewritten at least every recordEvery+1 changes, and by the
// first change after every activation.
const recordEvery = 31

type pendingChange struct {
	key      string
	refundOf uint64
	record   charging.RequestRecord
}

// pendingCapKeep: a pending slice that grew past this during a burst is
// released when it empties, so an idle actor stays small.
const pendingCapKeep = 4

// Receive implements actor.Actor.
func (s *subscriber) Receive(ctx actor.Context) {
	if req, ok := ctx.Message().(*request); ok {
		s.handle(req)
	}
}

func (s *subscriber) handle(req *request) {
	e := s.engine
	start := time.Now()
	now := e.clock.Now()
	s.trimPending()
	if !s.loaded {
		if err := s.load(req.cmd.Subscriber); err != nil {
			req.answer(charging.Outcome{}, err)
			return
		}
	}
	cmd := &req.cmd
	// Once answered, req belongs to its caller again: what the deferred
	// bookkeeping needs is taken now.
	kind := cmd.Kind
	s.entry = req.entry
	s.reservationsSeen = int32(len(s.account.Reservations))
	defer func() { e.metrics.actorDuration[kind].Observe(time.Since(start).Seconds()) }()
	if cmd.Kind == charging.KindProvision {
		s.provision(req, now)
		return
	}
	if !s.exists {
		s.reply(req, charging.Outcome{Result: charging.ResultUnknownSubscriber})
		return
	}
	s.observeState(now)
	// The account before the command: finish writes only the journal entry
	// where it folds to the account after (charging.Account.FoldsTo).
	prev := s.account
	// Lapsed reservations are released before anything else, so that the
	// command sees the money they held.
	expired := false
	if next := s.account.NextExpiry(); next != 0 && next <= now.Unix() {
		expire := charging.Command{Kind: charging.KindExpire}
		_, eff := s.account.Apply(e.charging, &expire, now)
		expired = eff.Dirty
	}
	if keyed(cmd) {
		if out, done := s.replay(cmd); done {
			s.finish(req, cmd, out, charging.Effect{Dirty: expired}, false, nil)
			return
		}
	}
	if cmd.Kind == charging.KindRefund {
		if err := s.fillOriginal(cmd); err != nil {
			req.answer(charging.Outcome{}, err)
			return
		}
	}
	out, eff := s.account.Apply(e.charging, cmd, now)
	recorded := eff.Dirty && keyed(cmd)
	eff.Dirty = eff.Dirty || expired
	s.observeState(now)
	s.finish(req, cmd, out, eff, recorded, &prev)
}

// keyed reports whether cmd's retries are told apart by its request key:
// looked up before it runs, recorded with its change. A card's credit
// (Command.Card) is not, though it has a key: the card itself is its
// record. The credit runs only while its card, read active under the
// card's lock, is held (storage's "Redemption protocol"), and the card is
// written used in the credit's own batch, so a retry finds the card used
// and never reaches the engine. The look-up would always miss, and the
// record would be a key written per redemption for nothing.
func keyed(cmd *charging.Command) bool {
	return cmd.Key != "" && cmd.Kind.Mutates() && cmd.Card == nil
}

// load activates the account from the store.
func (s *subscriber) load(id charging.SubscriberID) error {
	a, found, err := s.engine.store.LoadAccount(id)
	if err != nil {
		return err
	}
	s.loaded, s.exists, s.account = true, found, a
	// The record may be followed by journal entries the store folded in:
	// the first change after activation rewrites it, so that those never
	// pile up across activations.
	s.sinceRecord = recordEvery
	if found {
		s.lastState = a.StateAt(s.engine.charging, s.engine.clock.Now())
		s.engine.metrics.reservations.Add(float64(len(a.Reservations)))
	}
	return nil
}

func (s *subscriber) provision(req *request, now time.Time) {
	e := s.engine
	if s.exists {
		out := charging.Outcome{Result: charging.ResultSubscriberExists, Balance: s.account.Balance,
			ValidUntil: s.account.ValidUntil, State: s.account.StateAt(e.charging, now)}
		s.reply(req, out)
		return
	}
	a, out, eff := charging.NewAccount(e.charging, &req.cmd, now)
	if out.Result != charging.ResultOK {
		s.reply(req, out)
		return
	}
	s.account, s.exists = a, true
	s.lastState = out.State
	// Provisioning comes in bulk (a million subscribers at a time) and is
	// rarely followed at once by traffic: the actor may be passivated at the
	// next sweep instead of holding memory for IdleAfter.
	s.entry.lastUsed.Store(0)
	s.finish(req, &req.cmd, out, eff, false, nil)
}

// replay answers a request key seen before: the original outcome for a
// retry, ResultRequestKeyReused for another payload under the same key.
func (s *subscriber) replay(cmd *charging.Command) (charging.Outcome, bool) {
	rec, found := s.pendingRecord(cmd.Key)
	if !found {
		var err error
		rec, found, err = s.engine.store.LookupRequest(cmd.Subscriber, cmd.Key)
		if err != nil {
			// Unknown is not "new": refusing is safe, charging twice is not.
			return charging.Outcome{Result: charging.ResultOverloaded}, true
		}
	}
	if !found {
		return charging.Outcome{}, false
	}
	if rec.Fingerprint != cmd.Fingerprint() || rec.Kind != cmd.Kind {
		return charging.Outcome{Result: charging.ResultRequestKeyReused}, true
	}
	out := rec.Outcome
	out.Replayed = true
	return out, true
}

func (s *subscriber) pendingRecord(key string) (charging.RequestRecord, bool) {
	for i := len(s.pending) - 1; i >= 0; i-- {
		if s.pending[i].key == key {
			return s.pending[i].record, true
		}
	}
	return charging.RequestRecord{}, false
}

// fillOriginal gives a refund the charge it refunds and whether it was
// refunded already (durably, or by a refund still in flight).
func (s *subscriber) fillOriginal(cmd *charging.Command) error {
	en, refunded, found, err := s.engine.store.LookupEntry(cmd.Subscriber, cmd.Ref)
	if err != nil {
		return err
	}
	if found {
		cmd.Original = en
	}
	for i := range s.pending {
		if s.pending[i].refundOf == cmd.Ref {
			refunded = true
		}
	}
	cmd.OriginalRefunded = refunded
	return nil
}

// finish hands a dirty account to the committer, which answers once it is
// durable, or answers a clean one (through the committer if earlier writes
// are still in flight).
//
// prev, when not nil, is the account before the command. Where the journal
// entry folds prev into the new account, the change is JournalOnly: the
// account record is not rewritten, one key less per charge (of three) in
// the memtable, the write-ahead log and compactions. Peak traffic (SMS,
// top-ups) is such changes; a session's are not (reservations).
func (s *subscriber) finish(req *request, cmd *charging.Command, out charging.Outcome, eff charging.Effect, recorded bool, prev *charging.Account) {
	s.publish()
	if !eff.Dirty {
		s.reply(req, out)
		return
	}
	it := itemPool.Get().(*commitItem)
	it.write = true
	it.req = req
	it.out = out
	it.durable = &s.durable
	it.change.Account = charging.CloneAccount(&s.account)
	it.change.Entry = eff.Entry
	it.change.Created = eff.Created
	if prev != nil && s.sinceRecord < recordEvery && prev.FoldsTo(&eff.Entry, &s.account) {
		it.change.JournalOnly = true
		s.sinceRecord++
	} else {
		s.sinceRecord = 0
	}
	p := pendingChange{}
	if recorded {
		it.change.Key = cmd.Key
		it.change.Request = charging.RequestRecord{Fingerprint: cmd.Fingerprint(), Kind: cmd.Kind, Outcome: out, Time: eff.Entry.Time} // the command's now; 0 without an entry: storage stamps it at commit
		p.key, p.record = cmd.Key, it.change.Request
	}
	if cmd.Card != nil && eff.Entry.Seq != 0 {
		// Whatever the key, a card rides with the entry of its credit.
		// A copy: the caller's command is its own again once answered.
		it.card = *cmd.Card
		it.card.Card.CreditSeq = eff.Entry.Seq
		it.change.Card = &it.card
	}
	if eff.Entry.Kind == charging.EntryRefund {
		it.change.RefundOf = eff.Entry.Ref
		p.refundOf = eff.Entry.Ref
	}
	s.pending = append(s.pending, p)
	s.engine.committer.submit(it)
}

// reply answers a command that wrote nothing. If this actor has writes in
// flight the answer may depend on them, so it waits behind them in the
// committer's queue.
func (s *subscriber) reply(req *request, out charging.Outcome) {
	s.publish()
	if len(s.pending) == 0 {
		req.answer(out, nil)
		return
	}
	it := itemPool.Get().(*commitItem)
	it.write = false
	it.req = req
	it.out = out
	it.durable = nil
	s.engine.committer.submit(it)
}

// publish tells the directory and the metrics what the sweeper and the
// dashboards need to know, before the answer leaves: a caller that acts on
// the answer (or a test that sweeps) must see it.
func (s *subscriber) publish() {
	if s.entry == nil {
		return
	}
	n := int32(len(s.account.Reservations))
	if n != s.reservationsSeen {
		s.engine.metrics.reservations.Add(float64(n - s.reservationsSeen))
		s.reservationsSeen = n
	}
	s.entry.nextExpiry.Store(s.account.NextExpiry())
}

// trimPending drops the records of changes the committer made durable.
func (s *subscriber) trimPending() {
	durable := s.durable.Load()
	n := int(durable - s.trimmed)
	if n == 0 {
		return
	}
	s.trimmed = durable
	if n >= len(s.pending) {
		if cap(s.pending) > pendingCapKeep {
			s.pending = nil
		} else {
			s.pending = s.pending[:0]
		}
		return
	}
	copy(s.pending, s.pending[n:])
	for i := len(s.pending) - n; i < len(s.pending); i++ {
		s.pending[i] = pendingChange{}
	}
	s.pending = s.pending[:len(s.pending)-n]
}

// observeState counts lifecycle transitions as this actor sees them: time
// moves an account into grace and suspension, top-ups move it back.
func (s *subscriber) observeState(now time.Time) {
	st := s.account.StateAt(s.engine.charging, now)
	if st != s.lastState {
		s.engine.metrics.transition(s.lastState, st)
		s.lastState = st
	}
}
