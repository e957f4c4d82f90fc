package ussd

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/ocs-engine/ocs/charging"
)

const (
	alice charging.SubscriberID = 38344111111
	bob   charging.SubscriberID = 38349222222
	carol charging.SubscriberID = 38345333333 // poor
	dave  charging.SubscriberID = 38344444444 // in grace
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type rig struct {
	t      *testing.T
	eng    *fakeEngine
	clk    *clock
	client *fasthttp.Client
	addr   string
	seq    int
}

const goodCode = "1234567890123456"

func newRig(t *testing.T) *rig {
	clk := &clock{t: time.Date(2026, 4, 10, 9, 0, 0, 0, time.UTC)}
	eng := newFakeEngine(clk.now)
	now := clk.now()
	for _, a := range []charging.Account{
		{ID: alice, Balance: charging.Euros(30), ValidUntil: now.Add(charging.Days(20)).Unix()},
		{ID: bob, Balance: charging.Euros(2), ValidUntil: now.Add(charging.Days(5)).Unix()},
		{ID: carol, Balance: charging.Euros(1), ValidUntil: now.Add(charging.Days(5)).Unix()},
		{ID: dave, Balance: charging.Euros(9), ValidUntil: now.Add(-charging.Days(1)).Unix()},
	} {
		eng.accounts[a.ID] = &a
	}
	for i, st := range []charging.VoucherState{charging.VoucherActive, charging.VoucherActive, charging.VoucherBlocked, charging.VoucherActive} {
		c, _ := charging.ParseVoucherCode(goodCode[:15] + string(rune('6'+i)))
		exp := now.Add(charging.Days(300)).Unix()
		if i == 3 {
			exp = now.Unix()
		}
		eng.vouchers[c] = &charging.Voucher{Batch: 1, Value: charging.Euros(10), State: st, Expiry: exp}
	}
	eng.fixed["arber"] = &charging.FixedAccount{ID: "arber", Kind: charging.FixedInternet, Package: charging.PackageInternetPako1}
	eng.fixed["1234567890"] = &charging.FixedAccount{ID: "1234567890", Kind: charging.FixedTV, Package: charging.PackageDTVFamiljare}
	h := NewHandler(eng, Options{Now: clk.now, Menu: &Menu{Catalogue: charging.DemoCatalogue(),
		Transfer: charging.DemoTransferRules(), PaymentFee: charging.USSDPaymentFee, Location: time.UTC}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &fasthttp.Server{Handler: h.ServeHTTP}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return &rig{t: t, eng: eng, clk: clk, client: &fasthttp.Client{}, addr: ln.Addr().String()}
}

// post sends one gateway request and returns the body.
func (r *rig) post(session, serviceCode, text string, phone charging.SubscriberID) string {
	r.t.Helper()
	form := url.Values{"sessionId": {session}, "serviceCode": {serviceCode}, "phoneNumber": {"+" + phone.String()},
		"networkCode": {"21202"}, "text": {text}}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + r.addr + "/ussd")
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/x-www-form-urlencoded")
	req.SetBodyString(form.Encode())
	require.NoError(r.t, r.client.DoTimeout(req, resp, 5*time.Second))
	require.Equal(r.t, 200, resp.StatusCode())
	require.Equal(r.t, "text/plain; charset=utf-8", string(resp.Header.ContentType()))
	body := string(resp.Body())
	require.True(r.t, fits(body), "over 182 characters: %q", body)
	require.True(r.t, strings.HasPrefix(body, "CON ") || strings.HasPrefix(body, "END "), body)
	return body
}

// dial runs a whole dialogue: the inputs are sent one by one, as a
// handset's gateway does, and every screen but the last must be CON.
func (r *rig) dial(phone charging.SubscriberID, serviceCode string, inputs ...string) string {
	r.t.Helper()
	r.seq++
	session := "ATUid_" + strings.Repeat("x", r.seq%3) + time.Duration(r.seq).String()
	body := r.post(session, serviceCode, "", phone)
	for i := range inputs {
		require.True(r.t, strings.HasPrefix(body, "CON "), "step %d ended early: %q", i, body)
		body = r.post(session, serviceCode, strings.Join(inputs[:i+1], "*"), phone)
	}
	require.True(r.t, strings.HasPrefix(body, "END "), body)
	return body
}

func code(i int) string { return goodCode[:15] + string(rune('6'+i)) }

func TestVoucherFlows(t *testing.T) {
	r := newRig(t)
	// Whole string in serviceCode.
	body := r.dial(alice, "*123*"+code(0)+"#")
	require.Equal(t, "END Mbushja u krye: +10.00 EUR. Kredia juaj është 40.00 EUR, e vlefshme deri më 09.07.2026. ID e transaksionit: 38344111111-1", body)
	// Used.
	require.Equal(t, "END "+txtUsedCode, r.dial(bob, "*123*"+code(0)+"#"))
	// Split form: *123# then the code, for another subscriber.
	body = r.dial(alice, "*123#", code(1)+"*049222222")
	require.Equal(t, "END Mbushja e numrit 38349222222 me 10.00 EUR u krye. Validiteti i tij deri më 09.07.2026. ID e transaksionit: 38349222222-1", body)
	require.Equal(t, charging.Euros(12), r.eng.accounts[bob].Balance)
	// Interactive: *123# prompts for the code.
	require.Equal(t, "CON "+txtPromptCode, r.post("s-prompt", "*123#", "", alice))
	require.Equal(t, "END "+txtBlockedCode, r.dial(alice, "*123#", code(2)))
	require.Equal(t, "END "+txtExpiredCode, r.dial(alice, "*123*"+code(3)+"#"))
	require.Equal(t, "END "+txtBadCodeFormat, r.dial(alice, "*123*12345#"))
	require.Equal(t, "END "+txtBadMSISDN, r.dial(alice, "*123*"+code(1)+"*12#"))
	// Unknown beneficiary: refused and the card is not burned.
	c4, _ := charging.ParseVoucherCode(goodCode[:15] + "0")
	r.eng.vouchers[c4] = &charging.Voucher{Batch: 1, Value: charging.Euros(5), State: charging.VoucherActive, Expiry: r.clk.now().Add(time.Hour).Unix()}
	require.Equal(t, "END Numri 38349999999 nuk është pajtimtar i rrjetit tonë.", r.dial(alice, "*123*"+c4.String()+"*049999999#"))
	require.Equal(t, charging.VoucherActive, r.eng.vouchers[c4].State)
}

func TestVoucherBruteForceOverHTTP(t *testing.T) {
	r := newRig(t)
	for i := range 5 {
		require.Equal(t, "END "+txtWrongCode, r.dial(carol, "*123*000000000000000"+string(rune('0'+i))+"#"))
	}
	// Barred: a good code is refused until the bar lifts 24 h later.
	want := "END Keni shtypur shumë kode të gabuara. Mbushja me kartelë është e bllokuar deri më 11.04.2026 09:00."
	require.Equal(t, want, r.dial(carol, "*123*"+code(0)+"#"))
	r.clk.add(24*time.Hour - time.Second)
	require.Equal(t, want, r.dial(carol, "*123*"+code(0)+"#"))
	r.clk.add(time.Second)
	require.Contains(t, r.dial(carol, "*123*"+code(0)+"#"), "Mbushja u krye: +10.00 EUR")
}

func TestPaymentFlow101(t *testing.T) {
	r := newRig(t)
	require.Equal(t, "CON "+txtMenu101, r.post("p1", "*101#", "", alice))
	list := r.post("p1", "*101#", "1", alice)
	require.Equal(t, "CON Zgjidhni pakon:\n1. DTV Familjare\n2. DUO TV\n3. Internet Pako 1\n4. Internet Pako 2\n5. Internet Pako 3\n6. Duo mini\n7. Duo maxi\n8. PPV kredit", list)
	require.Equal(t, "CON "+txtPromptUsername, r.post("p1", "*101#", "1*3", alice))
	require.Equal(t, "CON Pagesa e pakos Internet Pako 1 për arber: 15.00 EUR + 0.50 EUR tarifë nga kredia juaj.\n1. Konfirmo\n2. Anulo",
		r.post("p1", "*101#", "1*3*Arber", alice))
	body := r.post("p1", "*101#", "1*3*Arber*1", alice)
	require.Equal(t, "END Pagesa u krye: Internet Pako 1, 15.00 EUR. Paguar deri më 10.05.2026. Kredia juaj është 14.50 EUR. ID e transaksionit: 38344111111-1", body)
	// A gateway retry of the same request is answered again, not run again.
	calls := r.eng.calls
	require.Equal(t, body, r.post("p1", "*101#", "1*3*Arber*1", alice))
	require.Equal(t, calls, r.eng.calls)
	// Once a calendar month.
	require.Equal(t, "END "+txtAlreadyPaidMonth, r.dial(alice, "*101#", "1", "3", "arber", "1"))
	// TV asks for the SMART card; PPV credit has no paid-until.
	require.Equal(t, "CON "+txtPromptSmartCard, r.post("p2", "*101#", "1*1", bob))
	require.Equal(t, "END Pagesa u krye: PPV kredit, 5.00 EUR. Kredia juaj është 6.50 EUR. ID e transaksionit: 38349222222-1",
		func() string {
			r.eng.accounts[bob].Balance = charging.Euros(12)
			return r.dial(bob, "*101#", "1", "8", "1234567890", "1")
		}())
	// Failures.
	require.Equal(t, "END Kredi e pamjaftueshme. Kredia juaj është 1.00 EUR.", r.dial(carol, "*101#", "1", "1", "1234567890", "1"))
	require.Equal(t, "END Llogaria nuk.ekziston nuk ekziston. Kontrolloni emrin e përdoruesit ose numrin e kartelës.",
		r.dial(carol, "*101#", "1", "3", "nuk.ekziston", "1"))
	require.Equal(t, "END Pakoja Internet Pako 2 nuk është pakoja e llogarisë arber.", r.dial(carol, "*101#", "1", "4", "arber", "1"))
	require.Equal(t, "END "+txtGrace, r.dial(dave, "*101#", "1", "3", "arber", "1"))
	require.Equal(t, "END "+txtCancelled, r.dial(carol, "*101#", "1", "3", "arber", "2"))
	require.Equal(t, "END "+txtInvalidChoice, r.dial(carol, "*101#", "2"))
	require.Equal(t, "END "+txtInvalidChoice, r.dial(carol, "*101#", "1", "9"))
	require.Equal(t, "END "+txtInvalidChoice, r.dial(carol, "*101#", "1", "3", "arber", "7"))
	require.Equal(t, "END "+txtBadAccount, r.dial(carol, "*101#", "1", "3", "a"))
}

func TestInquiryAndTransferFlows(t *testing.T) {
	r := newRig(t)
	require.Equal(t, "END Kredia juaj është 30.00 EUR, e vlefshme deri më 30.04.2026.", r.dial(alice, "*100#"))
	require.Equal(t, "END Kredia juaj është 9.00 EUR. Validiteti ka skaduar më 09.04.2026: mund të pranoni vetëm thirrje.", r.dial(dave, "*100#"))
	r.eng.accounts[dave].ValidUntil = r.clk.now().Add(-charging.Days(20)).Unix()
	require.Equal(t, "END Kredia juaj është 9.00 EUR. Numri është i pezulluar që nga 21.03.2026: mbushni kredinë.", r.dial(dave, "*100#"))
	require.Equal(t, "END "+txtSuspended, r.dial(dave, "*150*049222222*1#", "1"))
	r.eng.accounts[dave].ValidUntil = r.clk.now().Add(-charging.Days(1)).Unix()
	require.Equal(t, "END "+txtUnknownCaller, r.dial(38344999000, "*100#"))

	require.Equal(t, "CON Transferoni 5.00 EUR te 38349222222? Tarifa: 0.10 EUR.\n1. Konfirmo\n2. Anulo", r.post("t1", "*150*049222222*5#", "", alice))
	require.Equal(t, "END Transferuat 5.00 EUR te 38349222222. Kredia juaj është 24.90 EUR, e vlefshme deri më 30.04.2026. ID e transaksionit: 38344111111-1",
		r.post("t1", "*150*049222222*5#", "1", alice))
	require.Equal(t, charging.Euros(7), r.eng.accounts[bob].Balance)
	require.Equal(t, bobValidity(r), r.eng.accounts[bob].ValidUntil, "a transfer does not extend validity")
	// Step by step.
	require.Equal(t, "CON "+txtPromptRecipient, r.post("t2", "*150#", "", alice))
	require.Equal(t, "CON Shkruani shumën për transfer (0.50 - 20.00 EUR):", r.post("t2", "*150#", "049222222", alice))
	require.Contains(t, r.dial(alice, "*150#", "049222222", "2.5", "1"), "Transferuat 2.50 EUR")
	// Failures.
	require.Equal(t, "END Kredi e pamjaftueshme. Kredia juaj është 1.00 EUR.", r.dial(carol, "*150*049222222*1#", "1"))
	require.Equal(t, "END Shuma minimale është 0.50 EUR.", r.dial(alice, "*150*049222222*0.49#"))
	require.Equal(t, "END Shuma maksimale është 20.00 EUR.", r.dial(alice, "*150*049222222*20.01#"))
	require.Equal(t, "END "+txtTransferToSelf, r.dial(alice, "*150*044111111*1#"))
	require.Equal(t, "END "+txtBadAmount, r.dial(alice, "*150*049222222*abc#"))
	require.Equal(t, "END "+txtBadMSISDN, r.dial(alice, "*150*0492#"))
	require.Equal(t, "END Numri 38349999999 nuk është pajtimtar i rrjetit tonë.", r.dial(alice, "*150*049999999*1#", "1"))
	require.Equal(t, "END "+txtGrace, r.dial(38344444444, "*150*049222222*1#", "1"))
	require.Equal(t, "END "+txtCancelled, r.dial(alice, "*150*049222222*1#", "2"))
	require.Equal(t, "END "+txtUnknownService, r.dial(alice, "*999#"))
	// The engine cannot answer.
	r.eng.mu.Lock()
	r.eng.down = true
	r.eng.mu.Unlock()
	require.Equal(t, "END "+txtUnavailable, r.dial(alice, "*100#"))
}

// A redemption, payment or transfer that failed after its record was
// written is being finished by the engine: the subscriber is told so, and
// not to repeat it, instead of "unavailable, try again".
func TestRecordedButUnfinishedIsInProgress(t *testing.T) {
	r := newRig(t)
	r.eng.mu.Lock()
	r.eng.inProgress = true
	r.eng.mu.Unlock()
	const want = "END Kërkesa juaj po përpunohet: rezultatin do ta shihni brenda një minute. Mos e përsëritni; kontrolloni kredinë me *100#."
	require.Equal(t, want, r.dial(alice, "*123*"+code(0)+"#"))
	require.Equal(t, want, r.dial(alice, "*150*049222222*2#", "1"))
	require.Equal(t, want, r.dial(alice, "*101#", "1", "3", "arber", "1"))
	// A gateway retry of the same request gets the same answer.
	body := r.post("retry", "*150*049222222*2#", "", alice)
	require.True(t, strings.HasPrefix(body, "CON "), body)
	require.Equal(t, want, r.post("retry", "*150*049222222*2#", "1", alice))
	require.Equal(t, want, r.post("retry", "*150*049222222*2#", "1", alice))
	// Any other error still says the service is unavailable.
	r.eng.mu.Lock()
	r.eng.inProgress, r.eng.down = false, true
	r.eng.mu.Unlock()
	require.Equal(t, "END "+txtUnavailable, r.dial(alice, "*150*049222222*2#", "1"))
}

func bobValidity(r *rig) int64 {
	return time.Date(2026, 4, 10, 9, 0, 0, 0, time.UTC).Add(charging.Days(5)).Unix()
}

func TestHandlerRejectsBadRequests(t *testing.T) {
	r := newRig(t)
	// A session is bound to its caller.
	r.post("bound", "*101#", "", alice)
	require.Equal(t, "END "+txtSessionMismatch, r.post("bound", "*101#", "1", bob))
	// Wrong path and method.
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI("http://" + r.addr + "/other")
	req.Header.SetMethod("POST")
	require.NoError(t, r.client.DoTimeout(req, resp, time.Second))
	require.Equal(t, 404, resp.StatusCode())
	req.SetRequestURI("http://" + r.addr + "/ussd")
	req.Header.SetMethod("GET")
	require.NoError(t, r.client.DoTimeout(req, resp, time.Second))
	require.Equal(t, 405, resp.StatusCode())
	req.Header.SetMethod("POST")
	req.SetBodyString("serviceCode=*100%23")
	require.NoError(t, r.client.DoTimeout(req, resp, time.Second))
	require.Equal(t, 400, resp.StatusCode())
}

func TestSessionsBoundedAndExpiring(t *testing.T) {
	s := newSessions(3, time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, id := range []string{"a", "b", "c", "d"} {
		_, _, ok := s.touch(id, 1, t0.Add(time.Duration(i)*time.Second), "")
		require.True(t, ok)
	}
	require.Equal(t, 3, s.len(), "bounded by max")
	_, found := s.mu.byID["a"]
	require.False(t, found, "least recently used evicted")
	s.touch("b", 1, t0.Add(10*time.Second), "") // b is fresh again
	s.touch("e", 1, t0.Add(64*time.Second), "") // c (2 s) and d (3 s) idle a minute or more
	require.Equal(t, 2, s.len())
	_, found = s.mu.byID["c"]
	require.False(t, found)
}

// The session table against a plain slice, over random touches, finishes
// and clock steps: the same sessions survive, in the same recency order,
// and a retry of a finished request gets its final body.
func TestSessionsMatchAModel(t *testing.T) {
	const max, idle = 5, time.Minute
	s := newSessions(max, idle)
	type entry struct {
		id           string
		caller       charging.SubscriberID
		seen         time.Time
		input, final string
	}
	var model []entry // front: most recent
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(7, 7))
	for step := range 5000 {
		now = now.Add(time.Duration(r.IntN(20)) * time.Second)
		id := fmt.Sprint("s", r.IntN(9))
		caller := charging.SubscriberID(1 + r.IntN(2))
		input := fmt.Sprint("in", r.IntN(3))
		// The model: sweep at most sweepMax idle from the back, then look up.
		for i := 0; i < sweepMax && len(model) > 0 && now.Sub(model[len(model)-1].seen) >= idle; i++ {
			model = model[:len(model)-1]
		}
		at := slices.IndexFunc(model, func(e entry) bool { return e.id == id })
		var wantFinal string
		wantOK := true
		switch {
		case at >= 0 && model[at].caller != caller:
			wantOK = false
		case at >= 0:
			e := model[at]
			e.seen = now
			if e.input == input {
				wantFinal = e.final
			}
			model = append([]entry{e}, slices.Delete(model, at, at+1)...)
		default:
			for len(model) >= max {
				model = model[:len(model)-1]
			}
			model = append([]entry{{id: id, caller: caller, seen: now}}, model...)
		}
		ss, final, ok := s.touch(id, caller, now, input)
		require.Equal(t, wantOK, ok, "step %d", step)
		require.Equal(t, wantFinal, final, "step %d", step)
		if ok && r.IntN(2) == 0 {
			body := fmt.Sprint("END ", step)
			s.finish(ss, input, body)
			model[0].input, model[0].final = input, body
		}
		var got []string
		for e := s.mu.head; e != nil; e = e.next {
			got = append(got, e.id)
		}
		want := make([]string, len(model))
		for i, e := range model {
			want[i] = e.id
		}
		require.Equal(t, want, got, "step %d: recency order", step)
		require.Equal(t, len(model), s.len(), "step %d: map and list agree", step)
	}
}
