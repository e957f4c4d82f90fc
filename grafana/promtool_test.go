package grafana

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// toolTimeout bounds every promtool run: they take milliseconds.
const toolTimeout = 30 * time.Second

// requireTool returns the path of a Prometheus binary. Without it the test
// is skipped with a message saying how to install it, except under CI=true
// where a missing tool must not pass unnoticed.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " is not installed: run .ci/install-prometheus.sh (Debian package prometheus); " +
		"the dashboards and alerts are NOT checked against Prometheus in this run"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED LOUDLY: " + msg)
	return ""
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	promtool := requireTool(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	t.Logf("promtool %v:\n%s", args, out)
}

func TestPromtoolCheckRules(t *testing.T) {
	runPromtool(t, "check", "rules", "alerts.yml")
}

// TestPromtoolTestRules runs alerts_test.yml: for every rule, series that
// must fire and series that must stay silent.
func TestPromtoolTestRules(t *testing.T) {
	runPromtool(t, "test", "rules", "alerts_test.yml")
}

func TestPromtoolCheckConfig(t *testing.T) {
	runPromtool(t, "check", "config", "prometheus.yml")
	runPromtool(t, "check", "config", "prometheus-docker.yml")
}
