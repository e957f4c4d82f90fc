package charging

import (
	"errors"
	"math/bits"
)

// RatingGroup selects a tariff, as in Diameter Gy and 5G Nchf.
type RatingGroup uint32

// UnitKind is what a tariff counts.
type UnitKind uint8

const (
	UnitSeconds UnitKind = 1
	UnitBytes   UnitKind = 2
	UnitEvents  UnitKind = 3
)

// Tariff prices one rating group: Price per PriceUnits units, billed in
// steps. Usage u is billed as max(u, FirstIncrement) rounded up to the next
// multiple of Increment above FirstIncrement: "per second after a first 60 s"
// is FirstIncrement 60, Increment 1.
type Tariff struct {
	Name           string
	Unit           UnitKind
	Price          Amount
	PriceUnits     uint64
	FirstIncrement uint64
	Increment      uint64
	// Incoming marks a zero-rated incoming service: free, and the only
	// kind a subscriber in grace may use.
	Incoming bool
	// DefaultGrant is granted when a network element asks for no amount.
	DefaultGrant uint64
}

// Billed returns the units billed for using u.
func (t *Tariff) Billed(u uint64) uint64 {
	if u == 0 {
		return 0
	}
	inc := t.Increment
	if inc == 0 {
		inc = 1
	}
	if u <= t.FirstIncrement {
		return t.FirstIncrement
	}
	over := u - t.FirstIncrement
	return t.FirstIncrement + (over+inc-1)/inc*inc
}

// costMax is where Cost saturates. Validated tariffs (Tariff.Validate) never
// reach it for any u <= UnitsMax plus a session's increments, so every cost
// is exact and the difference of two costs is the price of the units
// between them. (Saturating at BalanceMax instead, as a first version did,
// made the difference of two saturated costs zero: quota and usage beyond a
// million euros came free.)
const costMax Amount = 1 << 62

// Cost returns the price of using u units in total, rounded up to the whole
// Amount unit; exact for validated tariffs.
func (t *Tariff) Cost(u uint64) Amount {
	if t.Incoming || t.Price <= 0 || u == 0 {
		return 0
	}
	hi, lo := bits.Mul64(t.Billed(u), uint64(t.Price))
	if hi >= t.PriceUnits {
		return costMax
	}
	q, r := bits.Div64(hi, lo, t.PriceUnits)
	if r != 0 {
		q++
	}
	if q >= uint64(costMax) {
		return costMax
	}
	return Amount(q)
}

// Validate reports a tariff that cannot be rated exactly: no units, no
// increment, a negative price, or a price so high that some permitted usage
// would cost more than costMax.
func (t *Tariff) Validate() error {
	switch {
	case t.PriceUnits == 0:
		return errors.New("tariff: priceUnits must be positive")
	case t.Increment == 0:
		return errors.New("tariff: increment must be positive")
	case t.Price < 0:
		return errors.New("tariff: price must not be negative")
	case t.Unit < UnitSeconds || t.Unit > UnitEvents:
		return errors.New("tariff: unit must be seconds, bytes or events")
	}
	// Two UnitsMax: a session may report up to UnitsMax per request and a
	// reservation prices used + requested.
	if t.Cost(2*UnitsMax+t.FirstIncrement+t.Increment) >= costMax {
		return errors.New("tariff: price too high to rate UnitsMax units exactly")
	}
	return nil
}

// Affordable returns how many units beyond used can be served with money
// more, on the billing grid, so that Cost(used+n)-Cost(used) <= money.
func (t *Tariff) Affordable(used uint64, money Amount) uint64 {
	if t.Incoming || t.Price <= 0 {
		return UnitsMax
	}
	budget := t.Cost(used) + money
	if budget < 0 {
		return 0
	}
	// Largest billed x with ceil(x·Price/PriceUnits) <= budget is
	// floor(budget·PriceUnits/Price).
	hi, lo := bits.Mul64(uint64(budget), t.PriceUnits)
	if hi >= uint64(t.Price) {
		return UnitsMax
	}
	x, _ := bits.Div64(hi, lo, uint64(t.Price))
	x = t.gridFloor(x)
	if x <= used {
		return 0
	}
	if x-used > UnitsMax {
		return UnitsMax
	}
	return x - used
}

// gridFloor rounds x down to a billing boundary (0, FirstIncrement,
// FirstIncrement+k·Increment).
func (t *Tariff) gridFloor(x uint64) uint64 {
	if x < t.FirstIncrement {
		return 0
	}
	inc := t.Increment
	if inc == 0 {
		inc = 1
	}
	return t.FirstIncrement + (x-t.FirstIncrement)/inc*inc
}
