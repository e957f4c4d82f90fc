package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// These tests run the real `ocs serve` binary as a child process on a real
// Pebble directory and talk to it over HTTP on loopback.

const testOpsKey = "ops-test-key-0123456789abcdef"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// ocsBinary builds the ocs command once per test binary. OCS_TEST_BINARY
// names a prebuilt one instead: how benchmarks compare two builds of the
// server run by the same client, minutes apart (BENCHMARKS.md).
func ocsBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if path := os.Getenv("OCS_TEST_BINARY"); path != "" {
			binPath = path
			return
		}
		dir, err := os.MkdirTemp("", "ocs-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ocs")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

type server struct {
	t    testing.TB
	cmd  *exec.Cmd
	base string
	logs *bytes.Buffer
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// startServer starts ocs serve on dir and waits until /readyz answers.
func startServer(t *testing.T, dir string) *server {
	t.Helper()
	return startServerWith(t, dir, nil)
}

// startServerWith is startServer with extra environment and flags.
func startServerWith(t testing.TB, dir string, env []string, args ...string) *server {
	t.Helper()
	addr := freePort(t)
	s := &server{t: t, base: "http://" + addr, logs: &bytes.Buffer{}}
	s.cmd = exec.Command(ocsBinary(t), append([]string{"serve", "--data", dir, "--listen", addr}, args...)...)
	s.cmd.Env = append(append(os.Environ(), "OCS_BOOTSTRAP_KEY="+testOpsKey), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	require.NoError(t, s.cmd.Start())
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("ocs serve did not become ready; logs:\n%s", s.logs)
	return nil
}

func (s *server) kill() {
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGKILL))
	_, _ = s.cmd.Process.Wait()
}

func (s *server) stop() {
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGTERM))
	state, err := s.cmd.Process.Wait()
	require.NoError(s.t, err)
	require.True(s.t, state.Success(), "ocs serve exited with %v; logs:\n%s", state, s.logs)
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// call sends a JSON request and decodes a JSON answer into out (if not nil).
func (s *server) call(method, path, key, idem string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", raw, err)
		}
	}
	return resp.StatusCode, nil
}

func (s *server) issueKey(role string) string {
	var out struct{ Key string }
	code, err := s.call("POST", "/v1/apikeys", testOpsKey, "", map[string]string{"role": role}, &out)
	require.NoError(s.t, err)
	require.Equal(s.t, 201, code)
	return out.Key
}

type subscriberView struct {
	MSISDN     string `json:"msisdn"`
	Balance    string `json:"balance"`
	ValidUntil string `json:"validUntil"`
	State      string `json:"state"`
}

func (s *server) subscriber(msisdn string) subscriberView {
	var v subscriberView
	code, err := s.call("GET", "/v1/subscribers/"+msisdn, testOpsKey, "", nil, &v)
	require.NoError(s.t, err)
	require.Equal(s.t, 200, code)
	return v
}

type history struct {
	Transactions []struct {
		ID     string `json:"id"`
		Seq    uint64 `json:"seq"`
		Kind   string `json:"kind"`
		Amount string `json:"amount"`
	} `json:"transactions"`
}

func (s *server) history(msisdn string) history {
	var h history
	code, err := s.call("GET", "/v1/subscribers/"+msisdn+"/transactions?limit=1000", testOpsKey, "", nil, &h)
	require.NoError(s.t, err)
	require.Equal(s.t, 200, code)
	return h
}

func (s *server) ledger() (owed string, accounts uint64) {
	var l struct {
		Owed     string `json:"owed"`
		Accounts uint64 `json:"accounts"`
	}
	code, err := s.call("GET", "/v1/ledger", testOpsKey, "", nil, &l)
	require.NoError(s.t, err)
	require.Equal(s.t, 200, code)
	return l.Owed, l.Accounts
}

func smsBody(msisdn string) map[string]any {
	return map[string]any{
		"subscriberIdentifier":     "msisdn-" + msisdn,
		"nfConsumerIdentification": map[string]any{"nodeFunctionality": "SMSF", "nFName": "test"},
		"invocationTimeStamp":      "2026-11-21T10:00:00Z",
		"invocationSequenceNumber": 0,
		"oneTimeEvent":             true,
		"oneTimeEventType":         "IEC",
		"multipleUnitUsage":        []any{map[string]any{"ratingGroup": 2, "requestedUnit": map[string]any{"serviceSpecificUnits": 1}}},
	}
}

func topUpBody(msisdn, amount string) map[string]any {
	return map[string]any{
		"partyAccount": map[string]any{"id": msisdn},
		"amount":       map[string]any{"amount": amount, "units": "EUR"},
		"channel":      map[string]any{"name": "electronic"},
	}
}

type nchfAnswer struct {
	MultipleUnitInformation []struct {
		ResultCode string `json:"resultCode"`
	} `json:"multipleUnitInformation"`
}

// TestServeCPUProfile: --cpuprofile writes a complete profile (pprof's
// gzip-compressed protocol buffer, read to its end) once serve has shut
// down in order.
func TestServeCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	s := startServerWith(t, t.TempDir(), nil, "--cpuprofile", path)
	s.provisionSub("38344123456", "10")
	s.stop()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err, "a pprof profile is gzip-compressed")
	body, err := io.ReadAll(zr)
	require.NoError(t, err, "the profile must be complete once serve returns")
	require.NotEmpty(t, body)
}
