package charging

import (
	"testing"
	"time"
)

func TestTransferValidateOrder(t *testing.T) {
	r := DemoTransferRules()
	const a, b SubscriberID = 38344000001, 38344000002
	for _, tc := range []struct {
		from, to SubscriberID
		amt      Amount
		want     TransferResult
	}{
		{a, a, 0, TransferToSelf},
		{a, b, 0, TransferAmountNotPositive},
		{a, b, -Euros(1), TransferAmountNotPositive},
		{a, b, 49 * AmountPerCent, TransferBelowMinimum},
		{a, b, 50 * AmountPerCent, TransferOK},
		{a, b, Euros(20), TransferOK},
		{a, b, Euros(20) + 1, TransferAboveMaximum},
	} {
		if got := r.Validate(tc.from, tc.to, tc.amt); got != tc.want {
			t.Errorf("Validate(%d,%d,%v) = %v, want %v", tc.from, tc.to, tc.amt, got, tc.want)
		}
	}
	if r.Debit(Euros(5)) != Euros(5)+10*AmountPerCent {
		t.Fatal("debit is value + fee")
	}
	cfg := DemoConfig()
	if p := r.ChannelPolicy(); p != cfg.Channels[ChannelTransfer] {
		t.Fatalf("demo rules %+v disagree with DemoConfig's transfer channel %+v", p, cfg.Channels[ChannelTransfer])
	}
}

func TestTransferAdvance(t *testing.T) {
	allowed := map[[2]TransferState]bool{
		{TransferPending, TransferDebited}: true, {TransferPending, TransferRefused}: true,
		{TransferDebited, TransferCredited}: true, {TransferDebited, TransferReversing}: true,
		{TransferReversing, TransferReversed}: true,
	}
	for from := TransferState(1); from < transferStateCount; from++ {
		for to := TransferState(1); to < transferStateCount; to++ {
			tr := Transfer{State: from}
			want := from == to || allowed[[2]TransferState{from, to}]
			if got := tr.Advance(to); got != want || (got && tr.State != to) || (!got && tr.State != from) {
				t.Errorf("%v -> %v: got %v, want %v", from, to, got, want)
			}
		}
	}
	tr := Transfer{ID: 42, To: 38344000002, Amount: Euros(3)}
	if tr.DebitKey() != "T/42/d" || tr.CreditKey() != "T/42/c" || tr.ReverseKey() != "T/42/r" {
		t.Fatal(tr.DebitKey(), tr.CreditKey(), tr.ReverseKey())
	}
	c := tr.CreditCommand()
	if c.Kind != KindTopUp || c.Channel != ChannelTransfer || c.Subscriber != tr.To || c.Amount != tr.Amount {
		t.Fatalf("%+v", c)
	}
	tr.From, tr.Fee = 38344000001, 10*AmountPerCent
	for _, c := range []Command{tr.DebitCommand(), tr.ReverseCommand()} {
		if c.Channel != ChannelTransfer || c.Subscriber != tr.From || c.Amount != tr.Amount+tr.Fee || c.Ref != tr.ID {
			t.Fatalf("%+v", c)
		}
	}
	if d, r := tr.DebitCommand(), tr.ReverseCommand(); d.Kind != KindTransferOut || d.Key != "T/42/d" || r.Kind != KindTransferReverse || r.Key != "T/42/r" {
		t.Fatalf("%+v %+v", d, r)
	}
}

// TestTransferMoneyConserved runs the three legs on two accounts with the
// account state machine and checks no unit is created or lost, and that
// the receiver's validity does not move.
func TestTransferMoneyConserved(t *testing.T) {
	cfg := DemoConfig()
	rules := DemoTransferRules()
	now := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	from := Account{ID: 38344000001, Balance: Euros(10), ValidUntil: now.Add(Days(30)).Unix()}
	to := Account{ID: 38344000002, Balance: Euros(1), ValidUntil: now.Add(Days(3)).Unix()}
	tr := Transfer{ID: 7, From: from.ID, To: to.ID, Amount: Euros(4), Fee: rules.Fee, State: TransferPending}
	var eff Effect
	if r := from.DebitFor(&cfg, rules.Debit(tr.Amount), EntryTransferOut, tr.ID, now, &eff); r != ResultOK {
		t.Fatal(r)
	}
	if eff.Entry.Kind != EntryTransferOut || eff.Entry.Amount != -(tr.Amount+tr.Fee) || eff.Entry.Ref != 7 {
		t.Fatalf("%+v", eff.Entry)
	}
	cmd := tr.CreditCommand()
	validBefore := to.ValidUntil
	out, _ := to.Apply(&cfg, &cmd, now)
	if out.Result != ResultOK || to.ValidUntil != validBefore {
		t.Fatalf("credit %v, validity %d -> %d", out.Result, validBefore, to.ValidUntil)
	}
	if from.Balance+to.Balance+tr.Fee != Euros(11) {
		t.Fatalf("money not conserved: %v + %v + fee", from.Balance, to.Balance)
	}
	// Reversal returns amount + fee exactly.
	var eff2 Effect
	if r := from.CreditBack(rules.Debit(tr.Amount), EntryTransferIn, tr.ID, now, &eff2); r != ResultOK || from.Balance != Euros(10) {
		t.Fatalf("credit back %v balance %v", r, from.Balance)
	}
}

func TestDebitForOrder(t *testing.T) {
	cfg := DemoConfig()
	now := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	active := Account{Balance: Euros(1), ValidUntil: now.Unix() + 10}
	grace := Account{Balance: Euros(100), ValidUntil: now.Unix()}
	suspended := Account{Balance: Euros(100), ValidUntil: now.Add(-Days(15)).Unix()}
	for _, tc := range []struct {
		a    Account
		amt  Amount
		want Result
	}{
		{suspended, 0, ResultAmountMustBePositive},
		{suspended, 1, ResultSuspended},
		{grace, 1, ResultGraceOutgoingBarred},
		{active, Euros(1) + 1, ResultInsufficientBalance},
		{active, Euros(1), ResultOK},
	} {
		a := tc.a
		var eff Effect
		if got := a.DebitFor(&cfg, tc.amt, EntryCharge, 1, now, &eff); got != tc.want {
			t.Errorf("DebitFor(%v) = %v, want %v", tc.amt, got, tc.want)
		}
	}
}
