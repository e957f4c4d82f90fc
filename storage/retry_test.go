package storage

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// A used card's redemption answer carries the card's use as stored (who,
// when, the credit's Seq), for flows to recognise a retry; nothing is
// written and the caller's guard counts no failure. Other answers carry
// none.
func TestVoucherUsedCardTellsItsUse(t *testing.T) {
	s, v := vchOpen(t, t.TempDir(), nil)
	defer s.Close()
	rows := vchGenerate(t, v, 1, 2, nil)
	const caller, other charging.SubscriberID = 38344000001, 38349000002
	e := newVchEngine(t, s)
	e.provision(caller, other)

	r, err := v.Redeem(rows[0].code, caller, other, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r.Result)
	require.Zero(t, r.UsedBy)
	out := e.credit(&r)
	require.Equal(t, charging.ResultOK, out.Result)
	_, before, err := v.BySerial(rows[0].serial)
	require.NoError(t, err)

	later := vchNow.Add(5 * time.Minute)
	for _, to := range []charging.SubscriberID{other, caller} {
		again, err := v.Redeem(rows[0].code, caller, to, later)
		require.NoError(t, err)
		require.Equal(t, charging.VoucherAlreadyUsed, again.Result)
		require.Equal(t, other, again.UsedBy, "the beneficiary of the credit, whoever is named now")
		require.Equal(t, vchNow.Unix(), again.UsedAt)
		require.Equal(t, out.Seq, again.CreditSeq)
		require.Equal(t, to, again.Beneficiary)
		again.Release() // nothing held: does nothing
	}
	_, after, err := v.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, before, after, "nothing written")
	g, err := v.Guard(caller)
	require.NoError(t, err)
	require.Equal(t, charging.RedeemGuard{}, g, "a used card is no guess")

	unknown, err := v.Redeem(charging.VoucherCode{}, caller, caller, later)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherUnknown, unknown.Result)
	require.Zero(t, unknown.UsedBy)
	require.Zero(t, unknown.CreditSeq)
}

// MonthPayment names the payment the caller's month marker holds, in each
// state the marker can name it, and nothing once a cancel released the
// marker; the debit's Seq is the caller's request record under its key.
func TestFixedMonthPayment(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	require.NoError(t, err)
	defer s.Close()
	f, err := NewFixed(s)
	require.NoError(t, err)
	cat := charging.DemoCatalogue()
	require.NoError(t, f.Put(&charging.FixedAccount{ID: "arber", Kind: charging.FixedInternet, Package: charging.PackageInternetPako1}))
	const caller charging.SubscriberID = 38344000001
	now := time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC)

	_, found, err := f.MonthPayment(caller)
	require.NoError(t, err)
	require.False(t, found)

	p, r, err := f.BeginPayment(caller, "arber", charging.PackageInternetPako1, &cat, charging.USSDPaymentFee, now)
	require.NoError(t, err)
	require.Equal(t, charging.FixedOK, r)
	got, found, err := f.MonthPayment(caller)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, p, got)
	require.Equal(t, PaymentPending, got.State)

	// The debit, as the actor commits it: its request record holds the Seq.
	cfg := charging.DemoConfig()
	a, _, eff := charging.NewAccount(&cfg, &charging.Command{Kind: charging.KindProvision, Subscriber: caller, Amount: charging.Euros(30)}, now)
	require.NoError(t, s.Commit([]charging.Change{{Account: a, Entry: eff.Entry, Created: true}}))
	debit := charging.Command{Kind: charging.KindPackagePayment, Channel: charging.ChannelUSSD, Key: p.DebitKey(), Subscriber: caller,
		Amount: p.Debit(), Ref: p.ID}
	out, eff := a.Apply(&cfg, &debit, now)
	require.Equal(t, charging.ResultOK, out.Result)
	require.NoError(t, s.Commit([]charging.Change{{Account: a, Entry: eff.Entry, Key: debit.Key,
		Request: charging.RequestRecord{Fingerprint: debit.Fingerprint(), Kind: debit.Kind, Outcome: out}}}))
	applied, acc, err := f.ApplyPayment(p.ID, &cat, now)
	require.NoError(t, err)

	got, found, err = f.MonthPayment(caller)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, applied, got)
	require.Equal(t, PaymentApplied, got.State)
	require.Equal(t, acc.PaidUntil, got.PaidUntil)
	require.Equal(t, now.Unix(), got.Created)
	rec, found, err := s.LookupRequest(caller, got.DebitKey())
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, eff.Entry.Seq, rec.Outcome.Seq)

	// Next month, a payment whose debit is refused is cancelled: the marker
	// goes with it.
	next := now.AddDate(0, 1, 0)
	p2, r, err := f.BeginPayment(caller, "arber", charging.PackageInternetPako1, &cat, charging.USSDPaymentFee, next)
	require.NoError(t, err)
	require.Equal(t, charging.FixedOK, r)
	got, _, err = f.MonthPayment(caller)
	require.NoError(t, err)
	require.Equal(t, p2.ID, got.ID)
	require.NoError(t, f.CancelPayment(p2.ID))
	_, found, err = f.MonthPayment(caller)
	require.NoError(t, err)
	require.False(t, found)
	require.NoError(t, s.Check(t.Context()))
}
