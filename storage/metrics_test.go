package storage

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

func gather(t *testing.T, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the value of the metric of family name with the given
// result label (or the only one): a counter's or gauge's value, a
// histogram's sample count.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name, result string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	require.True(t, ok, "metric %s missing", name)
	for _, m := range mf.GetMetric() {
		if result != "" {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != result {
				continue
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s{result=%q} has no value", name, result)
	return 0
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, err := Open("db", Options{FS: vfs.NewMem(), Registerer: reg})
	require.NoError(t, err)
	defer s.Close()
	reg.MustRegister(NewCollector(s))

	before := gather(t, reg)
	pebbleNames := []string{"ocs_pebble_wal_bytes", "ocs_pebble_flushes_total", "ocs_pebble_compactions_total",
		"ocs_pebble_l0_files", "ocs_pebble_l0_sublevels", "ocs_pebble_read_amplification",
		"ocs_pebble_block_cache_hits_total", "ocs_pebble_block_cache_misses_total", "ocs_pebble_disk_usage_bytes"}
	for _, n := range pebbleNames {
		value(t, before, n, "")
	}
	require.Zero(t, value(t, before, "ocs_storage_commits_total", "ok"))
	require.Zero(t, value(t, before, "ocs_storage_commits_total", "error"), "labels pre-created at 0")

	m := newModel(11)
	for range 20 {
		require.NoError(t, s.Commit(m.batch(25)))
	}
	bad := m.batch(1)
	bad[0].Account.Balance = -1
	require.Error(t, s.Commit(bad))
	// The live WAL holds the batches until a flush empties it.
	require.Greater(t, value(t, gather(t, reg), "ocs_pebble_wal_bytes", ""), 0.0)
	// A flush and reads through it move the table and cache metrics.
	require.NoError(t, s.db.Flush())
	for _, id := range m.ids {
		_, _, err := s.LoadAccount(id)
		require.NoError(t, err)
	}

	after := gather(t, reg)
	require.Equal(t, 20.0, value(t, after, "ocs_storage_commits_total", "ok"))
	require.Equal(t, 1.0, value(t, after, "ocs_storage_commits_total", "error"))
	require.Equal(t, 20.0, value(t, after, "ocs_storage_commit_duration_seconds", ""))
	require.Equal(t, 20.0, value(t, after, "ocs_storage_commit_batch_size", ""))
	require.Equal(t, 500.0, after["ocs_storage_commit_batch_size"].GetMetric()[0].GetHistogram().GetSampleSum())
	require.Greater(t, value(t, after, "ocs_pebble_flushes_total", ""), value(t, before, "ocs_pebble_flushes_total", ""))
	// The flushed table is in L0, or a compaction already moved it down.
	require.True(t, value(t, after, "ocs_pebble_l0_files", "") > 0 ||
		value(t, after, "ocs_pebble_compactions_total", "") > value(t, before, "ocs_pebble_compactions_total", ""))
	require.Greater(t, value(t, after, "ocs_pebble_read_amplification", ""), 0.0)
	require.Greater(t, value(t, after, "ocs_pebble_disk_usage_bytes", ""), value(t, before, "ocs_pebble_disk_usage_bytes", ""))
	cache := value(t, after, "ocs_pebble_block_cache_hits_total", "") + value(t, after, "ocs_pebble_block_cache_misses_total", "")
	require.Greater(t, cache, 0.0)
	for name := range after {
		require.True(t, strings.HasPrefix(name, "ocs_"), name)
	}

	// Reopening into the same registry reuses the registered metrics.
	s2, err := Open("db2", Options{FS: vfs.NewMem(), Registerer: reg})
	require.NoError(t, err)
	require.NoError(t, s2.Commit(newModel(12).batch(1)))
	require.Equal(t, 21.0, value(t, gather(t, reg), "ocs_storage_commits_total", "ok"))
	require.NoError(t, s2.Close())
}
