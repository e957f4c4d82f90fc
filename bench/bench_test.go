package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// TestScheduleDoesNotDrift: scheduled times come from the start and the
// index, so after millions of ticks at a rate whose interval is not a whole
// number of nanoseconds the time is still exact, where adding the interval
// tick by tick drifts.
func TestScheduleDoesNotDrift(t *testing.T) {
	start := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, rate := range []float64{3, 7, 60_000, 70_001, 333_333} {
		s := Schedule{Start: start, Rate: rate}
		// After exactly k*rate requests, k whole seconds have passed.
		for _, k := range []int64{1, 10, 3600, 86_400} {
			i := int64(rate) * k
			require.Equal(t, time.Duration(k)*time.Second, s.Offset(i), "rate %v after %d s", rate, k)
		}
		// Monotonic, and each gap within 1 ns of the ideal interval.
		ideal := time.Duration(1e9 / rate)
		prev := s.Offset(0)
		require.Zero(t, prev)
		for i := int64(1); i < 200_000; i++ {
			o := s.Offset(i)
			gap := o - prev
			require.True(t, gap >= ideal-1 && gap <= ideal+1, "rate %v gap %d at %d", rate, gap, i)
			prev = o
		}
	}
	// The accumulating scheduler this replaces drifts: at 70,001/s the
	// truncated interval loses most of a nanosecond per tick.
	s := Schedule{Start: start, Rate: 70_001}
	var acc time.Duration
	interval := time.Second / 70_001
	for i := 0; i < 70_001*60; i++ {
		acc += interval
	}
	require.Greater(t, time.Minute-acc, time.Millisecond, "naive accumulation should drift")
	require.Equal(t, time.Minute, s.Offset(70_001*60))
}

func TestScheduleCount(t *testing.T) {
	s := Schedule{Start: time.Now(), Rate: 60_000}
	require.EqualValues(t, 60_000, s.Count(time.Second))
	require.EqualValues(t, 30, s.Count(500*time.Microsecond))
	s = Schedule{Start: time.Now(), Rate: 3}
	// Slots at 0, 333.3 ms, 666.6 ms fall in the first second; 1 s does not.
	require.EqualValues(t, 3, s.Count(time.Second))
	require.EqualValues(t, 4, s.Count(time.Second+time.Nanosecond))
}

// TestRecorderPercentiles records a known distribution over two seconds
// and from two workers and checks the summary and the series.
func TestRecorderPercentiles(t *testing.T) {
	start := time.Now()
	r := newRecorder(start)
	w1, w2 := r.worker(), r.worker()
	// Second 0: 1..1000 µs once each, split over two workers.
	for us := 1; us <= 1000; us++ {
		w := w1
		if us%2 == 0 {
			w = w2
		}
		w.record(OutcomeOK, time.Duration(us)*time.Microsecond, start.Add(time.Duration(us)*time.Microsecond))
	}
	// Second 1: 100 answers of 50 ms, 3 refusals, 2 failures.
	for i := 0; i < 105; i++ {
		o := OutcomeOK
		switch {
		case i < 3:
			o = OutcomeRefused
		case i < 5:
			o = OutcomeFailed
		}
		w1.record(o, 50*time.Millisecond, start.Add(time.Second+time.Duration(i)*time.Millisecond))
	}
	w1.done()
	w2.done()
	s := r.summary("test", 2*time.Second)
	require.EqualValues(t, 1100, s.OK)
	require.EqualValues(t, 3, s.Refused)
	require.EqualValues(t, 2, s.Failed)
	require.InDelta(t, 551.5, s.Throughput(), 0.01)
	near := func(want, got time.Duration) {
		t.Helper()
		require.InDelta(t, float64(want), float64(got), float64(want)/100+float64(time.Microsecond), "want %s got %s", want, got)
	}
	// 1105 samples: the 50th percentile is sample 553 (553 µs), the 90th is
	// sample 995 (995 µs), the 99th a 50 ms one.
	near(553*time.Microsecond, s.P50)
	near(995*time.Microsecond, s.P90)
	near(50*time.Millisecond, s.P99)
	near(50*time.Millisecond, s.Max)
	require.Len(t, s.Series, 2)
	require.EqualValues(t, 1000, s.Series[0].OK)
	near(500*time.Microsecond, s.Series[0].P50)
	near(990*time.Microsecond, s.Series[0].P99)
	near(time.Millisecond, s.Series[0].Max)
	require.EqualValues(t, 100, s.Series[1].OK)
	require.EqualValues(t, 103, s.Series[1].Answered())
	near(50*time.Millisecond, s.Series[1].P50)
}

func TestTxSeq(t *testing.T) {
	seq, ok := txSeq([]byte("38349000001-17"), 38349000001)
	require.True(t, ok)
	require.EqualValues(t, 17, seq)
	for _, bad := range []string{"", "-", "38349000001-", "38349000002-17", "38349000001-x", "38349000001-0", "17"} {
		_, ok := txSeq([]byte(bad), 38349000001)
		require.False(t, ok, bad)
	}
}

func FuzzTxSeq(f *testing.F) {
	f.Add([]byte("38349000001-17"))
	f.Add([]byte("-1-2-3"))
	f.Fuzz(func(t *testing.T, id []byte) {
		seq, ok := txSeq(id, 38349000001)
		if ok {
			require.Positive(t, seq)
			require.True(t, strings.HasPrefix(string(id), "38349000001-"))
		}
	})
}

func TestConfigValidate(t *testing.T) {
	base := Config{Target: "http://127.0.0.1:1", OpsKey: "k"}
	base.Defaults()
	require.NoError(t, base.Validate())
	for name, mutate := range map[string]func(*Config){
		"no target":   func(c *Config) { c.Target = "" },
		"no key":      func(c *Config) { c.OpsKey = "" },
		"scenario":    func(c *Config) { c.Scenario = "storm" },
		"concurrency": func(c *Config) { c.Concurrency = ConcurrencyMax + 1 },
		"rate":        func(c *Config) { c.Rate = -1 },
		"subscribers": func(c *Config) { c.Subscribers = SubscribersMax + 1 },
		"topup":       func(c *Config) { c.TopUp = -charging.AmountPerEuro },
		"mix":         func(c *Config) { c.Mix.SMS = -1 },
		"ramp itself": func(c *Config) { c.Scenario, c.RampScenario = ScenarioRamp, ScenarioRamp },
	} {
		c := base
		mutate(&c)
		require.Error(t, c.Validate(), name)
	}
}

// TestAuditCatchesUnappliedCharge: a server that acknowledges SMS charges
// without debiting them fails the audit, by the ledger and by balances.
func TestAuditCatchesUnappliedCharge(t *testing.T) {
	l := startTestLimit(t)
	cfg := smokeConfig(l.URL(), ScenarioSMS)
	cfg.Subscribers = 50
	_, err := Provision(cfg, nil)
	require.NoError(t, err)
	l.faults.unappliedCharges.Store(3)
	res, err := Run(cfg, nil)
	require.NoError(t, err)
	require.Positive(t, res.Runs[0].OK)
	require.False(t, res.Audit.OK)
	joined := strings.Join(res.Audit.Problems, "\n")
	require.Contains(t, joined, "ledger owed")
	require.Contains(t, joined, "off by 0.15")
	require.Contains(t, joined, "expected")
	require.Contains(t, joined, "subscriber 3834900")
}

// TestAuditCatchesMissingTopUp: a top-up acknowledged and credited but not
// in the history fails the audit although every balance adds up.
func TestAuditCatchesMissingTopUp(t *testing.T) {
	l := startTestLimit(t)
	cfg := smokeConfig(l.URL(), ScenarioTopUp)
	cfg.Subscribers = 50
	_, err := Provision(cfg, nil)
	require.NoError(t, err)
	l.faults.unjournaledTopUps.Store(1)
	res, err := Run(cfg, nil)
	require.NoError(t, err)
	require.False(t, res.Audit.OK)
	require.Len(t, res.Audit.Problems, 1, "%v", res.Audit.Problems)
	require.Contains(t, res.Audit.Problems[0], "missing from the history")
}

func TestParseMix(t *testing.T) {
	m, err := ParseMix("sms=70, session=20,topup=10")
	require.NoError(t, err)
	require.Equal(t, Mix{SMS: 70, Session: 20, TopUp: 10}, m)
	for _, bad := range []string{"", "sms", "sms=x", "sms=-1", "fax=3", "sms=0", "sms=70,,topup=1"} {
		_, err := ParseMix(bad)
		require.Error(t, err, bad)
	}
}

func FuzzParseMix(f *testing.F) {
	f.Add("sms=70,session=20,topup=10")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMix(s)
		if err == nil {
			require.Positive(t, m.total())
			again, err := ParseMix(m.String())
			require.NoError(t, err)
			require.Equal(t, m, again)
		}
	})
}

func TestParseTotal(t *testing.T) {
	for in, want := range map[string]charging.Amount{"2000000.00": charging.Euros(2_000_000), "0": 0,
		"-1.5": -15_000, "12.3456": 123_456, "922337203685476": charging.Euros(922337203685476)} {
		got, err := parseTotal(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "-", ".5", "1.", "1.23456", "1e3", "+1", " 1", "1,000.00", "92233720368547758"} {
		_, err := parseTotal(bad)
		require.Error(t, err, bad)
	}
}

func FuzzParseTotal(f *testing.F) {
	f.Add("2000000.00")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseTotal(s)
		if err != nil {
			return
		}
		// Within a balance's range both parsers agree.
		if b, err := charging.ParseAmount(s); err == nil {
			require.Equal(t, b, a)
		}
		back, err := parseTotal(a.String())
		require.NoError(t, err)
		require.Equal(t, a, back)
	})
}
