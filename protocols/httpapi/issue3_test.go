package httpapi

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"github.com/valyala/fastjson"
)

type fakeIssue3 struct {
	mu      sync.Mutex
	fixed   map[string]charging.FixedAccount
	cards   map[uint64]charging.Voucher
	batches map[uint32]bool
	guards  map[charging.SubscriberID]charging.RedeemGuard
	// generated records every GenerateBatch call that succeeded.
	generated []VoucherBatch
	failNext  bool // GenerateBatch fails after its first row
}

func (f *fakeIssue3) FixedAccount(id string) (charging.FixedAccount, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.fixed[id]
	return a, ok, nil
}

func (f *fakeIssue3) PutFixedAccount(a *charging.FixedAccount) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fixed[a.ID] = *a
	return nil
}

func (f *fakeIssue3) Voucher(serial uint64) (charging.Voucher, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.cards[serial]
	if !ok {
		return v, ErrNotFound
	}
	return v, nil
}

func (f *fakeIssue3) BlockVoucher(serial uint64) (charging.Voucher, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.cards[serial]
	if !ok {
		return v, ErrNotFound
	}
	if v.State == charging.VoucherActive {
		v.State = charging.VoucherBlocked
		f.cards[serial] = v
	}
	return v, nil
}

func (f *fakeIssue3) BlockBatch(batch uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.batches[batch]; !ok {
		return ErrNotFound
	}
	f.batches[batch] = true
	return nil
}

func (f *fakeIssue3) BarredCallers(now time.Time, limit int) ([]BarredCaller, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []BarredCaller
	for id, g := range f.guards {
		if g.Barred(now) && len(out) < limit {
			out = append(out, BarredCaller{Caller: id, Guard: g})
		}
	}
	return out, nil
}

func (f *fakeIssue3) Guard(caller charging.SubscriberID) (charging.RedeemGuard, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.guards[caller], nil
}

func newIssue3Harness(t *testing.T, stores bool) (*harness, *fakeIssue3) {
	t.Helper()
	f := &fakeIssue3{fixed: map[string]charging.FixedAccount{}, cards: map[uint64]charging.Voucher{}, batches: map[uint32]bool{7: false},
		guards: map[charging.SubscriberID]charging.RedeemGuard{}}
	h := &harness{t: t, engine: newFakeEngine(), keys: newFakeKeys()}
	cfg := Config{Engine: h.engine, Keys: h.keys, Clock: func() time.Time { return testNow },
		USSD: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("END " + string(ctx.PostBody())) }}
	if stores {
		cfg.Vouchers, cfg.Fixed, cfg.VoucherGenerator = f, f, f
	}
	h.srv = New(cfg)
	ln := fasthttputil.NewInmemoryListener()
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ln) }()
	h.client = &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	t.Cleanup(func() {
		require.NoError(t, h.srv.Shutdown())
		require.NoError(t, <-done)
	})
	return h, f
}

func TestFixedAccounts(t *testing.T) {
	h, f := newIssue3Harness(t, true)
	r := h.do("PUT", "/v1/fixed-accounts/Arber.K", keyOps, `{"kind":"internet","package":3,"paidUntil":"2026-03-31T10:00:00Z"}`)
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, "arber.k", r.str(t, "id"), "identifiers are case-insensitive")
	require.Equal(t, "Internet Pako 1", r.str(t, "packageName"))
	require.Equal(t, "2026-03-31T10:00:00Z", r.str(t, "paidUntil"))
	require.Equal(t, uint8(31), f.fixed["arber.k"].AnchorDay)

	r = h.do("GET", "/v1/fixed-accounts/ARBER.K", keyOps, "")
	require.Equal(t, 200, r.status)
	require.Equal(t, "15.00", r.str(t, "price"))

	r = h.do("PUT", "/v1/fixed-accounts/038123456", keyOps, `{"kind":"telephony","balance":"4.20"}`)
	require.Equal(t, 201, r.status, r.body)
	r = h.do("PUT", "/v1/fixed-accounts/038123456", keyOps, `{"kind":"telephony","balance":"5"}`)
	require.Equal(t, 200, r.status, "replacing answers 200")
	require.Equal(t, "5.00", r.str(t, "balance"))

	for body, code := range map[string]string{
		`{"kind":"internet"}`:                         "missing_package",
		`{"kind":"tv","package":3}`:                   "invalid_package",
		`{"kind":"tv","package":8}`:                   "invalid_package", // PPV kredit is credit, not a subscription
		`{"kind":"internet","package":3,"balance":1}`: "no_balance",
		`{"kind":"radio"}`:                            "invalid_kind",
		`{"kind":"tv","package":1,"balance":"-1"}`:    "amount_must_be_positive",
		`{"kind":"tv","package":1,"colour":"red"}`:    "unknown_field",
	} {
		r = h.do("PUT", "/v1/fixed-accounts/someone", keyOps, body)
		require.Equal(t, code, r.code(t), body)
	}
	require.NotContains(t, f.fixed, "someone", "a refused body changes nothing")
	require.Equal(t, "invalid_account", h.do("PUT", "/v1/fixed-accounts/a!", keyOps, `{"kind":"tv","package":1}`).code(t))
	require.Equal(t, 404, h.do("GET", "/v1/fixed-accounts/nobody", keyOps, "").status)
	require.Equal(t, 403, h.do("GET", "/v1/fixed-accounts/arber.k", keyChannel, "").status)
}

func TestVoucherOps(t *testing.T) {
	h, f := newIssue3Harness(t, true)
	f.cards[70000001] = charging.Voucher{Batch: 7, Serial: 70000001, Value: charging.Euros(5), State: charging.VoucherActive,
		Expiry: testNow.Add(time.Hour).Unix()}
	f.cards[70000002] = charging.Voucher{Batch: 7, Serial: 70000002, Value: charging.Euros(5), State: charging.VoucherActive,
		Expiry: testNow.Add(-time.Hour).Unix()}
	f.cards[70000003] = charging.Voucher{Batch: 7, Serial: 70000003, Value: charging.Euros(10), State: charging.VoucherUsed,
		Expiry: testNow.Add(time.Hour).Unix(), UsedBy: 38344123456, UsedAt: testNow.Unix(), CreditSeq: 4}

	require.Equal(t, "active", h.do("GET", "/v1/vouchers/70000001", keyOps, "").str(t, "state"))
	require.Equal(t, "expired", h.do("GET", "/v1/vouchers/70000002", keyOps, "").str(t, "state"))
	r := h.do("GET", "/v1/vouchers/70000003", keyOps, "")
	require.Equal(t, "38344123456-4", r.str(t, "transactionId"))
	require.Equal(t, "blocked", h.do("POST", "/v1/vouchers/70000001/block", keyOps, "").str(t, "state"))
	require.Equal(t, "used", h.do("POST", "/v1/vouchers/70000003/block", keyOps, "").str(t, "state"))
	require.Equal(t, 404, h.do("GET", "/v1/vouchers/1", keyOps, "").status)
	require.Equal(t, "invalid_serial", h.do("GET", "/v1/vouchers/x1", keyOps, "").code(t))
	require.Equal(t, 200, h.do("POST", "/v1/voucher-batches/7/block", keyOps, "").status)
	require.True(t, f.batches[7])
	require.Equal(t, 404, h.do("POST", "/v1/voucher-batches/8/block", keyOps, "").status)
	require.Equal(t, "invalid_batch", h.do("POST", "/v1/voucher-batches/4294967296/block", keyOps, "").code(t))

	f.guards[38344000009] = charging.RedeemGuard{BarredUntil: testNow.Add(time.Hour).Unix()}
	f.guards[38344000008] = charging.RedeemGuard{Failures: 2, WindowStart: testNow.Unix()}
	r = h.do("GET", "/v1/redeem-guards", keyOps, "")
	list := r.json(t).GetArray("barred")
	require.Len(t, list, 1)
	require.Equal(t, "38344000009", string(list[0].GetStringBytes("msisdn")))
	r = h.do("GET", "/v1/redeem-guards/044000008", keyOps, "")
	require.Equal(t, 2, r.json(t).GetInt("failures"))
	require.Equal(t, "invalid_query", h.do("GET", "/v1/redeem-guards?limit=0", keyOps, "").code(t))
}

func TestIssue3NotConfiguredAndUSSDAuth(t *testing.T) {
	h, _ := newIssue3Harness(t, false)
	require.Equal(t, 501, h.do("GET", "/v1/vouchers/1", keyOps, "").status)
	require.Equal(t, 501, h.do("GET", "/v1/fixed-accounts/abc", keyOps, "").status)

	form := "sessionId=s1&serviceCode=*100%23&phoneNumber=044123456&text="
	require.Equal(t, 401, h.do("POST", "/ussd", "", form).status, "the gateway must authenticate")
	require.Equal(t, 403, h.do("POST", "/ussd", keyOps, form).status)
	r := h.do("POST", "/ussd", keyNetwork, form)
	require.Equal(t, 200, r.status)
	require.Equal(t, "END "+form, r.body, "the gateway handler gets the request as sent")
}

func FuzzFixedAccount(f *testing.F) {
	f.Add([]byte(`{"kind":"internet","package":3,"paidUntil":"2026-03-31T10:00:00Z"}`), uint(5))
	f.Add([]byte(`{"kind":"telephony","balance":"4.20"}`), uint(0))
	f.Add([]byte(`{"kind":"tv","package":300,"balance":1e3}`), uint(9))
	cat := charging.DemoCatalogue()
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		var fresh, reused fastjson.Parser
		fb, p := decodeFixedAccount(&fresh, data, &cat)
		want := snapshot(fb, p)
		checkProblem(t, p)
		if p.ok() {
			pk, found := cat.Lookup(fb.pkg)
			switch {
			case fb.kind.String() == "invalid":
				t.Fatalf("accepted kind %d", fb.kind)
			case fb.pkg != 0 && (!found || pk.Kind != fb.kind || pk.Credit):
				t.Fatalf("accepted package %d for %v", fb.pkg, fb.kind)
			case fb.pkg == 0 && fb.kind != charging.FixedTelephony:
				t.Fatal("accepted no package")
			case fb.balance < 0 || fb.balance > charging.BalanceMax || fb.paidUntil < 0:
				t.Fatalf("accepted out of range: %+v", fb)
			}
		}
		decodeFixedAccount(&reused, fuzzSplit(data, split), &cat)
		if got := snapshot(decodeFixedAccount(&reused, data, &cat)); got != want {
			t.Fatalf("reused parser: %s, fresh: %s", got, want)
		}
	})
}
