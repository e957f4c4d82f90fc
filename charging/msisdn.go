package charging

import (
	"errors"
	"strconv"
)

// SubscriberID identifies a mobile account by its MSISDN in E.164 digits
// (38349123456). E.164 numbers have at most 15 digits, so they fit a uint64,
// sort numerically and encode as 8 big-endian bytes in storage keys.
type SubscriberID uint64

// CountryCode is Kosovo's E.164 country code, assumed for national forms.
const CountryCode = "383"

// msisdnDigitsMax is E.164's limit; msisdnDigitsMin admits the shortest
// Kosovo subscriber number with its country code (383 + 8 digits).
// nationalDigits is the length of every Kosovo national significant number
// (mobile 4x xxx xxx and fixed 38 xxx xxx alike): a national form of any
// other length is a typo, and guessing would credit a wrong customer (seed
// 003 complains of exactly that).
const (
	msisdnDigitsMax = 15
	msisdnDigitsMin = 11
	nationalDigits  = 8
)

// ErrMSISDN is returned for a number that is no E.164 MSISDN in any of the
// accepted local forms.
var ErrMSISDN = errors.New("msisdn must be a Kosovo number such as 049123456, +38349123456 or 0038349123456")

// ParseMSISDN normalises a number in any local form to E.164 digits:
// 049123456, 49123456, +38349123456, 38349123456, 00383 49 123 456. Spaces,
// dashes and dots between digits are dropped; anything else is refused.
func ParseMSISDN(s string) (SubscriberID, error) {
	var digits [24]byte
	n := 0
	plus := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n == len(digits) {
				return 0, ErrMSISDN
			}
			digits[n] = c
			n++
		case c == '+' && n == 0 && !plus:
			plus = true
		case (c == ' ' || c == '-' || c == '.') && n > 0:
		default:
			return 0, ErrMSISDN
		}
	}
	d := string(digits[:n])
	// The form is told by its length, not only its prefix: "38312345" is
	// the fixed number 038 312 345 without its zero, not a short
	// international number.
	switch {
	case plus:
		// Already international.
	case len(d) > 2 && d[:2] == "00":
		d = d[2:]
	case len(d) == len(CountryCode)+nationalDigits && d[:3] == CountryCode:
		// International without the plus.
	case len(d) == 1+nationalDigits && d[0] == '0':
		d = CountryCode + d[1:]
	case len(d) == nationalDigits:
		d = CountryCode + d
	default:
		return 0, ErrMSISDN
	}
	if len(d) < msisdnDigitsMin || len(d) > msisdnDigitsMax || d[0] == '0' {
		return 0, ErrMSISDN
	}
	// Only the operator's own (Kosovo) numbers are accounts here. A foreign
	// number would also be printed as bare E.164 digits, and those digits
	// typed back would read as a national number: another subscriber.
	// A national significant number never starts with 0 (that is the
	// trunk prefix): 01000000 is no number.
	if d[:3] != CountryCode || len(d) != len(CountryCode)+nationalDigits || d[3] == '0' {
		return 0, ErrMSISDN
	}
	v, err := strconv.ParseUint(d, 10, 64)
	if err != nil {
		return 0, ErrMSISDN
	}
	return SubscriberID(v), nil
}

// String returns the E.164 digits.
func (id SubscriberID) String() string { return strconv.FormatUint(uint64(id), 10) }

// AppendText appends the E.164 digits to b.
func (id SubscriberID) AppendText(b []byte) []byte { return strconv.AppendUint(b, uint64(id), 10) }
