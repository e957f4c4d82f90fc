package ussd

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// TestEveryScreenFits renders every prompt, confirmation, success and
// refusal with the longest values they can carry and checks each fits one
// 182-character USSD screen.
func TestEveryScreenFits(t *testing.T) {
	m := DemoMenu()
	caller := charging.SubscriberID(383491234567890)
	long := strings.Repeat("x", charging.FixedIDBytesMax)
	screens := []Step{}
	for _, in := range [][2]string{
		{"*123#", ""}, {"*101#", ""}, {"*101#", "1"}, {"*150#", ""}, {"*150#", "049123456"},
		{"*150*049123456*20.00#", ""}, {"*999#", ""}, {"*123*1#", ""},
	} {
		screens = append(screens, m.Parse(in[0], in[1], caller))
	}
	for id := charging.PackageID(1); id < charging.PackagesMax; id++ {
		p, _ := m.Catalogue.Lookup(id)
		p.Price = charging.BalanceMax
		m.Catalogue[id] = p
		screens = append(screens, m.Parse("*101#", "1*"+string(rune('0'+id)), caller), m.Parse("*101#", "1*"+string(rune('0'+id))+"*"+long, caller))
	}
	for _, s := range screens {
		require.Zero(t, s.Intent.Kind)
		require.True(t, fits(s.Body()), "%d runes: %q", utf8.RuneCountInString(s.Body()), s.Body())
	}
	txn := strings.Repeat("9", TxnIDBytesMax+10)
	worst := Reply{TxnID: txn, Balance: charging.BalanceMax, Amount: charging.BalanceMax, ValidUntil: 1 << 40,
		PaidUntil: 1 << 40, BarredUntil: 1 << 40, State: charging.StateActive}
	intents := []Intent{
		{Kind: IntentRedeem, Caller: caller, Beneficiary: caller},
		{Kind: IntentRedeem, Caller: caller, Beneficiary: caller + 1},
		{Kind: IntentPay, Caller: caller, Package: charging.PackageInternetPako3, Account: long},
		{Kind: IntentPay, Caller: caller, Package: charging.PackagePPVKredit, Account: long},
		{Kind: IntentTransfer, Caller: caller, To: caller + 1, Amount: charging.BalanceMax},
		{Kind: IntentInquire, Caller: caller},
	}
	for _, in := range intents {
		for reason := Reason(1); reason < reasonCount; reason++ {
			for _, st := range []charging.State{charging.StateActive, charging.StateGrace, charging.StateSuspended} {
				r := worst
				r.Reason, r.State = reason, st
				body := "END " + m.Render(&in, &r)
				require.True(t, fits(body), "%d runes: %q", utf8.RuneCountInString(body), body)
				require.NotContains(t, body, "%!", "format verbs and arguments disagree: %q", body)
			}
		}
	}
	r := worst
	r.PaidUntil = 0
	in := intents[3]
	require.True(t, fits("END "+m.Render(&in, &r)))
	// Answers of the handler itself, for errors.
	for _, text := range []string{txtOverloaded, txtUnavailable, txtInProgress, txtSessionMismatch, txtUnknownCaller} {
		require.True(t, fits("END "+text), "%d runes: %q", utf8.RuneCountInString(text), text)
	}
}

// TestEveryReasonHasItsOwnText: two different refusals never read the same.
func TestEveryReasonHasItsOwnText(t *testing.T) {
	m := DemoMenu()
	in := Intent{Kind: IntentPay, Caller: 38344111111, Package: 3, Account: "arber", To: 38349222222, Beneficiary: 38349222222}
	seen := map[string]Reason{}
	for reason := Reason(2); reason < reasonCount; reason++ {
		text := m.Render(&in, &Reply{Reason: reason})
		prev, dup := seen[text]
		require.False(t, dup, "reasons %d and %d share %q", prev, reason, text)
		seen[text] = reason
	}
}

func TestParseSplitsAndWholeAgree(t *testing.T) {
	m := DemoMenu()
	const caller charging.SubscriberID = 38344111111
	for _, c := range [][3]string{
		{"*123*1234567890123456#", "*123#", "1234567890123456"},
		{"*123*1234567890123456*049222222#", "*123#", "1234567890123456*049222222"},
		{"*150*049222222*5#", "*150#", "049222222*5"},
		{"*101*1*3*arber*1#", "*101#", "1*3*arber*1"},
	} {
		whole, split := m.Parse(c[0], "", caller), m.Parse(c[1], c[2], caller)
		require.Equal(t, whole, split, c[0])
	}
	s := m.Parse("*123*1234567890123456*049222222#", "", caller)
	require.Equal(t, IntentRedeem, s.Intent.Kind)
	require.Equal(t, charging.SubscriberID(38349222222), s.Intent.Beneficiary)
	// A trailing '#' in text is tolerated; empty inputs are not.
	require.Equal(t, IntentInquire, m.Parse("*100#", "", caller).Intent.Kind)
	require.Zero(t, m.Parse("*123**1234567890123456#", "", caller).Intent.Kind)
	require.Zero(t, m.Parse("123*1234567890123456#", "", caller).Intent.Kind)
}

// FuzzParse: never a panic, every screen fits, and never an intent from a
// malformed string: a redemption only for exactly 16 digits present in the
// input and a valid beneficiary, a transfer only within the rules.
func FuzzParse(f *testing.F) {
	for _, s := range [][2]string{{"*123*1234567890123456#", ""}, {"*123#", "1234567890123456*049222222"},
		{"*101#", "1*3*arber*1"}, {"*150*049222222*5#", "1"}, {"*100#", ""}, {"*123*12345678901234567#", ""},
		{"*123*123456789012345a#", ""}, {"*150*0*5#", "1"}, {"*123#", "1234567890123456*+38349222222#"}} {
		f.Add(s[0], s[1])
	}
	m := DemoMenu()
	const caller charging.SubscriberID = 38344111111
	f.Fuzz(func(t *testing.T, serviceCode, text string) {
		s := m.Parse(serviceCode, text, caller)
		if s.Intent.Kind == 0 {
			if !fits(s.Body()) {
				t.Fatalf("screen too long: %q", s.Body())
			}
			return
		}
		in := s.Intent
		if in.Caller != caller {
			t.Fatal("intent for another caller")
		}
		switch in.Kind {
		case IntentRedeem:
			if _, err := charging.ParseVoucherCode(in.Code.String()); err != nil {
				t.Fatalf("malformed code %q", in.Code.String())
			}
			if !strings.Contains(serviceCode+"*"+text, in.Code.String()) {
				t.Fatalf("code %q not in the input", in.Code.String())
			}
			if _, err := charging.ParseMSISDN(in.Beneficiary.String()); err != nil {
				t.Fatalf("bad beneficiary %d", in.Beneficiary)
			}
		case IntentTransfer:
			if m.Transfer.Validate(caller, in.To, in.Amount) != charging.TransferOK {
				t.Fatalf("transfer outside the rules: %+v", in)
			}
		case IntentPay:
			if _, ok := m.Catalogue.Lookup(in.Package); !ok {
				t.Fatal("unknown package")
			}
			if id, err := charging.ParseFixedID(in.Account); err != nil || id != in.Account {
				t.Fatalf("bad account %q", in.Account)
			}
		}
		// Split the input anywhere: the halves parse without panic.
		for i := 0; i <= len(text); i += 3 {
			_ = m.Parse(serviceCode, text[:i], caller)
		}
	})
}
