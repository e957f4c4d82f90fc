package charging

import (
	"errors"
	"fmt"
	"time"
)

// Channel is the way a command reached the engine. Stored in the journal and
// used as a metric label: never renumber, only append.
type Channel uint8

const (
	ChannelNetwork    Channel = 1 // a network element (SMSC, SMF, switch)
	ChannelElectronic Channel = 2 // electronic top-up: distributors, shops, e-banking, ATMs
	ChannelVoucher    Channel = 3 // scratch card
	ChannelBank       Channel = 4 // SMS Top Up through a bank
	ChannelTransfer   Channel = 5 // credit transfer between subscribers
	ChannelOps        Channel = 6 // operations staff
	ChannelUSSD       Channel = 7 // a subscriber's USSD session
	channelCount              = 8
)

var channelNames = [channelCount]string{"invalid", "network", "electronic", "voucher", "bank", "transfer", "ops", "ussd"}

// String returns the channel's stable name.
func (c Channel) String() string {
	if int(c) >= channelCount {
		return "invalid"
	}
	return channelNames[c]
}

// ParseChannel maps a stable name back to its Channel.
func ParseChannel(s string) (Channel, bool) {
	for c := Channel(1); c < channelCount; c++ {
		if channelNames[c] == s {
			return c, true
		}
	}
	return 0, false
}

// Channels lists every defined Channel, for pre-creating metric labels.
func Channels() []Channel {
	cs := make([]Channel, 0, channelCount-1)
	for c := Channel(1); c < channelCount; c++ {
		cs = append(cs, c)
	}
	return cs
}

// ChannelPolicy says how one channel may top up a balance.
type ChannelPolicy struct {
	Enabled bool
	Min     Amount // smallest top-up accepted
	Max     Amount // largest top-up accepted
	// ExtendsValidity: a purchase extends validity by the tier table; a
	// credit transfer does not, or buying validity with 1-cent transfers
	// would be possible.
	ExtendsValidity bool
}

// ValidityTier maps top-ups of at least From to Days of validity.
type ValidityTier struct {
	From Amount
	Days int
}

// Config is everything the rules read besides the account and now. It is
// plain data: cmd/ocs builds it from the configuration file or the embedded
// demo, tests build it in place.
type Config struct {
	// GracePeriod follows the validity end: incoming services only.
	GracePeriod time.Duration
	// Tiers in ascending From order; a top-up below Tiers[0].From extends
	// nothing (the channel minimum normally refuses it first).
	Tiers    []ValidityTier
	Channels [channelCount]ChannelPolicy
	Tariffs  map[RatingGroup]Tariff
	// QuotaValidity is the validityTime told to the network element with a
	// grant; it must report before then.
	QuotaValidity time.Duration
	// ReservationSlack is added to QuotaValidity before an unreported
	// reservation expires and its money returns to the balance: network
	// elements report a little late under load.
	ReservationSlack time.Duration
	// InitialValidity is given to a provisioned subscriber that names none.
	InitialValidity time.Duration
}

// SessionsMax bounds the charging sessions one subscriber has open at once:
// a phone has a call or two and a few data bearers; more is a leak or abuse,
// and the bound keeps an account record small.
const SessionsMax = 16

// UnitsMax bounds the units one request may carry (about 1 TB of data, 31
// years of seconds): large enough for any real request and small enough that
// units × price never overflows.
const UnitsMax uint64 = 1 << 40

// Days is a duration of n days.
func Days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// DemoConfig is the embedded configuration `ocs serve` starts with: the
// operator's validity tiers (seed 002), its top-up channels and a demo tariff.
func DemoConfig() Config {
	c := Config{
		GracePeriod: Days(14),
		Tiers: []ValidityTier{
			{From: Euros(1), Days: 10},
			{From: Euros(2), Days: 20},
			{From: Euros(3), Days: 30},
			{From: Euros(5), Days: 60},
			{From: Euros(10), Days: 90},
			{From: Euros(20), Days: 360},
		},
		Tariffs:          DemoTariffs(),
		QuotaValidity:    10 * time.Minute,
		ReservationSlack: 2 * time.Minute,
		InitialValidity:  Days(30),
	}
	c.Channels[ChannelElectronic] = ChannelPolicy{Enabled: true, Min: Euros(1), Max: Euros(50), ExtendsValidity: true}
	c.Channels[ChannelVoucher] = ChannelPolicy{Enabled: true, Min: Euros(5), Max: Euros(20), ExtendsValidity: true}
	c.Channels[ChannelBank] = ChannelPolicy{Enabled: true, Min: Euros(1), Max: Euros(100), ExtendsValidity: true}
	c.Channels[ChannelTransfer] = ChannelPolicy{Enabled: true, Min: 50 * AmountPerCent, Max: Euros(20)}
	c.Channels[ChannelUSSD] = ChannelPolicy{Enabled: true, Min: Euros(1), Max: Euros(50), ExtendsValidity: true}
	return c
}

// Rating groups of the demo tariff.
const (
	RatingGroupVoice         RatingGroup = 1
	RatingGroupSMS           RatingGroup = 2
	RatingGroupData          RatingGroup = 3
	RatingGroupVoiceIncoming RatingGroup = 10
	RatingGroupSMSIncoming   RatingGroup = 11
)

// DemoTariffs is a small, plausible tariff: 0.06 €/min billed per second
// after a first minute, 0.05 € per SMS, 1 € per GB in 1 kB steps, incoming
// calls and SMS free.
func DemoTariffs() map[RatingGroup]Tariff {
	return map[RatingGroup]Tariff{
		RatingGroupVoice: {Name: "voice", Unit: UnitSeconds, Price: 6 * AmountPerCent, PriceUnits: 60,
			FirstIncrement: 60, Increment: 1, DefaultGrant: 300},
		RatingGroupSMS: {Name: "sms", Unit: UnitEvents, Price: 5 * AmountPerCent, PriceUnits: 1,
			Increment: 1, DefaultGrant: 1},
		RatingGroupData: {Name: "data", Unit: UnitBytes, Price: AmountPerEuro, PriceUnits: 1_000_000_000,
			Increment: 1000, DefaultGrant: 10_000_000},
		RatingGroupVoiceIncoming: {Name: "voice-incoming", Unit: UnitSeconds, Incoming: true,
			PriceUnits: 1, Increment: 1, DefaultGrant: 3600},
		RatingGroupSMSIncoming: {Name: "sms-incoming", Unit: UnitEvents, Incoming: true,
			PriceUnits: 1, Increment: 1, DefaultGrant: 1},
	}
}

// Validate reports a configuration the rules cannot work with.
func (c *Config) Validate() error {
	for rg, t := range c.Tariffs {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("rating group %d: %w", rg, err)
		}
	}
	for i := 1; i < len(c.Tiers); i++ {
		if c.Tiers[i].From <= c.Tiers[i-1].From {
			return errors.New("validity tiers must ascend by amount")
		}
	}
	for ch := Channel(1); ch < channelCount; ch++ {
		if p := c.Channels[ch]; p.Enabled && (p.Min <= 0 || p.Max < p.Min || p.Max > BalanceMax) {
			return fmt.Errorf("channel %s: need 0 < min <= max <= %s", ch, BalanceMax)
		}
	}
	return nil
}

// ValidityFor returns the validity a top-up of amount buys, or 0 below the
// first tier.
func (c *Config) ValidityFor(amount Amount) time.Duration {
	days := 0
	for _, t := range c.Tiers {
		if amount >= t.From {
			days = t.Days
		}
	}
	return Days(days)
}
