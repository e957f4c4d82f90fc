package charging_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

var (
	modelSeed    = flag.Uint64("seed", 0, "replay the model test stream with this seed only")
	modelStreams = flag.Int("model.streams", 3000, "random command streams the model test runs")
)

// TestModel applies seeded random command streams to charging.Account and
// to refModel, a naive reference written from DOMAIN.md and the documented
// order of checks, and compares every outcome and the whole account after
// every step. On failure it logs the seed: replay with
// `go test ./charging -run TestModel -seed N -v`.
func TestModel(t *testing.T) {
	if *modelSeed != 0 {
		runModelStream(t, *modelSeed, true)
		return
	}
	n := *modelStreams
	if testing.Short() {
		n /= 10
	}
	base := uint64(time.Now().UnixNano())
	for i := 0; i < n && !t.Failed(); i++ {
		runModelStream(t, base+uint64(i)*0x9e3779b97f4a7c15, false)
	}
}

// refSession is one open session in the reference model.
type refSession struct {
	rg      charging.RatingGroup
	granted uint64
	used    uint64
	held    int64
	expires int64
}

type refEntry struct {
	kind   charging.EntryKind
	amount int64
	unix   int64
}

// refModel is deliberately plain: int64 money, maps, no shared code with
// the package beyond the Config data.
type refModel struct {
	cfg        *charging.Config
	balance    int64
	validUntil int64
	seq        uint64
	next       uint32
	sessions   map[uint32]*refSession
	month      uint32
	spent      int64
	toppedUp   int64
	charges    uint32
	topups     uint32
	journal    map[uint64]refEntry
	refunded   map[uint64]bool
}

// refOut is what the model predicts a command answers.
type refOut struct {
	result  charging.Result
	amount  int64 // money moved, signed; 0 when no journal entry
	session uint32
	granted uint64
	final   bool
}

const balanceMax = int64(charging.BalanceMax)

func yyyymm(unix int64) uint32 {
	t := time.Unix(unix, 0).UTC()
	return uint32(t.Year()*100 + int(t.Month()))
}

func (m *refModel) state(now int64) charging.State {
	if now < m.validUntil {
		return charging.StateActive
	}
	if now < m.validUntil+int64(m.cfg.GracePeriod/time.Second) {
		return charging.StateGrace
	}
	return charging.StateSuspended
}

func (m *refModel) held() int64 {
	var h int64
	for _, s := range m.sessions {
		h += s.held
	}
	return h
}

// cost is the price of u units of tariff t, the obvious way: billed units
// (the first increment whole, then whole increments) times the price, per
// PriceUnits, rounded up to the whole Amount unit.
func cost(t charging.Tariff, u uint64) int64 {
	if u == 0 || t.Incoming || t.Price == 0 {
		return 0
	}
	inc := t.Increment
	if inc == 0 {
		inc = 1
	}
	billed := t.FirstIncrement
	if u > billed {
		steps := (u - billed + inc - 1) / inc // whole increments, rounded up
		billed += steps * inc
	}
	num := billed * uint64(t.Price)
	return int64((num + t.PriceUnits - 1) / t.PriceUnits)
}

// affordable is the largest n <= UnitsMax with cost(used+n)-cost(used) <=
// money, by binary search over a monotone function.
func affordable(t charging.Tariff, used uint64, money int64) uint64 {
	lo, hi := uint64(0), charging.UnitsMax
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if cost(t, used+mid)-cost(t, used) <= money {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

func (m *refModel) roll(now int64) {
	if mo := yyyymm(now); mo != m.month {
		m.month, m.spent, m.toppedUp, m.charges, m.topups = mo, 0, 0, 0, 0
	}
}

func (m *refModel) write(kind charging.EntryKind, amount, now int64) {
	m.seq++
	m.journal[m.seq] = refEntry{kind: kind, amount: amount, unix: now}
}

func (m *refModel) admit(t charging.Tariff, now int64) charging.Result {
	switch m.state(now) {
	case charging.StateSuspended:
		return charging.ResultSuspended
	case charging.StateGrace:
		if !t.Incoming {
			return charging.ResultGraceOutgoingBarred
		}
	}
	return charging.ResultOK
}

func (m *refModel) apply(c *charging.Command, now int64) refOut {
	seqBefore := m.seq
	out := m.dispatch(c, now)
	if m.seq != seqBefore {
		out.amount = m.journal[m.seq].amount
	}
	return out
}

func (m *refModel) dispatch(c *charging.Command, now int64) refOut {
	switch c.Kind {
	case charging.KindTopUp:
		return refOut{result: m.topUp(c, now)}
	case charging.KindCharge:
		return refOut{result: m.charge(c, now)}
	case charging.KindReserve:
		return m.reserve(c, now)
	case charging.KindUpdate, charging.KindTerminate:
		return m.report(c, now)
	case charging.KindExpire:
		for id, s := range m.sessions {
			if s.expires <= now {
				delete(m.sessions, id)
			}
		}
		return refOut{result: charging.ResultOK}
	case charging.KindRefund:
		return refOut{result: m.refund(c, now)}
	case charging.KindAdjust:
		return refOut{result: m.adjust(c, now)}
	}
	panic("model: kind")
}

func (m *refModel) topUp(c *charging.Command, now int64) charging.Result {
	if int(c.Channel) >= len(m.cfg.Channels) || !m.cfg.Channels[c.Channel].Enabled {
		return charging.ResultUnknownChannel
	}
	p := m.cfg.Channels[c.Channel]
	a := int64(c.Amount)
	switch {
	case a <= 0:
		return charging.ResultAmountMustBePositive
	case a < int64(p.Min):
		return charging.ResultAmountBelowMinimum
	case a > int64(p.Max):
		return charging.ResultAmountAboveMaximum
	case m.balance+a > balanceMax:
		return charging.ResultBalanceLimit
	}
	m.balance += a
	days := 0
	for _, tier := range m.cfg.Tiers {
		if a >= int64(tier.From) {
			days = tier.Days
		}
	}
	if p.ExtendsValidity && days > 0 && now+int64(days)*86400 > m.validUntil {
		m.validUntil = now + int64(days)*86400
	}
	m.roll(now)
	m.toppedUp += a
	m.topups++
	kind := charging.EntryTopUp
	if c.Channel == charging.ChannelTransfer {
		kind = charging.EntryTransferIn
	}
	m.write(kind, a, now)
	return charging.ResultOK
}

func (m *refModel) charge(c *charging.Command, now int64) charging.Result {
	t, ok := m.cfg.Tariffs[c.RatingGroup]
	switch {
	case !ok:
		return charging.ResultUnknownRatingGroup
	case c.Units == 0:
		return charging.ResultUnitsMustBePositive
	case c.Units > charging.UnitsMax:
		return charging.ResultUnitsAboveMaximum
	}
	if r := m.admit(t, now); r != charging.ResultOK {
		return r
	}
	price := cost(t, c.Units)
	if price > m.balance-m.held() {
		return charging.ResultInsufficientBalance
	}
	if price > 0 {
		m.balance -= price
		m.roll(now)
		m.spent += price
		m.charges++
		m.write(charging.EntryCharge, -price, now)
	}
	return charging.ResultOK
}

// grant gives s up to requested more units from what is available.
func (m *refModel) grant(t charging.Tariff, s *refSession, requested uint64, now int64) (charging.Result, bool) {
	if requested == 0 {
		requested = t.DefaultGrant
	}
	// A session reports at most UnitsMax in all, so no grant goes past it.
	if s.used == charging.UnitsMax {
		return charging.ResultUnitsAboveMaximum, false
	}
	final := false
	if s.used+requested >= charging.UnitsMax {
		requested, final = charging.UnitsMax-s.used, true
	}
	avail := m.balance - m.held()
	price := cost(t, s.used+requested) - cost(t, s.used)
	if price > avail {
		requested = affordable(t, s.used, avail)
		if requested == 0 {
			return charging.ResultInsufficientBalance, false
		}
		price = cost(t, s.used+requested) - cost(t, s.used)
		final = true
	}
	s.granted, s.held = requested, price
	s.expires = now + int64((m.cfg.QuotaValidity+m.cfg.ReservationSlack)/time.Second)
	return charging.ResultOK, final
}

func (m *refModel) reserve(c *charging.Command, now int64) refOut {
	t, ok := m.cfg.Tariffs[c.RatingGroup]
	switch {
	case !ok:
		return refOut{result: charging.ResultUnknownRatingGroup}
	case c.Units > charging.UnitsMax:
		return refOut{result: charging.ResultUnitsAboveMaximum}
	case len(m.sessions) >= charging.SessionsMax:
		return refOut{result: charging.ResultTooManySessions}
	}
	if r := m.admit(t, now); r != charging.ResultOK {
		return refOut{result: r}
	}
	s := &refSession{rg: c.RatingGroup}
	r, final := m.grant(t, s, c.Units, now)
	if r != charging.ResultOK {
		return refOut{result: r}
	}
	m.next++
	m.sessions[m.next] = s
	return refOut{result: charging.ResultOK, session: m.next, granted: s.granted, final: final}
}

// report handles update and terminate: debit what was used (never below
// zero, never from money held for other sessions), then close the session
// or grant more.
func (m *refModel) report(c *charging.Command, now int64) refOut {
	s, ok := m.sessions[c.Session]
	switch {
	case !ok:
		return refOut{result: charging.ResultUnknownSession}
	case c.Used > charging.UnitsMax || (c.Kind == charging.KindUpdate && c.Units > charging.UnitsMax):
		return refOut{result: charging.ResultUnitsAboveMaximum}
	}
	t := m.cfg.Tariffs[s.rg]
	price := cost(t, s.used+c.Used) - cost(t, s.used)
	s.held, s.granted = 0, 0
	s.used += c.Used
	if free := m.balance - m.held(); price > free {
		price = free
	}
	if price > 0 {
		m.balance -= price
		m.roll(now)
		m.spent += price
		m.charges++
		m.write(charging.EntrySessionDebit, -price, now)
	}
	out := refOut{result: charging.ResultOK, session: c.Session}
	if c.Kind == charging.KindTerminate {
		delete(m.sessions, c.Session)
		return out
	}
	if r := m.admit(t, now); r != charging.ResultOK {
		s.expires = now
		out.result = r
		return out
	}
	r, final := m.grant(t, s, c.Units, now)
	if r != charging.ResultOK {
		s.expires = now
		out.result = r
		return out
	}
	out.granted, out.final = s.granted, final
	return out
}

func (m *refModel) refund(c *charging.Command, now int64) charging.Result {
	e, ok := m.journal[c.Ref]
	switch {
	case !ok:
		return charging.ResultUnknownTransaction
	case e.kind != charging.EntryCharge && e.kind != charging.EntrySessionDebit:
		return charging.ResultNotRefundable
	case m.refunded[c.Ref]:
		return charging.ResultAlreadyRefunded
	case c.Amount < 0:
		return charging.ResultAmountMustBePositive
	case int64(c.Amount) > -e.amount:
		return charging.ResultRefundExceedsCharge
	}
	a := int64(c.Amount)
	if a == 0 {
		a = -e.amount
	}
	if m.balance+a > balanceMax {
		return charging.ResultBalanceLimit
	}
	m.balance += a
	m.roll(now)
	if yyyymm(e.unix) == m.month {
		m.spent -= a
	}
	m.refunded[c.Ref] = true
	m.write(charging.EntryRefund, a, now)
	return charging.ResultOK
}

func (m *refModel) adjust(c *charging.Command, now int64) charging.Result {
	a := int64(c.Amount)
	switch {
	case c.Reason == "":
		return charging.ResultAdjustmentNeedsReason
	case a == 0:
		return charging.ResultAmountMustBePositive
	case a > 0 && m.balance+a > balanceMax:
		return charging.ResultBalanceLimit
	case a < 0 && -a > m.balance-m.held():
		return charging.ResultInsufficientBalance
	}
	m.balance += a
	m.write(charging.EntryAdjustment, a, now)
	return charging.ResultOK
}

// randomCommand draws the next command; amounts and units are small and
// often on a boundary so that refusals and final units happen often.
func randomCommand(r *rand.Rand, m *refModel) charging.Command {
	c := charging.Command{Subscriber: 38349123456, Channel: charging.ChannelNetwork}
	rgs := []charging.RatingGroup{charging.RatingGroupVoice, charging.RatingGroupSMS, charging.RatingGroupData,
		charging.RatingGroupVoiceIncoming, charging.RatingGroupSMSIncoming, 42}
	units := func() uint64 {
		switch r.IntN(6) {
		case 0:
			return 0
		case 1:
			return uint64(r.IntN(3))
		case 2:
			return uint64(55 + r.IntN(10))
		case 3:
			return uint64(r.IntN(2000))
		case 4:
			return uint64(r.IntN(300_000_000))
		}
		return charging.UnitsMax + uint64(r.IntN(2))
	}
	// Reported usage stays where a session's total cost is far below
	// BalanceMax: Tariff.Cost saturates there (see the report), and the
	// model computes true prices.
	used := func() uint64 {
		if r.IntN(10) == 0 {
			return charging.UnitsMax + 1 // refused before anything is read
		}
		return []uint64{0, 1, 59, 60, 61, uint64(r.IntN(2000)), uint64(r.IntN(3_000_000))}[r.IntN(7)]
	}
	session := func() uint32 {
		if r.IntN(8) == 0 || m.next == 0 {
			return uint32(r.IntN(4))
		}
		return m.next - uint32(r.IntN(min(int(m.next), 4)))
	}
	switch k := r.IntN(20); {
	case k < 4:
		c.Kind = charging.KindTopUp
		c.Channel = charging.Channel(r.IntN(9))
		amounts := []int64{0, -100, 9_900, 10_000, 19_900, 20_000, 49_900, 50_000, 99_900,
			100_000, 199_900, 200_000, 499_900, 500_000, 500_100, 1_000_000, 5_000, 4_900}
		c.Amount = charging.Amount(amounts[r.IntN(len(amounts))])
	case k < 8:
		c.Kind = charging.KindCharge
		c.RatingGroup = rgs[r.IntN(len(rgs))]
		c.Units = units()
	case k < 11:
		c.Kind = charging.KindReserve
		c.RatingGroup = rgs[r.IntN(len(rgs))]
		c.Units = units()
	case k < 13:
		c.Kind = charging.KindUpdate
		c.Session, c.Used, c.Units = session(), used(), units()
	case k < 15:
		c.Kind = charging.KindTerminate
		c.Session, c.Used = session(), used()
	case k < 16:
		c.Kind = charging.KindExpire
	case k < 18:
		c.Kind = charging.KindRefund
		if m.seq > 0 {
			c.Ref = uint64(r.IntN(int(m.seq) + 2))
		}
		c.Amount = charging.Amount([]int64{0, 0, 0, -1, 1, 100, 500, 10_000}[r.IntN(8)])
	default:
		c.Kind = charging.KindAdjust
		c.Channel = charging.ChannelOps
		c.Amount = charging.Amount([]int64{0, 1, -1, 10_000, -10_000, -50_000, int64(charging.BalanceMax)}[r.IntN(7)])
		if r.IntN(5) > 0 {
			c.Reason = "model"
		}
	}
	return c
}

// advance moves the clock: mostly seconds and minutes, sometimes days, and
// sometimes exactly onto a validity, grace or reservation boundary.
func advance(r *rand.Rand, m *refModel, now int64) int64 {
	grace := int64(m.cfg.GracePeriod / time.Second)
	switch r.IntN(12) {
	case 0, 1, 2:
		return now
	case 3, 4, 5:
		return now + int64(r.IntN(120))
	case 6:
		return now + int64(r.IntN(30*86400))
	case 7:
		return max(now, m.validUntil-int64(r.IntN(2)))
	case 8:
		return max(now, m.validUntil+grace-int64(r.IntN(2)))
	case 9:
		for _, s := range m.sessions {
			return max(now, s.expires-int64(r.IntN(2)))
		}
	}
	return now + int64(r.IntN(900))
}

func runModelStream(t *testing.T, seed uint64, verbose bool) {
	r := rand.New(rand.NewPCG(seed, seed>>1|1))
	cfg := charging.DemoConfig()
	now := time.Date(2026, 1, 25, 0, 0, 0, 0, time.UTC).Unix() + int64(r.IntN(20*86400))
	open := charging.Amount([]int64{0, 500, 10_000, 100_000}[r.IntN(4)])
	validUntil := now + int64(r.IntN(40*86400)) - 20*86400
	a, _, eff := charging.NewAccount(&cfg, &charging.Command{Kind: charging.KindProvision, Subscriber: 38349123456,
		Amount: open, ValidUntil: validUntil}, time.Unix(now, 0))
	m := &refModel{cfg: &cfg, balance: int64(open), validUntil: validUntil, month: yyyymm(now),
		sessions: map[uint32]*refSession{}, journal: map[uint64]refEntry{}, refunded: map[uint64]bool{}}
	journal := map[uint64]charging.Entry{}
	refunded := map[uint64]bool{}
	if open > 0 {
		m.write(charging.EntryProvision, int64(open), now)
		journal[eff.Entry.Seq] = eff.Entry
	}
	// checkpoint and tail are what storage would hold with the engine's
	// Change.JournalOnly: the last account record written, and the entries
	// folded into it since (FoldsTo held for each).
	checkpoint, tail := charging.CloneAccount(&a), []charging.Entry(nil)
	steps := 40 + r.IntN(80)
	for step := 0; step < steps; step++ {
		now = advance(r, m, now)
		cmd := randomCommand(r, m)
		cmd.Key = fmt.Sprintf("k%d", step)
		if cmd.Kind == charging.KindRefund {
			cmd.Original, cmd.OriginalRefunded = journal[cmd.Ref], refunded[cmd.Ref]
		}
		prev := a
		got, eff := a.Apply(&cfg, &cmd, time.Unix(now, 0))
		if eff.Dirty {
			if prev.FoldsTo(&eff.Entry, &a) {
				tail = append(tail, eff.Entry)
			} else {
				checkpoint, tail = charging.CloneAccount(&a), nil
			}
			rebuilt := charging.CloneAccount(&checkpoint)
			for i := range tail {
				rebuilt.Fold(&tail[i])
			}
			if !reflect.DeepEqual(rebuilt, charging.CloneAccount(&a)) {
				t.Logf("seed=%d (replay: go test ./charging -run TestModel -seed %d -v)", seed, seed)
				t.Fatalf("step %d, command %+v: record %+v with %d entries folded is %+v, the account is %+v",
					step, cmd, checkpoint, len(tail), rebuilt, a)
			}
		}
		want := m.apply(&cmd, now)
		if e := eff.Entry; e.Seq != 0 {
			journal[e.Seq] = e
			if e.Kind == charging.EntryRefund {
				refunded[e.Ref] = true
			}
		}
		if verbose {
			t.Logf("step %d at %s: %+v -> %+v", step, time.Unix(now, 0).UTC().Format(timeLayout), cmd, got)
		}
		if diff := compareModel(&a, m, got, want, now); diff != "" {
			t.Logf("seed=%d (replay: go test ./charging -run TestModel -seed %d -v)", seed, seed)
			t.Fatalf("step %d at %s, command %+v:\n%s", step, time.Unix(now, 0).UTC().Format(timeLayout), cmd, diff)
		}
	}
}

func compareModel(a *charging.Account, m *refModel, got charging.Outcome, want refOut, now int64) string {
	var d string
	check := func(what string, g, w any) {
		if g != w {
			d += fmt.Sprintf("  %s: package %v, model %v\n", what, g, w)
		}
	}
	check("result", got.Result, want.result)
	check("outcome amount", int64(got.Amount), want.amount)
	check("outcome balance", int64(got.Balance), m.balance)
	check("outcome valid until", got.ValidUntil, m.validUntil)
	check("outcome state", got.State, m.state(now))
	check("session", got.Session, want.session)
	check("granted", got.Granted, want.granted)
	check("final unit", got.FinalUnit, want.final)
	check("balance", int64(a.Balance), m.balance)
	check("valid until", a.ValidUntil, m.validUntil)
	check("seq", a.Seq, m.seq)
	check("reserved", int64(a.Reserved()), m.held())
	check("month", a.Month.Month, m.month)
	check("spent", int64(a.Month.Spent), m.spent)
	check("topped up", int64(a.Month.ToppedUp), m.toppedUp)
	check("charges", a.Month.Charges, m.charges)
	check("topups", a.Month.TopUps, m.topups)
	check("sessions", len(a.Reservations), len(m.sessions))
	for _, r := range a.Reservations {
		s, ok := m.sessions[r.Session]
		if !ok {
			d += fmt.Sprintf("  session %d open in package only\n", r.Session)
			continue
		}
		check(fmt.Sprintf("session %d granted", r.Session), r.Granted, s.granted)
		check(fmt.Sprintf("session %d used", r.Session), r.Used, s.used)
		check(fmt.Sprintf("session %d reserved", r.Session), int64(r.Reserved), s.held)
		check(fmt.Sprintf("session %d expires", r.Session), r.ExpiresAt, s.expires)
		check(fmt.Sprintf("session %d rating group", r.Session), r.RatingGroup, s.rg)
	}
	return d
}
