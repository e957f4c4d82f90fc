package charging_test

import (
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/ocs-engine/ocs/charging"
)

func TestTariffBilledAndCost(t *testing.T) {
	tariffs := charging.DemoTariffs()
	voice, sms, data := tariffs[charging.RatingGroupVoice], tariffs[charging.RatingGroupSMS], tariffs[charging.RatingGroupData]
	in := tariffs[charging.RatingGroupVoiceIncoming]
	cases := []struct {
		name   string
		t      *charging.Tariff
		used   uint64
		billed uint64
		cost   charging.Amount
	}{
		{"voice nothing", &voice, 0, 0, 0},
		{"voice 1 s bills the first minute", &voice, 1, 60, 600},
		{"voice 59 s", &voice, 59, 60, 600},
		{"voice 60 s", &voice, 60, 60, 600},
		{"voice 61 s then per second", &voice, 61, 61, 610},
		{"voice 90 s", &voice, 90, 90, 900},
		{"voice one hour", &voice, 3600, 3600, 36_000},
		{"sms 1", &sms, 1, 1, 500},
		{"sms 3", &sms, 3, 3, 1_500},
		{"data 1 byte bills 1000", &data, 1, 1000, 1}, // 0.00001 € rounds up to 0.0001
		{"data 1000", &data, 1000, 1000, 1},
		{"data 1001 bills 2000", &data, 1001, 2000, 1},
		{"data 100 kB", &data, 100_000, 100_000, 1},
		{"data 100 kB + 1", &data, 100_001, 101_000, 2},
		{"data 1 GB is 1 €", &data, 1_000_000_000, 1_000_000_000, charging.Euros(1)},
		{"incoming is free", &in, 3600, 3600, 0},
	}
	for _, c := range cases {
		if got := c.t.Billed(c.used); got != c.billed {
			t.Errorf("%s: Billed(%d) = %d; want %d", c.name, c.used, got, c.billed)
		}
		if got := c.t.Cost(c.used); got != c.cost {
			t.Errorf("%s: Cost(%d) = %d; want %d", c.name, c.used, got, c.cost)
		}
	}
}

// refCost is Cost written the obvious way with big integers.
func refCost(t *charging.Tariff, u uint64) *big.Int {
	if t.Incoming || t.Price <= 0 || u == 0 {
		return new(big.Int)
	}
	inc := t.Increment
	if inc == 0 {
		inc = 1
	}
	billed := t.FirstIncrement
	if u > billed {
		billed += (u - billed + inc - 1) / inc * inc
	}
	num := new(big.Int).Mul(new(big.Int).SetUint64(billed), big.NewInt(int64(t.Price)))
	q, r := new(big.Int).QuoRem(num, new(big.Int).SetUint64(t.PriceUnits), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	// Cost is exact up to 2^62, where it saturates; validated tariffs
	// never get there (TestTariffValidateKeepsCostsExact).
	if limit := big.NewInt(1 << 62); q.Cmp(limit) > 0 {
		return limit
	}
	return q
}

// nextGrid returns the smallest usage above u that costs more to bill than
// u does not: the next billing boundary.
func nextGrid(t *charging.Tariff, u uint64) uint64 {
	inc := t.Increment
	if inc == 0 {
		inc = 1
	}
	if u < t.FirstIncrement {
		return t.FirstIncrement + inc
	}
	return t.Billed(u) + inc
}

// randomTariff draws prices and grids around the real ones, including odd
// ones that make rounding matter.
func randomTariff(r *rand.Rand) charging.Tariff {
	t := charging.Tariff{Unit: charging.UnitSeconds}
	t.Price = charging.Amount(1 + r.Int64N(20_000))
	t.PriceUnits = []uint64{1, 7, 60, 1000, 1_000_000, 1_000_000_000}[r.IntN(6)]
	t.FirstIncrement = []uint64{0, 1, 30, 60, 1000}[r.IntN(5)]
	t.Increment = []uint64{0, 1, 6, 10, 1000}[r.IntN(5)]
	return t
}

// TestTariffProperties checks Cost against the big-integer reference and
// Affordable's two promises: what it grants is paid for by money, and one
// more step on the billing grid would not be.
func TestTariffProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tariffs := charging.DemoTariffs()
	fixed := []charging.Tariff{tariffs[charging.RatingGroupVoice], tariffs[charging.RatingGroupSMS], tariffs[charging.RatingGroupData]}
	for i := 0; i < 20_000; i++ {
		var tf charging.Tariff
		if i%2 == 0 {
			tf = fixed[i/2%len(fixed)]
		} else {
			tf = randomTariff(r)
		}
		used := []uint64{0, r.Uint64N(100), r.Uint64N(1 << 20), r.Uint64N(1 << 32)}[r.IntN(4)]
		money := []charging.Amount{0, charging.Amount(r.Int64N(10)), charging.Amount(r.Int64N(100_000)),
			charging.Amount(r.Int64N(int64(charging.Euros(1000))))}[r.IntN(4)]

		for _, u := range []uint64{used, used + 1, used + r.Uint64N(1<<20)} {
			if got, want := tf.Cost(u), refCost(&tf, u); big.NewInt(int64(got)).Cmp(want) != 0 {
				t.Fatalf("tariff %+v: Cost(%d) = %d; want %s", tf, u, got, want)
			}
		}

		n := tf.Affordable(used, money)
		if n > charging.UnitsMax {
			t.Fatalf("tariff %+v: Affordable(%d, %d) = %d > UnitsMax", tf, used, money, n)
		}
		spent := tf.Cost(used+n) - tf.Cost(used)
		if spent > money {
			t.Fatalf("tariff %+v: Affordable(%d, %d) = %d costs %d", tf, used, money, n, spent)
		}
		if n == charging.UnitsMax {
			continue
		}
		next := nextGrid(&tf, used+n)
		if tf.Cost(next) > charging.BalanceMax {
			continue // beyond any balance Cost saturates: nothing to compare
		}
		if more := tf.Cost(next) - tf.Cost(used); more <= money {
			t.Fatalf("tariff %+v: Affordable(%d, %d) = %d, but %d units cost only %d",
				tf, used, money, n, next-used, more)
		}
	}
}

func TestTariffAffordableExamples(t *testing.T) {
	tariffs := charging.DemoTariffs()
	voice, data := tariffs[charging.RatingGroupVoice], tariffs[charging.RatingGroupData]
	in := tariffs[charging.RatingGroupVoiceIncoming]
	cases := []struct {
		name  string
		t     *charging.Tariff
		used  uint64
		money charging.Amount
		want  uint64
	}{
		{"voice: less than a first minute buys nothing", &voice, 0, 599, 0},
		{"voice: exactly a first minute", &voice, 0, 600, 60},
		{"voice: 0.0610 after nothing", &voice, 0, 610, 61},
		{"voice: 0.0619 still 61 s", &voice, 0, 619, 61},
		{"voice: after 60 s each second is 0.001", &voice, 60, 10, 1},
		{"voice: no money, no seconds", &voice, 60, 0, 0},
		{"data: 0.0001 after nothing buys 100 kB", &data, 0, 1, 100_000},
		{"data: what was rounded up is already paid", &data, 1500, 0, 98_500},
		{"incoming: unlimited", &in, 0, 0, charging.UnitsMax},
	}
	for _, c := range cases {
		if got := c.t.Affordable(c.used, c.money); got != c.want {
			t.Errorf("%s: Affordable(%d, %d) = %d; want %d", c.name, c.used, c.money, got, c.want)
		}
	}
}

// TestTariffValidateKeepsCostsExact: a tariff Validate accepts is rated
// exactly for any usage a session may report; one it refuses could not be.
func TestTariffValidateKeepsCostsExact(t *testing.T) {
	for rg, tf := range charging.DemoTariffs() {
		if err := tf.Validate(); err != nil {
			t.Fatalf("demo tariff %d refused: %v", rg, err)
		}
		u := 2*charging.UnitsMax + tf.FirstIncrement + tf.Increment
		if got, want := tf.Cost(u), refCost(&tf, u); big.NewInt(int64(got)).Cmp(want) != 0 {
			t.Fatalf("demo tariff %d: Cost(%d) = %d, want %s", rg, u, got, want)
		}
	}
	absurd := charging.Tariff{Unit: charging.UnitSeconds, Price: charging.BalanceMax, PriceUnits: 1, Increment: 1}
	if err := absurd.Validate(); err == nil {
		t.Fatal("a tariff of a million euros per second was accepted: its costs saturate")
	}
	for _, bad := range []charging.Tariff{
		{Unit: charging.UnitSeconds, Price: 1, PriceUnits: 0, Increment: 1},
		{Unit: charging.UnitSeconds, Price: 1, PriceUnits: 1, Increment: 0},
		{Unit: charging.UnitSeconds, Price: -1, PriceUnits: 1, Increment: 1},
		{Unit: 0, Price: 1, PriceUnits: 1, Increment: 1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
