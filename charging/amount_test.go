package charging_test

import (
	"math"
	"strings"
	"testing"

	"github.com/ocs-engine/ocs/charging"
)

func TestParseAmount(t *testing.T) {
	accepted := []struct {
		in   string
		want charging.Amount
		str  string // canonical String()
	}{
		{"12.50", 125_000, "12.50"},
		{"12.5", 125_000, "12.50"},
		{"7", 70_000, "7.00"},
		{"0", 0, "0.00"},
		{"0.00", 0, "0.00"},
		{"-0", 0, "0.00"},
		{"0.0001", 1, "0.0001"},
		{"0.0125", 125, "0.0125"},
		{"-0.0100", -100, "-0.01"},
		{"0.990", 9_900, "0.99"},
		{"50.01", 500_100, "50.01"},
		{".5", 5_000, "0.50"},
		{"007.10", 71_000, "7.10"},
		{"1000000", charging.BalanceMax, "1000000.00"},
		{"-1000000.0000", -charging.BalanceMax, "-1000000.00"},
	}
	for _, c := range accepted {
		got, err := charging.ParseAmount(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d", c.in, got, err, c.want)
			continue
		}
		if s := got.String(); s != c.str {
			t.Errorf("Amount(%d).String() = %q; want %q", got, s, c.str)
		}
	}
	syntax := []string{"", "-", ".", "5.", "-.", "1.23456", "1e3", "1E3", "0x10", "+5", "--5",
		"1,50", "1 000", " 5", "5 ", "1.2.3", "NaN", "Inf", "€5", "5€", "١", strings.Repeat("0", 25)}
	for _, in := range syntax {
		if got, err := charging.ParseAmount(in); err != charging.ErrAmountSyntax {
			t.Errorf("ParseAmount(%q) = %d, %v; want ErrAmountSyntax", in, got, err)
		}
	}
	rng := []string{"1000000.0001", "-1000000.0001", "99999999999", "10000000", "9223372036854775807"}
	for _, in := range rng {
		if got, err := charging.ParseAmount(in); err != charging.ErrAmountRange {
			t.Errorf("ParseAmount(%q) = %d, %v; want ErrAmountRange", in, got, err)
		}
	}
}

func TestAmountStringRoundTrip(t *testing.T) {
	// Every Amount within the balance range prints to a string that parses
	// back to it. Walk a grid dense near zero and near the limits.
	check := func(a charging.Amount) {
		t.Helper()
		back, err := charging.ParseAmount(a.String())
		if err != nil || back != a {
			t.Fatalf("ParseAmount(%q) = %d, %v; want %d", a.String(), back, err, a)
		}
	}
	for a := charging.Amount(-30_000); a <= 30_000; a++ {
		check(a)
	}
	for a := charging.BalanceMax - 20_000; a <= charging.BalanceMax; a++ {
		check(a)
		check(-a)
	}
	for a := charging.Amount(1); a < charging.BalanceMax; a = a*3 + 7 {
		check(a)
		check(-a)
	}
}

func TestAmountStringExtremes(t *testing.T) {
	// Not reachable from ParseAmount, but String must not print garbage
	// for any int64 (the negation of MinInt64 overflows).
	cases := map[charging.Amount]string{
		math.MinInt64: "-922337203685477.5808",
		math.MaxInt64: "922337203685477.5807",
		-1:            "-0.0001",
		-10_000:       "-1.00",
	}
	for a, want := range cases {
		if got := a.String(); got != want {
			t.Errorf("Amount(%d).String() = %q; want %q", int64(a), got, want)
		}
	}
	if charging.Euros(3) != 30_000 {
		t.Fatalf("Euros(3) = %d", charging.Euros(3))
	}
}

// FuzzParseAmount: never panics; an accepted amount is within ±BalanceMax
// and round-trips through String exactly; nothing but digits, one dot and a
// leading minus is ever accepted.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"12.50", "0.0001", "-0.01", "1e3", "1000000", "1000000.0001", ".5", "5.", "0x1p-2", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := charging.ParseAmount(s)
		if err != nil {
			if a != 0 || (err != charging.ErrAmountSyntax && err != charging.ErrAmountRange) {
				t.Fatalf("ParseAmount(%q) = %d, %v", s, a, err)
			}
			return
		}
		if a > charging.BalanceMax || a < -charging.BalanceMax {
			t.Fatalf("ParseAmount(%q) = %d: out of range", s, a)
		}
		dots := 0
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c >= '0' && c <= '9':
			case c == '.':
				dots++
			case c == '-' && i == 0:
			default:
				t.Fatalf("ParseAmount(%q) accepted byte %q", s, c)
			}
		}
		if dots > 1 {
			t.Fatalf("ParseAmount(%q) accepted two dots", s)
		}
		str := a.String()
		back, err := charging.ParseAmount(str)
		if err != nil || back != a {
			t.Fatalf("ParseAmount(%q) = %d; String %q parses to %d, %v", s, a, str, back, err)
		}
		if back.String() != str {
			t.Fatalf("String not canonical: %q then %q", str, back.String())
		}
	})
}
