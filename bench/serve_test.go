package bench

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serveKey is the bootstrap ops key given to the engine under test (the
// engine wants at least 16 bytes).
const serveKey = "bench-smoke-ops-key-0123456789"

// startServe builds ./cmd/ocs and starts `ocs serve` as a child on a free
// loopback port. It skips, loudly, when the engine does not build: this
// package must stay testable while the engine is being written.
func startServe(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ocs")
	build := exec.Command("go", "build", "-o", bin, "../cmd/ocs")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("SKIPPING the smoke tests against the real engine: `go build ./cmd/ocs` failed: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "--data", filepath.Join(dir, "data"), "--listen", addr)
	cmd.Env = append(os.Environ(), "OCS_BOOTSTRAP_KEY="+serveKey)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("ocs serve did not stop within 10 s of SIGTERM\n%s", logs.String())
		}
	})
	client, err := NewClient("http://"+addr, serveKey, 1, time.Second)
	require.NoError(t, err)
	defer client.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := client.Ledger(); err == nil {
			return "http://" + addr
		} else if time.Now().After(deadline) {
			t.Fatalf("ocs serve not ready after 20 s: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSmokeServe runs every scenario briefly against a real `ocs serve`
// and requires the audit to pass. The voucher scenario generates its cards
// through POST /v1/voucher-batches and redeems them over POST /ussd.
func TestSmokeServe(t *testing.T) {
	target := startServe(t)
	cfg := smokeConfig(target, ScenarioSMS)
	cfg.OpsKey = serveKey
	p, err := Provision(cfg, nil)
	require.NoError(t, err)
	require.Equal(t, cfg.Subscribers, p.Created+p.Existed)
	for _, sc := range []string{ScenarioSMS, ScenarioSession, ScenarioTopUp, ScenarioVoucher, ScenarioMixed, ScenarioRamp, "mixed with vouchers"} {
		t.Run(sc, func(t *testing.T) {
			c := smokeConfig(target, sc)
			c.OpsKey = serveKey
			if sc == "mixed with vouchers" {
				c.Scenario = ScenarioMixed
				c.Mix = Mix{SMS: 60, Session: 20, TopUp: 10, Voucher: 10}
			}
			res, err := Run(c, nil)
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
			require.Empty(t, res.Skipped)
			if c.Mix.Voucher > 0 || sc == ScenarioVoucher {
				require.Positive(t, res.Audit.VoucherCredited, "cards were redeemed")
				require.Positive(t, res.Audit.VouchersChecked, "card credits were found in histories")
				require.Zero(t, res.Audit.VoucherCredited%res.Config.VoucherValue, "whole cards only")
			}
			if sc == ScenarioVoucher {
				require.Equal(t, res.Runs[0].OK, int64(res.Audit.VoucherCredited/res.Config.VoucherValue), "one credit per acknowledged redemption")
				require.Zero(t, res.Runs[0].Refused, "every card is fresh and every caller provisioned")
			}
		})
	}
}
