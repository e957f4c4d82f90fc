package storage

// The pruner's third walk: redemption brute-force guards (table 0x13).
// The contract is in pruner.go's file comment ("Redeem guards").

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ocs-engine/ocs/charging"
)

const (
	// guardPruneLag: guards are judged a minute before the pass's now.
	// Redeem takes its now before it looks the card up, and fail counts
	// the failure at that now after the look-up, which may wait behind a
	// card stripe held across a durable write (milliseconds; seconds on a
	// stalled disk). A failure stamped before the pruner's instant but
	// counted after its delete would find no record and open a fresh
	// window where the record would have counted into its old one. Every
	// failure is counted well within a minute of its stamp, and a guard
	// deletable at now−lag is deletable at every later instant, so the lag
	// only keeps each guard a minute longer.
	guardPruneLag = time.Minute
	// guardPruneBatchMax bounds the deletes of one guard batch. A batch
	// holds the lock stripes of all its callers across its re-reads and
	// its apply (see deleteGuards): about a microsecond a re-read, so a
	// wrong code of a caller on one of those stripes waits a few
	// milliseconds at most. PruneBatchMax would hold them ten times longer.
	guardPruneBatchMax = 1024
	// guardKeyLen is the tag and the caller's 8-byte id.
	guardKeyLen = 1 + 8
)

// The stripes of one guard batch are a bitset of whole words.
const _ uint = -(voucherLockStripes % 64)

// guardPrunable reports whether the guard g can no longer affect any
// decision at at or after: for every time t ≥ at, Barred(t) and Fail(p, t)
// answer on g exactly as on a zero guard (no record), and leave it in a
// state that answers every later call as the zero guard's state would
// (TestGuardPrunableIsEquivalentToNoRecord). From charging.RedeemGuard:
//   - Barred(t) is t < BarredUntil; a zero guard is never barred at t ≥ 0.
//     So BarredUntil ≤ at, and at ≥ 0 (a zero guard is barred before 1970).
//   - Fail(p, t) on a caller not barred restarts the count (WindowStart = t,
//     Failures = 0) when WindowStart == 0 or t ≥ WindowStart + Window in
//     whole seconds, as it always does on a zero guard. Both conditions hold
//     for every t ≥ at once they hold at at. After the restart the two
//     differ only in a BarredUntil ≤ at: not barred at any t ≥ at, as zero
//     is not, and overwritten by the Fail that next bars the caller.
//
// The expressions are Fail's own, overflow included.
func guardPrunable(g *charging.RedeemGuard, p *charging.GuardPolicy, at time.Time) bool {
	unix := at.Unix()
	if unix < 0 || g.Barred(at) {
		return false
	}
	return g.WindowStart == 0 || unix >= g.WindowStart+int64(p.Window/time.Second)
}

// guardStripe is the index in Vouchers.guardLocks of caller id's lock
// (Vouchers.guardLock): deleteGuards takes several stripes, in order.
func guardStripe(id charging.SubscriberID) uint64 { return uint64(id) % voucherLockStripes }

// stepGuards reads guards from key from on, deletes those that can no
// longer affect a decision at at, and returns the key to resume at, or nil
// at the end of the table.
func (p *Pruner) stepGuards(v *Vouchers, from []byte, at time.Time, st *PruneStats) (next []byte, err error) {
	it, err := p.s.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: tableStart(tagRedeemGuard + 1)})
	if err != nil {
		return nil, err
	}
	batchMax := min(p.opts.BatchMax, guardPruneBatchMax)
	p.guardDels = p.guardDels[:0]
	scanned := 0
	for ok := it.First(); ok; ok = it.Next() {
		if len(p.guardDels) == batchMax || scanned == p.scanMax {
			next = append([]byte(nil), it.Key()...)
			break
		}
		scanned++
		caller, prune, err := p.guardPrunable(v, it.Key(), it.Value(), at, st)
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		if prune {
			p.guardDels = append(p.guardDels, caller)
		}
	}
	// Closed before the locks are taken: the scan never holds fail back.
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	st.GuardsScanned += uint64(scanned)
	if len(p.guardDels) == 0 {
		return next, nil
	}
	if p.onGuardDel != nil {
		p.onGuardDel(p.guardDels)
	}
	return next, p.deleteGuards(v, p.guardDels, at, st)
}

// guardPrunable decodes the guard k → v and reports whether it can be
// deleted; a guard it keeps is counted by why.
func (p *Pruner) guardPrunable(v *Vouchers, k, val []byte, at time.Time, st *PruneStats) (charging.SubscriberID, bool, error) {
	if len(k) != guardKeyLen {
		return 0, false, fmt.Errorf("%w: guard key %x", ErrCorrupt, k)
	}
	caller := charging.SubscriberID(binary.BigEndian.Uint64(k[1:]))
	g, err := decodeRedeemGuard(val)
	if err != nil {
		return caller, false, fmt.Errorf("guard of %d: %w", uint64(caller), err)
	}
	return caller, guardDeletable(&g, &v.guard, at, st), nil
}

// guardDeletable reports whether g may be deleted at at, counting it in st
// by why when it is kept.
func guardDeletable(g *charging.RedeemGuard, policy *charging.GuardPolicy, at time.Time, st *PruneStats) (prune bool) {
	switch {
	case guardPrunable(g, policy, at):
		return true
	case g.Barred(at):
		st.GuardsKeptBarred++
	default:
		st.GuardsKeptCounting++
	}
	return false
}

// deleteGuards deletes the guards of callers, each only if it is still
// deletable when read again under its caller's lock, in one NoSync batch.
//
// # The race with fail
//
// fail reads, counts and writes a caller's guard under v.guardLock(caller).
// The re-reads and the batch's apply run with the stripes of every caller
// in the batch held, so each fail runs wholly before or wholly after:
//   - before: the re-read sees the failure it counted, a fresh window that
//     is not deletable, and keeps it.
//   - after: it finds no record and counts on a zero guard, which answers
//     exactly as the deleted record would have (guardPrunable).
//
// Without the lock (or with a re-read outside it), a fail between the read
// and the apply would be deleted with the record: a lost count, one more
// guess for a guesser each time. The stripes are taken in increasing order:
// fail holds one stripe and nothing else, and a second Pruner (an
// operator's one-off pass) takes its own in the same order, so no cycle.
// A delete lost in a crash (NoSync) leaves a record that answers as none
// would: the next pass deletes it again.
func (p *Pruner) deleteGuards(v *Vouchers, callers []charging.SubscriberID, at time.Time, st *PruneStats) error {
	stripes := &p.guardStripes
	*stripes = [voucherLockStripes / 64]uint64{}
	for _, c := range callers {
		i := guardStripe(c)
		stripes[i/64] |= 1 << (i % 64)
	}
	forStripes(stripes, func(i int) { v.guardLocks[i].Lock() })
	defer forStripes(stripes, func(i int) { v.guardLocks[i].Unlock() })
	b := p.batch
	deletes := 0
	var kb [guardKeyLen]byte
	for _, c := range callers {
		k := redeemGuardKey(kb[:0], c)
		val, found, err := getCopy(p.s.db, k)
		if err != nil {
			b.Reset()
			return err
		}
		if !found {
			continue // deleted by another pass since the read
		}
		g, err := decodeRedeemGuard(val)
		if err != nil {
			b.Reset()
			return fmt.Errorf("guard of %d: %w", uint64(c), err)
		}
		if !guardDeletable(&g, &v.guard, at, st) {
			continue // a failure counted since the read
		}
		if err := b.Delete(k, nil); err != nil {
			b.Reset()
			return err
		}
		deletes++
	}
	return p.applyDeletes(b, deletes, st, &st.GuardsDeleted)
}

// forStripes calls f with the index of every stripe set in s, in
// increasing order: the lock order.
func forStripes(s *[voucherLockStripes / 64]uint64, f func(i int)) {
	for w, word := range s {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			f(w*64 + b)
			word &^= 1 << b
		}
	}
}
