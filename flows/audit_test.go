package flows

// Regression tests from the money-path audit: each pins a crash or failure
// point where a leg was refused (so nothing is recorded under its key) and
// the record was left open, and checks that re-driving it later makes one
// decision only: money moves at most once and is conserved.

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
)

var errAuditStore = errors.New("audit: store write failed")

// cancelFails is the fake fixed store whose CancelPayment fails while on:
// the refusal of the debit is known but not recorded.
type cancelFails struct {
	*fixed
	on *atomic.Bool
}

func (c cancelFails) CancelPayment(id uint64) error {
	if c.on.Load() {
		return errAuditStore
	}
	return c.fixed.CancelPayment(id)
}

// A *101# debit refused (no credit) whose Cancel did not land leaves the
// payment pending. The subscriber is told it is being processed (not
// refused), so a re-drive that now finds credit makes the one debit and
// applies the package once; nothing was acted on from the refusal.
func TestAuditPaymentRefusedThenCancelLostIsDecidedOnce(t *testing.T) {
	f, e, _, _, x := setupRedrive(t)
	var on atomic.Bool
	on.Store(true)
	f.cfg.Fixed = cancelFails{fixed: x, on: &on}
	e.setBalance(alice, charging.Euros(1))
	_, err := f.PayPackage(alice, charging.PackagePPVKredit, "user1")
	require.ErrorIs(t, err, ErrInProgress, "the refusal was not recorded: the subscriber must not be told it failed")
	pending, applied := x.state(1)
	require.True(t, pending)
	require.Zero(t, applied)

	on.Store(false)
	e.setBalance(alice, charging.Euros(10)) // topped up meanwhile
	redrive(t, f, 0)
	require.Equal(t, 1, redrive(t, f, minAge).Payments)
	redrive(t, f, 3*minAge) // nothing left to do: no second debit
	pending, applied = x.state(1)
	require.False(t, pending)
	require.Equal(t, 1, applied)
	require.Equal(t, charging.Euros(10)-charging.Euros(5)-charging.USSDPaymentFee, e.balance(alice), "debited once")
}

// advanceFails fails Advance to one state while on.
type advanceFails struct {
	*transfers
	to charging.TransferState
	on *atomic.Bool
}

func (a advanceFails) Advance(id uint64, next charging.TransferState) (charging.Transfer, error) {
	if next == a.to && a.on.Load() {
		return charging.Transfer{}, errAuditStore
	}
	return a.transfers.Advance(id, next)
}

// A credit refused whose "reversing" write failed: the record stays
// debited and no reversal ran. Re-driving it runs the credit again, which
// may now succeed: the receiver is paid and the sender is never paid back,
// so the amount moves exactly once either way.
func TestAuditTransferCreditRefusedReversingLostMovesMoneyOnce(t *testing.T) {
	for _, receiverTakesItLater := range []bool{false, true} {
		f, e, tr, _, _ := setup(t)
		var on atomic.Bool
		on.Store(true)
		f.cfg.Transfers = advanceFails{transfers: tr, to: charging.TransferReversing, on: &on}
		e.setBalance(bob, charging.BalanceMax-charging.Euros(1))
		total := e.balance(alice) + e.balance(bob)
		res, err := f.Transfer("k", alice, bob, charging.Euros(2))
		require.ErrorIs(t, err, ErrInProgress)
		require.Equal(t, charging.TransferDebited, tr.get(res.Ref).State)

		on.Store(false)
		if receiverTakesItLater {
			e.setBalance(bob, charging.Euros(1))
		}
		_, err = f.Recover()
		require.NoError(t, err)
		_, err = f.Recover() // again: nothing moves twice
		require.NoError(t, err)
		st := tr.get(res.Ref).State
		fee := tr.get(res.Ref).Fee
		switch {
		case receiverTakesItLater:
			require.Equal(t, charging.TransferCredited, st)
			require.Equal(t, charging.Euros(10)-charging.Euros(2)-fee, e.balance(alice), "debited once, never paid back")
			require.Equal(t, charging.Euros(3), e.balance(bob), "credited once")
		default:
			require.Equal(t, charging.TransferReversed, st)
			require.Equal(t, total, e.balance(alice)+e.balance(bob))
			require.Equal(t, charging.Euros(10), e.balance(alice))
		}
	}
}

// A transfer whose debit was refused and whose "refused" write failed
// stays pending; the subscriber is told it is in progress. A retry of the
// same request (same key) re-drives it: the debit is made at most once,
// and after the transfer ends no retry moves money again.
func TestAuditTransferDebitRefusedRefusedLostRetriesMoveOnce(t *testing.T) {
	f, e, tr, _, _ := setup(t)
	var on atomic.Bool
	on.Store(true)
	f.cfg.Transfers = advanceFails{transfers: tr, to: charging.TransferRefused, on: &on}
	e.setBalance(alice, charging.Euros(1))
	res, err := f.Transfer("k", alice, bob, charging.Euros(2))
	require.ErrorIs(t, err, ErrInProgress)
	require.Equal(t, charging.TransferPending, tr.get(res.Ref).State)
	on.Store(false)
	e.setBalance(alice, charging.Euros(10))
	for i := 0; i < 3; i++ {
		_, err := f.Transfer("k", alice, bob, charging.Euros(2))
		require.NoError(t, err)
	}
	require.Equal(t, charging.TransferCredited, tr.get(res.Ref).State)
	require.Equal(t, charging.Euros(10)-charging.Euros(2)-tr.get(res.Ref).Fee, e.balance(alice), "debited once")
	require.Equal(t, charging.Euros(3), e.balance(bob), "credited once")
}

// A live drive and the re-driver racing on one payment: the live one holds
// the claim, so the re-driver never runs its debit concurrently, and the
// debit and the apply each happen once.
func TestAuditPaymentLiveAndRedriverRaceDebitOnce(t *testing.T) {
	f, e, _, _, x := setupRedrive(t)
	e.yield = true
	started := make(chan struct{})
	release := make(chan struct{})
	var once atomic.Bool
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		if cmd.Key == "P/1" && once.CompareAndSwap(false, true) {
			close(started)
			e.mu.Unlock()
			<-release
			e.mu.Lock()
		}
		return charging.Outcome{}, nil, false
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.PayPackage(alice, charging.PackagePPVKredit, "user1")
		done <- err
	}()
	<-started
	// The re-driver sees the pending payment twice, minAge apart, while the
	// live drive holds it: it must not take it.
	redrive(t, f, 0)
	require.Zero(t, redrive(t, f, minAge).Payments)
	close(release)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Second):
		t.Fatal("live payment did not finish")
	}
	redrive(t, f, 3*minAge)
	pending, applied := x.state(1)
	require.False(t, pending)
	require.Equal(t, 1, applied)
	require.Equal(t, charging.Euros(10)-charging.Euros(5)-charging.USSDPaymentFee, e.balance(alice))
}
