package httpapi

// A client's Idempotency-Key could equal a request key the engine derives
// for its own legs (a transfer's reversal "T/<id>/r", a *101# debit
// "P/<id>", a card credit "V/<hash>", a session update
// "<msisdn>-<session>/<isn>"): the leg was then answered request_key_reused,
// and a transfer's reversal never ran. Found by the money-path audit;
// client keys may no longer hold '/' or '|'.

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClientKeyCannotTakeDerivedKeys(t *testing.T) {
	for _, key := range []string{"T/1/r", "T/1/d", "P/1", "V/00000000000000000000000000000000", msisdn + "-1/2",
		"smf-1|2026-11-22T01:00:00Z|1", "a/b"} {
		h := newHarness(t)
		id := h.provision(msisdn, "1")
		r := h.do("POST", topupPath, keyChannel, topupBody(msisdn, `"1.00"`), "Idempotency-Key", key)
		h.engine.mu.Lock()
		_, taken := h.engine.requests[id][key]
		h.engine.mu.Unlock()
		require.False(t, taken, "a client's key %q (answered %d) became the engine's derived key on the account", key, r.status)
		require.Equal(t, 400, r.status, "%q: %s", key, r.body)
		require.Equal(t, "reserved_idempotency_key", r.code(t), "%q", key)
	}
}
