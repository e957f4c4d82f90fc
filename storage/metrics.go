package storage

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storeMetrics are the store's own metrics, observed by the committer.
type storeMetrics struct {
	duration  prometheus.Histogram
	batchSize prometheus.Histogram
	ok        prometheus.Counter // cached WithLabelValues: no lookup per commit
	errors    prometheus.Counter
}

func newStoreMetrics(r prometheus.Registerer) *storeMetrics {
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "ocs_storage_commit_duration_seconds",
		Help: "Time of one Commit (or Apply to Wait): encoding, write-ahead log write and fsync.",
		// fsync here is 50–170 µs; a stalled disk shows in the top buckets.
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14), // 25 µs .. 205 ms
	})
	batchSize := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ocs_storage_commit_batch_size",
		Help:    "Changes per committed batch.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024
	})
	commits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocs_storage_commits_total",
		Help: "Batches committed, by result (ok or error).",
	}, []string{"result"})
	duration = register(r, duration)
	batchSize = register(r, batchSize)
	commits = register(r, commits)
	return &storeMetrics{
		duration:  duration,
		batchSize: batchSize,
		ok:        commits.WithLabelValues("ok"),
		errors:    commits.WithLabelValues("error"),
	}
}

// register registers c, or returns the collector already registered under
// its name: a store reopened in the same process keeps counting into it.
func register[C prometheus.Collector](r prometheus.Registerer, c C) C {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("storage: register metrics: " + err.Error())
	}
	return c
}

func (m *storeMetrics) observe(start time.Time, n int, err error) {
	if err != nil {
		m.errors.Inc()
		return
	}
	m.ok.Inc()
	m.duration.Observe(time.Since(start).Seconds())
	m.batchSize.Observe(float64(n))
}

// collector exposes Pebble's DB.Metrics at scrape time.
type collector struct {
	s                    *Store
	walBytes             *prometheus.Desc
	flushes, compactions *prometheus.Desc
	l0Files, l0Sublevels *prometheus.Desc
	readAmp              *prometheus.Desc
	cacheHits            *prometheus.Desc
	cacheMisses          *prometheus.Desc
	diskUsage            *prometheus.Desc
}

// NewCollector returns a collector of s's Pebble metrics, read from
// DB.Metrics at each scrape (a few microseconds; nothing on the commit
// path). Register it on the same registry as the rest of the process.
func NewCollector(s *Store) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &collector{
		s:           s,
		walBytes:    d("ocs_pebble_wal_bytes", "Bytes of live data in the write-ahead log: what a restart would replay."),
		flushes:     d("ocs_pebble_flushes_total", "Memtable flushes since open."),
		compactions: d("ocs_pebble_compactions_total", "Compactions since open."),
		l0Files:     d("ocs_pebble_l0_files", "Tables in L0."),
		l0Sublevels: d("ocs_pebble_l0_sublevels", "Sublevels in L0: the read amplification of L0."),
		readAmp:     d("ocs_pebble_read_amplification", "Tables a point read may consult: L0 sublevels plus non-empty levels."),
		cacheHits:   d("ocs_pebble_block_cache_hits_total", "Block cache hits since open."),
		cacheMisses: d("ocs_pebble_block_cache_misses_total", "Block cache misses since open."),
		diskUsage:   d("ocs_pebble_disk_usage_bytes", "Disk space used by the database: tables, WAL, manifest."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.walBytes, c.flushes, c.compactions, c.l0Files, c.l0Sublevels,
		c.readAmp, c.cacheHits, c.cacheMisses, c.diskUsage} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.db.Metrics()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.walBytes, float64(m.WAL.Size))
	counter(c.flushes, float64(m.Flush.Count))
	counter(c.compactions, float64(m.Compact.Count))
	gauge(c.l0Files, float64(m.Levels[0].TablesCount))
	gauge(c.l0Sublevels, float64(m.Levels[0].Sublevels))
	gauge(c.readAmp, float64(m.ReadAmp()))
	counter(c.cacheHits, float64(m.BlockCache.Hits))
	counter(c.cacheMisses, float64(m.BlockCache.Misses))
	gauge(c.diskUsage, float64(m.DiskSpaceUsage()))
}
