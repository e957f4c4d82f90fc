package charging

import (
	"testing"
	"time"
)

// The three command kinds of issue 3's multi-step flows (transfer out,
// transfer reverse, package payment) run through Apply like every other
// kind: journalled with Seq, Key and Ref, refused without a change.

func flowsAccount(t *testing.T, cfg *Config, balance Amount, now time.Time) Account {
	t.Helper()
	a, out, _ := NewAccount(cfg, &Command{Kind: KindProvision, Subscriber: 38344000001, Amount: balance, Key: "p"}, now)
	if out.Result != ResultOK {
		t.Fatalf("provision: %v", out.Result)
	}
	return a
}

func TestFlowKindsJournal(t *testing.T) {
	cfg := DemoConfig()
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		kind   Kind
		amount Amount
		entry  EntryKind
		delta  Amount
	}{
		{KindTransferOut, Euros(3), EntryTransferOut, -Euros(3)},
		{KindTransferReverse, Euros(3), EntryTransferIn, Euros(3)},
		{KindPackagePayment, Euros(12) + USSDPaymentFee, EntryFixedPayment, -(Euros(12) + USSDPaymentFee)},
	} {
		a := flowsAccount(t, &cfg, Euros(20), now)
		before := a.Balance
		cmd := Command{Kind: tc.kind, Key: "k/" + tc.kind.String(), Subscriber: a.ID, Amount: tc.amount, Ref: 77}
		out, eff := a.Apply(&cfg, &cmd, now)
		if out.Result != ResultOK {
			t.Fatalf("%v: %v", tc.kind, out.Result)
		}
		if a.Balance != before+tc.delta || out.Balance != a.Balance || out.Amount != tc.delta {
			t.Fatalf("%v: balance %v → %v, outcome %+v", tc.kind, before, a.Balance, out)
		}
		e := eff.Entry
		if e.Kind != tc.entry || e.Ref != 77 || e.Key != cmd.Key || e.Seq != a.Seq || e.Seq != out.Seq || !eff.Dirty ||
			e.Amount != tc.delta || e.BalanceAfter != a.Balance {
			t.Fatalf("%v: entry %+v", tc.kind, e)
		}
		if !tc.kind.Mutates() || tc.kind.String() == "invalid" || e.Kind.String() == "invalid" {
			t.Fatalf("%v: names or Mutates", tc.kind)
		}
	}
}

func TestFlowKindsRefuseWithoutChange(t *testing.T) {
	cfg := DemoConfig()
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		kind   Kind
		amount Amount
		want   Result
	}{
		{KindTransferOut, Euros(5) + 1, ResultInsufficientBalance},
		{KindTransferOut, 0, ResultAmountMustBePositive},
		{KindPackagePayment, Euros(6), ResultInsufficientBalance},
		{KindPackagePayment, -1, ResultAmountMustBePositive},
		{KindTransferReverse, 0, ResultAmountMustBePositive},
		{KindTransferReverse, BalanceMax, ResultBalanceLimit},
	} {
		a := flowsAccount(t, &cfg, Euros(5), now)
		snap := a
		out, eff := a.Apply(&cfg, &Command{Kind: tc.kind, Key: "k", Subscriber: a.ID, Amount: tc.amount, Ref: 1}, now)
		if out.Result != tc.want || eff.Dirty || eff.Entry.Kind != 0 || a.Balance != snap.Balance || a.Seq != snap.Seq ||
			a.Month != snap.Month {
			t.Fatalf("%v %v: got %v dirty=%v balance %v", tc.kind, tc.amount, out.Result, eff.Dirty, a.Balance)
		}
	}
}

// A transfer's debit is refused in grace and suspension, like any outgoing
// service: the money must not leave an account that cannot call.
func TestFlowKindsLifecycle(t *testing.T) {
	cfg := DemoConfig()
	now := time.Unix(1_800_000_000, 0)
	a := flowsAccount(t, &cfg, Euros(10), now)
	grace := time.Unix(a.ValidUntil, 0).Add(time.Hour)
	out, _ := a.Apply(&cfg, &Command{Kind: KindTransferOut, Key: "g", Subscriber: a.ID, Amount: Euros(1), Ref: 1}, grace)
	if out.Result != ResultGraceOutgoingBarred {
		t.Fatalf("grace: %v", out.Result)
	}
	suspended := time.Unix(a.ValidUntil, 0).Add(cfg.GracePeriod + time.Hour)
	out, _ = a.Apply(&cfg, &Command{Kind: KindPackagePayment, Key: "s", Subscriber: a.ID, Amount: Euros(1), Ref: 1}, suspended)
	if out.Result != ResultSuspended {
		t.Fatalf("suspended: %v", out.Result)
	}
}

// The fingerprint covers Ref and Amount, so a reused leg key with another
// transfer's payload is told apart from a retry.
func TestFlowKindsFingerprint(t *testing.T) {
	base := Command{Kind: KindTransferOut, Key: "T/1/d", Subscriber: 38344000001, Amount: Euros(3), Ref: 1}
	ref, amt, kind := base, base, base
	ref.Ref = 2
	amt.Amount++
	kind.Kind = KindPackagePayment
	for _, c := range []Command{ref, amt, kind} {
		if c.Fingerprint() == base.Fingerprint() {
			t.Fatalf("fingerprint ignores a field: %+v", c)
		}
	}
}
