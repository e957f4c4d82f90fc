package charging_test

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/ocs-engine/ocs/charging"
)

// TestDataDriven runs the scripts in testdata/rules. Each script drives one
// account through charging.Apply and prints every outcome, so that a
// refusal is reviewed as output, not asserted with t.Error. Rewrite the
// expectations with `go test ./charging -run DataDriven -rewrite` and review
// the diff against DOMAIN.md.
//
// Commands (every one takes now=, see parseNow; the clock stays where the
// last command left it):
//
//	provision [balance=EUR] [valid_until=TIME]
//	topup amount=EUR [channel=electronic]
//	charge rg=NAME units=N
//	reserve rg=NAME [units=N]
//	update session=N used=N [units=N]
//	terminate session=N used=N
//	expire
//	refund ref=SEQ [amount=EUR]
//	adjust amount=EUR [reason=WORD]
//	inquire
//	show
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/rules", func(t *testing.T, path string) {
		h := &harness{cfg: charging.DemoConfig(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return h.run(t, d)
		})
	})
}

// harness plays the actor's part: it keeps the journal so that a refund can
// be handed its original entry.
type harness struct {
	cfg      charging.Config
	acct     charging.Account
	exists   bool
	now      time.Time
	journal  map[uint64]charging.Entry
	refunded map[uint64]bool
	keys     int
}

const timeLayout = "2006-01-02T15:04:05Z"

func fmtTime(unix int64) string { return time.Unix(unix, 0).UTC().Format(timeLayout) }

var ratingGroups = map[string]charging.RatingGroup{
	"voice": charging.RatingGroupVoice, "sms": charging.RatingGroupSMS, "data": charging.RatingGroupData,
	"voice-incoming": charging.RatingGroupVoiceIncoming, "sms-incoming": charging.RatingGroupSMSIncoming,
}

func (h *harness) run(t *testing.T, d *datadriven.TestData) string {
	if d.HasArg("now") {
		var s string
		d.ScanArgs(t, "now", &s)
		h.now = h.parseTime(t, s)
	}
	if d.Cmd == "show" {
		return h.show()
	}
	if d.Cmd == "provision" {
		return h.provision(t, d)
	}
	if !h.exists {
		d.Fatalf(t, "provision first")
	}
	h.keys++
	cmd := charging.Command{Subscriber: h.acct.ID, Channel: charging.ChannelNetwork, Key: "k" + strconv.Itoa(h.keys)}
	switch d.Cmd {
	case "topup":
		cmd.Kind = charging.KindTopUp
		cmd.Amount = h.amount(t, d, "amount")
		cmd.Channel = charging.ChannelElectronic
		if d.HasArg("channel") {
			var s string
			d.ScanArgs(t, "channel", &s)
			c, ok := charging.ParseChannel(s)
			if !ok && s != "none" {
				d.Fatalf(t, "unknown channel %q", s)
			}
			cmd.Channel = c
		}
	case "charge", "reserve":
		cmd.Kind = charging.KindCharge
		if d.Cmd == "reserve" {
			cmd.Kind = charging.KindReserve
		}
		var rg string
		d.ScanArgs(t, "rg", &rg)
		if g, ok := ratingGroups[rg]; ok {
			cmd.RatingGroup = g
		} else {
			n, err := strconv.ParseUint(rg, 10, 32)
			if err != nil {
				d.Fatalf(t, "rating group %q", rg)
			}
			cmd.RatingGroup = charging.RatingGroup(n)
		}
		d.MaybeScanArgs(t, "units", &cmd.Units)
	case "update", "terminate":
		cmd.Kind = charging.KindUpdate
		if d.Cmd == "terminate" {
			cmd.Kind = charging.KindTerminate
		}
		d.ScanArgs(t, "session", &cmd.Session)
		d.ScanArgs(t, "used", &cmd.Used)
		d.MaybeScanArgs(t, "units", &cmd.Units)
	case "expire":
		cmd.Kind, cmd.Key = charging.KindExpire, ""
	case "refund":
		cmd.Kind = charging.KindRefund
		d.ScanArgs(t, "ref", &cmd.Ref)
		if d.HasArg("amount") {
			cmd.Amount = h.amount(t, d, "amount")
		}
		cmd.Original = h.journal[cmd.Ref]
		cmd.OriginalRefunded = h.refunded[cmd.Ref]
	case "adjust":
		cmd.Kind = charging.KindAdjust
		cmd.Channel = charging.ChannelOps
		cmd.Amount = h.amount(t, d, "amount")
		d.MaybeScanArgs(t, "reason", &cmd.Reason)
	case "inquire":
		cmd.Kind, cmd.Key = charging.KindInquire, ""
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
	}
	return h.apply(t, &cmd)
}

// apply runs cmd and prints its outcome. The checks that no script could
// want otherwise (a refusal or a clean Effect changed nothing, the journal
// entry matches the account) fail the test outright.
func (h *harness) apply(t *testing.T, cmd *charging.Command) string {
	before := charging.CloneAccount(&h.acct)
	out, eff := h.acct.Apply(&h.cfg, cmd, h.now)
	if !eff.Dirty && !reflect.DeepEqual(before, h.acct) {
		t.Errorf("%v changed the account without marking it dirty:\nbefore %+v\nafter  %+v", cmd.Kind, before, h.acct)
	}
	if out.Result != charging.ResultOK && cmd.Kind != charging.KindUpdate && !reflect.DeepEqual(before, h.acct) {
		t.Errorf("refused %v changed the account:\nbefore %+v\nafter  %+v", cmd.Kind, before, h.acct)
	}
	if out.Balance != h.acct.Balance || out.ValidUntil != h.acct.ValidUntil || out.State != h.acct.StateAt(&h.cfg, h.now) {
		t.Errorf("outcome %+v disagrees with account %+v", out, h.acct)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s", out.Result)
	if out.Amount != 0 {
		fmt.Fprintf(&b, " amount=%s", out.Amount)
	}
	fmt.Fprintf(&b, " balance=%s valid_until=%s state=%s", out.Balance, fmtTime(out.ValidUntil), out.State)
	if r := h.acct.Reserved(); r != 0 {
		fmt.Fprintf(&b, " reserved=%s", r)
	}
	switch cmd.Kind {
	case charging.KindReserve, charging.KindUpdate, charging.KindTerminate:
		if out.Session != 0 {
			fmt.Fprintf(&b, " session=%d", out.Session)
		}
		if out.Granted != 0 || out.FinalUnit {
			fmt.Fprintf(&b, " granted=%d", out.Granted)
		}
		if out.FinalUnit {
			b.WriteString(" final_unit")
		}
	}
	if e := eff.Entry; e.Seq != 0 {
		if e.Seq != before.Seq+1 || out.Seq != e.Seq || e.BalanceAfter != h.acct.Balance ||
			e.ValidUntilAfter != h.acct.ValidUntil || e.Key != cmd.Key || e.Time != h.now.UnixNano() {
			t.Errorf("entry %+v does not match account %+v (seq before %d)", e, h.acct, before.Seq)
		}
		h.record(e)
		fmt.Fprintf(&b, "\njournal #%d %s %s", e.Seq, e.Kind, e.Amount)
		if e.RatingGroup != 0 {
			fmt.Fprintf(&b, " rg=%d units=%d", e.RatingGroup, e.Units)
		}
		if e.Ref != 0 {
			fmt.Fprintf(&b, " ref=%d", e.Ref)
		}
	} else if out.Seq != 0 {
		t.Errorf("outcome names seq %d but no entry was written", out.Seq)
	}
	return b.String()
}

func (h *harness) record(e charging.Entry) {
	h.journal[e.Seq] = e
	if e.Kind == charging.EntryRefund {
		h.refunded[e.Ref] = true
	}
}

func (h *harness) provision(t *testing.T, d *datadriven.TestData) string {
	cmd := charging.Command{Kind: charging.KindProvision, Channel: charging.ChannelOps, Subscriber: 38349123456, Key: "provision"}
	if d.HasArg("balance") {
		cmd.Amount = h.amount(t, d, "balance")
	}
	if d.HasArg("valid_until") {
		var s string
		d.ScanArgs(t, "valid_until", &s)
		cmd.ValidUntil = h.parseTime(t, s).Unix()
	}
	a, out, eff := charging.NewAccount(&h.cfg, &cmd, h.now)
	if out.Result != charging.ResultOK {
		return out.Result.String()
	}
	h.acct, h.exists = a, true
	h.journal, h.refunded = map[uint64]charging.Entry{}, map[uint64]bool{}
	if eff.Entry.Seq != 0 {
		h.record(eff.Entry)
	}
	return fmt.Sprintf("%s balance=%s valid_until=%s state=%s", out.Result, out.Balance, fmtTime(out.ValidUntil), out.State)
}

func (h *harness) show() string {
	a := &h.acct
	var b strings.Builder
	fmt.Fprintf(&b, "now=%s balance=%s available=%s valid_until=%s state=%s seq=%d\n",
		h.now.Format(timeLayout), a.Balance, a.Available(), fmtTime(a.ValidUntil), a.StateAt(&h.cfg, h.now), a.Seq)
	m := a.Month
	fmt.Fprintf(&b, "month=%d spent=%s topped_up=%s charges=%d topups=%d", m.Month, m.Spent, m.ToppedUp, m.Charges, m.TopUps)
	for _, r := range a.Reservations {
		fmt.Fprintf(&b, "\nsession=%d rg=%d granted=%d used=%d reserved=%s charged=%s expires=%s final=%t",
			r.Session, r.RatingGroup, r.Granted, r.Used, r.Reserved, r.Charged, fmtTime(r.ExpiresAt), r.Final)
	}
	return b.String()
}

func (h *harness) amount(t *testing.T, d *datadriven.TestData, key string) charging.Amount {
	var s string
	d.ScanArgs(t, key, &s)
	a, err := charging.ParseAmount(s)
	if err != nil {
		d.Fatalf(t, "%s=%s: %v", key, s, err)
	}
	return a
}

// parseTime reads an RFC 3339 instant, or a base (now, end: the account's
// validity end) followed by signed offsets such as +14d-1s.
func (h *harness) parseTime(t *testing.T, s string) time.Time {
	if tm, err := time.Parse(time.RFC3339, s); err == nil {
		return tm.UTC()
	}
	base, rest := h.now, s
	switch {
	case strings.HasPrefix(s, "end"):
		base, rest = time.Unix(h.acct.ValidUntil, 0).UTC(), s[3:]
	case strings.HasPrefix(s, "now"):
		rest = s[3:]
	}
	for rest != "" {
		sign := time.Duration(1)
		switch rest[0] {
		case '+':
		case '-':
			sign = -1
		default:
			t.Fatalf("time %q: want RFC 3339, or now/end with +/- offsets", s)
		}
		rest = rest[1:]
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			t.Fatalf("time %q: bad offset", s)
		}
		n, _ := strconv.Atoi(rest[:i])
		unit := map[byte]time.Duration{'d': 24 * time.Hour, 'h': time.Hour, 'm': time.Minute, 's': time.Second}[rest[i]]
		if unit == 0 {
			t.Fatalf("time %q: unit must be d, h, m or s", s)
		}
		base = base.Add(sign * time.Duration(n) * unit)
		rest = rest[i+1:]
	}
	return base
}
