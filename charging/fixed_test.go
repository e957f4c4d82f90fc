package charging

import (
	"testing"
	"time"
)

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 10, 30, 0, 0, time.UTC) }

func TestNextPaidUntilCalendar(t *testing.T) {
	// Lapsed or never paid: one month from now, now's day is the anchor.
	got, anchor := NextPaidUntil(0, 0, day(2026, 1, 31))
	if want := day(2026, 2, 28).Unix(); got != want || anchor != 31 {
		t.Fatalf("31 Jan + 1 month = %v (anchor %d), want 28 Feb", time.Unix(got, 0).UTC(), anchor)
	}
	// Paid ahead: from paid-until, back to the 31st after February.
	got2, anchor2 := NextPaidUntil(got, anchor, day(2026, 2, 10))
	if want := day(2026, 3, 31).Unix(); got2 != want || anchor2 != 31 {
		t.Fatalf("28 Feb (anchor 31) + 1 month = %v, want 31 Mar", time.Unix(got2, 0).UTC())
	}
	got3, _ := NextPaidUntil(got2, anchor2, day(2026, 3, 1))
	if want := day(2026, 4, 30).Unix(); got3 != want {
		t.Fatalf("31 Mar + 1 month = %v, want 30 Apr", time.Unix(got3, 0).UTC())
	}
	// Leap year and year end.
	if g, _ := NextPaidUntil(0, 0, day(2028, 1, 30)); g != day(2028, 2, 29).Unix() {
		t.Fatalf("30 Jan 2028 + 1 month = %v", time.Unix(g, 0).UTC())
	}
	if g, _ := NextPaidUntil(day(2026, 12, 15).Unix(), 15, day(2026, 12, 1)); g != day(2027, 1, 15).Unix() {
		t.Fatalf("15 Dec + 1 month = %v", time.Unix(g, 0).UTC())
	}
	// Lapsed: paid-until in the past is ignored.
	if g, a := NextPaidUntil(day(2026, 1, 5).Unix(), 5, day(2026, 3, 20)); g != day(2026, 4, 20).Unix() || a != 20 {
		t.Fatalf("lapsed: %v anchor %d", time.Unix(g, 0).UTC(), a)
	}
	// Paid ahead with no anchor recorded keeps the paid time.
	if g, _ := NextPaidUntil(day(2026, 5, 10).Unix(), 0, day(2026, 5, 1)); g != day(2026, 6, 10).Unix() {
		t.Fatalf("no anchor: %v", time.Unix(g, 0).UTC())
	}
}

func TestPayPackageOrder(t *testing.T) {
	cat := DemoCatalogue()
	now := day(2026, 4, 1)
	tv := FixedAccount{ID: "1234567890", Kind: FixedTV, Package: PackageDTVFamiljare}
	inet := FixedAccount{ID: "arber", Kind: FixedInternet, Package: PackageInternetPako2}
	tests := []struct {
		name string
		a    FixedAccount
		pkg  PackageID
		want FixedResult
	}{
		{"unknown package 0", inet, 0, FixedUnknownPackage},
		{"unknown package 9", inet, 9, FixedUnknownPackage},
		{"other package", inet, PackageInternetPako1, FixedPackageMismatch},
		{"ppv on internet", inet, PackagePPVKredit, FixedPackageMismatch},
		{"ppv balance limit", FixedAccount{Kind: FixedTV, Balance: BalanceMax}, PackagePPVKredit, FixedBalanceLimit},
		{"own package", inet, PackageInternetPako2, FixedOK},
		{"ppv on tv", tv, PackagePPVKredit, FixedOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.a
			if got := a.PayPackage(&cat, tc.pkg, now); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if tc.want != FixedOK && a != tc.a {
				t.Fatalf("refusal changed the account")
			}
		})
	}
	a := inet
	a.PayPackage(&cat, PackageInternetPako2, now)
	if a.PaidUntil != day(2026, 5, 1).Unix() || a.Seq != 1 || a.Balance != 0 {
		t.Fatalf("after paying: %+v", a)
	}
	a.PayPackage(&cat, PackageInternetPako2, now)
	if a.PaidUntil != day(2026, 6, 1).Unix() {
		t.Fatalf("a second payment must extend from paid-until: %v", time.Unix(a.PaidUntil, 0).UTC())
	}
	p := tv
	p.PayPackage(&cat, PackagePPVKredit, now)
	if p.Balance != cat[PackagePPVKredit].Price || p.PaidUntil != 0 {
		t.Fatalf("ppv credit: %+v", p)
	}
}

func TestFixedTopUp(t *testing.T) {
	tel := FixedAccount{ID: "038123456", Kind: FixedTelephony}
	for _, tc := range []struct {
		a    FixedAccount
		amt  Amount
		want FixedResult
	}{
		{FixedAccount{Kind: FixedInternet}, Euros(5), FixedNoBalance},
		{tel, 0, FixedAmountNotPositive},
		{tel, -1, FixedAmountNotPositive},
		{FixedAccount{Kind: FixedTelephony, Balance: BalanceMax - 1}, 2, FixedBalanceLimit},
		{tel, Euros(5), FixedOK},
	} {
		a := tc.a
		if got := a.TopUp(tc.amt); got != tc.want {
			t.Errorf("TopUp(%v) on %v = %v, want %v", tc.amt, tc.a.Kind, got, tc.want)
		}
		if tc.want == FixedOK && a.Balance != tc.a.Balance+tc.amt {
			t.Errorf("balance %v", a.Balance)
		}
	}
}

func TestParseFixedID(t *testing.T) {
	for in, want := range map[string]string{"Arber.K": "arber.k", "038123456": "038123456", "+38338123456": "038123456",
		"0038338123456": "038123456", "38338123456": "038123456", "1234567890123456": "1234567890123456"} {
		if got, err := ParseFixedID(in); err != nil || got != want {
			t.Errorf("ParseFixedID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ab", "a b c", "user*1", "user#", "ëmri", "abcdefghijklmnopqrstuvwxyz0123456"} {
		if _, err := ParseFixedID(bad); err == nil {
			t.Errorf("ParseFixedID(%q) accepted", bad)
		}
	}
}

func TestMayPayByUSSD(t *testing.T) {
	now := day(2026, 4, 30)
	if !MayPayByUSSD(0, now) || MayPayByUSSD(202604, now) || !MayPayByUSSD(202603, now) ||
		!MayPayByUSSD(202604, day(2026, 5, 1)) {
		t.Fatal("once per calendar month rule")
	}
	if MonthOf(now) != 202604 {
		t.Fatal(MonthOf(now))
	}
}

func TestDemoCatalogue(t *testing.T) {
	cat := DemoCatalogue()
	for id := PackageID(1); id < PackagesMax; id++ {
		p, ok := cat.Lookup(id)
		if !ok || p.Price <= 0 || p.Name == "" || p.Kind.String() == "invalid" {
			t.Errorf("package %d: %+v", id, p)
		}
	}
	if _, ok := cat.Lookup(PackagesMax); ok {
		t.Fatal("lookup past the catalogue")
	}
}
