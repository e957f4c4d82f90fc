package httpapi

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"github.com/valyala/fastjson"
)

// fakeEngine applies commands to in-memory accounts with charging's own
// rules and idempotency records: the real business answers, no actors.
type fakeEngine struct {
	mu         sync.Mutex
	cfg        charging.Config
	now        time.Time
	accounts   map[charging.SubscriberID]*charging.Account
	journal    map[charging.SubscriberID][]charging.Entry
	refunded   map[charging.SubscriberID]map[uint64]bool
	requests   map[charging.SubscriberID]map[string]charging.RequestRecord
	executed   int   // commands that reached the engine
	err        error // returned by Execute when set
	overloaded bool
	notReady   bool
	// entered and gate, when set, make Execute signal and then wait: a
	// request held in flight.
	entered chan struct{}
	gate    chan struct{}
	// Backups: the finished ones, newest last; backupErr fails the next
	// Take; backupEntered and backupGate, when set, hold a Take in flight.
	backups       []BackupInfo
	backupErr     error
	backupRunning bool
	backupEntered chan struct{}
	backupGate    chan struct{}
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{
		cfg:      charging.DemoConfig(),
		now:      time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		accounts: map[charging.SubscriberID]*charging.Account{},
		journal:  map[charging.SubscriberID][]charging.Entry{},
		refunded: map[charging.SubscriberID]map[uint64]bool{},
		requests: map[charging.SubscriberID]map[string]charging.RequestRecord{},
	}
}

func (e *fakeEngine) Execute(cmd *charging.Command) (charging.Outcome, error) {
	if e.gate != nil {
		e.entered <- struct{}{}
		<-e.gate
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.executed++
	if e.err != nil {
		return charging.Outcome{}, e.err
	}
	if e.overloaded {
		return charging.Outcome{Result: charging.ResultOverloaded}, nil
	}
	id := cmd.Subscriber
	if cmd.Kind.Mutates() && cmd.Key != "" {
		if rec, ok := e.requests[id][cmd.Key]; ok {
			if rec.Fingerprint != cmd.Fingerprint() || rec.Kind != cmd.Kind {
				return charging.Outcome{Result: charging.ResultRequestKeyReused}, nil
			}
			out := rec.Outcome
			out.Replayed = true
			return out, nil
		}
	}
	var out charging.Outcome
	var eff charging.Effect
	a := e.accounts[id]
	switch {
	case cmd.Kind == charging.KindProvision && a != nil:
		return charging.Outcome{Result: charging.ResultSubscriberExists}, nil
	case cmd.Kind == charging.KindProvision:
		acct, o, ef := charging.NewAccount(&e.cfg, cmd, e.now)
		out, eff = o, ef
		if out.Result == charging.ResultOK {
			e.accounts[id] = &acct
		}
	case a == nil:
		return charging.Outcome{Result: charging.ResultUnknownSubscriber}, nil
	default:
		if cmd.Kind == charging.KindRefund {
			for _, en := range e.journal[id] {
				if en.Seq == cmd.Ref {
					cmd.Original = en
				}
			}
			cmd.OriginalRefunded = e.refunded[id][cmd.Ref]
		}
		out, eff = a.Apply(&e.cfg, cmd, e.now)
	}
	if eff.Entry.Seq != 0 {
		e.journal[id] = append(e.journal[id], eff.Entry)
		if eff.Entry.Kind == charging.EntryRefund {
			if e.refunded[id] == nil {
				e.refunded[id] = map[uint64]bool{}
			}
			e.refunded[id][eff.Entry.Ref] = true
		}
	}
	if out.Result == charging.ResultOK && cmd.Kind.Mutates() && cmd.Key != "" {
		if e.requests[id] == nil {
			e.requests[id] = map[string]charging.RequestRecord{}
		}
		e.requests[id][cmd.Key] = charging.RequestRecord{Fingerprint: cmd.Fingerprint(), Kind: cmd.Kind, Outcome: out}
	}
	return out, nil
}

func (e *fakeEngine) History(id charging.SubscriberID, before uint64, limit int) ([]charging.Entry, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []charging.Entry
	j := e.journal[id]
	for i := len(j) - 1; i >= 0 && len(out) < limit; i-- {
		if before == 0 || j[i].Seq < before {
			out = append(out, j[i])
		}
	}
	return out, nil
}

func (e *fakeEngine) Totals() charging.Totals {
	e.mu.Lock()
	defer e.mu.Unlock()
	var t charging.Totals
	for _, a := range e.accounts {
		t.Owed += a.Balance
		t.Accounts++
	}
	return t
}

func (e *fakeEngine) Ready() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.notReady
}

// Take is one backup at a time like storage.Backups, named after the
// fake's clock with a suffix for a second one in the same second.
func (e *fakeEngine) Take() (BackupInfo, error) {
	e.mu.Lock()
	if e.backupRunning {
		e.mu.Unlock()
		return BackupInfo{}, ErrBackupInProgress
	}
	if err := e.backupErr; err != nil {
		e.backupErr = nil
		e.mu.Unlock()
		return BackupInfo{}, err
	}
	e.backupRunning = true
	entered, gate := e.backupEntered, e.backupGate
	e.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		<-gate
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.backupRunning = false
	name := e.now.UTC().Format("20060102T150405Z")
	if n := len(e.backups); n > 0 && strings.HasPrefix(e.backups[n-1].Name, name) {
		name += "-" + strconv.Itoa(n+1)
	}
	b := BackupInfo{Name: name, Path: "/srv/ocs/backups/" + name, CreatedAt: e.now, Bytes: int64(1000 + len(e.accounts)),
		Duration: 1500 * time.Millisecond}
	e.backups = append(e.backups, b)
	return b, nil
}

// List returns the backups newest first, without durations.
func (e *fakeEngine) List() ([]BackupInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.backupErr; err != nil {
		e.backupErr = nil
		return nil, err
	}
	out := make([]BackupInfo, 0, len(e.backups))
	for i := len(e.backups) - 1; i >= 0; i-- {
		b := e.backups[i]
		b.Duration = 0
		out = append(out, b)
	}
	return out, nil
}

func (e *fakeEngine) balance(t *testing.T, id charging.SubscriberID) charging.Amount {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.accounts[id]
	require.NotNil(t, a, "account %d", id)
	return a.Balance
}

func (e *fakeEngine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.executed
}

// fakeKeys holds one fixed key per role plus issued ones.
type fakeKeys struct {
	mu   sync.Mutex
	keys map[string]Role
	n    int
}

const (
	keyNetwork = "net-key"
	keyChannel = "chan-key"
	keyOps     = "ops-key"
)

func newFakeKeys() *fakeKeys {
	return &fakeKeys{keys: map[string]Role{keyNetwork: RoleNetwork, keyChannel: RoleChannel, keyOps: RoleOps}}
}

func (k *fakeKeys) Role(token []byte) (Role, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, ok := k.keys[string(token)]
	return r, ok
}

func (k *fakeKeys) Issue(role Role) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.n++
	key := "issued-" + strconv.Itoa(k.n)
	k.keys[key] = role
	return key, nil
}

// harness is a Server on an in-memory listener with a client.
type harness struct {
	t      *testing.T
	engine *fakeEngine
	keys   *fakeKeys
	srv    *Server
	client *fasthttp.Client
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, engine: newFakeEngine(), keys: newFakeKeys()}
	return h.start(h.engine)
}

// start serves engine (h.engine, or a wrapper of it that hides some of
// its methods) with h's keys.
func (h *harness) start(engine Engine) *harness {
	t := h.t
	h.srv = New(Config{Engine: engine, Keys: h.keys, Clock: func() time.Time { return testNow },
		Tariffs: charging.DemoTariffs()})
	ln := fasthttputil.NewInmemoryListener()
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ln) }()
	h.client = &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	t.Cleanup(func() {
		require.NoError(t, h.srv.Shutdown())
		require.NoError(t, <-done)
	})
	return h
}

// reply is a response read back.
type reply struct {
	status  int
	body    string
	headers map[string]string
}

// json parses the body; it fails the test if the body is no JSON.
func (r reply) json(t *testing.T) *fastjson.Value {
	t.Helper()
	v, err := fastjson.Parse(r.body)
	require.NoError(t, err, "body %q", r.body)
	return v
}

// str returns a string field at path.
func (r reply) str(t *testing.T, path ...string) string {
	t.Helper()
	return string(r.json(t).GetStringBytes(path...))
}

// do sends one request. headers are name, value pairs.
func (h *harness) do(method, path, token, body string, headers ...string) reply {
	h.t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://ocs" + path)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if body != "" {
		req.SetBodyString(body)
		req.Header.SetContentType("application/json")
	}
	require.NoError(h.t, h.client.DoTimeout(req, resp, 5*time.Second))
	r := reply{status: resp.StatusCode(), body: string(resp.Body()), headers: map[string]string{}}
	for _, k := range resp.Header.PeekKeys() {
		r.headers[string(k)] = string(resp.Header.PeekBytes(k))
	}
	if r.status >= 400 {
		// Every refusal is a problem document with our stable code.
		require.Equal(h.t, "application/problem+json", string(resp.Header.ContentType()), "body %s", r.body)
		v := r.json(h.t)
		require.Equal(h.t, r.status, v.GetInt("status"))
		require.NotEmpty(h.t, v.GetStringBytes("code"))
		require.NotEmpty(h.t, v.GetStringBytes("detail"))
		require.True(h.t, strings.HasPrefix(string(v.GetStringBytes("type")), "urn:ocs:problem:"))
	}
	return r
}

// code returns a problem's code.
func (r reply) code(t *testing.T) string { return r.str(t, "code") }

// provision creates a subscriber through the ops API.
func (h *harness) provision(msisdn, balance string) charging.SubscriberID {
	h.t.Helper()
	r := h.do("PUT", "/v1/subscribers/"+msisdn, keyOps, `{"balance":"`+balance+`"}`)
	require.Equal(h.t, 201, r.status, r.body)
	id, err := charging.ParseMSISDN(msisdn)
	require.NoError(h.t, err)
	return id
}

var errEngineStopped = errors.New("engine stopping")
