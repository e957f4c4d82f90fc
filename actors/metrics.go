package actors

import (
	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's own series (names in grafana/README.md's
// catalogue). Children are resolved once here, so the hot path does no
// label look-up.
type metrics struct {
	actorDuration [16]prometheus.Observer // by charging.Kind
	commitWait    prometheus.Histogram
	overload      prometheus.Counter
	failures      prometheus.Counter
	activations   prometheus.Counter
	passivations  prometheus.Counter
	reservations  prometheus.Gauge
	charges       [32]prometheus.Counter // by charging.Result
	chargeAmount  prometheus.Counter
	topups        [8][8]prometheus.Counter // by channel, bank
	topupAmount   [8][8]prometheus.Counter
	transitions   [4][4]prometheus.Counter // by from, to state
}

// latencyBuckets span 50 µs to 1 s: a durable charge takes a few hundred
// microseconds idle and a few milliseconds at peak; 10 ms is the target.
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

func newMetrics(r prometheus.Registerer, e *Engine) *metrics {
	m := &metrics{}
	actorDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ocs_actor_duration_seconds", Help: "Time a subscriber actor spends on one command, by operation.",
		Buckets: latencyBuckets}, []string{"operation"})
	for _, k := range charging.Kinds() {
		m.actorDuration[k] = actorDuration.WithLabelValues(k.String())
	}
	m.commitWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "ocs_commit_wait_seconds", Help: "Time from an actor handing a change to the committer until it is durable and answered.",
		Buckets: latencyBuckets})
	m.overload = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ocs_overload_refusals_total", Help: "Commands refused because the engine had InflightMax commands in flight."})
	m.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ocs_engine_commit_failures_total", Help: "Engine failures (a commit error or an actor panic); each stops the engine."})
	m.activations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ocs_actor_activations_total", Help: "Subscriber actors spawned and loaded from storage."})
	m.passivations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ocs_actor_passivations_total", Help: "Idle subscriber actors stopped."})
	m.reservations = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ocs_reservations_open", Help: "Open session reservations held by active subscriber actors."})
	charges := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocs_charges_total", Help: "Event charges by result."}, []string{"result"})
	for _, res := range charging.Results() {
		m.charges[res] = charges.WithLabelValues(res.String())
	}
	m.chargeAmount = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ocs_charge_amount_eur_total", Help: "Money debited by event charges and session usage, in euros."})
	topups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocs_topups_total", Help: "Accepted top-ups by channel and bank."}, []string{"channel", "bank"})
	topupAmount := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocs_topup_amount_eur_total", Help: "Money credited by accepted top-ups, in euros."}, []string{"channel", "bank"})
	for _, c := range charging.Channels() {
		for _, b := range charging.Banks() {
			if b != charging.BankNone && c != charging.ChannelBank {
				continue
			}
			m.topups[c][b] = topups.WithLabelValues(c.String(), b.String())
			m.topupAmount[c][b] = topupAmount.WithLabelValues(c.String(), b.String())
		}
	}
	transitions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocs_lifecycle_transitions_total", Help: "Lifecycle state changes observed by subscriber actors."}, []string{"from", "to"})
	states := []charging.State{charging.StateActive, charging.StateGrace, charging.StateSuspended}
	for _, from := range states {
		for _, to := range states {
			if from != to {
				m.transitions[from][to] = transitions.WithLabelValues(from.String(), to.String())
			}
		}
	}
	if r == nil {
		return m
	}
	r.MustRegister(actorDuration, m.commitWait, m.overload, m.failures, m.activations, m.passivations,
		m.reservations, charges, m.chargeAmount, topups, topupAmount, transitions,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ocs_inflight_requests", Help: "Commands inside the engine now."},
			func() float64 { return float64(e.inflight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ocs_actors_active", Help: "Subscriber actors in memory now."},
			func() float64 { return float64(e.dir.active.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ocs_balance_owed_eur", Help: "Sum of all balances: what the operator owes its subscribers, kept incrementally."},
			func() float64 { return euros(e.store.Totals().Owed) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ocs_accounts", Help: "Provisioned mobile accounts."},
			func() float64 { return float64(e.store.Totals().Accounts) }),
	)
	return m
}

func euros(a charging.Amount) float64 { return float64(a) / float64(charging.AmountPerEuro) }

// observe counts the business outcome of a durable command.
func (m *metrics) observe(cmd *charging.Command, out *charging.Outcome) {
	if out.Replayed {
		return
	}
	switch cmd.Kind {
	case charging.KindCharge:
		if int(out.Result) < len(m.charges) && m.charges[out.Result] != nil {
			m.charges[out.Result].Inc()
		}
		if out.Amount < 0 {
			m.chargeAmount.Add(euros(-out.Amount))
		}
	case charging.KindUpdate, charging.KindTerminate:
		if out.Amount < 0 {
			m.chargeAmount.Add(euros(-out.Amount))
		}
	case charging.KindTopUp:
		if out.Result == charging.ResultOK && int(cmd.Channel) < len(m.topups) && int(cmd.Bank) < len(m.topups[0]) {
			if c := m.topups[cmd.Channel][cmd.Bank]; c != nil {
				c.Inc()
				m.topupAmount[cmd.Channel][cmd.Bank].Add(euros(out.Amount))
			}
		}
	}
}

func (m *metrics) transition(from, to charging.State) {
	if c := m.transitions[from][to]; c != nil && from != 0 {
		c.Inc()
	}
}
