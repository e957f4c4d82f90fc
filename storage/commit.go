package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ocs-engine/ocs/charging"
)

// Pending is a batch applied to the database whose fsync may still be in
// flight: see Apply.
type Pending struct {
	s      *Store
	b      *pebble.Batch
	totals charging.Totals // totals once this batch is durable
	order  uint64
	n      int
	start  time.Time // zero without metrics
}

// Commit writes every change in one batch, synced: all or nothing, and
// durable when it returns nil. Per change it writes the account record,
// the journal entry (Entry.Seq != 0), the idempotency record (Key != ""),
// the refund marker (RefundOf != 0), and once per batch the updated
// totals. A change that breaks an invariant is refused with ErrInvalid
// before anything is written. Any other error leaves the store unusable
// (every later Commit returns ErrFailed): the engine must stop, so that
// what was acknowledged is always a prefix of what is on disk.
//
// Commit must be called from one goroutine at a time.
func (s *Store) Commit(changes []charging.Change) error {
	p, err := s.build(changes)
	if err != nil || p == nil {
		return err
	}
	err = s.db.Apply(p.b, pebble.Sync)
	s.recent.maybeRotate(s.db.Flush)
	return s.finish(p, err)
}

// Apply writes changes like Commit but returns once the batch is in the
// write-ahead log and visible to reads, before its fsync completes; the
// caller must call Wait on the Pending exactly once before telling anyone
// the changes are durable. This lets one committer build and apply batch
// N+1 while batch N is being synced.
//
// Ordering guarantees: batches are applied, made visible and made durable
// in the order of the Apply calls (one write-ahead log, written in order),
// so when Wait of a batch returns nil every batch applied before it is
// durable too. Reads may observe an applied batch before it is durable:
// that is safe for the engine, because anything derived from it is
// committed later and so can only become durable after it. A nil Pending
// with a nil error means there was nothing to write.
//
// Apply must be called from one goroutine at a time, the same one that
// calls Commit; Wait may be called from any goroutine.
func (s *Store) Apply(changes []charging.Change) (*Pending, error) {
	p, err := s.build(changes)
	if err != nil || p == nil {
		return nil, err
	}
	if err := s.db.ApplyNoSyncWait(p.b, pebble.Sync); err != nil {
		return nil, s.finish(p, err)
	}
	s.recent.maybeRotate(s.db.Flush)
	return p, nil
}

// Wait blocks until the batch is durable. After Wait the Pending must not
// be used again.
func (p *Pending) Wait() error {
	return p.s.finish(p, p.b.SyncWait())
}

// build validates changes and encodes them into a pooled batch. It
// returns nil for an empty slice.
func (s *Store) build(changes []charging.Change) (*Pending, error) {
	if err := s.failedErr(); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, nil
	}
	var start time.Time
	if s.metrics != nil {
		start = time.Now()
	}
	t := s.applied
	for i := range changes {
		if err := validateChange(&changes[i]); err != nil {
			s.countError()
			return nil, fmt.Errorf("storage: commit change %d of %d: %w: %v", i, len(changes), ErrInvalid, err)
		}
		c := &changes[i]
		if c.Entry.Seq != 0 {
			t.Owed += c.Entry.Amount
		}
		if opensAccount(c) {
			t.Accounts++
		}
	}
	if t.Owed < 0 {
		s.countError()
		return nil, fmt.Errorf("storage: commit: %w: total owed would be %d", ErrInvalid, t.Owed)
	}
	p := s.takePending()
	p.totals, p.n, p.start = t, len(changes), start
	s.stamp = 0
	for i := range changes {
		if err := s.put(p.b, &changes[i]); err != nil {
			s.releasePending(p)
			s.countError()
			return nil, err
		}
	}
	s.keyBuf = appendMetaKey(s.keyBuf[:0], metaTotals)
	s.buf = appendTotals(s.buf[:0], t)
	if err := p.b.Set(s.keyBuf, s.buf, nil); err != nil {
		s.releasePending(p)
		s.countError()
		return nil, fmt.Errorf("storage: commit totals: %w", err)
	}
	s.order++
	p.order = s.order
	s.applied = t
	return p, nil
}

// opensAccount reports whether c creates its account: the engine marks the
// change of an accepted provision Created, with or without an opening
// balance or a request key. Check verifies the count against the account
// records.
func opensAccount(c *charging.Change) bool {
	return c.Created
}

// validateChange checks what must hold before a change becomes durable.
func validateChange(c *charging.Change) error {
	if err := validateAccount(&c.Account); err != nil {
		return err
	}
	if c.Entry.Seq != 0 {
		if err := validateEntry(&c.Entry); err != nil {
			return err
		}
		switch {
		case c.Entry.Seq != c.Account.Seq:
			return fmt.Errorf("entry seq %d but account %d seq %d", c.Entry.Seq, c.Account.ID, c.Account.Seq)
		case c.Entry.BalanceAfter != c.Account.Balance:
			return fmt.Errorf("entry %d balance after %d but account %d balance %d",
				c.Entry.Seq, c.Entry.BalanceAfter, c.Account.ID, c.Account.Balance)
		}
	}
	if c.Key != "" {
		if len(c.Key) > charging.RequestKeyBytesMax {
			return fmt.Errorf("request key of %d bytes above RequestKeyBytesMax", len(c.Key))
		}
		if err := validateRequest(&c.Request); err != nil {
			return err
		}
	}
	if c.JournalOnly && (c.Entry.Seq == 0 || c.Created || len(c.Account.Reservations) != 0) {
		return fmt.Errorf("account %d: a journal-only change needs an entry, no reservations and no creation", c.Account.ID)
	}
	if c.RefundOf != 0 && (c.Entry.Seq == 0 || c.RefundOf >= c.Entry.Seq) {
		return fmt.Errorf("refund of %d needs a later journal entry, got %d", c.RefundOf, c.Entry.Seq)
	}
	if c.Card != nil && (!c.Card.Fits(c.Account.ID, &c.Entry) || c.Card.Card.CreditSeq != c.Entry.Seq) {
		return fmt.Errorf("account %d: card %d (%v, used by %d, %d, credit %d) does not pay for entry %d (%v of %d)",
			c.Account.ID, c.Card.Card.Serial, c.Card.Card.State, c.Card.Card.UsedBy, c.Card.Card.Value, c.Card.Card.CreditSeq,
			c.Entry.Seq, c.Entry.Kind, c.Entry.Amount)
	}
	return nil
}

// put adds the records of one valid change to b.
func (s *Store) put(b *pebble.Batch, c *charging.Change) error {
	id := c.Account.ID
	var err error
	if !c.JournalOnly {
		s.keyBuf = appendAccountKey(s.keyBuf[:0], id)
		s.buf = appendAccount(s.buf[:0], &c.Account)
		err = b.Set(s.keyBuf, s.buf, nil)
	}
	if err == nil && c.Entry.Seq != 0 {
		s.keyBuf = appendJournalKey(s.keyBuf[:0], id, c.Entry.Seq)
		s.buf = appendEntry(s.buf[:0], &c.Entry)
		err = b.Set(s.keyBuf, s.buf, nil)
	}
	if err == nil && c.Key != "" {
		q := c.Request
		if q.Time == 0 {
			// The retention window needs every record's time; one clock
			// read per batch, not per record (the caller's slice is not
			// modified).
			if s.stamp == 0 {
				s.stamp = max(s.now().UnixNano(), 1)
			}
			q.Time = s.stamp
		}
		s.keyBuf = appendRequestKey(s.keyBuf[:0], id, c.Key)
		s.recent.add(s.keyBuf)
		s.buf = appendRequest(s.buf[:0], &q)
		err = b.Set(s.keyBuf, s.buf, nil)
	}
	if err == nil && c.RefundOf != 0 {
		s.keyBuf = appendRefundedKey(s.keyBuf[:0], id, c.RefundOf)
		s.buf = appendRefunded(s.buf[:0], c.Entry.Seq)
		err = b.Set(s.keyBuf, s.buf, nil)
	}
	if err == nil && c.Card != nil {
		// The card becomes used in its credit's batch (vouchers.go,
		// "Redemption protocol").
		s.keyBuf = voucherKey(s.keyBuf[:0], (*VoucherHash)(&c.Card.Hash))
		s.buf = appendVoucher(s.buf[:0], &c.Card.Card)
		err = b.Set(s.keyBuf, s.buf, nil)
	}
	if err != nil {
		return fmt.Errorf("storage: commit account %d: %w", id, err)
	}
	return nil
}

// finish records the end of a batch: on success it publishes the batch's
// totals (unless a later batch already did) and pools the batch; on error
// it marks the store failed.
func (s *Store) finish(p *Pending, err error) error {
	s.mu.Lock()
	if err != nil {
		if s.mu.failed == nil {
			s.mu.failed = err
		}
	} else if p.order > s.mu.order {
		s.mu.totals, s.mu.order = p.totals, p.order
	}
	s.mu.Unlock()
	if m := s.metrics; m != nil {
		m.observe(p.start, p.n, err)
	}
	if err != nil {
		// Pebble refuses to reuse a batch whose commit failed: drop it.
		p.b = nil
		return fmt.Errorf("storage: commit %d changes: %w", p.n, err)
	}
	s.releasePending(p)
	return nil
}

func (s *Store) failedErr() error {
	s.mu.Lock()
	err := s.mu.failed
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFailed, err)
	}
	return nil
}

func (s *Store) countError() {
	if m := s.metrics; m != nil {
		m.errors.Inc()
	}
}

// takePending returns a pooled Pending with an empty batch. Batches keep
// their grown buffer across commits, so a steady committer allocates none.
func (s *Store) takePending() *Pending {
	s.free.Lock()
	var p *Pending
	if n := len(s.free.list); n > 0 {
		p = s.free.list[n-1]
		s.free.list = s.free.list[:n-1]
	}
	s.free.Unlock()
	if p == nil {
		p = &Pending{s: s}
	}
	if p.b == nil {
		p.b = s.db.NewBatch()
	}
	return p
}

func (s *Store) releasePending(p *Pending) {
	if p.b != nil {
		p.b.Reset()
	}
	s.free.Lock()
	if len(s.free.list) < pendingFreeMax {
		s.free.list = append(s.free.list, p)
		p = nil
	}
	s.free.Unlock()
	if p != nil && p.b != nil {
		_ = p.b.Close()
	}
}

var _ = errors.Is
