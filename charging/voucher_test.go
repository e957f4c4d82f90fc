package charging

import (
	"testing"
	"time"
)

func TestParseVoucherCode(t *testing.T) {
	good := "0123456789012345"
	c, err := ParseVoucherCode(good)
	if err != nil || c.String() != good {
		t.Fatalf("ParseVoucherCode(%q) = %q, %v", good, c.String(), err)
	}
	for _, bad := range []string{"", "012345678901234", "01234567890123456", "0123 45678901234", "012345678901234a",
		"+123456789012345", "０123456789012345"} {
		if _, err := ParseVoucherCode(bad); err != ErrVoucherCode {
			t.Errorf("ParseVoucherCode(%q) err = %v, want ErrVoucherCode", bad, err)
		}
	}
}

func TestRedeemVoucherOrder(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	active := Voucher{Batch: 1, Value: Euros(10), State: VoucherActive, Expiry: now.Add(time.Hour).Unix()}
	tests := []struct {
		name         string
		v            *Voucher
		batchBlocked bool
		want         VoucherResult
	}{
		{"unknown", nil, false, VoucherUnknown},
		{"used wins over blocked batch", &Voucher{State: VoucherUsed, Expiry: active.Expiry}, true, VoucherAlreadyUsed},
		{"blocked card", &Voucher{State: VoucherBlocked, Expiry: active.Expiry}, false, VoucherIsBlocked},
		{"blocked batch", &Voucher{State: VoucherActive, Expiry: active.Expiry}, true, VoucherIsBlocked},
		{"blocked wins over expired", &Voucher{State: VoucherBlocked, Expiry: now.Unix()}, false, VoucherIsBlocked},
		{"expired state", &Voucher{State: VoucherExpired, Expiry: active.Expiry}, false, VoucherIsExpired},
		{"expiry instant is expired", &Voucher{State: VoucherActive, Expiry: now.Unix()}, false, VoucherIsExpired},
		{"ok one second before expiry", &Voucher{State: VoucherActive, Expiry: now.Unix() + 1}, false, VoucherOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before Voucher
			if tc.v != nil {
				before = *tc.v
			}
			got := RedeemVoucher(tc.v, tc.batchBlocked, 38349123456, now)
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if got != VoucherOK && tc.v != nil && *tc.v != before {
				t.Fatalf("a refusal changed the record: %+v -> %+v", before, *tc.v)
			}
			if got == VoucherOK && (tc.v.State != VoucherUsed || tc.v.UsedBy != 38349123456 || tc.v.UsedAt != now.Unix()) {
				t.Fatalf("redeemed record %+v", *tc.v)
			}
		})
	}
	// A second redemption of the same record is refused: used once, ever.
	v := active
	if r := RedeemVoucher(&v, false, 38344000001, now); r != VoucherOK {
		t.Fatalf("first redeem %v", r)
	}
	if r := RedeemVoucher(&v, false, 38344000002, now); r != VoucherAlreadyUsed || v.UsedBy != 38344000001 {
		t.Fatalf("second redeem %v, used by %d", r, v.UsedBy)
	}
}

// TestRedeemGuardInstants checks that the bar engages at the FailuresMax-th
// wrong code and lifts exactly Bar later, and that the window closes.
func TestRedeemGuardInstants(t *testing.T) {
	p := GuardPolicy{FailuresMax: 3, Window: time.Hour, Bar: 2 * time.Hour}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var g RedeemGuard
	if g.Fail(&p, t0) || g.Fail(&p, t0.Add(10*time.Minute)) {
		t.Fatal("barred before FailuresMax")
	}
	third := t0.Add(59 * time.Minute)
	if !g.Fail(&p, third) {
		t.Fatal("third failure within the window did not bar")
	}
	if !g.Barred(third) || !g.Barred(third.Add(2*time.Hour-time.Second)) {
		t.Fatal("not barred during the bar")
	}
	if g.Fail(&p, third.Add(time.Minute)) || g.Failures != 0 {
		t.Fatal("a failure while barred was counted")
	}
	lift := third.Add(2 * time.Hour)
	if g.Barred(lift) {
		t.Fatal("still barred at the lift instant")
	}
	// Failures spread wider than the window never bar.
	var h RedeemGuard
	for i := 0; i < 10; i++ {
		if h.Fail(&p, t0.Add(time.Duration(i)*31*time.Minute)) {
			t.Fatalf("barred at failure %d although only 2 fit a window", i)
		}
	}
}

func TestDefaultGuardPolicy(t *testing.T) {
	p := DefaultGuardPolicy()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var g RedeemGuard
	for i := 0; i < 4; i++ {
		if g.Fail(&p, t0.Add(time.Duration(i)*time.Hour)) {
			t.Fatalf("barred after %d failures", i+1)
		}
	}
	fifth := t0.Add(23 * time.Hour)
	if !g.Fail(&p, fifth) {
		t.Fatal("5 wrong codes within 24 h did not bar")
	}
	if !g.Barred(fifth.Add(24*time.Hour-time.Second)) || g.Barred(fifth.Add(24*time.Hour)) {
		t.Fatal("bar does not last exactly 24 h")
	}
}
