package flows

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

const minAge = DefaultRedriveMinAge

var bg = context.Background()

func setupRedrive(t *testing.T) (*Flows, *engine, *transfers, *vouchers, *fixed) {
	f, e, tr, v, _ := setup(t)
	x := newFixed()
	f.cfg.Fixed = x
	return f, e, tr, v, x
}

// redrive runs one round at t0+at and returns what it finished.
func redrive(t *testing.T, f *Flows, at time.Duration) Recovered {
	t.Helper()
	n, err := f.Redrive(bg, t0.Add(at), minAge, 0)
	require.NoError(t, err)
	return n
}

func redriven(f *Flows, kind recordKind, result string) float64 {
	return value(f.metrics.redrive.results[kind][result])
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}

// failVoucherCredits makes every card credit fail with an engine error
// while on.
func failVoucherCredits(e *engine, on *atomic.Bool) {
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		if cmd.Channel == charging.ChannelVoucher && on.Load() {
			return charging.Outcome{}, errEngine, true
		}
		return charging.Outcome{}, nil, false
	}
}

// pendingCard leaves a 5.00 card used by alice with a pending marker, as a
// build before the one-batch protocol did when it crashed between marking
// the card and crediting it, and makes card credits fail with an engine
// error while on.
func pendingCard(t *testing.T, f *Flows, e *engine, v *vouchers, on *atomic.Bool) charging.VoucherCode {
	v.add("1234123412341234", charging.Euros(5), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("1234123412341234")
	on.Store(true)
	failVoucherCredits(e, on)
	v.markPending(code, alice, t0)
	require.True(t, v.card(code).pending)
	require.Equal(t, charging.Euros(10), e.balance(alice))
	return code
}

// debitedTransfer sends 2.00 from alice to bob whose credit fails with an
// engine error: alice paid, bob has nothing, the record says debited.
func debitedTransfer(t *testing.T, f *Flows, e *engine, tr *transfers, on *atomic.Bool) uint64 {
	on.Store(true)
	e.failKey("T/1/c", on)
	res, err := f.Transfer("U/t", alice, bob, charging.Euros(2))
	require.ErrorIs(t, err, errEngine)
	require.ErrorIs(t, err, ErrInProgress, "debited: the re-driver finishes it")
	require.Equal(t, charging.TransferDebited, tr.get(res.Ref).State)
	require.Equal(t, aliceAfterTransfer, e.balance(alice))
	return res.Ref
}

// creditedAfterQuietAgain asserts that the debited transfer id, whose
// quiet time a live drive restarted at t0, is left alone at minAge (why)
// and credited to bob at twice that.
func creditedAfterQuietAgain(t *testing.T, f *Flows, e *engine, tr *transfers, id uint64, why string) {
	t.Helper()
	require.Zero(t, redrive(t, f, minAge), why)
	require.Equal(t, charging.TransferDebited, tr.get(id).State)
	require.Equal(t, 1, redrive(t, f, 2*minAge).Transfers)
	require.Equal(t, charging.Euros(3), e.balance(bob))
}

var aliceAfterTransfer = charging.Euros(10) - charging.Euros(2) - charging.DemoTransferRules().Fee

func TestRedriveCreditsRedemptionAfterEngineError(t *testing.T) {
	f, e, _, v, _ := setupRedrive(t)
	var on atomic.Bool
	code := pendingCard(t, f, e, v, &on)
	on.Store(false) // the engine is back

	require.Zero(t, redrive(t, f, 0), "first sight starts the quiet time")
	require.Zero(t, redrive(t, f, minAge-time.Second), "younger than the minimum age")
	require.True(t, v.card(code).pending)
	require.Equal(t, 1, redrive(t, f, minAge).Redemptions)
	require.Equal(t, charging.Euros(15), e.balance(alice))
	require.False(t, v.card(code).pending)
	require.NotZero(t, v.card(code).rec.CreditSeq)
	require.Equal(t, 1.0, redriven(f, kindRedemption, redriveCredited))

	require.Zero(t, redrive(t, f, 2*minAge), "a finished record is not listed again")
	require.Equal(t, charging.Euros(15), e.balance(alice))
}

func TestRedriveCreditsDebitedTransfer(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	var on atomic.Bool
	id := debitedTransfer(t, f, e, tr, &on)
	on.Store(false)
	redrive(t, f, 0)
	require.Equal(t, 1, redrive(t, f, minAge).Transfers)
	require.Equal(t, charging.TransferCredited, tr.get(id).State)
	require.Equal(t, charging.Euros(3), e.balance(bob))
	require.Equal(t, aliceAfterTransfer, e.balance(alice))
	require.Equal(t, 1.0, redriven(f, kindTransfer, redriveCredited))
}

// The receiver can no longer take the credit (balance limit): the sender
// gets amount and fee back, and the record ends reversed.
func TestRedriveReversesTransferWhoseCreditIsRefused(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	var on atomic.Bool
	id := debitedTransfer(t, f, e, tr, &on)
	on.Store(false)
	e.setBalance(bob, charging.BalanceMax)
	redrive(t, f, 0)
	require.Equal(t, 1, redrive(t, f, minAge).Transfers)
	require.Equal(t, charging.TransferReversed, tr.get(id).State)
	require.Equal(t, charging.Euros(10), e.balance(alice))
	require.Equal(t, charging.BalanceMax, e.balance(bob))
	require.Equal(t, 1.0, redriven(f, kindTransfer, redriveReversed))
}

func TestRedriveAppliesPaymentAfterDebitError(t *testing.T) {
	f, e, _, _, x := setupRedrive(t)
	var on atomic.Bool
	on.Store(true)
	e.failKey("P/1", &on)
	_, err := f.PayPackage(alice, charging.PackagePPVKredit, "user1")
	require.ErrorIs(t, err, errEngine)
	require.ErrorIs(t, err, ErrInProgress, "begun: the re-driver finishes it")
	on.Store(false)
	redrive(t, f, 0)
	require.Equal(t, 1, redrive(t, f, minAge).Payments)
	pending, applied := x.state(1)
	require.False(t, pending)
	require.Equal(t, 1, applied)
	require.Equal(t, charging.Euros(10)-charging.Euros(5)-charging.USSDPaymentFee, e.balance(alice))
	require.Equal(t, 1.0, redriven(f, kindPayment, redriveApplied))
}

// Records younger than the minimum age, of every kind, are left alone: no
// leg runs, nothing moves.
func TestRedriveLeavesYoungRecordsAlone(t *testing.T) {
	f, e, tr, v, x := setupRedrive(t)
	var onCard, onTransfer, onPayment atomic.Bool
	code := pendingCard(t, f, e, v, &onCard)
	interceptCard := e.intercept
	id := debitedTransfer(t, f, e, tr, &onTransfer)
	interceptTransfer := e.intercept
	onPayment.Store(true)
	e.failKey("P/1", &onPayment)
	interceptPayment := e.intercept
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		for _, i := range []func(*charging.Command) (charging.Outcome, error, bool){interceptCard, interceptTransfer, interceptPayment} {
			if out, err, ok := i(cmd); ok {
				return out, err, ok
			}
		}
		return charging.Outcome{}, nil, false
	}
	_, err := f.PayPackage(alice, charging.PackagePPVKredit, "user1")
	require.ErrorIs(t, err, errEngine)
	onCard.Store(false)
	onTransfer.Store(false)
	onPayment.Store(false)

	calls := e.callCount()
	for _, at := range []time.Duration{0, time.Second, minAge / 2, minAge - time.Second} {
		require.Zero(t, redrive(t, f, at), "at %v", at)
	}
	require.Equal(t, calls, e.callCount(), "no leg ran")
	require.True(t, v.card(code).pending)
	require.Equal(t, charging.TransferDebited, tr.get(id).State)
	pending, _ := x.state(1)
	require.True(t, pending)
	require.Zero(t, gauge(f.metrics.redrive.stuck[kindTransfer]))

	require.Equal(t, Recovered{Redemptions: 1, Transfers: 1, Payments: 1}, redrive(t, f, minAge))
}

// A live retry of a transfer resets its quiet time: the re-driver waits a
// full minimum age after the last live drive, not after the record's birth.
func TestRedriveWaitsAfterLiveRetry(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	var on atomic.Bool
	id := debitedTransfer(t, f, e, tr, &on) // the credit keeps failing
	redrive(t, f, 0)
	_, err := f.Transfer("U/t", alice, bob, charging.Euros(2)) // the client retries, fails again
	require.ErrorIs(t, err, errEngine)
	on.Store(false)
	creditedAfterQuietAgain(t, f, e, tr, id, "the retry made the record young again")
}

// On a re-drive, "overloaded" is no verdict (the actor answers it when it
// cannot read the request record of an earlier run): the card stays used,
// it is not reverted, and the next try waits a back-off.
func TestRedriveOverloadedLeavesRecordOpenAndBacksOff(t *testing.T) {
	f, e, _, v, _ := setupRedrive(t)
	var on atomic.Bool
	code := pendingCard(t, f, e, v, &on)
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		if cmd.Channel == charging.ChannelVoucher && on.Load() {
			return charging.Outcome{Result: charging.ResultOverloaded}, nil, true
		}
		return charging.Outcome{}, nil, false
	}
	redrive(t, f, 0)
	require.Zero(t, redrive(t, f, minAge))
	c := v.card(code)
	require.True(t, c.pending)
	require.Equal(t, charging.VoucherUsed, c.rec.State, "not reverted on overloaded")
	require.Equal(t, 1.0, redriven(f, kindRedemption, labelError))
	require.Equal(t, 1.0, gauge(f.metrics.redrive.stuck[kindRedemption]))

	on.Store(false)
	calls := e.callCount()
	require.Zero(t, redrive(t, f, minAge+minAge/2), "backing off")
	require.Equal(t, calls, e.callCount())
	require.Equal(t, 1, redrive(t, f, 2*minAge).Redemptions)
	require.Equal(t, charging.Euros(15), e.balance(alice))
	require.Zero(t, gauge(f.metrics.redrive.stuck[kindRedemption]))
}

// Answers of the blocked credit.
const (
	creditRuns    = iota // as the account decides
	creditFails          // engine error
	creditRefused        // balance limit, though the account could take it
)

// blockCredit makes the first credit of transfer 1 wait for release, and
// says when it is waiting; then the credit answers as then says.
func blockCredit(e *engine, then int) (inLeg, release chan struct{}) {
	inLeg, release = make(chan struct{}), make(chan struct{})
	var taken atomic.Bool
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		if cmd.Key != "T/1/c" {
			return charging.Outcome{}, nil, false
		}
		// Not a sync.Once: a second caller must not wait for the first.
		first := taken.CompareAndSwap(false, true)
		if first {
			close(inLeg)
			e.mu.Unlock()
			<-release
			e.mu.Lock()
		}
		switch {
		case first && then == creditFails:
			return charging.Outcome{}, errEngine, true
		case first && then == creditRefused:
			return charging.Outcome{Result: charging.ResultBalanceLimit}, nil, true
		}
		return charging.Outcome{}, nil, false
	}
	return inLeg, release
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 2*time.Second, time.Millisecond)
}

// The re-driver holds the transfer in its credit leg when the client
// retries: the retry waits, then reads the finished record and answers it.
// The re-driver's credit is refused and a refusal is not recorded under
// its key: had the retry run its own credit meanwhile, it would have been
// accepted, and the receiver credited while the sender is paid back.
func TestRedriveHoldsRecordLiveRetryWaits(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	var on atomic.Bool
	id := debitedTransfer(t, f, e, tr, &on)
	redrive(t, f, 0)
	inLeg, release := blockCredit(e, creditRefused)
	var n Recovered
	var redriveErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, redriveErr = f.Redrive(bg, t0.Add(minAge), minAge, 0)
	}()
	<-inLeg
	var res Result
	var liveErr error
	live := make(chan struct{})
	go func() {
		defer close(live)
		res, liveErr = f.Transfer("U/t", alice, bob, charging.Euros(2))
	}()
	// The retry is waiting once its claim reset the quiet entry.
	waitFor(t, func() bool {
		f.records.mu.Lock()
		defer f.records.mu.Unlock()
		return f.records.mu.quiet[transferKey(id)] == nil
	})
	close(release)
	<-done
	<-live
	require.NoError(t, redriveErr)
	require.NoError(t, liveErr)
	require.Equal(t, 1, n.Transfers)
	require.False(t, res.OK(), "%+v", res)
	require.True(t, res.ByReceiver, "told from the record: the receiver could not take it")
	require.Equal(t, charging.TransferReversed, tr.get(id).State)
	require.Equal(t, charging.Euros(1), e.balance(bob))
	require.Equal(t, charging.Euros(10), e.balance(alice))
}

// A live retry holds the transfer in its credit leg when the re-driver's
// round comes: the re-driver leaves it alone.
func TestRedriveSkipsRecordALiveRetryHolds(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	var on atomic.Bool
	id := debitedTransfer(t, f, e, tr, &on)
	redrive(t, f, 0)
	inLeg, release := blockCredit(e, creditRuns)
	live := make(chan error, 1)
	go func() {
		_, err := f.Transfer("U/t", alice, bob, charging.Euros(2))
		live <- err
	}()
	<-inLeg
	require.Zero(t, redrive(t, f, minAge))
	require.Zero(t, redrive(t, f, 2*minAge), "held by the live drive")
	close(release)
	require.NoError(t, <-live)
	require.Zero(t, redrive(t, f, 3*minAge))
	require.Equal(t, charging.TransferCredited, tr.get(id).State)
	require.Equal(t, charging.Euros(3), e.balance(bob))
	require.Equal(t, aliceAfterTransfer, e.balance(alice))
	require.Zero(t, redriven(f, kindTransfer, redriveCredited))
}

// Free-running: a re-drive and a live retry of the same debited transfer
// race, many times; money moves exactly once every time, whoever wins.
func TestRedriveRacesLiveRetry(t *testing.T) {
	wins := [2]int{}
	for range 50 {
		f, e, tr, _, _ := setupRedrive(t)
		var on atomic.Bool
		id := debitedTransfer(t, f, e, tr, &on)
		on.Store(false)
		redrive(t, f, 0)
		e.yield = true
		var wg sync.WaitGroup
		var n Recovered
		var res Result
		var errRedrive, errLive error
		wg.Go(func() { n, errRedrive = f.Redrive(bg, t0.Add(minAge), minAge, 0) })
		wg.Go(func() { res, errLive = f.Transfer("U/t", alice, bob, charging.Euros(2)) })
		wg.Wait()
		require.NoError(t, errRedrive)
		require.NoError(t, errLive)
		require.True(t, res.OK(), "%+v", res)
		require.Equal(t, charging.TransferCredited, tr.get(id).State)
		require.Equal(t, charging.Euros(3), e.balance(bob))
		require.Equal(t, aliceAfterTransfer, e.balance(alice))
		wins[n.Transfers]++
	}
	t.Logf("live retry won %d, re-driver won %d", wins[0], wins[1])
}

// The loop re-drives on its own, with the Flows' clock, and stops cleanly:
// no leg runs after stop returns.
func TestRedriverLoop(t *testing.T) {
	f, e, _, v, _ := setupRedrive(t)
	var on atomic.Bool
	code := pendingCard(t, f, e, v, &on)
	on.Store(false)
	var ticks atomic.Int64
	f.now = func() time.Time { return t0.Add(time.Duration(ticks.Add(1)) * 10 * time.Second) }
	stop := f.StartRedriver(RedriverConfig{Interval: time.Millisecond, MinAge: minAge})
	waitFor(t, func() bool { return !v.card(code).pending })
	stop()
	require.Equal(t, charging.Euros(15), e.balance(alice))
	calls := e.callCount()
	time.Sleep(5 * time.Millisecond)
	require.Equal(t, calls, e.callCount())
}

// A cancelled round re-drives nothing more.
func TestRedriveStopsWhenCancelled(t *testing.T) {
	f, e, _, v, _ := setupRedrive(t)
	var on atomic.Bool
	code := pendingCard(t, f, e, v, &on)
	on.Store(false)
	redrive(t, f, 0)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	n, err := f.Redrive(ctx, t0.Add(minAge), minAge, 0)
	require.NoError(t, err)
	require.Zero(t, n)
	require.True(t, v.card(code).pending)
}

// A live drive that ends with the record still open (its credit failed
// again) restarts the quiet time when it ends: the re-driver's view from
// while it ran is stale.
func TestRedriveQuietTimeRestartsWhenLiveDriveEnds(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	var on atomic.Bool
	id := debitedTransfer(t, f, e, tr, &on)
	inLeg, release := blockCredit(e, creditFails)
	live := make(chan error, 1)
	go func() {
		_, err := f.Transfer("U/t", alice, bob, charging.Euros(2))
		live <- err
	}()
	<-inLeg
	require.Zero(t, redrive(t, f, 0), "seen while the live drive holds it")
	close(release)
	require.ErrorIs(t, <-live, errEngine)
	creditedAfterQuietAgain(t, f, e, tr, id, "quiet only since the live drive ended")
}

// A retry reads the transfer (debited) while the re-driver is in its
// credit leg, and takes the record only after the re-driver reversed it:
// the retry must act on the record as it is when it holds it, not as it
// read it. Acting on the stale read would run the credit again, which the
// receiver now accepts (a refusal is not recorded), and credit a transfer
// whose sender was paid back.
func TestRedriveLiveRetryRereadsAfterClaim(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	var on atomic.Bool
	id := debitedTransfer(t, f, e, tr, &on)
	redrive(t, f, 0)
	inLeg, release := blockCredit(e, creditRefused)
	redriven := make(chan error, 1)
	go func() {
		_, err := f.Redrive(bg, t0.Add(minAge), minAge, 0)
		redriven <- err
	}()
	<-inLeg
	read, resume := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	tr.afterRead = func() {
		if first.CompareAndSwap(false, true) {
			close(read)
			<-resume
		}
	}
	var res Result
	live := make(chan error, 1)
	go func() {
		var err error
		res, err = f.Transfer("U/t", alice, bob, charging.Euros(2))
		live <- err
	}()
	<-read // the retry holds a read of "debited"
	close(release)
	require.NoError(t, <-redriven)
	require.Equal(t, charging.TransferReversed, tr.get(id).State)
	close(resume)
	require.NoError(t, <-live)
	require.True(t, res.ByReceiver)
	require.Equal(t, charging.TransferReversed, tr.get(id).State)
	require.Equal(t, charging.Euros(1), e.balance(bob))
	require.Equal(t, charging.Euros(10), e.balance(alice))
}

// backlog holds n open records of each kind, made by live flows whose
// second leg failed with an engine error: cards used and not credited,
// transfers debited and not credited, payments begun and not debited.
// Once the engine is back it counts the mutating commands run per request
// key.
type backlog struct {
	on    atomic.Bool // the legs fail
	mu    sync.Mutex
	calls map[string]int // per key, while !on
}

func newBacklog(t *testing.T, f *Flows, e *engine, v *vouchers, n int) *backlog {
	b := &backlog{calls: map[string]int{}}
	b.on.Store(true)
	e.setBalance(alice, charging.Euros(500))
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		failing := cmd.Channel == charging.ChannelVoucher || strings.HasPrefix(cmd.Key, "P/") ||
			(strings.HasPrefix(cmd.Key, "T/") && strings.HasSuffix(cmd.Key, "/c"))
		if b.on.Load() {
			if failing {
				return charging.Outcome{}, errEngine, true
			}
		} else if cmd.Kind.Mutates() {
			b.mu.Lock()
			b.calls[cmd.Key]++
			b.mu.Unlock()
		}
		return charging.Outcome{}, nil, false
	}
	for i := range n {
		code := fmt.Sprintf("%016d", 5_000_000_000_000_000+i)
		v.add(code, charging.Euros(5), t0.Add(time.Hour))
		c, _ := charging.ParseVoucherCode(code)
		v.markPending(c, alice, t0)
		_, err := f.Transfer("U/"+strconv.Itoa(i), alice, bob, charging.Euros(1))
		require.ErrorIs(t, err, errEngine)
		_, err = f.PayPackage(alice, charging.PackagePPVKredit, "user1")
		require.ErrorIs(t, err, errEngine)
	}
	b.on.Store(false)
	return b
}

// open counts the open records of each kind.
func open(t *testing.T, f *Flows) Recovered {
	t.Helper()
	v, err := f.cfg.Vouchers.Pending(nil, 1000)
	require.NoError(t, err)
	tr, err := f.cfg.Transfers.Open(0, 1000)
	require.NoError(t, err)
	p, err := f.cfg.Fixed.PendingPayments(0, 1000)
	require.NoError(t, err)
	return Recovered{Redemptions: len(v), Transfers: len(tr), Payments: len(p)}
}

// onceEach asserts that each record's re-driven leg ran exactly once.
func (b *backlog) onceEach(t *testing.T, n int) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	cards := 0
	for k, c := range b.calls {
		if strings.HasPrefix(k, "V/") {
			cards++
			require.Equal(t, 1, c, "credit %s", k)
		}
	}
	require.Equal(t, n, cards)
	for id := 1; id <= n; id++ {
		require.Equal(t, 1, b.calls["T/"+strconv.Itoa(id)+"/c"], "transfer %d", id)
		require.Equal(t, 1, b.calls["P/"+strconv.Itoa(id)], "payment %d", id)
	}
}

// A backlog of more records than a page and than a round's bound: each
// round lists at most RoundMax records of a kind and the next goes on
// where it stopped, so one pass sees every record, the next re-drives
// every one, and each is re-driven once.
func TestRedrivePagesThroughBacklogOnce(t *testing.T) {
	f, e, _, v, _ := setupRedrive(t)
	f.pageMax = 2
	const n, roundMax = 11, 4
	b := newBacklog(t, f, e, v, n)
	require.Equal(t, Recovered{n, n, n}, open(t, f))
	round := func(at time.Duration) Recovered {
		t.Helper()
		r, err := f.Redrive(bg, t0.Add(at), minAge, roundMax)
		require.NoError(t, err)
		return r
	}
	// The first pass takes three rounds (4 + 4 + 3 records) and starts
	// every record's quiet time.
	for i := range 3 {
		require.Zero(t, round(time.Duration(i)*time.Second))
	}
	// The second pass re-drives them all, at most roundMax a round.
	require.Equal(t, Recovered{4, 4, 4}, round(minAge))
	require.Equal(t, Recovered{4, 4, 4}, round(minAge+time.Second))
	require.Equal(t, Recovered{3, 3, 3}, round(minAge+2*time.Second))
	require.Equal(t, Recovered{}, open(t, f))
	b.onceEach(t, n)
	require.Equal(t, charging.Euros(1)+n*charging.Euros(1), e.balance(bob))
	for k := range kindCount {
		require.Equal(t, float64(n), redriven(f, k, redriveResults[k][0]), kindNames[k])
	}
	require.Zero(t, round(2*minAge))
}

// Records that keep failing, more of them than a round lists, come first
// in the listing: the records after them are still re-driven (a listing
// that always started from the first record would never reach them).
func TestRedriveBacklogOfFailuresStarvesNothing(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	f.pageMax = 2
	const failing, healthy, roundMax = 6, 3, 4
	var on atomic.Bool
	on.Store(true)
	e.setBalance(alice, charging.Euros(500))
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		if strings.HasSuffix(cmd.Key, "/c") && (on.Load() || tr.ID(cmd.Key) <= failing) {
			return charging.Outcome{}, errEngine, true
		}
		return charging.Outcome{}, nil, false
	}
	for i := range failing + healthy {
		_, err := f.Transfer("U/"+strconv.Itoa(i), alice, bob, charging.Euros(1))
		require.ErrorIs(t, err, errEngine)
	}
	on.Store(false)
	done := 0
	for at := time.Duration(0); at <= 2*minAge; at += 10 * time.Second {
		r, err := f.Redrive(bg, t0.Add(at), minAge, roundMax)
		require.NoError(t, err)
		require.LessOrEqual(t, r.Transfers, roundMax)
		done += r.Transfers
	}
	require.Equal(t, healthy, done)
	for id := uint64(1); id <= failing+healthy; id++ {
		want := charging.TransferCredited
		if id <= failing {
			want = charging.TransferDebited
		}
		require.Equal(t, want, tr.get(id).State, "transfer %d", id)
	}
	require.Equal(t, charging.Euros(1)+healthy*charging.Euros(1), e.balance(bob))
	require.Equal(t, float64(failing), gauge(f.metrics.redrive.stuck[kindTransfer]), "counted over the whole pass")
}

// Recover sees every open record, page after page, and drives each once.
func TestRecoverPagesThroughEveryRecord(t *testing.T) {
	f, e, _, v, _ := setupRedrive(t)
	f.pageMax = 2
	const n = 7
	b := newBacklog(t, f, e, v, n)
	got, err := f.Recover()
	require.NoError(t, err)
	require.Equal(t, Recovered{n, n, n}, got)
	require.Equal(t, Recovered{}, open(t, f))
	b.onceEach(t, n)
}

// An engine error before any record is written (the receiver's existence
// check) changed nothing: it is not ErrInProgress, and the subscriber may
// simply try again.
func TestErrorBeforeRecordIsNotInProgress(t *testing.T) {
	f, e, tr, _, _ := setupRedrive(t)
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		if cmd.Kind == charging.KindInquire {
			return charging.Outcome{}, errEngine, true
		}
		return charging.Outcome{}, nil, false
	}
	_, err := f.Transfer("U/t", alice, bob, charging.Euros(2))
	require.ErrorIs(t, err, errEngine)
	require.NotErrorIs(t, err, ErrInProgress)
	require.Empty(t, tr.m)
	require.Equal(t, Recovered{}, open(t, f))
	// The driven-elsewhere answer is in progress too: the re-driver holds
	// the record and finishes it.
	require.ErrorIs(t, inProgress(ErrDrivenElsewhere), ErrInProgress)
	require.NoError(t, inProgress(nil))
}
