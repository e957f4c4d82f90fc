package flows

import (
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// testClock is the flows' clock in the retry tests: a retry comes minutes
// after the request it repeats.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// ledger is what money and the journal look like: a retry answered from
// the records must leave it exactly as it was.
type ledger struct {
	balances map[charging.SubscriberID]charging.Amount
	entries  map[charging.SubscriberID]int
	records  int
}

func ledgerOf(e *engine) ledger {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := ledger{balances: map[charging.SubscriberID]charging.Amount{}, entries: map[charging.SubscriberID]int{}, records: len(e.records)}
	for id, a := range e.accounts {
		l.balances[id] = a.Balance
		l.entries[id] = len(e.journal[id])
	}
	return l
}

func requireSameLedger(t *testing.T, want ledger, e *engine, msg string) {
	t.Helper()
	got := ledgerOf(e)
	require.True(t, maps.Equal(want.balances, got.balances), "%s: balances %v, were %v", msg, got.balances, want.balances)
	require.True(t, maps.Equal(want.entries, got.entries), "%s: journal lengths %v, were %v", msg, got.entries, want.entries)
	require.Equal(t, want.records, got.records, "%s: request records", msg)
}

// A card dialled again by the beneficiary its credit went to, within
// RetryAnswerMax, is told the success it was: the credit's transaction ID
// (its journal Seq), the card's value, the balance now; nothing moves.
// Anyone else, or later, is told the card is used.
func TestRedeemRetryToldItsSuccess(t *testing.T) {
	f, e, _, v, _ := setup(t)
	clk := &testClock{t: t0}
	f.now = clk.now
	v.add("1234123412341234", charging.Euros(5), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("1234123412341234")

	first, err := f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.True(t, first.OK(), "%+v", first)
	require.NotZero(t, first.Outcome.Seq)
	before := ledgerOf(e)

	// The USSD session is long gone (SessionIdleMax is 3 minutes).
	clk.set(t0.Add(4 * time.Minute))
	again, err := f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.True(t, again.OK(), "a retry of a redemption that succeeded: %+v", again)
	require.Equal(t, charging.VoucherOK, again.Voucher)
	require.Equal(t, first.Outcome.Seq, again.Outcome.Seq, "the credit's transaction ID")
	require.True(t, again.Outcome.Replayed)
	require.Equal(t, first.Amount, again.Amount)
	require.Equal(t, first.Outcome.Balance, again.Outcome.Balance)
	require.Equal(t, first.Outcome.ValidUntil, again.Outcome.ValidUntil)
	require.Equal(t, alice, again.Subscriber)
	require.False(t, again.ByReceiver)
	requireSameLedger(t, before, e, "a retried redemption")

	// The balance told is today's: what was spent since shows.
	e.setBalance(alice, charging.Euros(2))
	before = ledgerOf(e)
	again, err = f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.True(t, again.OK(), "%+v", again)
	require.Equal(t, charging.Euros(2), again.Outcome.Balance)
	requireSameLedger(t, before, e, "a retried redemption")

	// Another beneficiary, whoever dials: the card is used.
	for _, caller := range []charging.SubscriberID{alice, bob} {
		res, err := f.Redeem(caller, bob, code)
		require.NoError(t, err)
		require.Equal(t, charging.VoucherAlreadyUsed, res.Voucher)
		require.False(t, res.OK())
		require.Zero(t, res.Account, "no account leg ran")
	}
	requireSameLedger(t, before, e, "a used card")

	// The window's edge is inside; past it, a new attempt: used.
	clk.set(t0.Add(RetryAnswerMax))
	res, err := f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.True(t, res.OK(), "at RetryAnswerMax: %+v", res)
	clk.set(t0.Add(RetryAnswerMax + time.Second))
	res, err = f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherAlreadyUsed, res.Voucher)
	require.False(t, res.OK())
	requireSameLedger(t, before, e, "an old card")

	// "ok" counts the one credit; every other answer is the card's verdict.
	require.Equal(t, 1.0, value(f.metrics.redemptions["ok"]))
	require.Equal(t, 6.0, value(f.metrics.redemptions["voucher_used"]))
}

// A card redeemed for another subscriber (*123*CODE*MSISDN#): the retry
// names the same beneficiary and is told his validity and the credit's
// ID on his account, as the first answer was; any caller dialling the code
// for him is, since the card records no caller.
func TestRedeemRetryForAnotherSubscriber(t *testing.T) {
	f, e, _, v, _ := setup(t)
	clk := &testClock{t: t0}
	f.now = clk.now
	v.add("4321432143214321", charging.Euros(5), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("4321432143214321")
	first, err := f.Redeem(alice, bob, code)
	require.NoError(t, err)
	require.True(t, first.OK(), "%+v", first)
	before := ledgerOf(e)

	clk.set(t0.Add(5 * time.Minute))
	for _, caller := range []charging.SubscriberID{alice, bob} {
		again, err := f.Redeem(caller, bob, code)
		require.NoError(t, err)
		require.True(t, again.OK(), "%+v", again)
		require.Equal(t, first.Outcome.Seq, again.Outcome.Seq)
		require.Equal(t, bob, again.Subscriber)
		require.Equal(t, first.Outcome.ValidUntil, again.Outcome.ValidUntil)
		require.Equal(t, caller != bob, again.ByReceiver)
	}
	res, err := f.Redeem(bob, alice, code)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherAlreadyUsed, res.Voucher)
	requireSameLedger(t, before, e, "retries")
}

// The rule needs the credit's ID and the beneficiary's account: a card of
// an older build's pending marker (no credit Seq yet) stays "used", and an
// engine that cannot answer the inquiry is an error (the subscriber is
// told to try again, not that the card is used).
func TestRedeemRetryWithoutItsCredit(t *testing.T) {
	f, e, _, v, _ := setup(t)
	v.add("5678567856785678", charging.Euros(5), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("5678567856785678")
	v.markPending(code, alice, t0)
	res, err := f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherAlreadyUsed, res.Voucher)

	v.add("8765876587658765", charging.Euros(5), t0.Add(time.Hour))
	code, _ = charging.ParseVoucherCode("8765876587658765")
	first, err := f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.True(t, first.OK())
	before := ledgerOf(e)
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		return charging.Outcome{}, errEngine, cmd.Kind == charging.KindInquire
	}
	res, err = f.Redeem(alice, alice, code)
	require.ErrorIs(t, err, errEngine)
	require.NotErrorIs(t, err, ErrInProgress)
	require.False(t, res.OK())
	requireSameLedger(t, before, e, "an unanswered retry")
}

// setupMonthly is setupRedrive with the once-a-month rule and a movable
// clock.
func setupMonthly(t *testing.T) (*Flows, *engine, *fixed, *testClock) {
	f, e, _, _, x := setupRedrive(t)
	x.monthly, x.engine = true, e
	e.setBalance(alice, charging.Euros(30))
	e.setBalance(bob, charging.Euros(10))
	clk := &testClock{t: t0}
	f.now = clk.now
	return f, e, x, clk
}

// noMonthPayments is a Fixed without MonthPayments.
type noMonthPayments struct{ Fixed }

// A *101# payment repeated for the same account and package within
// RetryAnswerMax is told the success it was: its debit's transaction ID,
// the package price, the paid-until it set, the balance now; nothing
// moves. Another account or package, or later, is "already paid".
func TestPayPackageRetryToldItsSuccess(t *testing.T) {
	f, e, x, clk := setupMonthly(t)
	first, err := f.PayPackage(alice, charging.PackageInternetPako1, "arber")
	require.NoError(t, err)
	require.True(t, first.OK(), "%+v", first)
	require.NotZero(t, first.PaidUntil)
	before := ledgerOf(e)

	clk.set(t0.Add(4 * time.Minute))
	again, err := f.PayPackage(alice, charging.PackageInternetPako1, "arber")
	require.NoError(t, err)
	require.True(t, again.OK(), "a retry of a payment that succeeded: %+v", again)
	require.Equal(t, charging.FixedOK, again.Fixed)
	require.Equal(t, first.Outcome.Seq, again.Outcome.Seq, "the debit's transaction ID")
	require.True(t, again.Outcome.Replayed)
	require.Equal(t, first.Ref, again.Ref)
	require.Equal(t, first.Amount, again.Amount)
	require.Equal(t, first.PaidUntil, again.PaidUntil)
	require.Equal(t, first.Outcome.Balance, again.Outcome.Balance)
	requireSameLedger(t, before, e, "a retried payment")
	pending, applied := x.state(first.Ref)
	require.False(t, pending)
	require.Equal(t, 1, applied, "the account moved once")
	require.Equal(t, uint64(1), x.next, "no second payment")

	for _, other := range []struct {
		pkg     charging.PackageID
		account string
	}{{charging.PackageInternetPako1, "besa"}, {charging.PackageInternetPako2, "arber"}} {
		res, err := f.PayPackage(alice, other.pkg, other.account)
		require.NoError(t, err)
		require.Equal(t, charging.FixedAlreadyPaidMonth, res.Fixed, "%+v", other)
		require.False(t, res.OK())
	}
	// Without MonthPayments the refusal stands (a Fixed wired without it).
	f.cfg.Fixed = noMonthPayments{x}
	res, err := f.PayPackage(alice, charging.PackageInternetPako1, "arber")
	require.NoError(t, err)
	require.Equal(t, charging.FixedAlreadyPaidMonth, res.Fixed)
	f.cfg.Fixed = x

	clk.set(t0.Add(RetryAnswerMax + time.Second))
	res, err = f.PayPackage(alice, charging.PackageInternetPako1, "arber")
	require.NoError(t, err)
	require.Equal(t, charging.FixedAlreadyPaidMonth, res.Fixed)
	require.False(t, res.OK())
	requireSameLedger(t, before, e, "refusals")
	require.Equal(t, 1.0, value(f.metrics.payments["ok"]))
	require.Equal(t, 5.0, value(f.metrics.payments[charging.FixedAlreadyPaidMonth.String()]))
}

// A credit package (PPV kredit) has no paid-until: the retry tells none.
// A payment still pending (its debit's answer lost) is no success yet: the
// retry keeps the refusal, and the re-driver finishes the payment.
func TestPayPackageRetryCreditPackageAndPending(t *testing.T) {
	f, e, _, clk := setupMonthly(t)
	first, err := f.PayPackage(alice, charging.PackagePPVKredit, "user1")
	require.NoError(t, err)
	require.True(t, first.OK(), "%+v", first)
	clk.set(t0.Add(time.Minute))
	again, err := f.PayPackage(alice, charging.PackagePPVKredit, "user1")
	require.NoError(t, err)
	require.True(t, again.OK(), "%+v", again)
	require.Zero(t, again.PaidUntil)
	require.Equal(t, first.Outcome.Seq, again.Outcome.Seq)

	var fail atomic.Bool
	fail.Store(true)
	e.failKey("P/2", &fail)
	_, err = f.PayPackage(bob, charging.PackagePPVKredit, "user2")
	require.ErrorIs(t, err, ErrInProgress)
	res, err := f.PayPackage(bob, charging.PackagePPVKredit, "user2")
	require.NoError(t, err)
	require.Equal(t, charging.FixedAlreadyPaidMonth, res.Fixed)
	require.False(t, res.OK())
}
