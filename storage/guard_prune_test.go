package storage

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// guardOp is one call on a guard: Fail when fail, else Barred.
type guardOp struct {
	fail bool
	at   time.Time
}

// runGuardOps applies ops to a and b alike and returns the index of the
// first op on which they answer differently, or -1. Fail's answer includes
// the counters it leaves (the ops view shows them) and, when it bars, the
// bar's end (fail returns it).
func runGuardOps(a, b charging.RedeemGuard, p *charging.GuardPolicy, ops []guardOp) int {
	for i, op := range ops {
		if !op.fail {
			if a.Barred(op.at) != b.Barred(op.at) {
				return i
			}
			continue
		}
		ra, rb := a.Fail(p, op.at), b.Fail(p, op.at)
		if ra != rb || a.Failures != b.Failures || a.WindowStart != b.WindowStart || (ra && a.BarredUntil != b.BarredUntil) {
			return i
		}
	}
	return -1
}

// guardSteps are the gaps between two calls: the exact boundary instants
// of a window or a bar, a nanosecond either side, and nothing at all.
func guardSteps(p *charging.GuardPolicy) []time.Duration {
	out := []time.Duration{0, time.Nanosecond, time.Second - time.Nanosecond, time.Second}
	for _, d := range []time.Duration{p.Window.Truncate(time.Second), p.Bar.Truncate(time.Second)} {
		out = append(out, d-time.Second, d-time.Nanosecond, d, d+time.Nanosecond)
	}
	return out
}

// guardInstants are the instants around g's boundaries at which the rule
// is judged: each window end and bar end, exactly and a nanosecond and a
// second either side, plus one random instant.
func guardInstants(g charging.RedeemGuard, p *charging.GuardPolicy, rng *rand.Rand) []time.Time {
	var out []time.Time
	bounds := []int64{g.BarredUntil, g.WindowStart + int64(p.Window/time.Second), g.WindowStart}
	for _, b := range bounds {
		t := time.Unix(b, 0)
		for _, d := range []time.Duration{-time.Second, -time.Nanosecond, 0, time.Nanosecond, time.Second} {
			out = append(out, t.Add(d))
		}
	}
	return append(out, time.Unix(g.WindowStart, 0).Add(time.Duration(rng.Int64N(int64(3*p.Window+p.Bar)))))
}

// A guard that guardPrunable lets go answers every later Fail and Barred
// exactly as no record (a zero guard) does, at any instants from the
// judged one on, boundaries included; and a reachable guard it keeps has
// some later call that tells it from no record, so the rule deletes all it
// can. The guards are the states Fail reaches from zero under random
// failure times, for several policies.
func TestGuardPrunableIsEquivalentToNoRecord(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	policies := []charging.GuardPolicy{
		charging.DefaultGuardPolicy(),
		{FailuresMax: 1, Window: time.Hour, Bar: time.Minute},
		{FailuresMax: 3, Window: time.Minute, Bar: 2 * time.Hour},
		{FailuresMax: 2, Window: 1500 * time.Millisecond, Bar: 2500 * time.Millisecond}, // Fail truncates to whole seconds
		{FailuresMax: 4, Window: time.Second, Bar: time.Second},
	}
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var pruned, kept int
	for _, p := range policies {
		for range 40 {
			var g charging.RedeemGuard
			now := base.Add(time.Duration(rng.Int64N(int64(time.Second))))
			steps := guardSteps(&p)
			for range 2 * int(p.FailuresMax+2) {
				now = now.Add(steps[rng.IntN(len(steps))])
				if rng.IntN(4) == 0 {
					now = now.Add(time.Duration(rng.Int64N(int64(2 * p.Window))))
				}
				g.Fail(&p, now)
				for _, at := range guardInstants(g, &p, rng) {
					if at.Before(now) {
						continue // the state is only reached at now
					}
					if guardPrunable(&g, &p, at) {
						pruned++
						requireEquivalent(t, g, &p, at, steps, rng)
					} else {
						kept++
						requireDistinguishable(t, g, &p, at)
					}
				}
			}
		}
	}
	require.Positive(t, pruned)
	require.Positive(t, kept)
	t.Logf("%d judgements deletable, %d kept", pruned, kept)
}

// requireEquivalent checks g against no record over random call sequences
// from at on, their gaps drawn from steps.
func requireEquivalent(t *testing.T, g charging.RedeemGuard, p *charging.GuardPolicy, at time.Time, steps []time.Duration, rng *rand.Rand) {
	t.Helper()
	for range 8 {
		ops := make([]guardOp, 0, 3*p.FailuresMax+3)
		tt := at
		for range cap(ops) {
			tt = tt.Add(steps[rng.IntN(len(steps))])
			if len(ops) == 0 {
				tt = at // the judged instant itself
			}
			ops = append(ops, guardOp{fail: rng.IntN(3) != 0, at: tt})
		}
		if i := runGuardOps(g, charging.RedeemGuard{}, p, ops); i >= 0 {
			t.Fatalf("guard %+v, policy %+v, deletable at %v: op %d of %+v answers unlike no record", g, *p, at, i, ops)
		}
	}
}

// requireDistinguishable finds a call sequence at at on which g answers
// unlike no record: Barred, or enough failures to bar g and not a zero
// guard.
func requireDistinguishable(t *testing.T, g charging.RedeemGuard, p *charging.GuardPolicy, at time.Time) {
	t.Helper()
	ops := []guardOp{{at: at}}
	for range p.FailuresMax {
		ops = append(ops, guardOp{fail: true, at: at})
	}
	require.GreaterOrEqual(t, runGuardOps(g, charging.RedeemGuard{}, p, ops), 0,
		"guard %+v, policy %+v kept at %v, yet answers as no record", g, *p, at)
}

// Before 1970 a zero guard is barred (t < 0): a guard whose bar ended
// before then is not the same, and is kept.
func TestGuardPrunableBeforeTheEpoch(t *testing.T) {
	p := charging.DefaultGuardPolicy()
	g := charging.RedeemGuard{BarredUntil: -5}
	at := time.Unix(-3, 0)
	require.False(t, guardPrunable(&g, &p, at))
	require.Equal(t, 0, runGuardOps(g, charging.RedeemGuard{}, &p, []guardOp{{at: at}}))
	require.True(t, guardPrunable(&g, &p, time.Unix(0, 0)))
}

// guardPolicyT is the policy of the pruner tests: short enough to reason
// about, with a window and a bar of different lengths.
var guardPolicyT = charging.GuardPolicy{FailuresMax: 3, Window: time.Hour, Bar: 2 * time.Hour}

// guardPruneStore is pruneStore with the Vouchers that count failures on
// it, under guardPolicyT.
func guardPruneStore(t *testing.T) (*manualClock, *Store, *Vouchers) {
	t.Helper()
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, 38344000100)
	v, err := NewVouchers(s, [][]byte{vchSecret(7)}, guardPolicyT)
	require.NoError(t, err)
	return clock, s, v
}

// failAt counts n wrong codes of caller at at.
func failAt(t *testing.T, v *Vouchers, caller charging.SubscriberID, at time.Time, n int) {
	t.Helper()
	for range n {
		_, err := v.fail(caller, at)
		require.NoError(t, err)
	}
}

// storedGuard returns caller's guard record, read from the database (not
// through the bitmap), and whether there is one.
func storedGuard(t *testing.T, s *Store, caller charging.SubscriberID) (charging.RedeemGuard, bool) {
	t.Helper()
	raw, ok, err := getCopy(s.db, redeemGuardKey(nil, caller))
	require.NoError(t, err)
	if !ok {
		return charging.RedeemGuard{}, false
	}
	g, err := decodeRedeemGuard(raw)
	require.NoError(t, err)
	return g, true
}

// The pruner deletes a guard from the instant its window has expired and
// its bar has ended, measured a lag before the pass's now, and not a
// nanosecond before; the metrics count what it did.
func TestPruneGuardsAtTheExactBoundary(t *testing.T) {
	clock, s, v := guardPruneStore(t)
	const (
		window  charging.SubscriberID = 38344000201 // one failure: its window ends at the boundary
		barred  charging.SubscriberID = 38344000202 // barred: its bar ends at the boundary
		young   charging.SubscriberID = 38344000203 // window ends a second after it
		longBar charging.SubscriberID = 38344000204 // bar ends a second after it
	)
	boundary := pruneT0.Add(4 * time.Hour)
	failAt(t, v, window, boundary.Add(-guardPolicyT.Window), 1)
	failAt(t, v, barred, boundary.Add(-guardPolicyT.Bar), 3)
	failAt(t, v, young, boundary.Add(-guardPolicyT.Window+time.Second), 2)
	failAt(t, v, longBar, boundary.Add(-guardPolicyT.Bar+time.Second), 3)
	reg := prometheus.NewRegistry()
	p := newTestPruner(t, s, clock, PrunerOptions{Vouchers: v, Registerer: reg})

	// A nanosecond early: Fail and Barred read whole seconds, so the
	// boundary's second has not begun.
	clock.Add(boundary.Add(guardPruneLag - time.Nanosecond).Sub(clock.Now()))
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{GuardsScanned: 4, GuardsKeptBarred: 2, GuardsKeptCounting: 2}, st)

	clock.Add(time.Nanosecond)
	st, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{GuardsScanned: 4, GuardsDeleted: 2, GuardsKeptBarred: 1, GuardsKeptCounting: 1, Batches: 1}, st)
	for c, want := range map[charging.SubscriberID]bool{window: false, barred: false, young: true, longBar: true} {
		_, ok := storedGuard(t, s, c)
		require.Equal(t, want, ok, "caller %d", c)
	}
	mfs := gather(t, reg)
	require.Equal(t, 2.0, value(t, mfs, "ocs_storage_prune_redeem_guards_total", "deleted"))
	require.Equal(t, 3.0, value(t, mfs, "ocs_storage_prune_redeem_guards_total", "kept_barred"))
	require.Equal(t, 3.0, value(t, mfs, "ocs_storage_prune_redeem_guards_total", "kept_counting"))
	require.Equal(t, 8.0, value(t, mfs, "ocs_storage_prune_redeem_guards_scanned_total", ""))

	// The deleted callers' bits stay set: a read finds nothing, a zero
	// guard, and the next failure starts a fresh count.
	for _, c := range []charging.SubscriberID{window, barred} {
		require.True(t, v.mayHaveGuard(c))
		g, err := v.Guard(c)
		require.NoError(t, err)
		require.Zero(t, g)
		failAt(t, v, c, clock.Now(), 1)
		g, _ = storedGuard(t, s, c)
		require.Equal(t, charging.RedeemGuard{WindowStart: clock.Now().Unix(), Failures: 1}, g)
	}
}

// A failure is stamped when its redemption begins and counted after the
// card look-up: one stamped just before the pass, with the window still
// open at its stamp, must count into that window even if the pass runs
// before it is counted. The lag keeps a guard whose window closed in the
// last half minute.
func TestPruneGuardsLagBehindNow(t *testing.T) {
	clock, s, v := guardPruneStore(t)
	const caller = 38344000213
	closed := clock.Now().Add(-30 * time.Second) // the window's end
	failAt(t, v, caller, closed.Add(-guardPolicyT.Window), 2)
	p := newTestPruner(t, s, clock, PrunerOptions{Vouchers: v})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{GuardsScanned: 1, GuardsKeptCounting: 1}, st)
	until, err := v.fail(caller, closed.Add(-time.Second)) // stamped in the window, counted now
	require.NoError(t, err)
	require.Equal(t, closed.Add(-time.Second).Add(guardPolicyT.Bar).Unix(), until, "the third failure of the window bars")
}

// Without Vouchers the pruner leaves the guard table alone.
func TestPruneWithoutVouchersKeepsGuards(t *testing.T) {
	clock, s, v := guardPruneStore(t)
	failAt(t, v, 38344000205, pruneT0.Add(-30*24*time.Hour), 1)
	p := newTestPruner(t, s, clock, PrunerOptions{})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Zero(t, st.GuardsScanned)
	_, ok := storedGuard(t, s, 38344000205)
	require.True(t, ok)

	other, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer other.Close()
	_, err = NewPruner(other, PrunerOptions{Vouchers: v})
	require.ErrorContains(t, err, "another store")
}

// A guard that does not decode, or a key of the wrong length, stops the
// pass with ErrCorrupt, named.
func TestPruneGuardsCorrupt(t *testing.T) {
	clock, s, v := guardPruneStore(t)
	p := newTestPruner(t, s, clock, PrunerOptions{Vouchers: v})
	for _, kv := range [][2][]byte{
		{redeemGuardKey(nil, 38344000206), {redeemGuardV1, 1, 2}},
		{append(redeemGuardKey(nil, 38344000207), 0), appendRedeemGuard(nil, &charging.RedeemGuard{})},
	} {
		require.NoError(t, s.db.Set(kv[0], kv[1], pebble.Sync))
		_, err := p.Prune(context.Background())
		require.ErrorIs(t, err, ErrCorrupt)
		require.ErrorContains(t, err, "redeem guards")
		require.NoError(t, s.db.Delete(kv[0], pebble.Sync))
	}
}

// guardLockHeld reports whether caller's guard stripe is locked by someone
// else.
func guardLockHeld(v *Vouchers, caller charging.SubscriberID) bool {
	mu := v.guardLock(caller)
	if mu.TryLock() {
		mu.Unlock()
		return false
	}
	return true
}

// A failure counted between the step's scan and its delete (the guard is
// then a fresh window) is read again under the lock and kept.
func TestPruneGuardsRecheckUnderTheLock(t *testing.T) {
	clock, s, v := guardPruneStore(t)
	const caller = 38344000209
	failAt(t, v, caller, pruneT0.Add(-48*time.Hour), 2)
	p := newTestPruner(t, s, clock, PrunerOptions{Vouchers: v})
	p.onGuardDel = func(callers []charging.SubscriberID) {
		require.Equal(t, []charging.SubscriberID{caller}, callers)
		failAt(t, v, caller, clock.Now(), 1)
	}
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{GuardsScanned: 1, GuardsKeptCounting: 1}, st)
	g, ok := storedGuard(t, s, caller)
	require.True(t, ok)
	require.Equal(t, charging.RedeemGuard{WindowStart: clock.Now().Unix(), Failures: 1}, g)
}

// The batch's stripes are held from the re-read to the apply: a failure
// counted meanwhile waits, and then counts on no record. A pruner that let
// it run would delete it with the record.
func TestPruneGuardsHoldTheLockAcrossTheDelete(t *testing.T) {
	clock, s, v := guardPruneStore(t)
	callers := []charging.SubscriberID{38344000210, 38344000211, 38344000212 + voucherLockStripes}
	for _, c := range callers {
		failAt(t, v, c, pruneT0.Add(-48*time.Hour), 1)
	}
	p := newTestPruner(t, s, clock, PrunerOptions{Vouchers: v})
	var wg sync.WaitGroup
	p.onBatch = func(n int) {
		require.Equal(t, len(callers), n)
		for _, c := range callers {
			require.True(t, guardLockHeld(v, c), "caller %d", c)
		}
		done := make(chan struct{})
		for _, c := range callers {
			wg.Go(func() {
				if _, err := v.fail(c, clock.Now()); err != nil {
					t.Error(err)
				}
			})
		}
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
			t.Error("fail ran while the pruner held its caller's lock")
		case <-time.After(50 * time.Millisecond):
		}
	}
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(len(callers)), st.GuardsDeleted)
	wg.Wait()
	for _, c := range callers {
		g, ok := storedGuard(t, s, c)
		require.True(t, ok, "caller %d: the failure counted during the pass was lost", c)
		require.Equal(t, charging.RedeemGuard{WindowStart: clock.Now().Unix(), Failures: 1}, g, "caller %d", c)
		require.False(t, guardLockHeld(v, c))
	}
}

// fail calls racing a pass over many small steps: every failure counts.
// Every guard starts expired, so it answers as no record: a caller with k
// failures during the pass ends with what k failures on no record give,
// and a caller with none ends with no record. Two workers fail callers at
// random; two fail callers of the batch the pruner is about to delete,
// between its scan and its apply, where a failure the lock did not hold
// back would be deleted with its record.
func TestPruneGuardsRacingFailures(t *testing.T) {
	clock, s, v := guardPruneStore(t)
	const callers = 400
	const first charging.SubscriberID = 38344100000
	for i := range callers {
		failAt(t, v, first+charging.SubscriberID(i), pruneT0.Add(-48*time.Hour), 1+i%2)
	}
	p := newTestPruner(t, s, clock, PrunerOptions{Vouchers: v, BatchMax: 8})
	p.scanMax = 16
	batches := make(chan []charging.SubscriberID, callers)
	p.onGuardDel = func(c []charging.SubscriberID) { batches <- append([]charging.SubscriberID(nil), c...) }
	// Widen the moment between a batch's re-reads and its apply.
	p.onBatch = func(int) { time.Sleep(200 * time.Microsecond) }
	now := clock.Now()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	const workers, failsMax = 4, 2000
	counts := make([][callers]int, workers)
	var wg sync.WaitGroup
	passDone := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range failsMax {
				var i int
				if w%2 == 0 {
					select {
					case <-passDone:
						return
					default:
					}
					// A random fourth of the callers.
					i = 4 * rng.IntN(callers/4)
				} else {
					select {
					case <-passDone:
						return
					case b := <-batches:
						i = int(b[rng.IntN(len(b))] - first)
					}
				}
				if _, err := v.fail(first+charging.SubscriberID(i), now); err != nil {
					t.Error(err)
					return
				}
				counts[w][i]++
			}
		})
	}
	st, err := p.Prune(context.Background())
	close(passDone)
	wg.Wait()
	require.NoError(t, err)
	require.Equal(t, uint64(callers), st.GuardsScanned)
	failed := 0
	for i := range callers {
		c := first + charging.SubscriberID(i)
		var want charging.RedeemGuard
		k := 0
		for w := range workers {
			k += counts[w][i]
		}
		for range k {
			want.Fail(&guardPolicyT, now)
		}
		g, ok := storedGuard(t, s, c)
		if k == 0 {
			require.False(t, ok, "caller %d, never failed during the pass, kept %+v", c, g)
			continue
		}
		failed++
		require.True(t, ok, "caller %d: %d failures lost", c, k)
		require.Equal(t, want, g, "caller %d after %d failures", c, k)
	}
	require.GreaterOrEqual(t, st.GuardsDeleted, uint64(callers-failed), "every guard never failed again")
	t.Logf("%d of %d callers failed during the pass, %d batches", failed, callers, st.Batches)
}
