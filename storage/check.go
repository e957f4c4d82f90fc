package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ocs-engine/ocs/charging"
)

// checkCtxEvery is how many records Check reads between looks at ctx.
const checkCtxEvery = 1024

// Check reads every record of a consistent snapshot and verifies the
// store's invariants, returning the first violation (wrapping ErrCorrupt):
//   - every record decodes and is valid, and keys agree with values;
//   - each account's journal is seq 1..Account.Seq without a gap, each
//     entry's BalanceAfter is the previous one plus its Amount (from 0),
//     and the last one equals the account's balance;
//   - no journal entry without its account;
//   - every refund marker names a refundable entry and a refund entry;
//   - the stored totals equal the sum of balances and the account count.
//
// It streams (two iterators in step, O(n) time, O(1) memory) and may run
// beside commits: it reads a snapshot. Tests call it at cleanup; an ops
// endpoint may call it on a live store.
func (s *Store) Check(ctx context.Context) error {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	c := checker{ctx: ctx, snap: snap}
	sum, err := c.accounts()
	if err == nil {
		err = c.requests()
	}
	if err == nil {
		err = c.refunds()
	}
	if err == nil {
		err = c.totals(sum)
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ctx.Err()) {
			return fmt.Errorf("storage: check: %w", err)
		}
		return fmt.Errorf("storage: check: %w: %w", ErrCorrupt, err)
	}
	return nil
}

type checker struct {
	ctx  context.Context
	snap *pebble.Snapshot
	n    int
}

func (c *checker) tick() error {
	c.n++
	if c.n%checkCtxEvery == 1 {
		return c.ctx.Err()
	}
	return nil
}

func (c *checker) table(tag byte) (*pebble.Iterator, error) {
	return c.snap.NewIter(&pebble.IterOptions{LowerBound: tableStart(tag), UpperBound: tableStart(tag + 1)})
}

// accounts walks accounts and journal in step and returns the totals the
// records add up to.
func (c *checker) accounts() (sum charging.Totals, err error) {
	accIt, err := c.table(tagAccount)
	if err != nil {
		return sum, err
	}
	defer accIt.Close()
	jIt, err := c.table(tagJournal)
	if err != nil {
		return sum, err
	}
	defer jIt.Close()
	jIt.First()
	for ok := accIt.First(); ok; ok = accIt.Next() {
		if err := c.tick(); err != nil {
			return sum, err
		}
		_, id, rest, ok := parseSubKey(accIt.Key())
		if !ok || len(rest) != 0 {
			return sum, fmt.Errorf("%w: account key %x", ErrCorrupt, accIt.Key())
		}
		a, err := decodeAccount(accIt.Value())
		if err != nil {
			return sum, fmt.Errorf("account %d: %w", id, err)
		}
		if a.ID != id {
			return sum, fmt.Errorf("%w: account key %d holds account %d", ErrCorrupt, id, a.ID)
		}
		if err := c.journal(jIt, &a); err != nil {
			return sum, err
		}
		sum.Owed += a.Balance
		sum.Accounts++
	}
	if jIt.Valid() {
		jid, seq, _ := parseSeqKey(jIt.Key())
		return sum, fmt.Errorf("%w: journal entry %d/%d has no account", ErrCorrupt, jid, seq)
	}
	return sum, errors.Join(accIt.Error(), jIt.Error())
}

// journal consumes a's entries from jIt, which is positioned at or before
// them, and folds into a those written after its record (JournalOnly
// changes), so that a ends as LoadAccount returns it.
func (c *checker) journal(jIt *pebble.Iterator, a *charging.Account) error {
	var seq uint64
	var balance charging.Amount
	recordSeq := a.Seq
	for ; jIt.Valid(); jIt.Next() {
		if err := c.tick(); err != nil {
			return err
		}
		jid, _, ok := parseSeqKey(jIt.Key())
		if !ok {
			return fmt.Errorf("%w: journal key %x", ErrCorrupt, jIt.Key())
		}
		if jid < a.ID {
			return fmt.Errorf("%w: journal of %d has no account", ErrCorrupt, jid)
		}
		if jid > a.ID {
			break
		}
		e, err := decodeJournal(jIt.Key(), jIt.Value(), a.ID)
		if err != nil {
			return fmt.Errorf("account %d: %w", a.ID, err)
		}
		switch {
		case e.Seq != seq+1:
			return fmt.Errorf("%w: account %d journal jumps from %d to %d", ErrCorrupt, a.ID, seq, e.Seq)
		case balance+e.Amount != e.BalanceAfter:
			return fmt.Errorf("%w: account %d entry %d: %d%+d != balance after %d",
				ErrCorrupt, a.ID, e.Seq, balance, e.Amount, e.BalanceAfter)
		}
		seq, balance = e.Seq, e.BalanceAfter
		if e.Seq > recordSeq {
			a.Fold(&e)
		}
	}
	switch {
	case seq != a.Seq:
		return fmt.Errorf("%w: account %d seq %d but journal ends at %d", ErrCorrupt, a.ID, a.Seq, seq)
	case balance != a.Balance:
		return fmt.Errorf("%w: account %d balance %d but journal says %d", ErrCorrupt, a.ID, a.Balance, balance)
	}
	if err := validateAccount(a); err != nil {
		return fmt.Errorf("%w: account %d with its journal folded in: %v", ErrCorrupt, a.ID, err)
	}
	return nil
}

func (c *checker) requests() error {
	it, err := c.table(tagRequest)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := c.tick(); err != nil {
			return err
		}
		_, id, key, ok := parseSubKey(it.Key())
		if !ok || len(key) == 0 || len(key) > charging.RequestKeyBytesMax {
			return fmt.Errorf("%w: request key %x", ErrCorrupt, it.Key())
		}
		if _, err := decodeRequest(it.Value()); err != nil {
			return fmt.Errorf("request %d/%q: %w", id, key, err)
		}
	}
	return it.Error()
}

func (c *checker) refunds() error {
	it, err := c.table(tagRefunded)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := c.tick(); err != nil {
			return err
		}
		id, seq, ok := parseSeqKey(it.Key())
		if !ok {
			return fmt.Errorf("%w: refund marker key %x", ErrCorrupt, it.Key())
		}
		refundSeq, err := decodeRefunded(it.Value())
		if err != nil {
			return fmt.Errorf("refund marker %d/%d: %w", id, seq, err)
		}
		charge, err := c.entry(id, seq)
		if err != nil {
			return err
		}
		refund, err := c.entry(id, refundSeq)
		if err != nil {
			return err
		}
		if (charge.Kind != charging.EntryCharge && charge.Kind != charging.EntrySessionDebit) ||
			refund.Kind != charging.EntryRefund || refund.Ref != seq {
			return fmt.Errorf("%w: refund marker %d/%d: entry %s refunded by %s of %d",
				ErrCorrupt, id, seq, charge.Kind, refund.Kind, refund.Ref)
		}
	}
	return it.Error()
}

func (c *checker) entry(id charging.SubscriberID, seq uint64) (charging.Entry, error) {
	var kb [journalKeyLen]byte
	k := appendJournalKey(kb[:0], id, seq)
	v, closer, err := c.snap.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return charging.Entry{}, fmt.Errorf("%w: refund marker names missing entry %d/%d", ErrCorrupt, id, seq)
	}
	if err != nil {
		return charging.Entry{}, err
	}
	defer closer.Close()
	return decodeJournal(k, v, id)
}

func (c *checker) totals(sum charging.Totals) error {
	v, closer, err := c.snap.Get(appendMetaKey(nil, metaTotals))
	var t charging.Totals
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return err
	default:
		t, err = decodeTotals(v)
		_ = closer.Close()
		if err != nil {
			return err
		}
	}
	if t != sum {
		return fmt.Errorf("%w: stored totals %+v but records add up to %+v", ErrCorrupt, t, sum)
	}
	return nil
}
