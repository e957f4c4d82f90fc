package httpapi

// Regression tests from the money-path audit: Nchf retries charge once,
// and units near 2^64 on the wire never wrap into a small charge.

import (
	"testing"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
)

// A release retried with the same invocationSequenceNumber is charged
// once; the same number with other usage is a reused key and charges
// nothing.
func TestAuditNchfReleaseRetriedChargesOnce(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "10.00")
	r := h.do("POST", nchfBase, keyNetwork, sessionBody(0, 1, `"time":300`, ""))
	require.Equal(t, 201, r.status, r.body)
	loc := r.headers["Location"]
	rel := sessionBody(1, 1, "", `"time":120`)
	r = h.do("POST", loc+"/release", keyNetwork, rel)
	require.Equal(t, 204, r.status, r.body)
	after := h.engine.balance(t, id)
	require.Less(t, after, charging.Euros(10), "the release charged its usage")
	for i := 0; i < 3; i++ {
		r = h.do("POST", loc+"/release", keyNetwork, rel)
		require.Equal(t, 204, r.status, r.body)
	}
	require.Equal(t, after, h.engine.balance(t, id), "a retried release is charged once")
	r = h.do("POST", loc+"/release", keyNetwork, sessionBody(1, 1, "", `"time":600`))
	require.Equal(t, 409, r.status, r.body)
	require.Equal(t, after, h.engine.balance(t, id))
}

// Volumes whose sum exceeds 2^64 (uplink + downlink) or UnitsMax are
// refused, never wrapped into a small usage.
func TestAuditNchfHugeVolumesNeverWrap(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "10.00")
	before := h.engine.balance(t, id)
	for _, units := range []string{
		`"uplinkVolume":9223372036854775808,"downlinkVolume":9223372036854775808`,
		`"uplinkVolume":18446744073709551615,"downlinkVolume":1`,
		`"totalVolume":1099511627777`,
	} {
		r := h.do("POST", nchfBase, keyNetwork, sessionBody(7, 3, units, ""))
		require.NotEqual(t, 201, r.status, "requested %s: %s", units, r.body)
		require.Equal(t, before, h.engine.balance(t, id), units)
	}
}
