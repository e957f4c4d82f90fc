package bench

import (
	"errors"
	"fmt"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// Limits of the generator. Each bounds memory or time of one run.
const (
	// ConcurrencyMax bounds workers and connections: past a few thousand
	// the generator itself, on 2 cores, is what is measured.
	ConcurrencyMax = 4096
	// SubscribersMax bounds the provisioned range: the audit keeps 12 bytes
	// per subscriber (20M: 240 MB).
	SubscribersMax = 20_000_000
	// DurationMax bounds one run (the time series has one point a second).
	DurationMax = 6 * time.Hour
	// topUpIDsMax bounds the acknowledged top-up IDs kept for the history
	// check: 16 bytes each.
	topUpIDsMax = 4_000_000
	// drainMax bounds how long an overloaded open-loop run may keep sending
	// its backlog after the scheduled end; what is left is counted Missed.
	drainMax = 10 * time.Second
)

// FirstMSISDN is the first benchmark subscriber: subscriber i is
// FirstMSISDN+i, a Kosovo mobile range in E.164 digits.
const FirstMSISDN uint64 = 38349000000

// Mix gives the proportions of a mixed profile as integer weights.
type Mix struct {
	SMS     int // event charges
	Session int // session steps: create, update, release
	TopUp   int // electronic top-ups
	Voucher int // voucher redemptions over USSD (0 in DefaultMix)
	Bank    int // bank SMS top-ups (not on the server yet)
}

func (m Mix) total() int { return m.SMS + m.Session + m.TopUp + m.Voucher + m.Bank }

// String formats m as "sms=70,session=20,topup=10".
func (m Mix) String() string {
	return fmt.Sprintf("sms=%d,session=%d,topup=%d,voucher=%d,bank=%d", m.SMS, m.Session, m.TopUp, m.Voucher, m.Bank)
}

// DefaultMix is the peak profile of the issue: 70% SMS, 20% session steps,
// 10% top-ups.
var DefaultMix = Mix{SMS: 70, Session: 20, TopUp: 10}

// Scenario names.
const (
	ScenarioSMS     = "sms"
	ScenarioSession = "session"
	ScenarioTopUp   = "topup"
	ScenarioVoucher = "voucher"
	ScenarioBank    = "bank"
	ScenarioMixed   = "mixed"
	ScenarioRamp    = "ramp"
)

// Scenarios lists every scenario name.
var Scenarios = []string{ScenarioSMS, ScenarioSession, ScenarioTopUp, ScenarioVoucher, ScenarioBank, ScenarioMixed, ScenarioRamp}

// Config is one benchmark run.
type Config struct {
	Target string // base URL, http://127.0.0.1:8080
	OpsKey string
	// NetworkKey and ChannelKey are created with OpsKey when empty.
	NetworkKey string
	ChannelKey string

	Scenario string
	// Mix is used by the mixed scenario (DefaultMix when zero).
	Mix Mix
	// Rate > 0: open loop at Rate requests/s. 0: closed loop.
	Rate float64
	// Concurrency: closed loop, the number of callers; open loop, the
	// bound on requests in flight (and connections).
	Concurrency int
	Duration    time.Duration
	// Subscribers used by the run, FirstMSISDN … FirstMSISDN+Subscribers-1.
	Subscribers int
	// Balance each subscriber is provisioned with.
	Balance charging.Amount
	// TopUp is the amount of each electronic top-up.
	TopUp charging.Amount
	// SessionUpdates is the number of updates between create and release.
	SessionUpdates int
	// VoucherValue is the face value of the cards the voucher operations
	// redeem: 5, 10 or 20 euros.
	VoucherValue charging.Amount
	// VoucherCards is the number of cards generated before the run (0:
	// sized from the rate, duration and mix; closed loop assumes 40,000
	// redemptions/s). A run that uses them all fails its further
	// redemptions, saying so.
	VoucherCards int
	// VoucherBatch is the first batch number of the run's cards (0: the
	// Unix time, skipping numbers that are taken); a run needing more than
	// 100,000 cards uses the following numbers too.
	VoucherBatch uint32
	// Timeout of one request.
	Timeout time.Duration
	// Tariffs price usage for the audit; the server's tariff must match
	// (charging.DemoTariffs by default).
	Tariffs map[charging.RatingGroup]charging.Tariff

	// Ramp: open-loop steps from RampStart by RampStep, each RampStepFor
	// long, until p99 passes RampP99 (or RampMax is reached).
	RampScenario string
	RampStart    float64
	RampStep     float64
	RampMax      float64
	RampStepFor  time.Duration
	RampP99      time.Duration

	// AuditSubscribers bounds the subscribers whose balances are checked
	// one by one (a deterministic spread over the range); the ledger total
	// covers all of them exactly.
	AuditSubscribers int
	// AuditTopUps bounds the acknowledged top-ups looked up in histories.
	AuditTopUps int
	// Seed makes subscriber and operation choices repeatable.
	Seed uint64
}

// Defaults fills zero fields with the documented defaults.
func (c *Config) Defaults() {
	if c.Scenario == "" {
		c.Scenario = ScenarioSMS
	}
	if c.Mix.total() == 0 {
		c.Mix = DefaultMix
	}
	if c.Concurrency == 0 {
		c.Concurrency = 256
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Subscribers == 0 {
		c.Subscribers = 100_000
	}
	if c.Balance == 0 {
		c.Balance = charging.Euros(100)
	}
	if c.TopUp == 0 {
		c.TopUp = charging.Euros(5)
	}
	if c.SessionUpdates == 0 {
		c.SessionUpdates = 3
	}
	if c.VoucherValue == 0 {
		c.VoucherValue = charging.Euros(5)
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Tariffs == nil {
		c.Tariffs = charging.DemoTariffs()
	}
	if c.RampScenario == "" {
		c.RampScenario = ScenarioSMS
	}
	if c.RampStart == 0 {
		c.RampStart = 10_000
	}
	if c.RampStep == 0 {
		c.RampStep = 10_000
	}
	if c.RampMax == 0 {
		c.RampMax = 300_000
	}
	if c.RampStepFor == 0 {
		c.RampStepFor = 10 * time.Second
	}
	if c.RampP99 == 0 {
		c.RampP99 = 10 * time.Millisecond
	}
	if c.AuditSubscribers == 0 {
		c.AuditSubscribers = 20_000
	}
	if c.AuditTopUps == 0 {
		c.AuditTopUps = 20_000
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
}

// Validate reports the first thing wrong with c, as a sentence.
func (c *Config) Validate() error {
	switch {
	case c.Target == "":
		return errors.New("bench: target is required, e.g. http://127.0.0.1:8080")
	case c.OpsKey == "":
		return errors.New("bench: an ops key is required (the server's OCS_BOOTSTRAP_KEY)")
	case !knownScenario(c.Scenario):
		return fmt.Errorf("bench: unknown scenario %q (one of %v)", c.Scenario, Scenarios)
	case c.Concurrency < 1 || c.Concurrency > ConcurrencyMax:
		return fmt.Errorf("bench: concurrency must be 1…%d", ConcurrencyMax)
	case c.Rate < 0:
		return errors.New("bench: rate must be >= 0 (0: closed loop)")
	case c.Duration <= 0 || c.Duration > DurationMax:
		return fmt.Errorf("bench: duration must be in (0, %s]", DurationMax)
	case c.Subscribers < 1 || c.Subscribers > SubscribersMax:
		return fmt.Errorf("bench: subscribers must be 1…%d", SubscribersMax)
	case c.Balance < 0 || c.Balance > charging.BalanceMax:
		return errors.New("bench: balance out of range")
	case c.TopUp <= 0:
		return errors.New("bench: top-up amount must be positive")
	case c.SessionUpdates < 0 || c.SessionUpdates > 1000:
		return errors.New("bench: session updates must be 0…1000")
	case !charging.ValidVoucherValue(c.VoucherValue):
		return errors.New("bench: voucher value must be a card's face value: 5, 10 or 20 euros")
	case c.VoucherCards < 0 || c.VoucherCards > VoucherCardsMax:
		return fmt.Errorf("bench: voucher cards must be 0…%d (0: sized from the run)", VoucherCardsMax)
	case c.Mix.SMS < 0 || c.Mix.Session < 0 || c.Mix.TopUp < 0 || c.Mix.Voucher < 0 || c.Mix.Bank < 0:
		return errors.New("bench: mix weights must be >= 0")
	case c.Scenario == ScenarioRamp && (c.RampStep <= 0 || c.RampStart <= 0 || c.RampMax < c.RampStart):
		return errors.New("bench: ramp needs start > 0, step > 0 and max >= start")
	case c.Scenario == ScenarioRamp && c.RampScenario == ScenarioRamp:
		return errors.New("bench: a ramp cannot ramp itself")
	}
	if _, ok := c.Tariffs[charging.RatingGroupSMS]; !ok {
		return errors.New("bench: tariffs have no SMS rating group")
	}
	if _, ok := c.Tariffs[charging.RatingGroupVoice]; !ok {
		return errors.New("bench: tariffs have no voice rating group")
	}
	return nil
}

func knownScenario(s string) bool {
	for _, k := range Scenarios {
		if k == s {
			return true
		}
	}
	return false
}

// mixOf returns the operation weights of scenario s.
func (c *Config) mixOf(s string) Mix {
	switch s {
	case ScenarioSMS:
		return Mix{SMS: 1}
	case ScenarioSession:
		return Mix{Session: 1}
	case ScenarioTopUp:
		return Mix{TopUp: 1}
	case ScenarioVoucher:
		return Mix{Voucher: 1}
	case ScenarioBank:
		return Mix{Bank: 1}
	case ScenarioRamp:
		return c.mixOf(c.RampScenario)
	default:
		return c.Mix
	}
}
