package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ocs-engine/ocs/actors"
	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/flows"
	"github.com/ocs-engine/ocs/storage"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// Issue 3 end to end: every USSD flow over HTTP against a real `ocs serve`
// child process, scratch cards made by the real `ocs vouchers generate`.

// card is one row of the printer's CSV.
type card struct{ serial, code string }

// generate runs `ocs vouchers generate` on dir (no server on it) and reads
// the printer's file back.
func generate(t *testing.T, dir, secret string, batch, count, value int) []card {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("batch%d.csv", batch))
	cmd := exec.Command(ocsBinary(t), "vouchers", "generate", "--data", dir, "--secret-file", secret, "--out", out,
		"--batch", fmt.Sprint(batch), "--count", fmt.Sprint(count), "--value", fmt.Sprint(value), "--expiry", "2099-12-31")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	info, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "clear codes are for the printer only")
	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"serial", "code", "value", "batch", "expiry"}, rows[0])
	var cards []card
	for _, r := range rows[1:] {
		cards = append(cards, card{serial: r[0], code: r[1]})
	}
	require.Len(t, cards, count)
	return cards
}

func writeSecret(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "voucher.key")
	require.NoError(t, os.WriteFile(path, []byte("0123456789abcdef0123456789abcdef-test-secret"), 0o600))
	return path
}

var sessionSeq atomic.Uint64

// dial runs one USSD dialogue step by step, as a gateway does: the same
// session, the inputs so far joined by '*'. It returns every screen.
func (s *server) dial(key, phone, serviceCode string, inputs ...string) []string {
	s.t.Helper()
	session := fmt.Sprintf("sess-%d", sessionSeq.Add(1))
	screens := []string{s.ussd(key, session, serviceCode, phone, "")}
	for i := range inputs {
		screens = append(screens, s.ussd(key, session, serviceCode, phone, strings.Join(inputs[:i+1], "*")))
	}
	return screens
}

// last is the final screen of a dialogue.
func (s *server) last(key, phone, serviceCode string, inputs ...string) string {
	screens := s.dial(key, phone, serviceCode, inputs...)
	return screens[len(screens)-1]
}

func (s *server) ussd(key, session, serviceCode, phone, text string) string {
	s.t.Helper()
	form := url.Values{"sessionId": {session}, "serviceCode": {serviceCode}, "phoneNumber": {phone}, "networkCode": {"29341"}, "text": {text}}
	req, err := http.NewRequest("POST", s.base+"/ussd", strings.NewReader(form.Encode()))
	require.NoError(s.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	require.Equal(s.t, 200, resp.StatusCode, "%s", b)
	require.True(s.t, strings.HasPrefix(string(b), "CON ") || strings.HasPrefix(string(b), "END "), "%s", b)
	require.LessOrEqual(s.t, len([]rune(string(b))), 182)
	return string(b)
}

func (s *server) provisionSub(msisdn, balance string) {
	code, err := s.call("PUT", "/v1/subscribers/"+msisdn, testOpsKey, "", map[string]string{"balance": balance}, nil)
	require.NoError(s.t, err)
	require.Equal(s.t, 201, code)
}

func (s *server) voucherState(serial string) string {
	var v struct{ State string }
	code, err := s.call("GET", "/v1/vouchers/"+serial, testOpsKey, "", nil, &v)
	require.NoError(s.t, err)
	require.Equal(s.t, 200, code)
	return v.State
}

func redeem(code string) string { return "*123*" + code + "#" }

func TestUSSDFlowsEndToEnd(t *testing.T) {
	dir, secret := t.TempDir(), writeSecret(t)
	cards := generate(t, dir, secret, 1, 6, 5)
	s := startServerWith(t, dir, nil, "--voucher-secret", secret, "--redeem-failures-max", "3")
	net := s.issueKey("network")
	const a, b, c, stranger = "044100001", "044100002", "044100003", "044999999"
	s.provisionSub(a, "50")
	s.provisionSub(b, "1")
	s.provisionSub(c, "1")
	owed0, _ := s.ledger()
	require.Equal(t, "52.00", owed0)
	code, err := s.call("PUT", "/v1/fixed-accounts/Arber", testOpsKey, "", map[string]any{"kind": "internet", "package": 3}, nil)
	require.NoError(t, err)
	require.Equal(t, 201, code)
	code, err = s.call("PUT", "/v1/fixed-accounts/1234567890", testOpsKey, "", map[string]any{"kind": "tv", "package": 1}, nil)
	require.NoError(t, err)
	require.Equal(t, 201, code)

	// *123*CODE# for oneself; the same card again is used.
	got := s.last(net, a, redeem(cards[0].code))
	require.Contains(t, got, "END Mbushja u krye: +5.00 EUR. Kredia juaj është 55.00 EUR")
	require.Contains(t, got, "ID e transaksionit: 38344100001-")
	require.Equal(t, "used", s.voucherState(cards[0].serial))
	require.Equal(t, "END Kjo kartelë është përdorur më parë.", s.last(net, b, redeem(cards[0].code)))
	// *123# then the code, step by step.
	screens := s.dial(net, b, "*123#", cards[1].code)
	require.Equal(t, "CON Shkruani kodin 16-shifror të kartelës:", screens[0])
	require.Contains(t, screens[1], "+5.00 EUR. Kredia juaj është 6.00 EUR")
	// *123*CODE*MSISDN# for another subscriber.
	got = s.last(net, a, "*123*"+cards[2].code+"*"+c+"#")
	require.Contains(t, got, "END Mbushja e numrit 38344100003 me 5.00 EUR u krye.")
	require.Equal(t, "6.00", s.subscriber(c).Balance)
	// For a number that is no subscriber: refused, and the card untouched.
	require.Equal(t, "END Numri 38344999999 nuk është pajtimtar i rrjetit tonë.", s.last(net, a, "*123*"+cards[3].code+"*"+stranger+"#"))
	require.Equal(t, "active", s.voucherState(cards[3].serial))
	// A blocked card.
	code, err = s.call("POST", "/v1/vouchers/"+cards[4].serial+"/block", testOpsKey, "", nil, nil)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Equal(t, "END Kjo kartelë është e bllokuar. Kontaktoni shërbimin për klientë.", s.last(net, a, redeem(cards[4].code)))
	// Malformed and wrong codes; the third wrong code bars the caller, who
	// is then refused even with a good card.
	require.Equal(t, "END Kodi i gabuar: kodi i kartelës ka 16 shifra.", s.last(net, c, "*123*12345#"))
	for range 3 {
		require.Equal(t, "END Kodi i gabuar. Kontrolloni kodin në kartelë dhe provoni përsëri.", s.last(net, c, redeem("0000000000000000")))
	}
	got = s.last(net, c, redeem(cards[3].code))
	require.Contains(t, got, "END Keni shtypur shumë kode të gabuara. Mbushja me kartelë është e bllokuar deri më ")
	require.Equal(t, "active", s.voucherState(cards[3].serial))
	var guards struct{ Barred []struct{ MSISDN string } }
	code, err = s.call("GET", "/v1/redeem-guards", testOpsKey, "", nil, &guards)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Len(t, guards.Barred, 1)
	require.Equal(t, "38344100003", guards.Barred[0].MSISDN)

	// *101#: Pagesat → package → username → confirm.
	screens = s.dial(net, a, "*101#", "1", "3", "ARBER", "1")
	require.Equal(t, "CON Mirë se vini!\n1. Pagesat", screens[0])
	require.Contains(t, screens[1], "3. Internet Pako 1")
	require.Equal(t, "CON Shkruani emrin e përdoruesit (username):", screens[2])
	require.Contains(t, screens[3], "Pagesa e pakos Internet Pako 1 për arber: 15.00 EUR + 0.50 EUR tarifë")
	require.Contains(t, screens[4], "END Pagesa u krye: Internet Pako 1, 15.00 EUR. Paguar deri më ")
	require.Contains(t, screens[4], "Kredia juaj është 39.50 EUR")
	var fixed struct{ PaidUntil string }
	code, err = s.call("GET", "/v1/fixed-accounts/arber", testOpsKey, "", nil, &fixed)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.NotEmpty(t, fixed.PaidUntil)
	require.Equal(t, "END Shërbimin e pagesave e keni përdorur këtë muaj. Mund ta përdorni sërish muajin e ardhshëm.",
		s.last(net, a, "*101#", "1", "1", "1234567890", "1"))
	require.Equal(t, "END Kredi e pamjaftueshme. Kredia juaj është 6.00 EUR.", s.last(net, b, "*101#", "1", "1", "1234567890", "1"))
	require.Equal(t, "END Llogaria nobody nuk ekziston. Kontrolloni emrin e përdoruesit ose numrin e kartelës.",
		s.last(net, b, "*101#", "1", "3", "nobody", "1"))
	require.Equal(t, "END Pakoja Internet Pako 2 nuk është pakoja e llogarisë arber.", s.last(net, b, "*101#", "1", "4", "arber", "1"))

	// *150*MSISDN*AMOUNT# and its limits.
	require.Equal(t, "END Shuma maksimale është 20.00 EUR.", s.last(net, a, "*150*"+b+"*25#"))
	require.Equal(t, "END Shuma minimale është 0.50 EUR.", s.last(net, a, "*150*"+b+"*0.10#"))
	require.Equal(t, "END Nuk mund t'i transferoni kredi numrit tuaj.", s.last(net, a, "*150*"+a+"*5#"))
	require.Equal(t, "END Kredi e pamjaftueshme. Kredia juaj është 6.00 EUR.", s.last(net, b, "*150*"+a+"*6#", "1"))
	require.Equal(t, "END Numri 38344999999 nuk është pajtimtar i rrjetit tonë.", s.last(net, a, "*150*"+stranger+"*5#", "1"))
	got = s.last(net, a, "*150*"+b+"*2.50#", "1")
	require.Contains(t, got, "END Transferuat 2.50 EUR te 38344100002. Kredia juaj është 36.90 EUR")
	require.Equal(t, "8.50", s.subscriber(b).Balance)

	// *100#: balance and validity.
	require.Contains(t, s.last(net, b, "*100#"), "END Kredia juaj është 8.50 EUR, e vlefshme deri më ")
	require.Equal(t, "END Shërbimi nuk njihet. Provoni *100#, *101#, *123*KODI# ose *150#.", s.last(net, a, "*999#"))

	// Money: three cards in (15.00), the package and its fee (15.50) and
	// the transfer fee (0.10) out; nothing else moved.
	owed, _ := s.ledger()
	require.Equal(t, "51.40", owed)
	hA := s.history(a)
	kinds := map[string]int{}
	for _, e := range hA.Transactions {
		kinds[e.Kind]++
	}
	require.Equal(t, map[string]int{"provision": 1, "topup": 1, "package_payment": 1, "transfer_out": 1}, kinds)
	s.stopWait()
}

// Many subscribers redeem one card at the same instant: exactly one credit.
func TestConcurrentRedemptionOneCredit(t *testing.T) {
	dir, secret := t.TempDir(), writeSecret(t)
	cards := generate(t, dir, secret, 2, 1, 10)
	s := startServerWith(t, dir, nil, "--voucher-secret", secret)
	net := s.issueKey("network")
	const n = 24
	phones := make([]string, n)
	for i := range phones {
		phones[i] = fmt.Sprintf("0441%05d", i+1)
		s.provisionSub(phones[i], "1")
	}
	answers := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range phones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = s.ussd(net, fmt.Sprintf("race-%d", i), redeem(cards[0].code), phones[i], "")
		}()
	}
	close(start)
	wg.Wait()
	credited, used := 0, 0
	for i, a := range answers {
		switch {
		case strings.HasPrefix(a, "END Mbushja u krye: +10.00 EUR"):
			credited++
			require.Equal(t, "11.00", s.subscriber(phones[i]).Balance)
		case a == "END Kjo kartelë është përdorur më parë.":
			used++
			require.Equal(t, "1.00", s.subscriber(phones[i]).Balance)
		default:
			t.Fatalf("unexpected answer %q", a)
		}
	}
	require.Equal(t, 1, credited)
	require.Equal(t, n-1, used)
	topups := 0
	for _, p := range phones {
		for _, e := range s.history(p).Transactions {
			if e.Kind == "topup" {
				topups++
			}
		}
	}
	require.Equal(t, 1, topups, "one journal entry in all histories")
	owed, _ := s.ledger()
	require.Equal(t, "34.00", owed)
}

// A SIGKILL between the sender's durable debit and the receiver's credit:
// after a restart the transfer is finished, money is conserved to the unit
// and the transfer is in both histories.
func TestTransferCrashBetweenDebitAndCredit(t *testing.T) {
	dir, secret := t.TempDir(), writeSecret(t)
	s := startServerWith(t, dir, []string{"OCS_FAILPOINT=" + flows.FailTransferAfterDebit}, "--voucher-secret", secret)
	net := s.issueKey("network")
	const a, b = "044200001", "044200002"
	s.provisionSub(a, "10")
	s.provisionSub(b, "1")
	owed0, _ := s.ledger()

	form := url.Values{"sessionId": {"crash"}, "serviceCode": {"*150*" + b + "*2#"}, "phoneNumber": {a}, "text": {"1"}}
	req, err := http.NewRequest("POST", s.base+"/ussd", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+net)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the failpoint did not fire: %d", resp.StatusCode)
	}
	_ = s.cmd.Wait()
	// The debit is durable and the record still pending: a state the
	// protocol leaves, which the checker accepts before recovery.
	var out strings.Builder
	require.NoError(t, check([]string{"--data", dir}, &out), "ocs check after the crash: %s", &out)
	require.False(t, s.cmd.ProcessState.Success(), "killed, not exited")

	s = startServerWith(t, dir, nil, "--voucher-secret", secret)
	require.Equal(t, "7.90", s.subscriber(a).Balance)
	require.Equal(t, "3.00", s.subscriber(b).Balance)
	owed, _ := s.ledger()
	o0, _ := charging.ParseAmount(owed0)
	o1, _ := charging.ParseAmount(owed)
	require.Equal(t, charging.DemoTransferRules().Fee, o0-o1, "only the fee left the ledger")
	has := func(msisdn, kind string) bool {
		for _, e := range s.history(msisdn).Transactions {
			if e.Kind == kind {
				return true
			}
		}
		return false
	}
	require.True(t, has(a, "transfer_out"))
	require.True(t, has(b, "transfer_in"))
	require.Contains(t, s.stopWait(), "finished operations a crash left half-way")
	out.Reset()
	require.NoError(t, check([]string{"--data", dir}, &out), "ocs check after recovery: %s", &out)
}

// manualClock is the engine's and the flows' clock in the guard test.
type manualClock struct{ now atomic.Int64 }

func (c *manualClock) Now() time.Time         { return time.Unix(c.now.Load(), 0) }
func (c *manualClock) set(t time.Time)        { c.now.Store(t.Unix()) }
func (c *manualClock) add(d time.Duration)    { c.now.Add(int64(d / time.Second)) }
func (c *manualClock) time() func() time.Time { return c.Now }

// The brute-force bar engages at the configured failure count within the
// window and lifts exactly when the bar ends; failures spread beyond the
// window never bar. In process, on the real stores and engine, with an
// injected clock.
func TestRedeemGuardInstants(t *testing.T) {
	dir := t.TempDir()
	store, err := storage.Open(dir, storage.Options{})
	require.NoError(t, err)
	clock := &manualClock{}
	t0 := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	clock.set(t0)
	cfg := charging.DemoConfig()
	engine, err := actors.Start(actors.Config{Store: engineStore{store}, Charging: &cfg, Clock: clock})
	require.NoError(t, err)
	defer func() {
		require.NoError(t, engine.Stop())
		require.NoError(t, store.Close())
	}()
	policy := charging.GuardPolicy{FailuresMax: 3, Window: 10 * time.Minute, Bar: time.Hour}
	v, err := storage.NewVouchers(store, [][]byte{[]byte("0123456789abcdef0123456789abcdef")}, policy)
	require.NoError(t, err)
	var sink strings.Builder
	_, err = v.Generate(storage.GenerateOptions{Batch: 1, Count: 1, Value: charging.Euros(5), Expiry: t0.AddDate(1, 0, 0), Now: t0}, &sink)
	require.NoError(t, err)
	rows, err := csv.NewReader(strings.NewReader(sink.String())).ReadAll()
	require.NoError(t, err)
	good, err := charging.ParseVoucherCode(rows[1][1])
	require.NoError(t, err)
	wrong, _ := charging.ParseVoucherCode("0000000000000000")
	f := flows.New(flows.Config{Engine: engine, Vouchers: flowVouchers{v}, Now: clock.time()})
	const caller charging.SubscriberID = 38344300001
	out, err := engine.Execute(&charging.Command{Kind: charging.KindProvision, Key: "p", Subscriber: caller})
	require.NoError(t, err)
	require.Equal(t, charging.ResultOK, out.Result)

	// Two failures, then the window closes: the count starts again.
	for range 2 {
		res, err := f.Redeem(caller, caller, wrong)
		require.NoError(t, err)
		require.Equal(t, charging.VoucherUnknown, res.Voucher)
		clock.add(time.Minute)
	}
	clock.set(t0.Add(policy.Window))
	for i := range 3 {
		res, err := f.Redeem(caller, caller, wrong)
		require.NoError(t, err)
		require.Equal(t, charging.VoucherUnknown, res.Voucher)
		if i < 2 {
			require.Zero(t, res.BarredUntil, "failure %d of a fresh window", i+1)
			clock.add(time.Minute)
		}
	}
	barredAt := clock.Now()
	g, err := v.Guard(caller)
	require.NoError(t, err)
	require.Equal(t, barredAt.Add(policy.Bar).Unix(), g.BarredUntil)

	clock.set(barredAt.Add(policy.Bar - time.Second))
	res, err := f.Redeem(caller, caller, good)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherBarred, res.Voucher, "one second before the bar lifts")
	require.Equal(t, g.BarredUntil, res.BarredUntil)

	clock.set(barredAt.Add(policy.Bar))
	res, err = f.Redeem(caller, caller, good)
	require.NoError(t, err)
	require.True(t, res.OK(), "the bar lifts at its end: %+v", res)
	require.Equal(t, charging.Euros(5), res.Outcome.Balance)
}

// stopWait stops the server with SIGTERM and returns its logs, complete:
// cmd.Wait also waits for the copy of its output.
func (s *server) stopWait() string {
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(s.t, s.cmd.Wait(), "logs:\n%s", s.logs)
	return s.logs.String()
}

// redeemBenchCardsMax bounds the cards one round may generate (about a
// second per 200k).
const redeemBenchCardsMax = 1_000_000

type redeemFixture struct {
	s      *server
	net    string
	cards  []card
	next   atomic.Int64
	phones []string
	bodies [][]byte // the POST /ussd body redeeming cards[i]
}

// newRedeemFixture generates n cards on a new data directory and starts a
// server on it; b.Cleanup kills it.
func newRedeemFixture(b *testing.B, n int) *redeemFixture {
	dir := b.TempDir()
	secret := filepath.Join(b.TempDir(), "voucher.key")
	require.NoError(b, os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef-bench"), 0o600))
	out := filepath.Join(b.TempDir(), "cards.csv")
	cmd := exec.Command(ocsBinary(b), "vouchers", "generate", "--data", dir, "--secret-file", secret, "--out", out,
		"--batch", "9", "--count", fmt.Sprint(n), "--value", "5", "--expiry", "2099-12-31")
	msg, err := cmd.CombinedOutput()
	require.NoError(b, err, "%s", msg)
	f, err := os.Open(out)
	require.NoError(b, err)
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(b, err)
	_ = f.Close()
	rb := &redeemFixture{}
	for _, r := range rows[1:] {
		rb.cards = append(rb.cards, card{serial: r[0], code: r[1]})
	}
	args := []string{"--voucher-secret", secret}
	// OCS_BENCH_CPUPROFILE=file profiles the server for the whole round;
	// the profile is written when it stops, so it is stopped by SIGTERM.
	profile := os.Getenv("OCS_BENCH_CPUPROFILE")
	if profile != "" {
		args = append(args, "--cpuprofile", profile)
	}
	s := startServerWith(b, dir, nil, args...)
	b.Cleanup(func() {
		if profile != "" {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
		} else {
			_ = s.cmd.Process.Kill()
		}
		_ = s.cmd.Wait()
	})
	rb.s, rb.net = s, s.issueKey("network")
	for i := range 256 {
		p := fmt.Sprintf("0445%05d", i+1)
		s.provisionSub(p, "1")
		rb.phones = append(rb.phones, p)
	}
	// The gateway's form bodies are built before the clock starts: the
	// client shares the server's two cores, and its encoding is no part
	// of the server's capacity.
	rb.bodies = make([][]byte, len(rb.cards))
	for i := range rb.cards {
		rb.bodies[i] = []byte(url.Values{"sessionId": {fmt.Sprint("b", i)}, "serviceCode": {redeem(rb.cards[i].code)},
			"phoneNumber": {rb.phones[i%len(rb.phones)]}, "text": {""}}.Encode())
	}
	return rb
}

// BenchmarkUSSDRedeemHTTP redeems distinct cards over HTTP, POST /ussd on
// a real `ocs serve`, from parallel clients on the same machine (they share
// its cores: the figure is a lower bound of the server's capacity). Run it
// with -benchtime Nx (N ≤ 1,000,000): each round generates its cards first.
//
// Three loads: 64, 192 and 384 connections. A gateway carrying 20,000
// dials a second has hundreds of sessions open at once, and a USSD session
// waits seconds for an answer, so the deeper queues are the realistic ones;
// they also let each synced batch carry more redemptions and leave the
// cores fewer idle moments while a batch syncs, which is what raises the
// figure. Each reports its p99 latency as seen by the client, and the CPU
// that the server and the client spent per redemption.
//
// Two clients: fasthttp's, and "raw", a minimal HTTP/1.1 client (one
// write of a prepared request, one parse of the answer), as lean as a load
// generator in C: the client's CPU is taken from the server's two cores,
// and a gateway is on another machine.
func BenchmarkUSSDRedeemHTTP(b *testing.B) {
	for _, c := range []struct {
		conns int
		raw   bool
	}{{64, false}, {192, false}, {192, true}, {384, true}} {
		name := fmt.Sprintf("conns=%d", c.conns)
		if c.raw {
			name += ",client=raw"
		}
		b.Run(name, func(b *testing.B) { benchRedeemHTTP(b, c.conns, c.raw) })
	}
}

// redeemDoer sends one gateway request with body and returns the answer's
// body (valid until the next call).
type redeemDoer func(body []byte) ([]byte, error)

func benchRedeemHTTP(b *testing.B, conns int, raw bool) {
	if b.N > redeemBenchCardsMax {
		b.Fatalf("b.N %d above %d cards", b.N, redeemBenchCardsMax)
	}
	rb := newRedeemFixture(b, b.N)
	// The client stands in for a gateway on another machine, but here it
	// shares the server's two cores: what it spends is taken from the
	// server. Collecting its garbage a quarter as often measured 6% more
	// redemptions a second (and the server's own GOGC made no difference:
	// BENCHMARKS.md).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	fc := &fasthttp.Client{MaxConnsPerHost: conns}
	var (
		failed atomic.Int64
		mu     sync.Mutex
		// Microseconds, 3 significant digits, up to a minute.
		latency = hdrhistogram.New(1, 60_000_000, 3)
	)
	b.ReportAllocs()
	// RunParallel starts parallelism × GOMAXPROCS goroutines.
	b.SetParallelism(max(1, conns/runtime.GOMAXPROCS(0)))
	serverCPU, clientCPU := childCPU(rb.s.cmd.Process.Pid), processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var do redeemDoer
		if raw {
			c, err := newRawClient(rb.s.base, rb.net)
			if err != nil {
				failed.Add(1)
				b.Error(err)
				return
			}
			defer c.close()
			do = c.do
		} else {
			do = fasthttpDoer(fc, rb.s.base, rb.net)
		}
		mine := hdrhistogram.New(1, 60_000_000, 3)
		defer func() {
			mu.Lock()
			latency.Merge(mine)
			mu.Unlock()
		}()
		for pb.Next() {
			i := rb.next.Add(1) - 1
			if i >= int64(len(rb.cards)) {
				failed.Add(1)
				continue
			}
			start := time.Now()
			body, err := do(rb.bodies[i])
			_ = mine.RecordValue(time.Since(start).Microseconds())
			if err != nil || !bytes.HasPrefix(body, []byte("END Mbushja u krye")) {
				if failed.Add(1) == 1 {
					b.Logf("first failure: %v %q", err, body)
				}
			}
		}
	})
	b.StopTimer()
	serverCPU, clientCPU = childCPU(rb.s.cmd.Process.Pid)-serverCPU, processCPU()-clientCPU
	if n := failed.Load(); n > 0 {
		exited := rb.s.cmd.ProcessState != nil
		b.Fatalf("%d of %d redemptions failed or ran out of cards (%d); server exited: %v; logs:\n%s", n, b.N, len(rb.cards), exited, rb.s.logs)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "redemptions/s")
	b.ReportMetric(float64(latency.ValueAtQuantile(99))/1000, "p99-ms")
	// The server's own CPU per redemption: throughput here moves with the
	// hour and with what the client takes of the shared cores, this far
	// less (the 10 ms tick is ≈ 0.1% of a run's CPU).
	if serverCPU > 0 {
		b.ReportMetric(float64(serverCPU.Microseconds())/float64(b.N), "server-cpu-µs/op")
	}
	b.ReportMetric(float64(clientCPU.Microseconds())/float64(b.N), "client-cpu-µs/op")
}

// childCPU is the user plus system CPU that process pid has used, from
// /proc (Linux); 0 where that cannot be read.
func childCPU(pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, field 2, may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	// utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100
	// on Linux); f[0] is field 3.
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// A gateway's retry (or the subscriber's redial) after the engine lost the
// USSD session, here by a restart, is told the truth: the card it redeemed
// and the package it paid, with the first answer's transaction ID, not
// "card used" or "already paid". Nothing moves a second time.
func TestUSSDRetryAfterRestartIsToldTheTruth(t *testing.T) {
	dir, secret := t.TempDir(), writeSecret(t)
	cards := generate(t, dir, secret, 1, 1, 5)
	s := startServerWith(t, dir, nil, "--voucher-secret", secret)
	net := s.issueKey("network")
	const a = "044100001"
	s.provisionSub(a, "50")
	code, err := s.call("PUT", "/v1/fixed-accounts/arber", testOpsKey, "", map[string]any{"kind": "internet", "package": 3}, nil)
	require.NoError(t, err)
	require.Equal(t, 201, code)
	card := s.last(net, a, redeem(cards[0].code))
	require.Contains(t, card, "END Mbushja u krye: +5.00 EUR")
	paid := s.last(net, a, "*101#", "1", "3", "arber", "1")
	require.Contains(t, paid, "END Pagesa u krye: Internet Pako 1, 15.00 EUR")
	txID := func(screen string) string {
		_, id, ok := strings.Cut(screen, "ID e transaksionit: ")
		require.True(t, ok, screen)
		return id
	}
	balance := s.subscriber(a).Balance
	entries := len(s.history(a).Transactions)
	s.stop()

	s = startServerWith(t, dir, nil, "--voucher-secret", secret)
	again := s.last(net, a, redeem(cards[0].code))
	require.Contains(t, again, "END Mbushja u krye: +5.00 EUR", "the card's own success, not 'used'")
	require.Equal(t, txID(card), txID(again))
	again = s.last(net, a, "*101#", "1", "3", "arber", "1")
	require.Contains(t, again, "END Pagesa u krye: Internet Pako 1, 15.00 EUR", "the payment's own success, not 'already paid'")
	require.Equal(t, txID(paid), txID(again))
	require.Equal(t, balance, s.subscriber(a).Balance, "nothing moved again")
	require.Len(t, s.history(a).Transactions, entries)
}

// fasthttpDoer sends gateway requests with fc. Only the body changes from
// one request to the next: the rest is set once, like the bodies, outside
// the server's share of the CPU.
func fasthttpDoer(fc *fasthttp.Client, base, key string) redeemDoer {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI(base + "/ussd")
	req.Header.SetMethod("POST")
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.SetContentType("application/x-www-form-urlencoded")
	return func(body []byte) ([]byte, error) {
		req.SetBodyRaw(body)
		err := fc.DoTimeout(req, resp, 10*time.Second)
		return resp.Body(), err
	}
}

// rawClient is one keep-alive connection speaking just the HTTP/1.1 the
// benchmark needs: a POST written in one call, an answer with a
// Content-Length. Anything else is an error, never a guess.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
	head []byte // the request up to the Content-Length value
	req  []byte
	body []byte
	// deadline bounds every read and write of the connection.
	deadline time.Time
}

func newRawClient(base, key string) (*rawClient, error) {
	host := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	return &rawClient{conn: conn, r: bufio.NewReaderSize(conn, 4096),
		head: []byte("POST /ussd HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + key +
			"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ")}, nil
}

func (c *rawClient) close() { _ = c.conn.Close() }

func (c *rawClient) do(body []byte) ([]byte, error) {
	c.req = append(strconv.AppendInt(append(c.req[:0], c.head...), int64(len(body)), 10), "\r\n\r\n"...)
	c.req = append(c.req, body...)
	// Every answer within 10 s, the fasthttp client's bound, with the
	// deadline moved once every 5 s rather than on every request (it is a
	// timer's update in the runtime: client CPU taken from the server).
	if now := time.Now(); now.Add(5 * time.Second).After(c.deadline) {
		c.deadline = now.Add(10 * time.Second)
		if err := c.conn.SetDeadline(c.deadline); err != nil {
			return nil, err
		}
	}
	if _, err := c.conn.Write(c.req); err != nil {
		return nil, err
	}
	status, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return nil, fmt.Errorf("status line %q", status)
	}
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(name), "Content-Length") {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || n < 0 || n > 64<<10 {
				return nil, fmt.Errorf("content length %q", value)
			}
			length = n
		}
	}
	if length < 0 {
		return nil, errors.New("answer without a Content-Length")
	}
	if cap(c.body) < length {
		c.body = make([]byte, length)
	}
	c.body = c.body[:length]
	if _, err := io.ReadFull(c.r, c.body); err != nil {
		return nil, err
	}
	return c.body, nil
}

// The serving engine prunes redemption guards (storage/guard_prune.go): the
// pruner is given the engine's Vouchers. A wrong code makes a guard; the
// pruner's next pass (every second here) walks it and keeps it, its window
// still open: proof of the wiring without waiting out the pruner's
// minute of lag, whose rule storage's tests hold.
func TestServePrunesRedeemGuards(t *testing.T) {
	dir, secret := t.TempDir(), writeSecret(t)
	generate(t, dir, secret, 1, 1, 5)
	conf := filepath.Join(t.TempDir(), "ocs.json")
	require.NoError(t, os.WriteFile(conf, []byte(`{"engine": {"requestPruneInterval": "1s"}}`), 0o600))
	s := startServerWith(t, dir, nil, "--voucher-secret", secret, "--config", conf)
	net := s.issueKey("network")
	const a = "044100001"
	s.provisionSub(a, "1")
	require.Contains(t, s.last(net, a, redeem("1111222233334444")), "Kodi i gabuar.")
	kept := regexp.MustCompile(`(?m)^ocs_storage_prune_redeem_guards_total\{result="kept_counting"\} ([0-9]+)`)
	require.Eventually(t, func() bool {
		req, err := http.NewRequest("GET", s.base+"/metrics", nil)
		if err != nil {
			return false
		}
		req.Header.Set("Authorization", "Bearer "+testOpsKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		metrics, err := io.ReadAll(resp.Body)
		if err != nil {
			return false
		}
		m := kept.FindSubmatch(metrics)
		return m != nil && string(m[1]) != "0"
	}, 20*time.Second, 100*time.Millisecond, "the pruner never walked the guard")
}
