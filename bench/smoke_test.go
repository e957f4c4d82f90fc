package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testOpsKey = "ops-test-key"

// startTestLimit starts a limit server on a free loopback port.
func startTestLimit(t *testing.T) *Limit {
	t.Helper()
	l, err := StartLimit(LimitConfig{Listen: "127.0.0.1:0", Dir: t.TempDir(), BootstrapKey: testOpsKey})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l
}

func smokeConfig(target, scenario string) Config {
	return Config{Target: target, OpsKey: testOpsKey, Scenario: scenario, Rate: 2000, Concurrency: 16,
		Duration: 500 * time.Millisecond, Subscribers: 200, RampStart: 500, RampStep: 500, RampMax: 1500,
		RampStepFor: 300 * time.Millisecond, RampP99: time.Second, Timeout: 2 * time.Second}
}

// TestSmokeLimit runs every scenario briefly against the limit server and
// requires the audit to pass with something acknowledged.
func TestSmokeLimit(t *testing.T) {
	l := startTestLimit(t)
	cfg := smokeConfig(l.URL(), ScenarioSMS)
	p, err := Provision(cfg, nil)
	require.NoError(t, err)
	require.Equal(t, 200, p.Created)
	for _, sc := range []string{ScenarioSMS, ScenarioSession, ScenarioTopUp, ScenarioMixed, ScenarioRamp} {
		t.Run(sc, func(t *testing.T) {
			res, err := Run(smokeConfig(l.URL(), sc), nil)
			require.NoError(t, err)
			var ok int64
			for _, s := range res.Runs {
				ok += s.OK
				require.Zero(t, s.Failed, "first failure: %s", s.FirstFailure)
			}
			require.Positive(t, ok)
			require.True(t, res.Audit.OK, "audit: %v", res.Audit.Problems)
			require.Positive(t, res.Audit.SubscribersChecked)
			if sc == ScenarioTopUp || sc == ScenarioMixed {
				require.Positive(t, res.Audit.TopUpsChecked)
			}
		})
	}
	t.Run("closed loop", func(t *testing.T) {
		cfg := smokeConfig(l.URL(), ScenarioMixed)
		cfg.Rate = 0
		res, err := Run(cfg, nil)
		require.NoError(t, err)
		require.Positive(t, res.Runs[0].OK)
		require.True(t, res.Audit.OK, "audit: %v", res.Audit.Problems)
	})
	t.Run("report", func(t *testing.T) {
		engine, err := Run(smokeConfig(l.URL(), ScenarioMixed), nil)
		require.NoError(t, err)
		ceiling, err := Run(smokeConfig(l.URL(), ScenarioMixed), nil)
		require.NoError(t, err)
		dir := t.TempDir()
		rep := &Report{Command: "ocs-bench test", Machine: MachineFacts("."), Engine: engine, Ceiling: ceiling}
		path, err := WriteReport(dir, rep)
		require.NoError(t, err)
		md, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Contains(t, string(md), "of the ceiling")
		require.Contains(t, string(md), "Audit **passed**")
		// Offered the same rate, both answer about it; under -race on a
		// loaded machine an open-loop run can overrun, so only the sign
		// and the printed figure are pinned.
		require.Positive(t, rep.Fraction())
		require.Contains(t, string(md), fmt.Sprintf("%.1f%% of the ceiling", 100*rep.Fraction()))
		for _, f := range []string{"engine-throughput.png", "engine-latency.png", "ceiling-distribution.png"} {
			st, err := os.Stat(filepath.Join(dir, f))
			require.NoError(t, err)
			require.Greater(t, st.Size(), int64(1000), f)
		}
	})
	t.Run("voucher unavailable", func(t *testing.T) {
		res, err := Run(smokeConfig(l.URL(), ScenarioVoucher), nil)
		require.ErrorIs(t, err, ErrNotAvailable)
		require.NotEmpty(t, res.Skipped)
	})
}
