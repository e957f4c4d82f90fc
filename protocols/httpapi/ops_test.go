package httpapi

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

func TestProvisionAndRead(t *testing.T) {
	h := newHarness(t)
	r := h.do("PUT", "/v1/subscribers/049123456", keyOps, `{"balance":5.5,"validUntil":"2026-12-31T23:59:59Z"}`)
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, `{"msisdn":"38349123456","balance":"5.50","validUntil":"2026-12-31T23:59:59Z","state":"active"}`, r.body)

	// Exists: 200 with what is there, whatever was asked; nothing changes.
	r = h.do("PUT", "/v1/subscribers/+38349123456", keyOps, `{"balance":"9"}`)
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "5.50", r.str(t, "balance"))
	r = h.do("PUT", "/v1/subscribers/38349123456", keyOps, `{"balance":5.5,"validUntil":"2026-12-31T23:59:59Z"}`)
	require.Equal(t, 200, r.status, r.body)

	// No body: zero balance, default validity (30 days in the demo).
	r = h.do("PUT", "/v1/subscribers/049000001", keyOps, "")
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, "0.00", r.str(t, "balance"))
	require.Equal(t, testNow.Add(charging.Days(30)).Format(time.RFC3339), r.str(t, "validUntil"))

	r = h.do("GET", "/v1/subscribers/049123456", keyOps, "")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, "5.50", r.str(t, "balance"))
	r = h.do("GET", "/v1/subscribers/38344999999", keyOps, "")
	require.Equal(t, 404, r.status)
	require.Equal(t, "unknown_subscriber", r.code(t))

	for _, tc := range []struct{ path, body, code string }{
		{"/v1/subscribers/abc", "", "invalid_msisdn"},
		{"/v1/subscribers/049123457", `{"balance":"1","colour":"red"}`, "unknown_field"},
		{"/v1/subscribers/049123457", `{"balance":"1.23456"}`, "invalid_amount"},
		{"/v1/subscribers/049123457", `{"validUntil":"tomorrow"}`, "invalid_valid_until"},
		{"/v1/subscribers/049123457", `{"balance":`, "malformed_json"},
	} {
		r = h.do("PUT", tc.path, keyOps, tc.body)
		require.Equal(t, 400, r.status, tc.body)
		require.Equal(t, tc.code, r.code(t), tc.body)
	}
	r = h.do("PUT", "/v1/subscribers/049123457", keyOps, `{"balance":"-1"}`)
	require.Equal(t, 422, r.status, r.body)
	require.Equal(t, "amount_must_be_positive", r.code(t))
}

func TestTransactionsRefundsLedger(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "1")
	for i := 1; i <= 4; i++ {
		r := h.do("POST", nchfBase, keyNetwork, smsBody(i, msisdn))
		require.Equal(t, 201, r.status, r.body)
	}
	// Journal: 1 provision, 2..5 charges. Newest first, two a page.
	path := "/v1/subscribers/" + msisdn + "/transactions"
	r := h.do("GET", path+"?limit=2", keyOps, "")
	require.Equal(t, 200, r.status, r.body)
	v := r.json(t)
	txs := v.GetArray("transactions")
	require.Len(t, txs, 2)
	require.Equal(t, msisdn+"-5", string(txs[0].GetStringBytes("id")))
	require.Equal(t, "charge", string(txs[0].GetStringBytes("kind")))
	require.Equal(t, "network", string(txs[0].GetStringBytes("channel")))
	require.Equal(t, "-0.05", string(txs[0].GetStringBytes("amount")))
	require.Equal(t, "0.80", string(txs[0].GetStringBytes("balanceAfter")))
	require.Equal(t, 2, txs[0].GetInt("ratingGroup"))
	require.Equal(t, "smsf-1|2026-03-01T12:00:00.000Z|4", string(txs[0].GetStringBytes("reference")),
		"an Nchf charge without Idempotency-Key is keyed by nFName|invocationTimeStamp|invocationSequenceNumber")
	require.Equal(t, "smsf-1|2026-03-01T12:00:00.000Z|3", string(txs[1].GetStringBytes("reference")))
	require.Equal(t, 4, v.GetInt("next"))
	r = h.do("GET", path+"?limit=2&before=2", keyOps, "")
	require.Equal(t, 200, r.status, r.body)
	txs = r.json(t).GetArray("transactions")
	require.Len(t, txs, 1)
	require.Equal(t, "provision", string(txs[0].GetStringBytes("kind")))
	require.Nil(t, r.json(t).Get("next"))
	r = h.do("GET", path+"?limit=0", keyOps, "")
	require.Equal(t, 400, r.status)
	r = h.do("GET", "/v1/subscribers/38344999999/transactions", keyOps, "")
	require.Equal(t, 404, r.status)

	// Refund a charge, by the network or ops, once.
	refunds := "/v1/subscribers/" + msisdn + "/refunds"
	body := `{"transactionId":"` + msisdn + `-3"}`
	r = h.do("POST", refunds, keyNetwork, body, "Idempotency-Key", "r-1")
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, msisdn+"-6", r.str(t, "transactionId"))
	require.Equal(t, msisdn+"-3", r.str(t, "refunds"))
	require.Equal(t, "0.05", r.str(t, "amount"))
	require.Equal(t, charging.Euros(1)-15*charging.AmountPerCent, h.engine.balance(t, id))
	again := h.do("POST", refunds, keyNetwork, body, "Idempotency-Key", "r-1")
	require.Equal(t, r.body, again.body)
	r = h.do("POST", refunds, keyOps, body, "Idempotency-Key", "r-2")
	require.Equal(t, 409, r.status, r.body)
	require.Equal(t, "already_refunded", r.code(t))
	r = h.do("POST", refunds, keyOps, `{"transactionId":"`+msisdn+`-1"}`, "Idempotency-Key", "r-3")
	require.Equal(t, 422, r.status, r.body)
	require.Equal(t, "not_refundable", r.code(t))
	r = h.do("POST", refunds, keyOps, `{"transactionId":"`+msisdn+`-2","amount":"0.06"}`, "Idempotency-Key", "r-4")
	require.Equal(t, 422, r.status, r.body)
	require.Equal(t, "refund_exceeds_charge", r.code(t))
	r = h.do("POST", refunds, keyOps, `{"transactionId":"`+msisdn+`-99"}`, "Idempotency-Key", "r-5")
	require.Equal(t, 404, r.status, r.body)
	r = h.do("POST", refunds, keyOps, `{"transactionId":"38344999999-2"}`, "Idempotency-Key", "r-6")
	require.Equal(t, 400, r.status, r.body)
	require.Equal(t, "invalid_transaction_id", r.code(t))
	r = h.do("POST", refunds, keyOps, body)
	require.Equal(t, "missing_idempotency_key", r.code(t))
	require.Equal(t, charging.Euros(1)-15*charging.AmountPerCent, h.engine.balance(t, id))
	// The refund's transaction carries its Idempotency-Key as reference,
	// exactly, quotes and backslashes included. A key that is not
	// printable ASCII is refused and changes nothing.
	r = h.do("GET", path+"?limit=1", keyOps, "")
	require.Equal(t, "r-1", string(r.json(t).GetArray("transactions")[0].GetStringBytes("reference")))
	r = h.do("POST", topupPath, keyChannel, topupBody(msisdn, "1.00"), "Idempotency-Key", `q"\ ~`)
	require.Equal(t, 201, r.status, r.body)
	r = h.do("GET", path+"?limit=1", keyOps, "")
	require.Equal(t, `q"\ ~`, string(r.json(t).GetArray("transactions")[0].GetStringBytes("reference")))
	// (fasthttp itself refuses a header with DEL, as malformed_request.)
	for _, bad := range []string{"k\xff", "ë", "tab\tkey"} {
		r = h.do("POST", topupPath, keyChannel, topupBody(msisdn, "1.00"), "Idempotency-Key", bad)
		require.Equal(t, 400, r.status, "%q: %s", bad, r.body)
		require.Equal(t, "invalid_idempotency_key", r.code(t), "%q", bad)
	}
	require.Equal(t, charging.Euros(2)-15*charging.AmountPerCent, h.engine.balance(t, id))

	h.provision("38349000001", "2.5")
	r = h.do("GET", "/v1/ledger", keyOps, "")
	require.Equal(t, 200, r.status, r.body)
	require.Equal(t, `{"owed":"4.35","accounts":2}`, r.body)
}

func TestAPIKeysHealthReady(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/apikeys", keyOps, `{"role":"channel"}`)
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, "channel", r.str(t, "role"))
	issued := r.str(t, "key")
	r = h.do("GET", tmfBase+"/bucket?partyAccount.id="+msisdn, issued, "")
	require.Equal(t, 404, r.status, "the issued channel key authenticates")
	r = h.do("GET", "/v1/ledger", issued, "")
	require.Equal(t, 403, r.status, "and has the channel role only")
	r = h.do("POST", "/v1/apikeys", keyOps, `{"role":"admin"}`)
	require.Equal(t, 400, r.status)
	require.Equal(t, "invalid_role", r.code(t))

	require.Equal(t, 200, h.do("GET", "/healthz", "", "").status)
	require.Equal(t, 200, h.do("GET", "/readyz", "", "").status)
	h.engine.mu.Lock()
	h.engine.notReady = true
	h.engine.mu.Unlock()
	r = h.do("GET", "/readyz", "", "")
	require.Equal(t, 503, r.status)
	require.Equal(t, 200, h.do("GET", "/healthz", "", "").status)
	r = h.do("GET", "/openapi.json", "", "")
	require.Equal(t, 200, r.status)
	require.Equal(t, "3.1.0", r.str(t, "openapi"))

	r = h.do("GET", "/metrics", "", "")
	require.Equal(t, 404, r.status, "no metrics handler configured")
	r = h.do("GET", "/nope", keyOps, "")
	require.Equal(t, 404, r.status)
	r = h.do("DELETE", "/v1/subscribers/"+msisdn, keyOps, "")
	require.Equal(t, 405, r.status)
	require.Equal(t, "PUT, GET", r.headers["Allow"])
}

// TestRoles checks every route against every role: allowed roles get past
// authentication (any status but 401/403), others get 403, no or a wrong
// key 401.
func TestRoles(t *testing.T) {
	h := newHarness(t)
	tokens := map[Role]string{RoleNetwork: keyNetwork, RoleChannel: keyChannel, RoleOps: keyOps}
	for _, rt := range routes {
		path := strings.ReplaceAll(strings.ReplaceAll(rt.pattern, "{ref}", msisdn+"-1"), "{msisdn}", msisdn)
		for role, token := range tokens {
			r := h.do(rt.method, path, token, `{}`)
			if rt.roles == 0 || rt.roles&(1<<role) != 0 {
				require.NotContains(t, []int{401, 403}, r.status, "%s %s as %d: %s", rt.method, path, role, r.body)
			} else {
				require.Equal(t, 403, r.status, "%s %s as %d", rt.method, path, role)
				require.Equal(t, "forbidden", r.code(t))
			}
		}
		if rt.roles != 0 {
			for _, bad := range []string{"", "nope"} {
				r := h.do(rt.method, path, bad, `{}`)
				require.Equal(t, 401, r.status, "%s %s", rt.method, path)
				require.Equal(t, `Bearer realm="ocs"`, r.headers["Www-Authenticate"])
			}
		}
	}
}

func TestEngineErrorAndOverload(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "1")
	h.engine.mu.Lock()
	h.engine.err = errEngineStopped
	h.engine.mu.Unlock()
	r := h.do("POST", nchfBase, keyNetwork, smsBody(1, msisdn))
	require.Equal(t, 503, r.status)
	require.Equal(t, "unavailable", r.code(t))
	require.Equal(t, "1", r.headers["Retry-After"])

	h.engine.mu.Lock()
	h.engine.err = nil
	h.engine.overloaded = true
	h.engine.mu.Unlock()
	r = h.do("POST", topupPath, keyChannel, topupBody(msisdn, "5"), "Idempotency-Key", "o")
	require.Equal(t, 503, r.status)
	require.Equal(t, "overloaded", r.code(t))
	require.Equal(t, "1", r.headers["Retry-After"])
	require.Equal(t, charging.Euros(1), h.engine.balance(t, id))
}

// TestRealServer runs on 127.0.0.1:0: body cap, metrics, graceful shutdown.
func TestRealServer(t *testing.T) {
	eng := newFakeEngine()
	reg := prometheus.NewRegistry()
	srv := New(Config{Engine: eng, Keys: newFakeKeys(), Registerer: reg,
		Metrics: fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	c := &fasthttp.Client{}
	post := func(path, token, body string, hdr ...string) (int, string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod("POST")
		req.SetRequestURI(base + path)
		req.Header.Set("Authorization", "Bearer "+token)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		req.SetBodyString(body)
		require.NoError(t, c.DoTimeout(req, resp, 5*time.Second))
		return resp.StatusCode(), string(resp.Body())
	}
	status, body := post(topupPath, keyChannel, strings.Repeat(" ", bodyBytesMax+1)+"{}", "Idempotency-Key", "x")
	require.Equal(t, 413, status)
	require.Contains(t, body, `"code":"body_too_large"`)

	id, _ := charging.ParseMSISDN(msisdn)
	eng.mu.Lock()
	eng.accounts[id] = &charging.Account{ID: id, Balance: charging.Euros(1), ValidUntil: eng.now.Add(time.Hour).Unix()}
	eng.mu.Unlock()
	for i := 1; i <= 3; i++ {
		status, body = post(nchfBase, keyNetwork, smsBody(i, msisdn))
		require.Equal(t, 201, status, body)
	}
	status, _ = post(nchfBase, keyChannel, smsBody(9, msisdn))
	require.Equal(t, 403, status)
	require.Equal(t, 3.0, counterValue(t, reg, "nchf", "charge", "ok"))
	require.Equal(t, 1.0, counterValue(t, reg, "nchf", "reserve", "forbidden"))
	require.Equal(t, 0.0, counterValue(t, reg, "tmf", "topup", "insufficient_balance"), "pre-created")
	sc, metricsBody, err := c.Get(nil, base+"/metrics")
	require.NoError(t, err)
	require.Equal(t, 200, sc)
	require.Contains(t, string(metricsBody), `ocs_requests_total{interface="nchf",operation="charge",result="ok"} 3`)

	require.NoError(t, srv.Shutdown())
	require.NoError(t, <-done)
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	require.Error(t, err, "closed after Shutdown")
}

// counterValue reads one ocs_requests_total series; it fails if absent.
func counterValue(t *testing.T, reg *prometheus.Registry, iface, op, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "ocs_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["interface"] == iface && labels["operation"] == op && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s/%s/%s", iface, op, result)
	return 0
}

// TestShutdownFinishesInFlight: Shutdown stops accepting but the request
// already in the engine gets its answer before Shutdown returns.
func TestShutdownFinishesInFlight(t *testing.T) {
	eng := newFakeEngine()
	srv := New(Config{Engine: eng, Keys: newFakeKeys()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	eng.entered, eng.gate = make(chan struct{}), make(chan struct{})

	status := make(chan int, 1)
	go func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.Header.SetMethod("PUT")
		req.SetRequestURI("http://" + ln.Addr().String() + "/v1/subscribers/049123456")
		req.Header.Set("Authorization", "Bearer "+keyOps)
		if err := (&fasthttp.Client{}).DoTimeout(req, resp, 10*time.Second); err != nil {
			status <- -1
			return
		}
		status <- resp.StatusCode()
	}()
	<-eng.entered
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown() }()
	select {
	case <-stopped:
		t.Fatal("Shutdown returned with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(eng.gate)
	require.Equal(t, 201, <-status)
	require.NoError(t, <-stopped)
	require.NoError(t, <-served)
	eng.mu.Lock()
	defer eng.mu.Unlock()
	require.Len(t, eng.accounts, 1)
}
