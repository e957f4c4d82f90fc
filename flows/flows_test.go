package flows

import (
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

const (
	alice charging.SubscriberID = 38344000001
	bob   charging.SubscriberID = 38344000002
	carol charging.SubscriberID = 38344000003 // never provisioned
)

var t0 = time.Unix(1_800_000_000, 0)

func setup(t *testing.T) (*Flows, *engine, *transfers, *vouchers, *prometheus.Registry) {
	e := newEngine(t0)
	e.provision(alice, charging.Euros(10))
	e.provision(bob, charging.Euros(1))
	tr, v := newTransfers(), newVouchers()
	reg := prometheus.NewRegistry()
	f := New(Config{Engine: e, Transfers: tr, Vouchers: v, Rules: charging.DemoTransferRules(),
		Catalogue: charging.DemoCatalogue(), PaymentFee: charging.USSDPaymentFee, Now: func() time.Time { return t0 }, Registerer: reg})
	return f, e, tr, v, reg
}

func TestTransferCreditedFeeLeavesLedger(t *testing.T) {
	f, e, tr, _, reg := setup(t)
	res, err := f.Transfer("k1", alice, bob, charging.Euros(3))
	require.NoError(t, err)
	require.True(t, res.OK(), "%+v", res)
	fee := charging.DemoTransferRules().Fee
	require.Equal(t, charging.Euros(7)-fee, e.balance(alice))
	require.Equal(t, charging.Euros(4), e.balance(bob))
	require.Equal(t, res.Outcome.Balance, e.balance(alice), "the sender is shown his balance after the debit")
	require.Equal(t, charging.TransferCredited, tr.m[res.Ref].State)
	require.Equal(t, charging.EntryTransferOut, e.journal[alice][len(e.journal[alice])-1].Kind)
	require.Equal(t, charging.EntryTransferIn, e.journal[bob][len(e.journal[bob])-1].Kind)
	require.Equal(t, 1.0, value(f.metrics.transfers["ok"]))
	_ = reg
}

func TestTransferRefusals(t *testing.T) {
	f, e, tr, _, _ := setup(t)
	res, err := f.Transfer("k2", alice, carol, charging.Euros(3))
	require.NoError(t, err)
	require.Equal(t, charging.ResultUnknownSubscriber, res.Account)
	require.True(t, res.ByReceiver)
	require.Empty(t, tr.m, "no record for an unknown receiver")

	res, _ = f.Transfer("k3", alice, bob, charging.Euros(21))
	require.Equal(t, charging.TransferAboveMaximum, res.Transfer)
	res, _ = f.Transfer("k4", bob, alice, charging.Euros(1))
	require.Equal(t, charging.ResultInsufficientBalance, res.Account, "1.00 + 0.10 fee > 1.00")
	require.False(t, res.ByReceiver)
	require.Equal(t, charging.TransferRefused, tr.m[res.Ref].State)
	require.Equal(t, charging.Euros(1), e.balance(bob))
	require.Equal(t, charging.Euros(10), e.balance(alice))
}

// A receiver at the balance limit refuses the credit: the sender gets the
// amount and the fee back, and the record ends reversed.
func TestTransferReversed(t *testing.T) {
	f, e, tr, _, _ := setup(t)
	e.accounts[bob].Balance = charging.BalanceMax - charging.Euros(1)
	res, err := f.Transfer("k5", alice, bob, charging.Euros(2))
	require.NoError(t, err)
	require.Equal(t, charging.ResultBalanceLimit, res.Account)
	require.True(t, res.ByReceiver)
	require.Equal(t, charging.Euros(10), e.balance(alice))
	require.Equal(t, charging.Euros(10), res.Outcome.Balance)
	require.Equal(t, charging.TransferReversed, tr.m[res.Ref].State)
}

// Recovery finishes a transfer from each open state, and re-driving a
// leg that already ran moves no money twice.
func TestTransferRecoveryEveryState(t *testing.T) {
	for _, debited := range []bool{false, true} {
		f, e, tr, _, _ := setup(t)
		rec, _, _ := tr.Begin("rec", alice, bob, charging.Euros(2), charging.DemoTransferRules().Fee, t0)
		// The crash came after the debit was durable: with debited, the
		// record says so; without, only the account knows.
		debit := debitCommand(&rec)
		_, err := e.Execute(&debit)
		require.NoError(t, err)
		if debited {
			_, _ = tr.Advance(rec.ID, charging.TransferDebited)
		}
		for range 2 {
			n, err := f.Recover()
			require.NoError(t, err)
			require.LessOrEqual(t, n.Transfers, 1)
		}
		require.Equal(t, charging.TransferCredited, tr.m[rec.ID].State)
		require.Equal(t, charging.Euros(8)-charging.DemoTransferRules().Fee, e.balance(alice))
		require.Equal(t, charging.Euros(3), e.balance(bob))
	}
}

// The failpoint fires after the durable debit and before the record says
// so: exactly where the crash test kills the process.
func TestTransferFailpointAfterDebit(t *testing.T) {
	f, e, tr, _, _ := setup(t)
	var seen []string
	f.cfg.Failpoint = func(name string) {
		seen = append(seen, name)
		require.Equal(t, charging.Euros(10)-charging.Euros(2)-charging.DemoTransferRules().Fee, e.accounts[alice].Balance)
		require.Equal(t, charging.TransferPending, tr.m[1].State)
	}
	_, err := f.Transfer("k6", alice, bob, charging.Euros(2))
	require.NoError(t, err)
	require.Equal(t, []string{FailTransferAfterDebit}, seen)
}

func TestRedeem(t *testing.T) {
	f, e, _, v, _ := setup(t)
	v.add("1234567890123456", charging.Euros(5), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("1234567890123456")

	// An unknown beneficiary never touches the card.
	res, err := f.Redeem(alice, carol, code)
	require.NoError(t, err)
	require.Equal(t, charging.ResultUnknownSubscriber, res.Account)
	require.True(t, res.ByReceiver)
	require.Zero(t, res.Voucher)
	require.Equal(t, charging.VoucherActive, v.cards[code].rec.State)

	res, err = f.Redeem(alice, bob, code)
	require.NoError(t, err)
	require.True(t, res.OK(), "%+v", res)
	require.Equal(t, charging.Euros(6), e.balance(bob))
	require.Equal(t, bob, res.Subscriber)
	require.NotZero(t, v.cards[code].rec.CreditSeq)
	require.False(t, v.cards[code].pending)

	res, _ = f.Redeem(alice, alice, code)
	require.Equal(t, charging.VoucherAlreadyUsed, res.Voucher)
	require.False(t, res.OK())
	require.Equal(t, 1.0, value(f.metrics.redemptions["voucher_used"]))
	require.Equal(t, 1.0, value(f.metrics.redemptions["unknown_subscriber"]))
	require.Equal(t, 1.0, value(f.metrics.redemptions["ok"]))
}

// A refused credit (balance limit) reverts the card: it is not burned.
func TestRedeemRevertsRefusedCredit(t *testing.T) {
	f, e, _, v, _ := setup(t)
	v.add("1111222233334444", charging.Euros(20), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("1111222233334444")
	e.accounts[bob].Balance = charging.BalanceMax
	res, err := f.Redeem(bob, bob, code)
	require.NoError(t, err)
	require.Equal(t, charging.ResultBalanceLimit, res.Account)
	require.Equal(t, charging.VoucherActive, v.cards[code].rec.State)
	require.False(t, v.cards[code].pending)
}

// A crash between marking the card and its credit: Recover credits it once.
func TestRedeemRecovery(t *testing.T) {
	f, e, _, v, _ := setup(t)
	v.add("9999888877776666", charging.Euros(10), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("9999888877776666")
	_, err := v.Redeem(code, alice, alice, t0)
	require.NoError(t, err)
	for range 2 {
		_, err := f.Recover()
		require.NoError(t, err)
	}
	require.Equal(t, charging.Euros(20), e.balance(alice))
	require.False(t, v.cards[code].pending)
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// A retried transfer request, with its original key, finds the transfer the
// first attempt made: money moves once, and the retry is told the same.
func TestTransferRetryMovesMoneyOnce(t *testing.T) {
	f, e, _, _, _ := setup(t)
	first, err := f.Transfer("U/retry", alice, bob, charging.Euros(2))
	require.NoError(t, err)
	require.True(t, first.OK())
	again, err := f.Transfer("U/retry", alice, bob, charging.Euros(2))
	require.NoError(t, err)
	require.True(t, again.OK())
	require.Equal(t, first.Ref, again.Ref)
	fee := charging.DemoTransferRules().Fee
	require.Equal(t, charging.Euros(10)-charging.Euros(2)-fee, e.balance(alice))
	require.Equal(t, charging.Euros(1)+charging.Euros(2), e.balance(bob))
}

// A refused transfer stays refused: its retry must not debit, even after
// the sender has been topped up and could now pay.
func TestTransferRetryOfARefusalNeverDebitsLater(t *testing.T) {
	f, e, _, _, _ := setup(t)
	res, err := f.Transfer("U/poor", bob, alice, charging.Euros(1))
	require.NoError(t, err)
	require.Equal(t, charging.ResultInsufficientBalance, res.Account)
	e.provision(bob, charging.Euros(50)) // topped up meanwhile
	before := e.balance(bob)
	res, err = f.Transfer("U/poor", bob, alice, charging.Euros(1))
	require.NoError(t, err)
	require.False(t, res.OK())
	require.Equal(t, before, e.balance(bob))
}
