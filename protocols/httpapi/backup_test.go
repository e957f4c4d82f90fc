package httpapi

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackupCreateAndList(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/v1/backups", keyOps, "")
	require.Equal(t, 200, r.status, r.body)
	require.JSONEq(t, `{"backups":[]}`, r.body)

	h.provision("049123456", "5")
	r = h.do("POST", "/v1/backups", keyOps, "")
	require.Equal(t, 201, r.status, r.body)
	require.JSONEq(t, `{"name":"20260301T120000Z","path":"/srv/ocs/backups/20260301T120000Z",
		"createdAt":"2026-03-01T12:00:00Z","bytes":1001,"durationMs":1500}`, r.body)
	require.Equal(t, "/v1/backups", r.headers["Location"])

	h.engine.mu.Lock()
	h.engine.now = h.engine.now.Add(26 * time.Hour)
	h.engine.mu.Unlock()
	require.Equal(t, 201, h.do("POST", "/v1/backups", keyOps, "").status)
	r = h.do("GET", "/v1/backups", keyOps, "")
	require.Equal(t, 200, r.status)
	require.JSONEq(t, `{"backups":[
		{"name":"20260302T140000Z","path":"/srv/ocs/backups/20260302T140000Z","createdAt":"2026-03-02T14:00:00Z","bytes":1001},
		{"name":"20260301T120000Z","path":"/srv/ocs/backups/20260301T120000Z","createdAt":"2026-03-01T12:00:00Z","bytes":1001}]}`, r.body)
}

// TestBackupOneAtATime holds a backup in flight inside the engine and asks
// for another: 409, deterministically (no sleep, no race on timing).
func TestBackupOneAtATime(t *testing.T) {
	h := newHarness(t)
	h.engine.backupEntered, h.engine.backupGate = make(chan struct{}), make(chan struct{})
	first := make(chan reply, 1)
	go func() { first <- h.do("POST", "/v1/backups", keyOps, "") }()
	<-h.engine.backupEntered
	r := h.do("POST", "/v1/backups", keyOps, "")
	require.Equal(t, 409, r.status, r.body)
	require.Equal(t, "backup_in_progress", r.code(t))
	require.Equal(t, 200, h.do("GET", "/v1/backups", keyOps, "").status, "listing is not blocked by a running backup")
	close(h.engine.backupGate)
	require.Equal(t, 201, (<-first).status)
	h.engine.backupGate = nil
	require.Equal(t, 201, h.do("POST", "/v1/backups", keyOps, "").status, "the next one runs once the first is done")
	require.Len(t, h.engine.backups, 2)
}

func TestBackupRefusals(t *testing.T) {
	h := newHarness(t)
	for _, m := range []string{"POST", "GET"} {
		r := h.do(m, "/v1/backups", keyNetwork, "")
		require.Equal(t, 403, r.status, m)
		require.Equal(t, 403, h.do(m, "/v1/backups", keyChannel, "").status, m)
		require.Equal(t, 401, h.do(m, "/v1/backups", "", "").status, m)
	}
	require.Equal(t, 405, h.do("DELETE", "/v1/backups", keyOps, "").status)

	// A client never chooses where the server writes.
	r := h.do("POST", "/v1/backups", keyOps, `{"path":"/etc"}`)
	require.Equal(t, 400, r.status)
	require.Equal(t, "unexpected_body", r.code(t))
	require.Empty(t, h.engine.backups, "nothing refused was taken")

	// Errors name no host detail: the cause goes to the log only.
	leak := "/home/op/secret-host-path: permission denied"
	h.engine.backupErr = fmt.Errorf("%w: mkdir %s", ErrBackupDir, leak)
	r = h.do("POST", "/v1/backups", keyOps, "")
	require.Equal(t, 500, r.status)
	require.Equal(t, "backup_dir_unusable", r.code(t))
	require.NotContains(t, r.body, "secret-host-path")
	h.engine.backupErr = fmt.Errorf("%w: open %s", ErrBackupDir, leak)
	r = h.do("GET", "/v1/backups", keyOps, "")
	require.Equal(t, 500, r.status)
	require.Equal(t, "backup_dir_unusable", r.code(t))
	require.NotContains(t, r.body, "secret-host-path")
	h.engine.backupErr = errors.New("checkpoint " + leak)
	r = h.do("POST", "/v1/backups", keyOps, "")
	require.Equal(t, 500, r.status)
	require.Equal(t, "backup_failed", r.code(t))
	require.NotContains(t, r.body, "secret-host-path")
	require.Empty(t, h.engine.backups)

	// An engine without backups (benchmarks, other wirings) answers 503.
	bare := (&harness{t: t, engine: newFakeEngine(), keys: newFakeKeys()}).start(struct{ Engine }{newFakeEngine()})
	for _, m := range []string{"POST", "GET"} {
		r = bare.do(m, "/v1/backups", keyOps, "")
		require.Equal(t, 503, r.status, m)
		require.Equal(t, "backup_not_configured", r.code(t), m)
	}
}
