package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"

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
//   - the stored totals equal the sum of balances and the account count;
//   - scratch cards: a used card names its credit, a voucher top-up of its
//     value on its beneficiary's journal under the card's request key, or
//     (an older build's half-way redemption) has a pending marker; an
//     unused card has none; no marker without its card; and the journals
//     hold exactly as many voucher credits as used cards name, plus the
//     pending cards whose credit landed (recorded under the card's key).
//     So a card credited twice, or credited and still active, is caught.
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
	if err == nil {
		err = c.vouchers()
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
	// voucherCredits counts the journals' voucher top-ups, for vouchers.
	voucherCredits int
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
		if e.Kind == charging.EntryTopUp && e.Channel == charging.ChannelVoucher {
			c.voucherCredits++
		}
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
		charge, err := c.entry(id, seq, "refund marker")
		if err != nil {
			return err
		}
		refund, err := c.entry(id, refundSeq, "refund marker")
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

// entry reads journal entry seq of id, which what (the record naming it)
// says exists.
func (c *checker) entry(id charging.SubscriberID, seq uint64, what string) (charging.Entry, error) {
	var kb [journalKeyLen]byte
	k := appendJournalKey(kb[:0], id, seq)
	v, closer, err := c.snap.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return charging.Entry{}, fmt.Errorf("%w: %s names missing entry %d/%d", ErrCorrupt, what, id, seq)
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

// vouchers checks every card against its credit or pending marker, and the
// count of voucher credits the journal walk made (see Check).
func (c *checker) vouchers() error {
	it, err := c.table(tagVoucher)
	if err != nil {
		return err
	}
	defer it.Close()
	var credited, pending, pendingLanded int
	for ok := it.First(); ok; ok = it.Next() {
		if err := c.tick(); err != nil {
			return err
		}
		k := it.Key()
		if len(k) != voucherKeyLen {
			return fmt.Errorf("%w: voucher key of %d bytes", ErrCorrupt, len(k))
		}
		var h VoucherHash
		copy(h[:], k[1:])
		v, err := decodeVoucher(it.Value())
		if err == nil {
			err = validateVoucher(&v)
		}
		if err != nil {
			return fmt.Errorf("%w: voucher %x: %w", ErrCorrupt, h[:4], err)
		}
		marked, err := has(c.snap, voucherPendingKey(nil, &h))
		if err != nil {
			return err
		}
		switch {
		case v.State == charging.VoucherUsed && v.CreditSeq != 0:
			credited++
			what := "voucher " + strconv.FormatUint(v.Serial, 10)
			e, err := c.entry(v.UsedBy, v.CreditSeq, what)
			if err != nil {
				return err
			}
			if e.Kind != charging.EntryTopUp || e.Channel != charging.ChannelVoucher || e.Amount != v.Value || e.Key != RedemptionKey(h) {
				return fmt.Errorf("%w: %s of %d names entry %d/%d, a %s %s of %d keyed %q",
					ErrCorrupt, what, v.Value, v.UsedBy, v.CreditSeq, e.Channel, e.Kind, e.Amount, e.Key)
			}
			if marked {
				return fmt.Errorf("%w: %s is credited and still pending", ErrCorrupt, what)
			}
		case v.State == charging.VoucherUsed:
			pending++
			if !marked {
				return fmt.Errorf("%w: voucher %d is used without a credit or a pending marker", ErrCorrupt, v.Serial)
			}
			// Did its credit land before the crash? An older build
			// recorded it under the card's key, and the pruner keeps that
			// record while the marker exists.
			landed, err := has(c.snap, appendRequestKey(nil, v.UsedBy, RedemptionKey(h)))
			if err != nil {
				return err
			}
			if landed {
				pendingLanded++
			}
		case marked:
			return fmt.Errorf("%w: voucher %d is %v with a pending marker", ErrCorrupt, v.Serial, v.State)
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	markers, err := c.count(tagVoucherPending)
	if err != nil {
		return err
	}
	switch {
	case markers != pending:
		return fmt.Errorf("%w: %d pending markers for %d cards used and not credited", ErrCorrupt, markers, pending)
	case c.voucherCredits != credited+pendingLanded:
		return fmt.Errorf("%w: %d voucher credits in the journals for %d credited cards and %d pending ones whose credit landed",
			ErrCorrupt, c.voucherCredits, credited, pendingLanded)
	}
	return nil
}

// count returns the number of records in table tag.
func (c *checker) count(tag byte) (int, error) {
	it, err := c.table(tag)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if err := c.tick(); err != nil {
			return n, err
		}
		n++
	}
	return n, it.Error()
}
