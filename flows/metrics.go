package flows

import (
	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric label values beyond the stores' own result names.
const (
	labelOK            = "ok"
	labelCreditRefused = "credit_refused" // the account leg refused (balance limit, grace, …)
	labelError         = "error"          // an operating error: the record stays open for recovery
)

// metrics are the flows' counters, every label value pre-created at 0 and
// cached, so counting is an index and no string is built per request.
type metrics struct {
	redemptions map[string]prometheus.Counter
	transfers   map[string]prometheus.Counter
	payments    map[string]prometheus.Counter
	redrive     redriveMetrics
}

func newMetrics(r prometheus.Registerer) *metrics {
	if r == nil {
		return nil
	}
	m := &metrics{}
	var voucherLabels []string
	for v := charging.VoucherOK; v.String() != "invalid"; v++ {
		voucherLabels = append(voucherLabels, v.String())
	}
	m.redemptions = counters(r, "ocs_voucher_redemptions_total",
		"Scratch-card redemptions by result: a card verdict, credit_refused (the credit leg refused, card reverted) or error.",
		append(voucherLabels, labelCreditRefused, labelError))
	var transferLabels []string
	for v := charging.TransferToSelf; v.String() != "invalid"; v++ {
		transferLabels = append(transferLabels, v.String())
	}
	m.transfers = counters(r, "ocs_transfers_total",
		"Credit transfers by result: ok (credited), a validation refusal, unknown_subscriber (receiver), debit_refused, reversed or error.",
		append(transferLabels, labelOK, "unknown_subscriber", "debit_refused", "reversed", labelError))
	var fixedLabels []string
	for v := charging.FixedOK; v.String() != "invalid"; v++ {
		fixedLabels = append(fixedLabels, v.String())
	}
	m.payments = counters(r, "ocs_package_payments_total",
		"*101# package payments by result: ok, a fixed-account refusal, debit_refused or error.",
		append(fixedLabels, "debit_refused", labelError))
	m.redrive = newRedriveMetrics(r)
	return m
}

func counters(r prometheus.Registerer, name, help string, labels []string) map[string]prometheus.Counter {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"result"})
	r.MustRegister(vec)
	out := make(map[string]prometheus.Counter, len(labels))
	for _, l := range labels {
		out[l] = vec.WithLabelValues(l)
	}
	return out
}

func inc(m map[string]prometheus.Counter, label string) {
	if c, ok := m[label]; ok {
		c.Inc()
	}
}

func (m *metrics) redeemed(res *Result, err error) {
	if m == nil {
		return
	}
	switch {
	case err != nil:
		inc(m.redemptions, labelError)
	case res.Voucher != charging.VoucherOK:
		inc(m.redemptions, res.Voucher.String())
	case res.Account == charging.ResultOK:
		inc(m.redemptions, labelOK)
	case res.Account == charging.ResultUnknownSubscriber:
		// The card was good; the credit found no such beneficiary.
		inc(m.redemptions, charging.VoucherWrongSubscriber.String())
	default:
		inc(m.redemptions, labelCreditRefused)
	}
}

func (m *metrics) transferred(res *Result, err error) {
	if m == nil {
		return
	}
	switch {
	case err != nil:
		inc(m.transfers, labelError)
	case res.Transfer != charging.TransferOK:
		inc(m.transfers, res.Transfer.String())
	case res.Ref == 0:
		inc(m.transfers, "unknown_subscriber")
	case res.Account == charging.ResultOK:
		inc(m.transfers, labelOK)
	case res.ByReceiver:
		inc(m.transfers, "reversed")
	default:
		inc(m.transfers, "debit_refused")
	}
}

func (m *metrics) paid(res *Result, err error) {
	if m == nil {
		return
	}
	switch {
	case err != nil:
		inc(m.payments, labelError)
	case res.Fixed != charging.FixedOK:
		inc(m.payments, res.Fixed.String())
	case res.Account == charging.ResultOK:
		inc(m.payments, labelOK)
	default:
		inc(m.payments, "debit_refused")
	}
}

// redriveMetrics are the re-driver's metrics, by record kind.
type redriveMetrics struct {
	results [kindCount]map[string]prometheus.Counter
	stuck   [kindCount]prometheus.Gauge
}

func newRedriveMetrics(r prometheus.Registerer) redriveMetrics {
	var m redriveMetrics
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ocs_redrives_total",
		Help: "Open records the re-driver finished or tried to, by kind (redemption, transfer, payment) and result: " +
			"credited, reverted (card active again), reversed, refused, applied, cancelled, or error (left open, retried later)."},
		[]string{"kind", "result"})
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ocs_redrive_open_records",
		Help: "Records the last complete re-drive pass found open for longer than the minimum age (or the pass under way, if more), by kind: " +
			"above zero for minutes, money is half-way and an operator should look."},
		[]string{"kind"})
	r.MustRegister(vec, gauge)
	for k := range kindCount {
		m.results[k] = make(map[string]prometheus.Counter)
		for _, l := range append(redriveResults[k], labelError) {
			m.results[k][l] = vec.WithLabelValues(kindNames[k], l)
		}
		m.stuck[k] = gauge.WithLabelValues(kindNames[k])
	}
	return m
}

func (m *metrics) redriven(kind recordKind, result string) {
	if m == nil {
		return
	}
	inc(m.redrive.results[kind], result)
}

func (m *metrics) redriveStuck(kind recordKind, n int) {
	if m == nil {
		return
	}
	m.redrive.stuck[kind].Set(float64(n))
}
