package flows

import (
	"sync"
	"sync/atomic"
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
	tr.engine = e
	e.cardUsed = v.use
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

// A refused credit moves the record to reversing before the reversal
// runs. Recovery from there runs only the reversal: the credit, refused
// once and so not recorded, would be made now that the receiver can take
// it, and the receiver would be paid after the sender was paid back.
func TestTransferRecoveryAfterReversalNeverCredits(t *testing.T) {
	for _, reversalLanded := range []bool{false, true} {
		f, e, tr, _, _ := setup(t)
		e.accounts[bob].Balance = charging.BalanceMax - charging.Euros(1)
		var failReversal atomic.Bool
		failReversal.Store(true)
		e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
			if cmd.Kind == charging.KindTransferReverse && failReversal.Load() {
				if reversalLanded {
					// The reversal is durable and the engine dies before
					// its answer reaches the flow.
					failReversal.Store(false)
					e.mu.Unlock()
					_, _ = e.Execute(cmd)
					e.mu.Lock()
					failReversal.Store(true)
				}
				return charging.Outcome{}, errEngine, true
			}
			return charging.Outcome{}, nil, false
		}
		res, err := f.Transfer("k-rev", alice, bob, charging.Euros(2))
		require.ErrorIs(t, err, ErrInProgress)
		require.Equal(t, charging.TransferReversing, tr.m[res.Ref].State, "recorded before the reversal ran")

		// The receiver could take the credit now.
		failReversal.Store(false)
		e.setBalance(bob, charging.Euros(1))
		n, err := f.Recover()
		require.NoError(t, err)
		require.Equal(t, 1, n.Transfers)
		require.Equal(t, charging.TransferReversed, tr.m[res.Ref].State)
		require.Equal(t, charging.Euros(10), e.balance(alice), "the sender paid back once, reversalLanded=%v", reversalLanded)
		require.Equal(t, charging.Euros(1), e.balance(bob), "the receiver never credited, reversalLanded=%v", reversalLanded)
	}
}

// A record an older build left debited after its reversal was made (it had
// no reversing state) is recognised by the reversal's request record and
// finished as reversed, without the credit.
func TestTransferRecoveryOfOlderDebitedAfterReversal(t *testing.T) {
	f, e, tr, _, _ := setup(t)
	rec, _, _ := tr.Begin("old", alice, bob, charging.Euros(2), charging.DemoTransferRules().Fee, t0)
	debit, rev := rec.DebitCommand(), rec.ReverseCommand()
	for _, cmd := range []*charging.Command{&debit, &rev} {
		out, err := e.Execute(cmd)
		require.NoError(t, err)
		require.Equal(t, charging.ResultOK, out.Result)
	}
	tr.m[rec.ID] = charging.Transfer{ID: rec.ID, From: alice, To: bob, Amount: rec.Amount, Fee: rec.Fee, State: charging.TransferDebited, Created: rec.Created}
	n, err := f.Recover()
	require.NoError(t, err)
	require.Equal(t, 1, n.Transfers)
	require.Equal(t, charging.TransferReversed, tr.m[rec.ID].State)
	require.Equal(t, charging.Euros(10), e.balance(alice))
	require.Equal(t, charging.Euros(1), e.balance(bob), "never credited")
}

// Recovery finishes a transfer from each open state, and re-driving a
// leg that already ran moves no money twice.
func TestTransferRecoveryEveryState(t *testing.T) {
	for _, debited := range []bool{false, true} {
		f, e, tr, _, _ := setup(t)
		rec, _, _ := tr.Begin("rec", alice, bob, charging.Euros(2), charging.DemoTransferRules().Fee, t0)
		// The crash came after the debit was durable: with debited, the
		// record says so; without, only the account knows.
		debit := rec.DebitCommand()
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

	// An unknown beneficiary is refused by the credit, which then writes
	// nothing: the card stays active.
	res, err := f.Redeem(alice, carol, code)
	require.NoError(t, err)
	require.Equal(t, charging.ResultUnknownSubscriber, res.Account)
	require.True(t, res.ByReceiver)
	require.False(t, res.OK())
	require.Equal(t, charging.VoucherActive, v.card(code).rec.State)

	res, err = f.Redeem(alice, bob, code)
	require.NoError(t, err)
	require.True(t, res.OK(), "%+v", res)
	require.Equal(t, charging.Euros(6), e.balance(bob))
	require.Equal(t, bob, res.Subscriber)
	// The card was used by its credit, with the credit's journal entry.
	c := v.card(code)
	require.Equal(t, charging.VoucherUsed, c.rec.State)
	require.Equal(t, bob, c.rec.UsedBy)
	credit := e.journal[bob][len(e.journal[bob])-1]
	require.Equal(t, credit.Seq, c.rec.CreditSeq)
	require.Equal(t, res.Outcome.Seq, credit.Seq)
	require.False(t, c.pending)

	res, _ = f.Redeem(alice, alice, code)
	require.Equal(t, charging.VoucherAlreadyUsed, res.Voucher)
	require.False(t, res.OK())
	require.Equal(t, 1.0, value(f.metrics.redemptions["voucher_used"]))
	require.Equal(t, 1.0, value(f.metrics.redemptions["unknown_subscriber"]))
	require.Equal(t, 1.0, value(f.metrics.redemptions["ok"]))
}

// A refused credit (balance limit) leaves the card active: it is not burned.
func TestRedeemRefusedCreditLeavesCardActive(t *testing.T) {
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

// An engine error on the credit leaves nothing half-way (the card is used
// with its credit or not at all): it is not ErrInProgress, nothing is left
// for the re-driver, and repeating the redemption credits the card once.
func TestRedeemEngineErrorLeavesNothingOpen(t *testing.T) {
	f, e, _, v, _ := setupRedrive(t)
	v.add("1212343456567878", charging.Euros(5), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("1212343456567878")
	var on atomic.Bool
	on.Store(true)
	failVoucherCredits(e, &on)
	_, err := f.Redeem(alice, alice, code)
	require.ErrorIs(t, err, errEngine)
	require.NotErrorIs(t, err, ErrInProgress)
	require.Equal(t, charging.VoucherActive, v.card(code).rec.State)
	require.Equal(t, Recovered{}, open(t, f))

	on.Store(false)
	res, err := f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.True(t, res.OK(), "%+v", res)
	// A repeat is told the success it was (RetryAnswerMax), credited once;
	// another beneficiary is told the card is used.
	again, err := f.Redeem(alice, alice, code)
	require.NoError(t, err)
	require.True(t, again.OK(), "%+v", again)
	require.Equal(t, res.Outcome.Seq, again.Outcome.Seq)
	res, err = f.Redeem(alice, bob, code)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherAlreadyUsed, res.Voucher)
	require.Equal(t, charging.Euros(15), e.balance(alice))
}

// Many subscribers redeem one card at once: the card's lock, held until its
// credit is answered, lets exactly one of them be credited.
func TestRedeemConcurrentCreditsOnce(t *testing.T) {
	f, e, _, v, _ := setup(t)
	e.yield = true
	v.add("5555666677778888", charging.Euros(10), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("5555666677778888")
	const n = 16
	ids := make([]charging.SubscriberID, n)
	for i := range ids {
		ids[i] = charging.SubscriberID(38345000000 + i)
		e.provision(ids[i], 0)
	}
	var wg sync.WaitGroup
	var ok atomic.Int32
	for _, id := range ids {
		wg.Go(func() {
			res, err := f.Redeem(id, id, code)
			require.NoError(t, err)
			if res.OK() {
				ok.Add(1)
			} else {
				require.Equal(t, charging.VoucherAlreadyUsed, res.Voucher)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int32(1), ok.Load())
	var credited charging.Amount
	for _, id := range ids {
		credited += e.balance(id)
	}
	require.Equal(t, charging.Euros(10), credited)
	require.Equal(t, e.balance(v.card(code).rec.UsedBy), charging.Euros(10))
}

// A pending marker left by an older build (a crash between marking the card
// and its credit): Recover credits it once.
func TestRedeemRecoveryOfOlderMarker(t *testing.T) {
	f, e, _, v, _ := setup(t)
	v.add("9999888877776666", charging.Euros(10), t0.Add(time.Hour))
	code, _ := charging.ParseVoucherCode("9999888877776666")
	v.markPending(code, alice, t0)
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
