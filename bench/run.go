package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// Result is everything one invocation of Run measured and checked.
type Result struct {
	Config  Config
	Started time.Time
	// Runs holds one Summary, or one per ramp step.
	Runs []Summary
	// RampHeld is the highest ramp rate whose p99 stayed under the target
	// (0: none held, or not a ramp).
	RampHeld float64
	Audit    AuditReport
	// Skipped names operations of the mix the server does not offer.
	Skipped []string
}

// runner is the state shared by the workers of one Run.
type runner struct {
	cfg               Config
	client            *Client
	networkKey        string
	channelKey        string
	keyPrefix         string
	stamp             string
	mix               [opKindCount]int
	mixTotal          int
	smsCost           charging.Amount
	voice             charging.Tariff
	audit             *ledgerAudit
	topUpIDsPerWorker int
	workers           []*worker
	vouchers          *voucherPool // the run's cards, when it redeems
}

// Run provisions nothing: it expects subscribers FirstMSISDN… to exist
// (see Provision), runs cfg's scenario, closes open sessions and audits.
// Progress lines go to log (nil: none).
func Run(cfg Config, log io.Writer) (*Result, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	r, err := newRunner(cfg)
	if err != nil {
		return nil, err
	}
	defer r.close()
	res := &Result{Config: cfg, Started: time.Now()}
	mix := cfg.mixOf(cfg.Scenario)
	weights := [opKindCount]int{mix.SMS, mix.Session, mix.TopUp, mix.Voucher, mix.Bank}
	for op := opKind(0); op < opKindCount; op++ {
		if weights[op] > 0 && !op.available() {
			res.Skipped = append(res.Skipped, opNames[op]+": "+ErrNotAvailable.Error())
			weights[op] = 0
		}
	}
	if weights[opVoucher] > 0 {
		total := 0
		for _, w := range weights {
			total += w
		}
		err := r.prepareVouchers(cfg.voucherCards(float64(weights[opVoucher])/float64(total)), log)
		switch {
		case errors.Is(err, ErrNotAvailable):
			res.Skipped = append(res.Skipped, opNames[opVoucher]+": "+err.Error())
			weights[opVoucher] = 0
		case err != nil:
			return res, err
		}
	}
	for op := opKind(0); op < opKindCount; op++ {
		r.mix[op] = weights[op]
		r.mixTotal += weights[op]
	}
	if r.mixTotal == 0 {
		return res, fmt.Errorf("bench: scenario %s: %w", cfg.Scenario, ErrNotAvailable)
	}
	if err := r.audit.before(r.client, cfg.AuditSubscribers); err != nil {
		return res, err
	}
	if cfg.Scenario == ScenarioRamp {
		res.Runs, res.RampHeld = r.ramp(log)
	} else {
		fmt.Fprintf(log, "running %s for %s (%s)\n", cfg.Scenario, cfg.Duration, loopName(cfg.Rate, cfg.Concurrency))
		res.Runs = []Summary{r.run(cfg.Scenario, cfg.Rate, cfg.Duration)}
	}
	r.closeSessions()
	fmt.Fprintln(log, "auditing")
	res.Audit = r.audit.after(r.client, r.tallies(), cfg.AuditTopUps)
	return res, nil
}

func loopName(rate float64, conc int) string {
	if rate > 0 {
		return fmt.Sprintf("open loop at %.0f/s, at most %d in flight", rate, conc)
	}
	return fmt.Sprintf("closed loop, %d callers", conc)
}

func newRunner(cfg Config) (*runner, error) {
	client, err := NewClient(cfg.Target, cfg.OpsKey, cfg.Concurrency+8, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, client: client, networkKey: cfg.NetworkKey, channelKey: cfg.ChannelKey,
		stamp: stampOf(time.Now()), audit: newLedgerAudit(cfg.Subscribers)}
	if r.networkKey == "" {
		if r.networkKey, err = client.IssueKey("network"); err != nil {
			return nil, err
		}
	}
	if r.channelKey == "" {
		if r.channelKey, err = client.IssueKey("channel"); err != nil {
			return nil, err
		}
	}
	var p [6]byte
	_, _ = rand.Read(p[:])
	r.keyPrefix = "b" + hex.EncodeToString(p[:])
	sms := cfg.Tariffs[charging.RatingGroupSMS]
	r.smsCost = sms.Cost(1)
	r.voice = cfg.Tariffs[charging.RatingGroupVoice]
	r.topUpIDsPerWorker = topUpIDsMax / cfg.Concurrency
	seeds := mrand.New(mrand.NewPCG(cfg.Seed, 0x0c5))
	for i := range cfg.Concurrency {
		r.workers = append(r.workers, &worker{id: i, r: r, k: client.conn(),
			rng: mrand.New(mrand.NewPCG(seeds.Uint64(), seeds.Uint64()))})
	}
	return r, nil
}

func (r *runner) close() {
	for _, w := range r.workers {
		w.k.release()
	}
	r.client.Close()
}

func (r *runner) tallies() tally {
	var t tally
	for _, w := range r.workers {
		t.toppedUp += w.t.toppedUp
		t.charged += w.t.charged
		t.sessionDebited += w.t.sessionDebited
		t.voucherCredited += w.t.voucherCredited
		t.uncertain += w.t.uncertain
		t.topUpIDs = append(t.topUpIDs, w.t.topUpIDs...)
	}
	return t
}

func (r *runner) closeSessions() {
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Go(w.closeSession)
	}
	wg.Wait()
}

// run sends for d, open loop at rate (> 0) or closed loop, and summarises.
func (r *runner) run(name string, rate float64, d time.Duration) Summary {
	start := time.Now()
	rec := newRecorder(start)
	var next atomic.Int64
	var total int64
	sched := Schedule{Start: start, Rate: rate}
	if rate > 0 {
		total = sched.Count(d)
	}
	end := start.Add(d)
	giveUp := end.Add(min(drainMax, d/2+time.Second))
	var wg sync.WaitGroup
	for _, w := range r.workers {
		w.rec = rec.worker()
		w.err = ""
		if rate > 0 {
			wg.Go(func() { w.openLoop(sched, &next, total, giveUp) })
		} else {
			wg.Go(func() { w.closedLoop(end) })
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, w := range r.workers {
		w.rec.done()
	}
	s := rec.summary(name, elapsed)
	s.Rate, s.Concurrency = rate, r.cfg.Concurrency
	if rate > 0 {
		if sent := next.Load(); sent < total {
			s.Missed = total - sent
		}
		// An open-loop run lasts until its schedule ends: measuring
		// throughput over a drained backlog would flatter nothing, but
		// the schedule is the honest denominator.
		if s.Elapsed < d {
			s.Elapsed = d
		}
	}
	return s
}

// openLoop claims scheduled slots until the schedule or the patience ends.
// Latency runs from the scheduled time: a request sent late because every
// worker was busy carries its wait.
func (w *worker) openLoop(sched Schedule, next *atomic.Int64, total int64, giveUp time.Time) {
	for {
		i := next.Add(1) - 1
		if i >= total {
			next.Add(-1)
			return
		}
		at := sched.At(i)
		now := time.Now()
		if now.After(giveUp) {
			next.Add(-1)
			return
		}
		// Sleeping for less than ~50 µs costs more than it is worth: send
		// a little early and measure from the actual send instead.
		if wait := at.Sub(now); wait > 50*time.Microsecond {
			time.Sleep(wait)
			now = time.Now()
		}
		from := at
		if now.Before(at) {
			from = now
		}
		o := w.send(w.pick())
		done := time.Now()
		w.rec.record(o, done.Sub(from), done)
	}
}

// closedLoop sends back to back until end.
func (w *worker) closedLoop(end time.Time) {
	for {
		start := time.Now()
		if !start.Before(end) {
			return
		}
		o := w.send(w.pick())
		done := time.Now()
		w.rec.record(o, done.Sub(start), done)
	}
}

// ramp raises the open-loop rate step by step until p99 passes the target,
// failures appear or the server falls behind the schedule, and returns the
// highest rate that held.
func (r *runner) ramp(log io.Writer) ([]Summary, float64) {
	var steps []Summary
	held := 0.0
	for rate := r.cfg.RampStart; rate <= r.cfg.RampMax; rate += r.cfg.RampStep {
		s := r.run(fmt.Sprintf("%s@%.0f", r.cfg.RampScenario, rate), rate, r.cfg.RampStepFor)
		steps = append(steps, s)
		ok := rampHeld(&s, r.cfg.RampP99)
		fmt.Fprintf(log, "ramp %8.0f/s: %8.0f/s answered, p99 %s, failed %d, missed %d: %s\n",
			rate, s.Throughput(), s.P99, s.Failed, s.Missed, map[bool]string{true: "held", false: "broke"}[ok])
		if !ok {
			break
		}
		held = rate
	}
	return steps, held
}

// rampHeld: p99 under target, no failures, nothing missed, and at least 95%
// of the scheduled rate answered.
func rampHeld(s *Summary, p99 time.Duration) bool {
	return s.P99 <= p99 && s.Failed == 0 && s.Missed == 0 && s.Throughput() >= 0.95*s.Rate
}
