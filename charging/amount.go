package charging

import (
	"errors"
	"strconv"
)

// Amount is money in 1/10,000 EUR. Never a float: every sum is exact.
type Amount int64

const (
	// AmountPerEuro is the number of Amount units in one euro.
	AmountPerEuro Amount = 10_000
	// AmountPerCent is the number of Amount units in one euro cent.
	AmountPerCent Amount = 100
	// BalanceMax bounds a balance at one million euros: far above any real
	// prepaid balance, and small enough that adding two maxima never
	// overflows int64.
	BalanceMax Amount = 1_000_000 * AmountPerEuro
)

// Euros returns n whole euros as an Amount.
func Euros(n int64) Amount { return Amount(n) * AmountPerEuro }

// ErrAmountSyntax is returned for a decimal string that is not an amount.
var ErrAmountSyntax = errors.New("amount must be a decimal number of euros with at most 4 decimals, e.g. 12.50")

// ErrAmountRange is returned for an amount beyond ±BalanceMax.
var ErrAmountRange = errors.New("amount is out of range")

// ParseAmount reads a decimal euro amount ("12.5", "12.50", "-0.0100", "7")
// exactly. It accepts at most four decimals, an optional leading minus and
// nothing else: no exponent, no spaces, no thousands separators.
func ParseAmount(s string) (Amount, error) {
	if len(s) == 0 || len(s) > 24 {
		return 0, ErrAmountSyntax
	}
	negative := false
	if s[0] == '-' {
		negative = true
		s = s[1:]
	}
	var whole, frac int64
	fracDigits := 0
	seenDot, seenDigit := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && !seenDot:
			seenDot = true
		case c >= '0' && c <= '9':
			seenDigit = true
			if seenDot {
				if fracDigits == 4 {
					return 0, ErrAmountSyntax
				}
				frac = frac*10 + int64(c-'0')
				fracDigits++
			} else {
				if whole > int64(BalanceMax/AmountPerEuro) {
					return 0, ErrAmountRange
				}
				whole = whole*10 + int64(c-'0')
			}
		default:
			return 0, ErrAmountSyntax
		}
	}
	if !seenDigit || (seenDot && fracDigits == 0) {
		return 0, ErrAmountSyntax
	}
	for ; fracDigits < 4; fracDigits++ {
		frac *= 10
	}
	a := Amount(whole)*AmountPerEuro + Amount(frac)
	if a > BalanceMax {
		return 0, ErrAmountRange
	}
	if negative {
		a = -a
	}
	return a, nil
}

// String formats a as euros with at least two decimals: "12.50", "0.0125".
func (a Amount) String() string {
	return string(a.AppendText(make([]byte, 0, 24)))
}

// AppendText appends a's decimal euro form to b without allocating.
func (a Amount) AppendText(b []byte) []byte {
	// The magnitude is taken as uint64 so that even the most negative
	// Amount (whose negation overflows int64) prints correctly.
	m := uint64(a)
	if a < 0 {
		b = append(b, '-')
		m = -m
	}
	b = strconv.AppendUint(b, m/uint64(AmountPerEuro), 10)
	frac := m % uint64(AmountPerEuro)
	digits := [4]byte{byte('0' + frac/1000), byte('0' + frac/100%10), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := 4
	for n > 2 && digits[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, digits[:n]...)
}
