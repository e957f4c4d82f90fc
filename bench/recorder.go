package bench

import (
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to latencyMaxMicros; a
// slower answer is clamped to the maximum (and counted: the request timeout
// is far below it, so it only happens for a stalled generator).
const (
	latencyMaxMicros = 60_000_000
	// latencyDigits: 3 significant digits in the run histogram (0.1%), 2
	// per second (1%): 256 workers × a 20 KB histogram per second is cheap,
	// 3 digits there would be 140 KB each.
	latencyDigits       = 3
	latencySeriesDigits = 2
	// secondsMax bounds a run's time series (one day).
	secondsMax = 86_400
)

// Outcome classifies one request.
type Outcome uint8

const (
	// OutcomeOK: the server acknowledged the operation.
	OutcomeOK Outcome = 1
	// OutcomeRefused: the server answered with a business refusal
	// (insufficient balance, unknown subscriber, …): nothing changed.
	OutcomeRefused Outcome = 2
	// OutcomeFailed: transport error, timeout or unexpected status: the
	// outcome is unknown to the client.
	OutcomeFailed Outcome = 3
)

// Point is one second of a run.
type Point struct {
	Second                   int
	OK, Refused, Failed      int64
	P50, P90, P99, P999, Max time.Duration
}

// Answered returns the requests that got an answer in this second.
func (p Point) Answered() int64 { return p.OK + p.Refused }

// Summary is the outcome of one run or one ramp step.
type Summary struct {
	Name                     string
	Rate                     float64 // scheduled requests/s, 0 in closed loop
	Concurrency              int
	Elapsed                  time.Duration
	OK, Refused, Failed      int64
	Missed                   int64 // open loop: scheduled slots never sent (run ended)
	P50, P90, P99, P999, Max time.Duration
	Series                   []Point
	Histogram                *hdrhistogram.Histogram
	FirstFailure             string
}

// Throughput returns answered requests per second over the run.
func (s *Summary) Throughput() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.OK+s.Refused) / s.Elapsed.Seconds()
}

func newHistogram(digits int) *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMaxMicros, digits)
}

func micros(d time.Duration) int64 {
	us := d.Microseconds()
	if us < 1 {
		return 1
	}
	if us > latencyMaxMicros {
		return latencyMaxMicros
	}
	return us
}

func fromMicros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// recorder gathers the latencies of all workers of one run.
type recorder struct {
	start time.Time
	mu    struct {
		sync.Mutex
		total        *hdrhistogram.Histogram
		seconds      []second
		firstFailure string
	}
}

type second struct {
	hist                *hdrhistogram.Histogram
	ok, refused, failed int64
}

func newRecorder(start time.Time) *recorder {
	r := &recorder{start: start}
	r.mu.total = newHistogram(latencyDigits)
	return r
}

// workerRecorder is one worker's private part: no lock on the hot path, a
// merge into the shared recorder once per second and at the end.
type workerRecorder struct {
	r     *recorder
	total *hdrhistogram.Histogram
	sec   int
	cur   second
}

func (r *recorder) worker() *workerRecorder {
	return &workerRecorder{r: r, total: newHistogram(latencyDigits),
		cur: second{hist: newHistogram(latencySeriesDigits)}}
}

// record notes one request that completed at done after latency.
func (w *workerRecorder) record(o Outcome, latency time.Duration, done time.Time) {
	s := int(done.Sub(w.r.start) / time.Second)
	if s < 0 {
		s = 0
	}
	if s >= secondsMax {
		s = secondsMax - 1
	}
	if s != w.sec {
		w.flushSecond()
		w.sec = s
	}
	us := micros(latency)
	_ = w.total.RecordValue(us)
	_ = w.cur.hist.RecordValue(us)
	switch o {
	case OutcomeOK:
		w.cur.ok++
	case OutcomeRefused:
		w.cur.refused++
	default:
		w.cur.failed++
	}
}

// fail records the first failure's text for the report.
func (w *workerRecorder) fail(msg string) {
	w.r.mu.Lock()
	if w.r.mu.firstFailure == "" {
		w.r.mu.firstFailure = msg
	}
	w.r.mu.Unlock()
}

func (w *workerRecorder) flushSecond() {
	if w.cur.ok+w.cur.refused+w.cur.failed == 0 {
		return
	}
	r := w.r
	r.mu.Lock()
	for len(r.mu.seconds) <= w.sec {
		r.mu.seconds = append(r.mu.seconds, second{})
	}
	s := &r.mu.seconds[w.sec]
	if s.hist == nil {
		s.hist = newHistogram(latencySeriesDigits)
	}
	s.hist.Merge(w.cur.hist)
	s.ok += w.cur.ok
	s.refused += w.cur.refused
	s.failed += w.cur.failed
	r.mu.Unlock()
	w.cur.hist.Reset()
	w.cur.ok, w.cur.refused, w.cur.failed = 0, 0, 0
}

// done merges the worker's remaining figures.
func (w *workerRecorder) done() {
	w.flushSecond()
	w.r.mu.Lock()
	w.r.mu.total.Merge(w.total)
	w.r.mu.Unlock()
}

// summary builds the run's Summary once every worker is done.
func (r *recorder) summary(name string, elapsed time.Duration) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{Name: name, Elapsed: elapsed, Histogram: r.mu.total, FirstFailure: r.mu.firstFailure}
	fillPercentiles(r.mu.total, &s.P50, &s.P90, &s.P99, &s.P999, &s.Max)
	for i, sec := range r.mu.seconds {
		p := Point{Second: i, OK: sec.ok, Refused: sec.refused, Failed: sec.failed}
		if sec.hist != nil {
			fillPercentiles(sec.hist, &p.P50, &p.P90, &p.P99, &p.P999, &p.Max)
		}
		s.OK += sec.ok
		s.Refused += sec.refused
		s.Failed += sec.failed
		s.Series = append(s.Series, p)
	}
	return s
}

func fillPercentiles(h *hdrhistogram.Histogram, p50, p90, p99, p999, max *time.Duration) {
	if h.TotalCount() == 0 {
		return
	}
	*p50 = fromMicros(h.ValueAtQuantile(50))
	*p90 = fromMicros(h.ValueAtQuantile(90))
	*p99 = fromMicros(h.ValueAtQuantile(99))
	*p999 = fromMicros(h.ValueAtQuantile(99.9))
	*max = fromMicros(h.Max())
}
