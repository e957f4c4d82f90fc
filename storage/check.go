package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
//   - credit transfers (storage/transfer.go): every record decodes, is
//     stored under its ID, and its amounts are valid; the open index holds
//     exactly the pending, debited and reversing ones; every key-index
//     entry names a transfer of its sender, and every open transfer has
//     exactly one entry (the pruner deletes only final transfers' entries, so a final
//     one may have none);
//   - every journal entry of kind transfer_out or transfer_in, or of
//     channel transfer, is a leg: a transfer_out keyed "T/<id>/d" (the
//     debit, Ref id), a transfer_in keyed "T/<id>/c" (the credit, Ref 0
//     or id) or "T/<id>/r" (the reversal, Ref id), all of channel
//     transfer; every package_payment entry is keyed "P/<id>" with Ref id.
//     The debit is amount+fee off the sender, the credit amount to the
//     receiver, the reversal amount+fee back to the sender, a payment's
//     debit price+fee off its caller. No leg appears twice, and no leg
//     names a record that does not exist (money from nowhere);
//   - a transfer has exactly the legs its state allows a crash to leave
//     (each leg is durable before the state that follows it): pending,
//     its debit or none; debited, its debit and its credit or none (or,
//     left by a build without the reversing state, its reversal); reversing,
//     its debit and its reversal or none, never the credit; credited,
//     debit and credit; reversed, debit and reversal; refused, none;
//   - a payment: pending, its debit or none; applied, its debit;
//     cancelled, none. Its open index holds exactly the pending ones. A
//     caller's month marker names a payment of that caller, in the
//     marker's month, not cancelled, and no payment of that caller is
//     newer than the one it names (every BeginPayment rewrites it).
//
// It streams and may run beside commits: it reads a snapshot. Accounts and
// journals are read in step, every table once (O(n) time), and the
// checker holds O(1) per account, the open transfers and payments with
// their legs, and a 64-bit fingerprint per 1,024 record IDs for the legs of
// closed ones ("Transfers and *101# payments against their journal legs"
// below): never the journals. Only when a fingerprint is off does it read
// the journals once more, to name the record. Tests call it at cleanup; an
// ops endpoint may call it on a live store.
func (s *Store) Check(ctx context.Context) error {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	c := checker{ctx: ctx, snap: snap, flows: newFlowSets()}
	err := c.loadOpen()
	var sum charging.Totals
	if err == nil {
		sum, err = c.accounts()
	}
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
	if err == nil {
		err = c.flowRecords(&c.flows[flowTransfers])
	}
	if err == nil {
		err = c.transferKeys()
	}
	if err == nil {
		err = c.flowRecords(&c.flows[flowPayments])
	}
	if err == nil {
		err = c.paymentMonths()
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
	// flows gathers the transfers' and payments' legs (flowTransfers,
	// flowPayments) during the journal walk.
	flows [2]flowSet
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
		if err := c.flowEntry(a.ID, &e); err != nil {
			return err
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
	return c.each(tagRequest, func(rk, rv []byte) error {
		_, id, key, ok := parseSubKey(rk)
		if !ok || len(key) == 0 || len(key) > charging.RequestKeyBytesMax {
			return fmt.Errorf("%w: request key %x", ErrCorrupt, rk)
		}
		if _, err := decodeRequest(rv); err != nil {
			return fmt.Errorf("request %d/%q: %w", id, key, err)
		}
		return nil
	})
}

func (c *checker) refunds() error {
	return c.each(tagRefunded, func(rk, rv []byte) error {
		id, seq, ok := parseSeqKey(rk)
		if !ok {
			return fmt.Errorf("%w: refund marker key %x", ErrCorrupt, rk)
		}
		refundSeq, err := decodeRefunded(rv)
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
		return nil
	})
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

// each calls fn with every record of table tag in key order, looking at
// ctx between records (tick), and stops at the first error. The slices
// are valid only during the call.
func (c *checker) each(tag byte, fn func(rk, rv []byte) error) error {
	it, err := c.table(tag)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := c.tick(); err != nil {
			return err
		}
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// count returns the number of records in table tag.
func (c *checker) count(tag byte) (int, error) {
	n := 0
	err := c.each(tag, func(_, _ []byte) error { n++; return nil })
	return n, err
}

// # Transfers and *101# payments against their journal legs
//
// A leg is a journal entry a flow made with a request key derived from its
// record: a transfer's debit "T/<id>/d" (transfer_out of amount+fee on the
// sender), credit "T/<id>/c" (transfer_in of amount on the receiver) and
// reversal "T/<id>/r" (transfer_in of amount+fee on the sender), a
// payment's debit "P/<id>" (package_payment of price+fee on the caller).
// Legs are found by what the entry is, never by its key alone: a client
// may choose a key that starts with "T/" for a charge of its own.
//
// The legs of an open record (in the open index, loaded before the journal
// walk: O(open) memory) are kept and compared one by one with it. The legs
// of a closed record are exactly the ones its state requires, so they are
// summed as a multiset fingerprint (the sum of a 64-bit hash of each leg's
// record ID, leg, account and amount), per bucket of flowBucketIDs
// consecutive IDs, and each closed record subtracts the legs it requires: a
// bucket left non-zero holds a leg missing, repeated, misplaced or of no
// record (missed with probability about 2^-64). Only then is that bucket's
// journal read again (legs of at most flowBucketIDs records in memory) to
// name the record. Memory is O(open + IDs/flowBucketIDs), never O(journal).

// flowBucketShift sets the bucket of flowBucketIDs = 1024 record IDs: 10M
// transfers are about 10,000 buckets (a few hundred KiB), and naming the
// culprit of a bad bucket holds the legs of 1024 records at most.
const flowBucketShift = 10

// Legs, as indexes into flowSpec.want.
const (
	legDebit    = 0
	legCredit   = 1 // transfers only
	legReversal = 2 // transfers only
)

// flowLeg is one journal entry that is a leg of a transfer or payment.
type flowLeg struct {
	sub    charging.SubscriberID
	seq    uint64
	amount charging.Amount
	leg    int
}

// legPrint is the fingerprint of a leg of record id: the splitmix64
// finalizer chained over the fields that the record decides (not the Seq).
func legPrint(id uint64, leg int, sub charging.SubscriberID, amount charging.Amount) uint64 {
	h := mix64(id)
	h = mix64(h ^ uint64(leg))
	h = mix64(h ^ uint64(sub))
	return mix64(h ^ uint64(amount))
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// openFlow is an open record's entry in flowSet.open.
type openFlow struct {
	legs  []flowLeg // at most legs+1: one more is already a repeat
	seen  bool      // its record was read
	keyed bool      // a transfer key-index entry names it
}

// flowSet is what Check gathers of one kind of flow.
type flowSet struct {
	what      string // "transfer", "payment"
	records   byte   // table of the records
	openIndex byte   // table of the open index
	legsMax   int
	open      map[uint64]*openFlow
	// sums holds, per bucket of IDs, the closed records' legs in the
	// journals minus those their records require.
	sums map[uint64]uint64
	// spec decodes record id and says what it requires of its legs, and
	// whether it is open; it may check more of the record (payments:
	// their caller's month marker).
	spec func(c *checker, id uint64, v []byte) (flowSpec, bool, error)
}

func newFlowSets() [2]flowSet {
	return [2]flowSet{
		{what: "transfer", records: tagTransfer, openIndex: tagTransferOpen, legsMax: 3,
			open: map[uint64]*openFlow{}, sums: map[uint64]uint64{}, spec: transferSpec},
		{what: "payment", records: tagFixedPayment, openIndex: tagFixedPayOpen, legsMax: 1,
			open: map[uint64]*openFlow{}, sums: map[uint64]uint64{}, spec: paymentSpec},
	}
}

const (
	flowTransfers = 0
	flowPayments  = 1
)

// legWant is one leg a record may have: on whose journal, of how much.
type legWant struct {
	name   string
	sub    charging.SubscriberID
	amount charging.Amount
}

// flowSpec is what one record allows and requires of its legs (bit i of a
// mask: want[i]). For a closed record allowed == required.
type flowSpec struct {
	what, state       string
	id                uint64
	want              []legWant
	allowed, required uint8
	// notBoth forbids credit and reversal together (a debited transfer).
	notBoth bool
}

// transferSpec is the protocol of storage/transfer.go. The debit is made
// only after Begin, the credit only once the record is debited, the
// reversal only once a refused credit made it reversing, each recorded
// before the state that follows it, so a crash leaves: pending with or
// without its debit; debited with its debit and its credit or none;
// reversing with its debit and its reversal or none. Builds before the
// reversing state ran the reversal from debited, so debited also accepts
// a reversal instead of the credit (never both).
func transferSpec(_ *checker, id uint64, v []byte) (flowSpec, bool, error) {
	tr, err := decodeTransfer(v)
	if err != nil {
		return flowSpec{}, false, fmt.Errorf("transfer %d: %w", id, err)
	}
	if tr.ID != id {
		return flowSpec{}, false, fmt.Errorf("%w: transfer key %d holds transfer %d", ErrCorrupt, id, tr.ID)
	}
	paid := tr.Amount + tr.Fee
	sp := flowSpec{what: "transfer", state: tr.State.String(), id: id, want: []legWant{
		{"debit", tr.From, -paid}, {"credit", tr.To, tr.Amount}, {"reversal", tr.From, paid}}}
	const d, c, r = 1 << legDebit, 1 << legCredit, 1 << legReversal
	switch tr.State {
	case charging.TransferPending:
		sp.allowed = d
	case charging.TransferDebited:
		sp.allowed, sp.required, sp.notBoth = d|c|r, d, true
	case charging.TransferReversing:
		sp.allowed, sp.required = d|r, d
	case charging.TransferCredited:
		sp.allowed, sp.required = d|c, d|c
	case charging.TransferReversed:
		sp.allowed, sp.required = d|r, d|r
	}
	return sp, !tr.State.Final(), nil
}

var paymentStateNames = [...]string{"invalid", "pending", "applied", "cancelled"}

// paymentSpec is the protocol of storage/fixed.go: the debit comes after
// BeginPayment and before ApplyPayment, a cancelled payment's was refused.
// It also holds the payment to its caller's month marker: every Begin of a
// caller writes the marker, so it never names an older payment of theirs.
func paymentSpec(c *checker, id uint64, v []byte) (flowSpec, bool, error) {
	p, err := decodeFixedPayment(v)
	if err != nil {
		return flowSpec{}, false, fmt.Errorf("payment %d: %w", id, err)
	}
	if p.ID != id {
		return flowSpec{}, false, fmt.Errorf("%w: payment key %d holds payment %d", ErrCorrupt, id, p.ID)
	}
	mv, found, err := getCopy(c.snap, monthKey(p.Caller))
	if err != nil {
		return flowSpec{}, false, err
	}
	if found {
		_, marked, err := decodeFixedMonth(mv)
		if err != nil {
			return flowSpec{}, false, fmt.Errorf("month marker of %d: %w", p.Caller, err)
		}
		if marked < id {
			return flowSpec{}, false, fmt.Errorf("%w: the month marker of %d names payment %d, older than their payment %d",
				ErrCorrupt, p.Caller, marked, id)
		}
	}
	sp := flowSpec{what: "payment", state: paymentStateNames[p.State], id: id,
		want: []legWant{{"debit", p.Caller, -(p.Price + p.Fee)}}}
	switch p.State {
	case PaymentPending:
		sp.allowed = 1 << legDebit
	case PaymentApplied:
		sp.allowed, sp.required = 1<<legDebit, 1<<legDebit
	}
	return sp, p.State == PaymentPending, nil
}

// check compares a record's legs, as found in the journals, with sp.
func (sp *flowSpec) check(legs []flowLeg) error {
	var at [3]*flowLeg
	for i := range legs {
		l := &legs[i]
		w := &sp.want[l.leg]
		if at[l.leg] != nil {
			return fmt.Errorf("%w: %s %d has its %s twice: entries %d/%d and %d/%d",
				ErrCorrupt, sp.what, sp.id, w.name, at[l.leg].sub, at[l.leg].seq, l.sub, l.seq)
		}
		at[l.leg] = l
		if l.sub != w.sub || l.amount != w.amount {
			return fmt.Errorf("%w: %s %d: its %s is entry %d/%d of %+d, want an entry of %d of %+d",
				ErrCorrupt, sp.what, sp.id, w.name, l.sub, l.seq, l.amount, w.sub, w.amount)
		}
		if sp.allowed&(1<<l.leg) == 0 {
			return fmt.Errorf("%w: %s %d is %s but has its %s: entry %d/%d",
				ErrCorrupt, sp.what, sp.id, sp.state, w.name, l.sub, l.seq)
		}
	}
	for i := range sp.want {
		if sp.required&(1<<i) != 0 && at[i] == nil {
			return fmt.Errorf("%w: %s %d is %s but %d's journal has no %s of it",
				ErrCorrupt, sp.what, sp.id, sp.state, sp.want[i].sub, sp.want[i].name)
		}
	}
	if c, r := at[legCredit], at[legReversal]; sp.notBoth && c != nil && r != nil {
		return fmt.Errorf("%w: %s %d is %s with both its credit (entry %d/%d) and its reversal (entry %d/%d)",
			ErrCorrupt, sp.what, sp.id, sp.state, c.sub, c.seq, r.sub, r.seq)
	}
	return nil
}

// loadOpen reads the open indexes, before the journal walk routes legs.
func (c *checker) loadOpen() error {
	for i := range c.flows {
		set := &c.flows[i]
		it, err := c.table(set.openIndex)
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			if err := c.tick(); err != nil {
				_ = it.Close()
				return err
			}
			if len(it.Key()) != 9 || len(it.Value()) != 0 {
				_ = it.Close()
				return fmt.Errorf("%w: open %s index entry %x → %x", ErrCorrupt, set.what, it.Key(), it.Value())
			}
			set.open[binary.BigEndian.Uint64(it.Key()[1:])] = &openFlow{}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}

// legOf reports whether entry e of sub's journal is a leg of a transfer
// (flowTransfers) or payment (flowPayments), and which; an entry that is
// a transfer's or payment's kind or channel but keyed as no leg of one is
// corruption.
func legOf(sub charging.SubscriberID, e *charging.Entry) (set int, id uint64, l flowLeg, ok bool, err error) {
	l = flowLeg{sub: sub, seq: e.Seq, amount: e.Amount}
	switch {
	case e.Kind == charging.EntryTransferOut || e.Kind == charging.EntryTransferIn || e.Channel == charging.ChannelTransfer:
		id, l.leg, ok = parseTransferLegKey(e.Key)
		want := charging.EntryTransferIn
		if l.leg == legDebit {
			want = charging.EntryTransferOut
		}
		// Debit and reversal carry the transfer ID in Ref; the credit is
		// a plain top-up, whose Ref is 0.
		ref := e.Ref == id || (l.leg == legCredit && e.Ref == 0)
		if !ok || e.Kind != want || e.Channel != charging.ChannelTransfer || !ref {
			return 0, 0, l, false, fmt.Errorf("%w: entry %d/%d, a %s %s of %+d keyed %q with ref %d, is no leg of a transfer",
				ErrCorrupt, sub, e.Seq, e.Channel, e.Kind, e.Amount, e.Key, e.Ref)
		}
		return flowTransfers, id, l, true, nil
	case e.Kind == charging.EntryFixedPayment:
		id, ok = parseIDKey(e.Key, "P/")
		if !ok || e.Ref != id {
			return 0, 0, l, false, fmt.Errorf("%w: entry %d/%d, a %s of %+d keyed %q with ref %d, is no payment's debit",
				ErrCorrupt, sub, e.Seq, e.Kind, e.Amount, e.Key, e.Ref)
		}
		return flowPayments, id, l, true, nil
	}
	return 0, 0, l, false, nil
}

// parseTransferLegKey parses the key of a transfer leg as
// charging.Transfer's key method writes it: "T/<id>/<d|c|r>".
func parseTransferLegKey(key string) (id uint64, leg int, ok bool) {
	n := len(key)
	if n < 5 || key[n-2] != '/' {
		return 0, 0, false
	}
	switch key[n-1] {
	case 'd':
		leg = legDebit
	case 'c':
		leg = legCredit
	case 'r':
		leg = legReversal
	default:
		return 0, 0, false
	}
	id, ok = parseIDKey(key[:n-2], "T/")
	return id, leg, ok
}

// parseIDKey parses prefix then a non-zero ID in canonical decimal.
func parseIDKey(key, prefix string) (uint64, bool) {
	digits, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || id == 0 || strconv.FormatUint(id, 10) != digits {
		return 0, false
	}
	return id, true
}

// flowEntry routes entry e of sub's journal, if it is a leg, to its open
// record or to its bucket's fingerprint (called by the journal walk).
func (c *checker) flowEntry(sub charging.SubscriberID, e *charging.Entry) error {
	i, id, l, ok, err := legOf(sub, e)
	if !ok || err != nil {
		return err
	}
	set := &c.flows[i]
	if o := set.open[id]; o != nil {
		if len(o.legs) <= set.legsMax {
			o.legs = append(o.legs, l)
		}
		return nil
	}
	set.sums[id>>flowBucketShift] += legPrint(id, l.leg, l.sub, l.amount)
	return nil
}

// flowRecords walks set's records: each decodes, is open exactly if the
// open index names it, and is held to its legs.
func (c *checker) flowRecords(set *flowSet) error {
	if err := c.each(set.records, func(rk, rv []byte) error {
		if len(rk) != 9 {
			return fmt.Errorf("%w: %s key %x", ErrCorrupt, set.what, rk)
		}
		id := binary.BigEndian.Uint64(rk[1:])
		sp, open, err := set.spec(c, id, rv)
		if err != nil {
			return err
		}
		o := set.open[id]
		switch {
		case open && o == nil:
			return fmt.Errorf("%w: %s %d is %s but not in the open index", ErrCorrupt, set.what, id, sp.state)
		case !open && o != nil:
			return fmt.Errorf("%w: %s %d is %s but still in the open index", ErrCorrupt, set.what, id, sp.state)
		case open:
			o.seen = true
			if err := sp.check(o.legs); err != nil {
				return err
			}
		default:
			for i := range sp.want {
				if w := &sp.want[i]; sp.required&(1<<i) != 0 {
					set.sums[id>>flowBucketShift] -= legPrint(id, i, w.sub, w.amount)
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if id, ok := minID(set.open, func(o *openFlow) bool { return !o.seen }); ok {
		return fmt.Errorf("%w: the open %s index names %s %d, which does not exist", ErrCorrupt, set.what, set.what, id)
	}
	return c.settle(set)
}

// minID returns the smallest ID of m whose entry satisfies pick, so that
// an error names the same record on every run.
func minID(m map[uint64]*openFlow, pick func(*openFlow) bool) (uint64, bool) {
	var lowest uint64
	found := false
	for id, o := range m {
		if pick(o) && (!found || id < lowest) {
			lowest, found = id, true
		}
	}
	return lowest, found
}

// settle finds the first bucket of closed records whose legs do not add
// up, if any, and names the culprit.
func (c *checker) settle(set *flowSet) error {
	var bad uint64
	found := false
	for b, sum := range set.sums {
		if sum != 0 && (!found || b < bad) {
			bad, found = b, true
		}
	}
	if !found {
		return nil
	}
	return c.diagnose(set, bad)
}

// diagnose reads the journals again for the legs of the records in
// bucket, and holds each of those records to its legs.
func (c *checker) diagnose(set *flowSet, bucket uint64) error {
	kind := flowTransfers
	if set == &c.flows[flowPayments] {
		kind = flowPayments
	}
	legs := map[uint64][]flowLeg{}
	err := c.each(tagJournal, func(k, v []byte) error {
		sub, _, _ := parseSeqKey(k)
		e, err := decodeJournal(k, v, sub)
		if err != nil {
			return err
		}
		i, id, l, ok, err := legOf(sub, &e)
		if err != nil {
			return err
		}
		if ok && i == kind && id>>flowBucketShift == bucket && len(legs[id]) <= set.legsMax {
			legs[id] = append(legs[id], l)
		}
		return nil
	})
	if err != nil {
		return err
	}
	lo, hi := bucket<<flowBucketShift, (bucket+1)<<flowBucketShift
	rIt, err := c.snap.NewIter(&pebble.IterOptions{LowerBound: idKey(set.records, lo), UpperBound: idKey(set.records, hi)})
	if err != nil {
		return err
	}
	defer rIt.Close()
	for ok := rIt.First(); ok; ok = rIt.Next() {
		id := binary.BigEndian.Uint64(rIt.Key()[1:])
		sp, _, err := set.spec(c, id, rIt.Value())
		if err != nil {
			return err
		}
		if err := sp.check(legs[id]); err != nil {
			return err
		}
		delete(legs, id)
	}
	if err := rIt.Error(); err != nil {
		return err
	}
	var orphan uint64
	for id := range legs {
		if orphan == 0 || id < orphan {
			orphan = id
		}
	}
	if l, ok := legs[orphan]; ok {
		return fmt.Errorf("%w: entry %d/%d is a leg of %s %d, which does not exist", ErrCorrupt, l[0].sub, l[0].seq, set.what, orphan)
	}
	// Reached only if the fingerprints of different legs collide.
	return fmt.Errorf("%w: the legs of %ss %d..%d do not add up to what their records require", ErrCorrupt, set.what, lo, hi-1)
}

// transferKeys checks the transfer key index: each entry names an
// existing transfer of its sender, and each open transfer has exactly one
// (Begin writes it with the record; the pruner deletes only final
// transfers' entries).
func (c *checker) transferKeys() error {
	set := &c.flows[flowTransfers]
	if err := c.each(tagTransferKey, func(rk, rv []byte) error {
		_, from, key, ok := parseSubKey(rk)
		if !ok || len(key) == 0 || len(key) > charging.RequestKeyBytesMax || len(rv) != 8 {
			return fmt.Errorf("%w: transfer key index entry %x → %x", ErrCorrupt, rk, rv)
		}
		id := binary.BigEndian.Uint64(rv)
		v, found, err := getCopy(c.snap, idKey(tagTransfer, id))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: transfer key index entry %d/%q names transfer %d, which does not exist", ErrCorrupt, from, key, id)
		}
		tr, err := decodeTransfer(v)
		if err != nil {
			return fmt.Errorf("transfer %d: %w", id, err)
		}
		if tr.From != from {
			return fmt.Errorf("%w: transfer key index entry %d/%q names transfer %d, which %d sent", ErrCorrupt, from, key, id, tr.From)
		}
		if o := set.open[id]; o != nil {
			if o.keyed {
				return fmt.Errorf("%w: open transfer %d has a second key index entry %d/%q", ErrCorrupt, id, from, key)
			}
			o.keyed = true
		}
		return nil
	}); err != nil {
		return err
	}
	if id, ok := minID(set.open, func(o *openFlow) bool { return !o.keyed }); ok {
		return fmt.Errorf("%w: open transfer %d has no key index entry: a retry would begin a second transfer", ErrCorrupt, id)
	}
	return nil
}

// paymentMonths checks the callers' month markers: each names a payment
// of its caller, in the marker's month, not cancelled (CancelPayment
// deletes the marker of the payment it cancels).
func (c *checker) paymentMonths() error {
	return c.each(tagFixedMonth, func(rk, rv []byte) error {
		if len(rk) != 9 {
			return fmt.Errorf("%w: month marker key %x", ErrCorrupt, rk)
		}
		caller := charging.SubscriberID(binary.BigEndian.Uint64(rk[1:]))
		month, id, err := decodeFixedMonth(rv)
		if err != nil {
			return fmt.Errorf("month marker of %d: %w", caller, err)
		}
		v, found, err := getCopy(c.snap, idKey(tagFixedPayment, id))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: the month marker of %d names payment %d, which does not exist", ErrCorrupt, caller, id)
		}
		p, err := decodeFixedPayment(v)
		if err != nil {
			return fmt.Errorf("payment %d: %w", id, err)
		}
		if p.Caller != caller || p.Month != month || p.State == PaymentCancelled {
			return fmt.Errorf("%w: the month marker of %d for %d names payment %d, %s, of %d for %d",
				ErrCorrupt, caller, month, id, paymentStateNames[p.State], p.Caller, p.Month)
		}
		return nil
	})
}
