package storage

import (
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

func TestFixedAccountsAndPayments(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	f, err := NewFixed(s)
	require.NoError(t, err)
	cat := charging.DemoCatalogue()
	inet := charging.FixedAccount{ID: "arber", Kind: charging.FixedInternet, Package: charging.PackageInternetPako2}
	tel := charging.FixedAccount{ID: "038123456", Kind: charging.FixedTelephony}
	require.NoError(t, f.Put(&inet))
	require.NoError(t, f.Put(&tel))
	require.ErrorIs(t, f.Put(&charging.FixedAccount{ID: "Arber", Kind: charging.FixedInternet}), ErrInvalid, "ids are stored normalised")
	got, found, err := f.Get("arber")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, inet, got)

	a, r, err := f.TopUp("038123456", charging.Euros(5))
	require.NoError(t, err)
	require.Equal(t, charging.FixedOK, r)
	require.Equal(t, charging.Euros(5), a.Balance)
	_, r, err = f.TopUp("nobody", charging.Euros(5))
	require.NoError(t, err)
	require.Equal(t, charging.FixedUnknownAccount, r)

	const caller charging.SubscriberID = 38344000001
	now := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	_, r, err = f.BeginPayment(caller, "nobody", charging.PackageInternetPako2, &cat, charging.USSDPaymentFee, now)
	require.NoError(t, err)
	require.Equal(t, charging.FixedUnknownAccount, r)
	_, r, err = f.BeginPayment(caller, "arber", charging.PackageInternetPako1, &cat, charging.USSDPaymentFee, now)
	require.NoError(t, err)
	require.Equal(t, charging.FixedPackageMismatch, r)
	p, r, err := f.BeginPayment(caller, "arber", charging.PackageInternetPako2, &cat, charging.USSDPaymentFee, now)
	require.NoError(t, err)
	require.Equal(t, charging.FixedOK, r)
	require.Equal(t, "P/1", p.DebitKey())
	require.Equal(t, charging.Euros(20)+50*charging.AmountPerCent, p.Debit())
	// Once a month: a second begin is refused while the first holds the claim.
	_, r, err = f.BeginPayment(caller, "arber", charging.PackageInternetPako2, &cat, charging.USSDPaymentFee, now)
	require.NoError(t, err)
	require.Equal(t, charging.FixedAlreadyPaidMonth, r)

	// Crash before the debit is confirmed: the payment is pending after reopen.
	require.NoError(t, s.Close())
	s, err = Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	f, err = NewFixed(s)
	require.NoError(t, err)
	pending, err := f.PendingPayments(0, 10)
	require.NoError(t, err)
	require.Equal(t, []FixedPayment{p}, pending)
	p2, a2, err := f.ApplyPayment(p.ID, &cat, now)
	require.NoError(t, err)
	require.Equal(t, PaymentApplied, p2.State)
	require.Equal(t, time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC).Unix(), a2.PaidUntil)
	// Applying again (a re-driven recovery) moves nothing.
	_, a3, err := f.ApplyPayment(p.ID, &cat, now)
	require.NoError(t, err)
	require.Equal(t, a2, a3)
	pending, err = f.PendingPayments(0, 10)
	require.NoError(t, err)
	require.Empty(t, pending)
	require.ErrorIs(t, f.CancelPayment(p.ID), ErrPaymentState)

	// Next month: a refused debit cancels and frees the month.
	next := now.AddDate(0, 0, 1)
	p4, r, err := f.BeginPayment(caller, "arber", charging.PackageInternetPako2, &cat, charging.USSDPaymentFee, next)
	require.NoError(t, err)
	require.Equal(t, charging.FixedOK, r)
	require.Equal(t, p.ID+1, p4.ID, "ids continue after reopen")
	require.NoError(t, f.CancelPayment(p4.ID))
	_, r, err = f.BeginPayment(caller, "arber", charging.PackageInternetPako2, &cat, charging.USSDPaymentFee, next)
	require.NoError(t, err)
	require.Equal(t, charging.FixedOK, r)
}

func TestFixedPendingPaymentsPagesAfterID(t *testing.T) {
	f := memFixed(t)
	cat := charging.DemoCatalogue()
	require.NoError(t, f.Put(&charging.FixedAccount{ID: "arber", Kind: charging.FixedInternet, Package: charging.PackageInternetPako2}))
	now := time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)
	var want []uint64
	for i := range 23 {
		// One payment a month per caller: a caller each.
		p, r, err := f.BeginPayment(38344000001+charging.SubscriberID(i), "arber", charging.PackageInternetPako2, &cat,
			charging.USSDPaymentFee, now)
		require.NoError(t, err)
		require.Equal(t, charging.FixedOK, r)
		switch i % 3 {
		case 0: // final: not listed
			require.NoError(t, f.CancelPayment(p.ID))
		case 1:
			_, _, err = f.ApplyPayment(p.ID, &cat, now)
			require.NoError(t, err)
		default:
			want = append(want, p.ID)
		}
	}
	pending := func(after *uint64, limit int) ([]FixedPayment, error) {
		if after == nil {
			return f.PendingPayments(0, limit)
		}
		return f.PendingPayments(*after, limit)
	}
	id := func(p *FixedPayment) uint64 { return p.ID }
	for _, limit := range []int{1, 4, len(want), 100} {
		require.Equal(t, want, pageAll(t, limit, pending, id, lessID), "limit %d", limit)
	}
	page, err := f.PendingPayments(want[0], 1) // after is exclusive
	require.NoError(t, err)
	require.Equal(t, want[1], page[0].ID)
	page, err = f.PendingPayments(want[len(want)-1], 10)
	require.NoError(t, err)
	require.Empty(t, page)
	page, err = f.PendingPayments(math.MaxUint64, 10)
	require.NoError(t, err)
	require.Empty(t, page)
}

func TestFixedPaymentOncePerMonthConcurrent(t *testing.T) {
	f := memFixed(t)
	cat := charging.DemoCatalogue()
	require.NoError(t, f.Put(&charging.FixedAccount{ID: "arber", Kind: charging.FixedInternet, Package: charging.PackageInternetPako1}))
	results := make(chan charging.FixedResult, 32)
	for range 32 {
		go func() {
			_, r, err := f.BeginPayment(38344000001, "arber", charging.PackageInternetPako1, &cat, 0, vchNow)
			if err != nil {
				t.Error(err)
			}
			results <- r
		}()
	}
	ok := 0
	for range 32 {
		if <-results == charging.FixedOK {
			ok++
		}
	}
	require.Equal(t, 1, ok)
}

// memFixed is a fixed-account store on a new in-memory database.
func memFixed(t *testing.T) *Fixed {
	t.Helper()
	s, err := Open("", Options{FS: vfs.NewMem()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	f, err := NewFixed(s)
	require.NoError(t, err)
	return f
}

func FuzzDecodeFixed(f *testing.F) {
	a := charging.FixedAccount{ID: "arber", Kind: charging.FixedDuoTV, Package: 2, PaidUntil: 5, AnchorDay: 31, Balance: 7, Seq: 1}
	p := FixedPayment{ID: 1, Caller: 38344000001, Account: "arber", Package: 2, Price: 9, Fee: 1, Month: 202601, State: PaymentPending}
	f.Add(appendFixed(nil, &a))
	f.Add(appendFixedPayment(nil, &p))
	f.Add(appendFixedMonth(nil, 202601, 3))
	f.Fuzz(func(t *testing.T, v []byte) {
		for i := 0; i < len(v); i++ {
			_, _ = decodeFixed(v[:i])
			_, _ = decodeFixedPayment(v[:i])
		}
		if got, err := decodeFixed(v); err == nil {
			require.Equal(t, v, appendFixed(nil, &got))
		}
		if got, err := decodeFixedPayment(v); err == nil {
			require.Equal(t, v, appendFixedPayment(nil, &got))
		}
		if m, id, err := decodeFixedMonth(v); err == nil {
			require.Equal(t, v, appendFixedMonth(nil, m, id))
		}
	})
}
