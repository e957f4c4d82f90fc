package httpapi

import (
	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric result slots: every charging.Result by its own value, then the
// HTTP-level outcomes that never reach the engine. A handler returns a slot,
// so counting is an array index, never a map lookup or string building.
type slot uint8

const (
	slotBadRequest   slot = slot(len(resultTable)) + iota // decoder refusals (400, 413)
	slotUnauthorized                                      // 401
	slotForbidden                                         // 403 by role
	slotError                                             // engine error (503), 404/405 route
	slotCount
)

var slotNames = func() [slotCount]string {
	var n [slotCount]string
	for _, r := range charging.Results() {
		n[r] = r.String()
	}
	n[slotBadRequest] = "bad_request"
	n[slotUnauthorized] = "unauthorized"
	n[slotForbidden] = "forbidden"
	n[slotError] = "error"
	return n
}()

// metrics holds the pre-created children of ocs_requests_total and
// ocs_request_duration_seconds for every (operation, result).
type metrics struct {
	requests [opCount][slotCount]prometheus.Counter
	duration [opCount]prometheus.Observer
}

// newMetrics registers the HTTP metrics on r; nil r means no metrics, and the
// handler then skips them with one nil check.
func newMetrics(r prometheus.Registerer) *metrics {
	if r == nil {
		return nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocs_requests_total",
		Help: "HTTP API requests by interface, operation and result (a charging result or an HTTP-level code).",
	}, []string{"interface", "operation", "result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ocs_request_duration_seconds",
		Help: "HTTP API request handling time, from routing to the response being built.",
		// 50 µs to 1 s: a durable charge takes a few hundred µs to ms; 5G
		// charging answers are expected within 10 ms.
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 15),
	}, []string{"interface", "operation"})
	r.MustRegister(requests, duration)
	m := &metrics{}
	for o := op(1); o < opCount; o++ {
		iface, name := opInterface[o], opNames[o]
		m.duration[o] = duration.WithLabelValues(iface, name)
		for sl := slot(1); sl < slotCount; sl++ {
			if slotNames[sl] == "" {
				continue
			}
			m.requests[o][sl] = requests.WithLabelValues(iface, name, slotNames[sl])
		}
	}
	return m
}
