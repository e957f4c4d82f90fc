package charging

import (
	"errors"
	"time"
)

// Scratch-card vouchers (seed 002): 5, 10 and 20 EUR cards with a 16-digit
// secret code, made in batches, used once, ever.
//
// This file is the pure half: the code's syntax, the record's states and the
// state machine of a redemption, and the brute-force guard. Hashing the code
// (it is never stored in clear), durability and the per-voucher lock that
// makes "two subscribers redeeming one code at the same instant get exactly
// one credit between them" true live in storage (storage/voucher.go documents
// the whole redemption protocol).

// VoucherCodeDigits is the length of a scratch card's secret code.
const VoucherCodeDigits = 16

// VoucherCode is a secret code as 16 ASCII digits. A fixed array, so that a
// parsed code is valid by construction and costs no allocation.
type VoucherCode [VoucherCodeDigits]byte

// ErrVoucherCode is returned for a code that is not exactly 16 digits.
var ErrVoucherCode = errors.New("voucher code must be exactly 16 digits")

// ParseVoucherCode accepts exactly 16 ASCII digits and nothing else: no
// spaces, no separators. A card's code is typed on a keypad; anything else is
// a typo and must not be looked up (nor counted as a guess).
func ParseVoucherCode(s string) (VoucherCode, error) {
	var c VoucherCode
	if len(s) != VoucherCodeDigits {
		return c, ErrVoucherCode
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return c, ErrVoucherCode
		}
		c[i] = s[i]
	}
	return c, nil
}

// String returns the 16 digits. Only the generator's printer file and tests
// should ever print a code.
func (c VoucherCode) String() string { return string(c[:]) }

// VoucherState is a voucher record's stored state. Stored: never renumber.
type VoucherState uint8

const (
	VoucherActive     VoucherState = 1 // sold or on sale: may be redeemed
	VoucherUsed       VoucherState = 2 // redeemed, once, for ever
	VoucherBlocked    VoucherState = 3 // blocked by operations (stolen stock, misprint)
	VoucherExpired    VoucherState = 4 // past its expiry; also derived from Expiry
	voucherStateCount              = 5
)

var voucherStateNames = [voucherStateCount]string{"invalid", "active", "used", "blocked", "expired"}

// String returns the state's stable name.
func (s VoucherState) String() string {
	if int(s) >= len(voucherStateNames) {
		return "invalid"
	}
	return voucherStateNames[s]
}

// Valid reports whether s is a defined state.
func (s VoucherState) Valid() bool { return s != 0 && s < voucherStateCount }

// VoucherValues are the face values of the operator's cards (seed 002).
var VoucherValues = [...]Amount{Euros(5), Euros(10), Euros(20)}

// ValidVoucherValue reports whether v is the face value of a card.
func ValidVoucherValue(v Amount) bool {
	for _, w := range VoucherValues {
		if v == w {
			return true
		}
	}
	return false
}

// Voucher is the stored record of one card, keyed by the keyed hash of its
// code. It holds no trace of the code itself.
type Voucher struct {
	Batch  uint32
	Serial uint64 // printed on the card in clear: how operations name it
	Value  Amount
	State  VoucherState
	Expiry int64 // Unix seconds: redeemable strictly before
	// Set by a redemption: who received the credit, when, and the request
	// key of the top-up (derived from the code's hash, so it is also the
	// transaction reference the subscriber is told).
	UsedBy SubscriberID
	UsedAt int64 // Unix seconds
	// CreditSeq is the journal Seq of the top-up on UsedBy's account. A
	// card used in its credit's own batch (CardUse) has it from the start;
	// 0 means a credit still pending under the two-step protocol of older
	// builds (storage's pending markers).
	CreditSeq uint64
}

// CardUse is a card as its redemption leaves it, carried by the top-up that
// credits it (Command.Card, then Change.Card) so that the card becomes used
// in the same durable batch as the credit: both or neither, whatever
// crashes, and nothing to finish afterwards.
type CardUse struct {
	Hash [32]byte // the card's key in the voucher store
	// Card has State VoucherUsed, UsedBy and UsedAt set; the engine sets
	// CreditSeq to the credit's journal Seq.
	Card Voucher
}

// Fits reports whether c may ride on the change whose journal entry is e on
// account id: a used card, for that beneficiary, of exactly the credited
// value, and the entry a voucher top-up. Storage refuses any other pairing,
// which would record a card as paying for a credit it did not make.
func (c *CardUse) Fits(id SubscriberID, e *Entry) bool {
	return c.Card.State == VoucherUsed && c.Card.UsedBy == id && e.Seq != 0 &&
		e.Kind == EntryTopUp && e.Channel == ChannelVoucher && e.Amount == c.Card.Value
}

// VoucherResult is the outcome of a redemption attempt. Stored nowhere;
// kept apart from Result because charging/result.go belongs to the account
// state machine (the lead may fold these into Result: see the report).
type VoucherResult uint8

const (
	VoucherOK              VoucherResult = 1
	VoucherUnknown         VoucherResult = 2 // no card has this code: a wrong code
	VoucherAlreadyUsed     VoucherResult = 3
	VoucherIsBlocked       VoucherResult = 4
	VoucherIsExpired       VoucherResult = 5
	VoucherBarred          VoucherResult = 6 // the caller is barred after too many wrong codes
	VoucherWrongSubscriber VoucherResult = 7 // the beneficiary has no account: nothing redeemed
	voucherResultCount                   = 8
)

var voucherResultNames = [voucherResultCount]string{"invalid", "ok", "voucher_unknown", "voucher_used",
	"voucher_blocked", "voucher_expired", "redemption_barred", "unknown_subscriber"}

// String returns the stable snake_case code, for logs and metric labels.
func (r VoucherResult) String() string {
	if int(r) >= len(voucherResultNames) {
		return "invalid"
	}
	return voucherResultNames[r]
}

// RedeemVoucher moves v from active to used by beneficiary at now. v == nil
// means no record has the code. Checks, in order (the order is the
// contract, and tested): unknown, used, blocked (the card or, with
// batchBlocked, its whole batch), expired (stored, or Expiry reached). A
// refusal changes nothing.
//
// Used is checked before blocked so that a subscriber who already redeemed a
// card that operations later blocked is told the truth: it was used.
func RedeemVoucher(v *Voucher, batchBlocked bool, beneficiary SubscriberID, now time.Time) VoucherResult {
	switch {
	case v == nil:
		return VoucherUnknown
	case v.State == VoucherUsed:
		return VoucherAlreadyUsed
	case v.State == VoucherBlocked || batchBlocked:
		return VoucherIsBlocked
	case v.State == VoucherExpired || now.Unix() >= v.Expiry:
		return VoucherIsExpired
	}
	v.State = VoucherUsed
	v.UsedBy = beneficiary
	v.UsedAt = now.Unix()
	v.CreditSeq = 0
	return VoucherOK
}

// GuardPolicy configures the brute-force guard on redemption: after
// FailuresMax wrong codes within Window, the caller is barred for Bar.
type GuardPolicy struct {
	FailuresMax uint32
	Window      time.Duration
	Bar         time.Duration
}

// DefaultGuardPolicy is issue 3's rule: 5 wrong codes within 24 h bar the
// caller from redemption for 24 h.
func DefaultGuardPolicy() GuardPolicy {
	return GuardPolicy{FailuresMax: 5, Window: 24 * time.Hour, Bar: 24 * time.Hour}
}

// RedeemGuard counts one caller's wrong codes. The window is fixed and opens
// at the first failure after the previous window closed: simple and 24
// bytes, at the price that a patient guesser can fit 2×(FailuresMax−1)
// failures around a window boundary. A sliding window would need the time of
// each of the last FailuresMax failures; the bound on guesses per day is
// what matters (10^16 codes), and it is kept within a factor of two.
//
// Only a code that matches no card counts: a used, blocked or expired card
// is a real card, not a guess, and a malformed code never reaches lookup.
// A successful redemption does not reset the count: a guesser who owns one
// real card must not buy himself more guesses with it.
type RedeemGuard struct {
	WindowStart int64  // Unix seconds; 0: no window open
	Failures    uint32 // wrong codes since WindowStart
	BarredUntil int64  // Unix seconds; barred strictly before
}

// Barred reports whether the caller is barred at now.
func (g *RedeemGuard) Barred(now time.Time) bool { return now.Unix() < g.BarredUntil }

// Fail counts one wrong code at now and reports whether it barred the
// caller. A failure while barred is not counted (a barred caller's
// attempts are refused before lookup, so this is only a safety net).
func (g *RedeemGuard) Fail(p *GuardPolicy, now time.Time) bool {
	unix := now.Unix()
	if g.Barred(now) {
		return false
	}
	if g.WindowStart == 0 || unix >= g.WindowStart+int64(p.Window/time.Second) {
		g.WindowStart = unix
		g.Failures = 0
	}
	g.Failures++
	if g.Failures < p.FailuresMax {
		return false
	}
	g.BarredUntil = unix + int64(p.Bar/time.Second)
	g.WindowStart = 0
	g.Failures = 0
	return true
}
