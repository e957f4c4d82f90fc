package charging_test

import (
	"strings"
	"testing"

	"github.com/ocs-engine/ocs/charging"
)

func TestParseMSISDN(t *testing.T) {
	accepted := []struct {
		in   string
		want charging.SubscriberID
	}{
		// Every local form DOMAIN.md lists, all the same subscriber.
		{"049123456", 38349123456},
		{"49123456", 38349123456}, // TEB Bank's form, no leading zero
		{"+38349123456", 38349123456},
		{"38349123456", 38349123456},
		{"00383 49 123 456", 38349123456},
		{"0038349123456", 38349123456},
		{"+383 49 123 456", 38349123456},
		{"049-123-456", 38349123456},
		{"049.123.456", 38349123456},
		// Other mobile ranges and a Pristina fixed number.
		{"044000000", 38344000000},
		{"045999999", 38345999999},
		{"038123456", 38338123456},
		// A fixed number without its zero starts with 383: it is national
		// by its length, not international by its prefix.
		{"38312345", 38338312345},
	}
	for _, c := range accepted {
		got, err := charging.ParseMSISDN(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseMSISDN(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	rejected := []string{
		"",
		"+",
		"0",
		"4912345",        // 7 national digits: one short
		"0491234567",     // 10 digits with the zero: one too many
		"491234567",      // 9 digits without a zero
		"3834912345",     // 383 + 7
		"383491234567",   // 383 + 9
		"+3834912345",    // 383 + 7 with plus
		"+383491234567",  // 383 + 9 with plus
		"00383491234567", // 383 + 9 with 00
		"+0038349123456", // plus and 00
		"+1234567890",    // 10 digits: below E.164 length we accept
		// Foreign numbers are no accounts of this operator: printed as bare
		// digits they would read back as another, national, number.
		"+4915112345678",
		"004915112345678",
		"+1234567890123456", // 16 digits: above E.164
		" 049123456",        // separator before the first digit
		"-049123456",
		"++38349123456",
		"0491234a6",
		"049 123 456\x00",
		"04912345６", // a full-width digit
		"049/123/456",
		"(049) 123 456",
		"38349123456+",
		"01000000",     // a national number never starts with the trunk 0
		"001000000",    // nor does 00 + 1000000 make an E.164 number
		"+38304123456", // 383 then the trunk zero
		"0049123456",   // 00 + 49123456: 8 digits, too short for E.164
		strings.Repeat("4", 30),
	}
	for _, in := range rejected {
		if got, err := charging.ParseMSISDN(in); err != charging.ErrMSISDN {
			t.Errorf("ParseMSISDN(%q) = %d, %v; want ErrMSISDN", in, got, err)
		}
	}
}

func TestSubscriberIDString(t *testing.T) {
	id := charging.SubscriberID(38349123456)
	if id.String() != "38349123456" || string(id.AppendText([]byte("msisdn-"))) != "msisdn-38349123456" {
		t.Fatalf("String %q AppendText %q", id.String(), id.AppendText(nil))
	}
}

// FuzzParseMSISDN: never panics; an accepted number is E.164 (11 to 15
// digits, no leading zero), a Kosovo number has exactly 383 + 8 digits,
// and its canonical forms parse back to the same ID.
func FuzzParseMSISDN(f *testing.F) {
	for _, s := range []string{"049123456", "49123456", "+38349123456", "38349123456",
		"00383 49 123 456", "38312345", "+4915112345678", "0491234567", "+", "00", "--1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := charging.ParseMSISDN(s)
		if err != nil {
			if err != charging.ErrMSISDN || id != 0 {
				t.Fatalf("ParseMSISDN(%q) = %d, %v", s, id, err)
			}
			return
		}
		d := id.String()
		if len(d) < 11 || len(d) > 15 {
			t.Fatalf("ParseMSISDN(%q) = %s: not 11..15 digits", s, d)
		}
		if strings.HasPrefix(d, "383") && len(d) != 11 {
			t.Fatalf("ParseMSISDN(%q) = %s: Kosovo numbers have 8 national digits", s, d)
		}
		for _, form := range []string{"+" + d, "00" + d} {
			if back, err := charging.ParseMSISDN(form); err != nil || back != id {
				t.Fatalf("ParseMSISDN(%q) = %d, %v; want %d (from %q)", form, back, err, id, s)
			}
		}
		// Bare digits and the national forms are Kosovo's only: a bare
		// foreign number cannot be told from a typo.
		if strings.HasPrefix(d, "383") {
			for _, form := range []string{d, "0" + d[3:], d[3:]} {
				if back, err := charging.ParseMSISDN(form); err != nil || back != id {
					t.Fatalf("ParseMSISDN(%q) = %d, %v; want %d (from %q)", form, back, err, id, s)
				}
			}
		}
		// Only digits, one leading plus and separators may have been in s.
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= '0' && c <= '9' || c == '+' || c == ' ' || c == '-' || c == '.') {
				t.Fatalf("ParseMSISDN(%q) accepted byte %q", s, c)
			}
		}
	})
}
