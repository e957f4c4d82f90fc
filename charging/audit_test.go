package charging

// Regression tests from the money-path audit: amount arithmetic at its
// edges (BalanceMax, UnitsMax, int64) never wraps, and refusals change
// nothing.

import (
	"math"
	"testing"
	"time"
)

var auditNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

func auditAccount(balance Amount) Account {
	return Account{ID: 38349000001, Balance: balance, ValidUntil: auditNow.Add(Days(30)).Unix()}
}

// Every demo tariff prices the largest usage a session can reach exactly:
// cost is monotonic and below costMax up to 2·UnitsMax plus increments, so
// no difference of two costs wraps or comes out zero.
func TestAuditTariffCostNeverWraps(t *testing.T) {
	for rg, tf := range DemoTariffs() {
		if err := tf.Validate(); err != nil {
			t.Fatalf("rating group %d: %v", rg, err)
		}
		prev := Amount(0)
		for _, u := range []uint64{0, 1, 59, 60, 61, 1 << 20, UnitsMax - 1, UnitsMax, UnitsMax + 1, 2 * UnitsMax} {
			c := tf.Cost(u)
			if c < prev || c >= costMax {
				t.Fatalf("rating group %d: cost(%d) = %d after %d", rg, u, c, prev)
			}
			prev = c
		}
		if !tf.Incoming && tf.Price > 0 && tf.Cost(UnitsMax) <= tf.Cost(UnitsMax/2) {
			t.Fatalf("rating group %d: the second half of UnitsMax costs nothing", rg)
		}
	}
}

// A charge of more units than UnitsMax, or of units whose price exceeds
// the balance, is refused and changes nothing; BalanceMax itself charges
// exactly.
func TestAuditChargeAtTheEdges(t *testing.T) {
	cfg := DemoConfig()
	for _, units := range []uint64{UnitsMax + 1, math.MaxUint64} {
		a := auditAccount(BalanceMax)
		out, eff := a.Apply(&cfg, &Command{Kind: KindCharge, Key: "c", RatingGroup: RatingGroupData, Units: units}, auditNow)
		if out.Result != ResultUnitsAboveMaximum || eff.Dirty || a.Balance != BalanceMax {
			t.Fatalf("units %d: %v dirty=%v balance %v", units, out.Result, eff.Dirty, a.Balance)
		}
	}
	a := auditAccount(BalanceMax)
	out, _ := a.Apply(&cfg, &Command{Kind: KindCharge, Key: "c", RatingGroup: RatingGroupData, Units: UnitsMax}, auditNow)
	data := DemoTariffs()[RatingGroupData]
	want := BalanceMax - data.Cost(UnitsMax)
	if out.Result != ResultOK || a.Balance != want || out.Amount != want-BalanceMax {
		t.Fatalf("UnitsMax of data at BalanceMax: %v balance %v amount %v, want balance %v", out.Result, a.Balance, out.Amount, want)
	}
}

// Credits stop at BalanceMax whatever the amount; debits never take more
// than the balance; signed extremes are refused.
func TestAuditCreditsAndDebitsAtInt64Edges(t *testing.T) {
	cfg := DemoConfig()
	cases := []struct {
		name string
		cmd  Command
		want Result
	}{
		{"top-up past BalanceMax", Command{Kind: KindTopUp, Channel: ChannelElectronic, Amount: Euros(1)}, ResultBalanceLimit},
		{"adjust past BalanceMax", Command{Kind: KindAdjust, Reason: "r", Amount: 2}, ResultBalanceLimit},
		{"adjust MaxInt64", Command{Kind: KindAdjust, Reason: "r", Amount: math.MaxInt64}, ResultBalanceLimit},
		{"adjust below zero", Command{Kind: KindAdjust, Reason: "r", Amount: -(BalanceMax - 1) - 1}, ResultInsufficientBalance},
		{"reversal past BalanceMax", Command{Kind: KindTransferReverse, Amount: 2, Ref: 1}, ResultBalanceLimit},
		{"transfer debit MaxInt64", Command{Kind: KindTransferOut, Amount: math.MaxInt64, Ref: 1}, ResultInsufficientBalance},
		{"transfer debit MinInt64", Command{Kind: KindTransferOut, Amount: math.MinInt64, Ref: 1}, ResultAmountMustBePositive},
		{"payment debit negative", Command{Kind: KindPackagePayment, Amount: -1, Ref: 1}, ResultAmountMustBePositive},
	}
	for _, tc := range cases {
		a := auditAccount(BalanceMax - 1)
		tc.cmd.Key = "k"
		out, eff := a.Apply(&cfg, &tc.cmd, auditNow)
		if out.Result != tc.want || eff.Dirty || a.Balance != BalanceMax-1 {
			t.Errorf("%s: %v (want %v) dirty=%v balance %v", tc.name, out.Result, tc.want, eff.Dirty, a.Balance)
		}
	}
}

// A charge is refunded at most once: whole or in part, a second refund is
// refused, and a refund larger than the charge or negative never runs.
func TestAuditRefundAtMostOnce(t *testing.T) {
	cfg := DemoConfig()
	a := auditAccount(Euros(1))
	c, eff := a.Apply(&cfg, &Command{Kind: KindCharge, Key: "c", RatingGroup: RatingGroupSMS, Units: 1}, auditNow)
	if c.Result != ResultOK {
		t.Fatalf("charge: %v", c.Result)
	}
	orig := eff.Entry
	for _, tc := range []struct {
		amount   Amount
		refunded bool
		want     Result
	}{
		{-1, false, ResultAmountMustBePositive},
		{math.MinInt64, false, ResultAmountMustBePositive},
		{-orig.Amount + 1, false, ResultRefundExceedsCharge},
		{math.MaxInt64, false, ResultRefundExceedsCharge},
		{0, true, ResultAlreadyRefunded},
		{1, true, ResultAlreadyRefunded},
	} {
		b := a
		out, eff := b.Apply(&cfg, &Command{Kind: KindRefund, Key: "r", Ref: orig.Seq, Amount: tc.amount, Original: orig,
			OriginalRefunded: tc.refunded}, auditNow)
		if out.Result != tc.want || eff.Dirty || b.Balance != a.Balance {
			t.Errorf("refund %v (refunded before %v): %v, want %v; balance %v", tc.amount, tc.refunded, out.Result, tc.want, b.Balance)
		}
	}
	out, _ := a.Apply(&cfg, &Command{Kind: KindRefund, Key: "r", Ref: orig.Seq, Original: orig}, auditNow)
	if out.Result != ResultOK || a.Balance != Euros(1) {
		t.Fatalf("refund: %v balance %v", out.Result, a.Balance)
	}
}

// A session report of more than UnitsMax, or one that takes the session
// past it, is refused before any arithmetic: Used and Units near 2^64 never
// wrap r.Used+Used into a small number that would be charged as little.
func TestAuditSessionReportsNeverWrap(t *testing.T) {
	cfg := DemoConfig()
	a := auditAccount(Euros(100))
	out, _ := a.Apply(&cfg, &Command{Kind: KindReserve, Key: "r", RatingGroup: RatingGroupData, Units: 1000}, auditNow)
	if out.Result != ResultOK {
		t.Fatalf("reserve: %v", out.Result)
	}
	s := out.Session
	for _, used := range []uint64{math.MaxUint64, math.MaxUint64 - 999, UnitsMax + 1} {
		for _, kind := range []Kind{KindUpdate, KindTerminate} {
			b := a
			b.Reservations = append([]Reservation(nil), a.Reservations...)
			out, eff := b.Apply(&cfg, &Command{Kind: kind, Key: "u", Session: s, Used: used}, auditNow)
			if out.Result != ResultUnitsAboveMaximum || eff.Dirty || b.Balance != a.Balance {
				t.Errorf("%v used %d: %v dirty=%v balance %v", kind, used, out.Result, eff.Dirty, b.Balance)
			}
		}
	}
}
