package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/ocs-engine/ocs/charging"
)

// The limit server is the ceiling every engine figure is divided by: the
// same HTTP requests, parsed minimally, an in-memory balance update under a
// per-subscriber shard lock, and the engine's durable write pattern (one
// committer goroutine group-commits synced Pebble batches; the reply waits
// for the commit). It has no actors, no idempotency lookup, no lifecycle,
// no metrics: what the engine does beyond this is its overhead.

const (
	limitShards = 256
	// limitBatchMax bounds one group commit: DESIGN.md measured 100–1000
	// writes per synced batch as the sweet spot.
	limitBatchMax = 1000
	// limitQueueMax bounds writes waiting for the committer; handlers block
	// beyond it, which bounds memory under overload.
	limitQueueMax = 8192
	// limitHistoryMax bounds the page size of a history request.
	limitHistoryMax = 1000
)

// LimitConfig configures a limit server.
type LimitConfig struct {
	Listen string // host:port; 127.0.0.1:0 picks a free port
	Dir    string // Pebble directory
	// BootstrapKey is the ops key (as OCS_BOOTSTRAP_KEY for the engine).
	BootstrapKey string
	Tariffs      map[charging.RatingGroup]charging.Tariff
}

// Limit is a running ceiling server.
type Limit struct {
	cfg     LimitConfig
	ln      net.Listener
	srv     *fasthttp.Server
	db      *pebble.DB
	queue   chan *limitWrite
	stopped chan struct{}
	shards  [limitShards]limitShard
	owed    atomic.Int64
	count   atomic.Int64
	keys    sync.Map // token string → role string
	parsers fastjson.ParserPool
	writes  sync.Pool
	sms     charging.Tariff
	voice   charging.Tariff
	failed  atomic.Pointer[error]
	// faults plant discrepancies for the audit's tests: each counts down
	// and, while positive, acknowledges without doing.
	faults struct {
		unappliedCharges  atomic.Int64 // acknowledge an SMS, debit nothing
		unjournaledTopUps atomic.Int64 // credit a top-up, journal nothing
	}
}

type limitShard struct {
	mu       sync.Mutex
	accounts map[uint64]*limitAccount
}

type limitAccount struct {
	balance    charging.Amount
	reserved   charging.Amount
	validUntil int64
	seq        uint64
	nextSess   uint32
	sessions   []limitSession
	journal    []limitEntry
}

type limitSession struct {
	id       uint32
	used     uint64
	reserved charging.Amount
}

// limitSnapshot is what is written of an account, copied under its lock.
type limitSnapshot struct {
	balance charging.Amount
	seq     uint64
}

func (a *limitAccount) snapshot() limitSnapshot { return limitSnapshot{a.balance, a.seq} }

type limitEntry struct {
	seq    uint64
	kind   uint8
	amount charging.Amount
}

var limitKindNames = [...]string{"", "provision", "topup", "charge", "session_debit"}

// limitWrite is one durable write: the account record, a journal entry and
// the request key, as the engine writes them.
type limitWrite struct {
	keys [3][]byte
	vals [3][]byte
	n    int
	done chan struct{}
}

// StartLimit opens the Pebble directory and starts serving.
func StartLimit(cfg LimitConfig) (*Limit, error) {
	if cfg.BootstrapKey == "" {
		return nil, errors.New("bench: limit needs a bootstrap key")
	}
	if cfg.Tariffs == nil {
		cfg.Tariffs = charging.DemoTariffs()
	}
	db, err := pebble.Open(cfg.Dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("bench: limit: open %s: %w", cfg.Dir, err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bench: limit: %w", err)
	}
	l := &Limit{cfg: cfg, ln: ln, db: db, queue: make(chan *limitWrite, limitQueueMax), stopped: make(chan struct{}),
		sms: cfg.Tariffs[charging.RatingGroupSMS], voice: cfg.Tariffs[charging.RatingGroupVoice]}
	for i := range l.shards {
		l.shards[i].accounts = map[uint64]*limitAccount{}
	}
	l.keys.Store(cfg.BootstrapKey, "ops")
	l.writes.New = func() any { return &limitWrite{done: make(chan struct{}, 1)} }
	l.srv = &fasthttp.Server{Handler: l.handle, NoDefaultServerHeader: true, NoDefaultDate: true,
		ReadTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	go l.commit()
	go func() { _ = l.srv.Serve(ln) }()
	return l, nil
}

// Addr returns the address the server listens on.
func (l *Limit) Addr() string { return l.ln.Addr().String() }

// URL returns the base URL of the server.
func (l *Limit) URL() string { return "http://" + l.Addr() }

// Close stops serving, drains the committer and closes Pebble.
func (l *Limit) Close() error {
	err := l.srv.Shutdown()
	close(l.queue)
	<-l.stopped
	if cerr := l.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// commit is the one committer: it gathers what is queued into one batch,
// commits it synced, then releases every waiter.
func (l *Limit) commit() {
	defer close(l.stopped)
	pending := make([]*limitWrite, 0, limitBatchMax)
	for w := range l.queue {
		pending = append(pending[:0], w)
	gather:
		for len(pending) < limitBatchMax {
			select {
			case w, ok := <-l.queue:
				if !ok {
					break gather
				}
				pending = append(pending, w)
			default:
				break gather
			}
		}
		b := l.db.NewBatch()
		for _, w := range pending {
			for i := 0; i < w.n; i++ {
				_ = b.Set(w.keys[i], w.vals[i], nil)
			}
		}
		if err := b.Commit(pebble.Sync); err != nil {
			// Like the engine: a failed commit stops acknowledging.
			l.failed.CompareAndSwap(nil, &err)
		}
		_ = b.Close()
		for _, w := range pending {
			w.done <- struct{}{}
		}
	}
}

// durable writes the account record, the entry and the request key and
// waits for the commit.
func (l *Limit) durable(id uint64, snap limitSnapshot, e limitEntry, idem []byte) bool {
	w := l.writes.Get().(*limitWrite)
	w.keys[0] = binary.BigEndian.AppendUint64(append(w.keys[0][:0], 'a'), id)
	w.vals[0] = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(w.vals[0][:0], uint64(snap.balance)), snap.seq)
	w.n = 1
	if e.seq != 0 {
		w.keys[1] = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(append(w.keys[1][:0], 'j'), id), e.seq)
		w.vals[1] = binary.BigEndian.AppendUint64(append(w.vals[1][:0], e.kind), uint64(e.amount))
		w.n = 2
	}
	if len(idem) > 0 {
		w.keys[w.n] = append(append(w.keys[w.n][:0], 'k'), idem...)
		w.vals[w.n] = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(w.vals[w.n][:0], id), e.seq)
		w.n++
	}
	l.queue <- w
	<-w.done
	l.writes.Put(w)
	return l.failed.Load() == nil
}

func (l *Limit) shard(id uint64) *limitShard { return &l.shards[id%limitShards] }

var (
	errLimitRefused = errors.New("bench: limit: charge refused: units 0 or not enough credit")
	errLimitUnknown = errors.New("bench: limit: unknown subscriber")
	errLimitFailed  = errors.New("bench: limit: storage failed: stopped acknowledging")
)

// Provision creates account id with balance, durably; created is false if
// it existed already (nothing is written then). The HTTP handler and the
// in-process ceiling benchmark share it.
func (l *Limit) Provision(id uint64, balance charging.Amount) (created bool, err error) {
	sh := l.shard(id)
	sh.mu.Lock()
	if _, ok := sh.accounts[id]; ok {
		sh.mu.Unlock()
		return false, nil
	}
	a := &limitAccount{balance: balance, validUntil: time.Now().Add(provisionValidity).Unix(), seq: 1}
	e := limitEntry{seq: 1, kind: 1, amount: balance}
	a.journal = append(a.journal, e)
	sh.accounts[id] = a
	l.owed.Add(int64(balance))
	l.count.Add(1)
	snap := a.snapshot()
	sh.mu.Unlock()
	if !l.durable(id, snap, e, nil) {
		return true, errLimitFailed
	}
	return true, nil
}

// ChargeEvent debits units of SMS from id and returns once the debit is
// durable: the minimal form of the engine's event charge (no idempotency
// look-up, no lifecycle), with the same three keys written (account, journal
// entry, request key when key is not empty). It is what the in-process
// ceiling benchmark calls, and the HTTP handler for one-time events.
func (l *Limit) ChargeEvent(id uint64, units uint64, key []byte) error {
	sh := l.shard(id)
	sh.mu.Lock()
	a, ok := sh.accounts[id]
	if !ok {
		sh.mu.Unlock()
		return errLimitUnknown
	}
	cost := l.sms.Cost(units)
	if units == 0 || cost > a.balance-a.reserved {
		sh.mu.Unlock()
		return errLimitRefused
	}
	if l.faults.unappliedCharges.Add(-1) >= 0 {
		cost = 0
	}
	a.balance -= cost
	a.seq++
	e := limitEntry{seq: a.seq, kind: 3, amount: -cost}
	a.journal = append(a.journal, e)
	l.owed.Add(-int64(cost))
	snap := a.snapshot()
	sh.mu.Unlock()
	if !l.durable(id, snap, e, key) {
		return errLimitFailed
	}
	return nil
}

func (l *Limit) handle(ctx *fasthttp.RequestCtx) {
	auth := ctx.Request.Header.Peek("Authorization")
	role, ok := l.keys.Load(string(bytes.TrimPrefix(auth, []byte("Bearer "))))
	if !ok {
		ctx.Error(`{"error":"unauthorized"}`, fasthttp.StatusUnauthorized)
		return
	}
	path := ctx.Path()
	method := string(ctx.Method())
	switch {
	case bytes.HasPrefix(path, []byte(pathChargingData)) && method == fasthttp.MethodPost && role == "network":
		l.chargingData(ctx, path[len(pathChargingData):])
	case bytes.Equal(path, []byte(pathTopUp)) && method == fasthttp.MethodPost && role == "channel":
		l.topUp(ctx)
	case bytes.HasPrefix(path, []byte(pathSubscribers)) && role == "ops":
		l.subscriber(ctx, method, path[len(pathSubscribers):])
	case bytes.Equal(path, []byte(pathLedger)) && role == "ops":
		ctx.SetContentType("application/json")
		fmt.Fprintf(ctx, `{"owed":"%s","accounts":%d}`, charging.Amount(l.owed.Load()), l.count.Load())
	case bytes.Equal(path, []byte(pathAPIKeys)) && method == fasthttp.MethodPost && role == "ops":
		l.issueKey(ctx)
	default:
		ctx.Error(`{"error":"no such endpoint for this key"}`, fasthttp.StatusNotFound)
	}
}

func (l *Limit) issueKey(ctx *fasthttp.RequestCtx) {
	role := string(fastjson.GetBytes(ctx.PostBody(), "role"))
	if role != "network" && role != "channel" && role != "ops" {
		ctx.Error(`{"error":"role must be network, channel or ops"}`, fasthttp.StatusBadRequest)
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	key := hex.EncodeToString(b[:])
	l.keys.Store(key, role)
	ctx.SetStatusCode(fasthttp.StatusCreated)
	fmt.Fprintf(ctx, `{"key":"%s","role":"%s"}`, key, role)
}

func refuse(ctx *fasthttp.RequestCtx, status int, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	fmt.Fprintf(ctx, `{"error":%q}`, msg)
}

func (l *Limit) subscriber(ctx *fasthttp.RequestCtx, method string, rest []byte) {
	msisdn, tail, _ := bytes.Cut(rest, []byte("/"))
	id, err := strconv.ParseUint(string(msisdn), 10, 64)
	if err != nil {
		refuse(ctx, fasthttp.StatusBadRequest, "msisdn must be E.164 digits")
		return
	}
	sh := l.shard(id)
	switch {
	case method == fasthttp.MethodPut && len(tail) == 0:
		p := l.parsers.Get()
		defer l.parsers.Put(p)
		v, err := p.ParseBytes(ctx.PostBody())
		if err != nil {
			refuse(ctx, fasthttp.StatusBadRequest, err.Error())
			return
		}
		bal, err := charging.ParseAmount(string(v.GetStringBytes("balance")))
		if err != nil || bal < 0 {
			refuse(ctx, fasthttp.StatusBadRequest, "balance must be a non-negative amount")
			return
		}
		created, err := l.Provision(id, bal)
		switch {
		case err != nil:
			refuse(ctx, fasthttp.StatusServiceUnavailable, err.Error())
		case created:
			ctx.SetStatusCode(fasthttp.StatusCreated)
		default:
			ctx.SetStatusCode(fasthttp.StatusOK)
		}
	case method == fasthttp.MethodGet && len(tail) == 0:
		sh.mu.Lock()
		a, ok := sh.accounts[id]
		var bal charging.Amount
		var vu int64
		if ok {
			bal, vu = a.balance, a.validUntil
		}
		sh.mu.Unlock()
		if !ok {
			refuse(ctx, fasthttp.StatusNotFound, "unknown subscriber")
			return
		}
		ctx.SetContentType("application/json")
		fmt.Fprintf(ctx, `{"msisdn":"%d","balance":"%s","validUntil":"%s","state":"active"}`, id, bal,
			time.Unix(vu, 0).UTC().Format(time.RFC3339))
	case method == fasthttp.MethodGet && string(tail) == "transactions":
		l.history(ctx, id)
	default:
		refuse(ctx, fasthttp.StatusNotFound, "no such endpoint")
	}
}

func (l *Limit) history(ctx *fasthttp.RequestCtx, id uint64) {
	limit, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("limit")))
	if limit <= 0 || limit > limitHistoryMax {
		limit = limitHistoryMax
	}
	before, _ := strconv.ParseUint(string(ctx.QueryArgs().Peek("before")), 10, 64)
	sh := l.shard(id)
	sh.mu.Lock()
	a, ok := sh.accounts[id]
	var page []limitEntry
	if ok {
		for i := len(a.journal) - 1; i >= 0 && len(page) < limit; i-- {
			if before == 0 || a.journal[i].seq < before {
				page = append(page, a.journal[i])
			}
		}
	}
	sh.mu.Unlock()
	if !ok {
		refuse(ctx, fasthttp.StatusNotFound, "unknown subscriber")
		return
	}
	b := append([]byte(nil), `{"transactions":[`...)
	for i, e := range page {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":"%d-%d","seq":%d,"kind":"%s","amount":"%s"}`, id, e.seq, e.seq, limitKindNames[e.kind], e.amount)
	}
	b = append(b, `],"next":`...)
	if len(page) == limit && page[len(page)-1].seq > 1 {
		b = strconv.AppendUint(b, page[len(page)-1].seq, 10)
	} else {
		b = append(b, "null"...)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '}'))
}

// reply makes the change durable and then answers status with body.
func (l *Limit) reply(ctx *fasthttp.RequestCtx, id uint64, snap limitSnapshot, e limitEntry, idem []byte, status int, body []byte) {
	if !l.durable(id, snap, e, idem) {
		refuse(ctx, fasthttp.StatusServiceUnavailable, "storage failed: stopped acknowledging")
		return
	}
	ctx.SetStatusCode(status)
	if body != nil {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}
}

func (l *Limit) topUp(ctx *fasthttp.RequestCtx) {
	p := l.parsers.Get()
	defer l.parsers.Put(p)
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		refuse(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	id, err := strconv.ParseUint(string(v.GetStringBytes("partyAccount", "id")), 10, 64)
	amount, aerr := charging.ParseAmount(string(v.GetStringBytes("amount", "amount")))
	if err != nil || aerr != nil || amount <= 0 {
		refuse(ctx, fasthttp.StatusBadRequest, "partyAccount.id and a positive amount.amount are required")
		return
	}
	sh := l.shard(id)
	sh.mu.Lock()
	a, ok := sh.accounts[id]
	if !ok {
		sh.mu.Unlock()
		refuse(ctx, fasthttp.StatusNotFound, "unknown subscriber")
		return
	}
	a.balance += amount
	a.seq++
	e := limitEntry{seq: a.seq, kind: 2, amount: amount}
	if l.faults.unjournaledTopUps.Add(-1) < 0 {
		a.journal = append(a.journal, e)
	}
	bal := a.balance
	l.owed.Add(int64(amount))
	snap := a.snapshot()
	sh.mu.Unlock()
	body := fmt.Appendf(nil, `{"transactionId":"%d-%d","balance":"%s"}`, id, e.seq, bal)
	l.reply(ctx, id, snap, e, ctx.Request.Header.Peek("Idempotency-Key"), fasthttp.StatusCreated, body)
}

var (
	nchfSuccess = []byte(`{"invocationSequenceNumber":0,"multipleUnitInformation":[{"resultCode":"SUCCESS"}]}`)
	nchfRefused = []byte(`{"multipleUnitInformation":[{"resultCode":"QUOTA_LIMIT_REACHED"}]}`)
)

// chargingData serves an Nchf create (event or session), update or release.
func (l *Limit) chargingData(ctx *fasthttp.RequestCtx, rest []byte) {
	p := l.parsers.Get()
	defer l.parsers.Put(p)
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		refuse(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	mu := v.GetArray("multipleUnitUsage")
	if len(mu) == 0 {
		refuse(ctx, fasthttp.StatusBadRequest, "multipleUnitUsage is required")
		return
	}
	if len(rest) == 0 {
		l.create(ctx, v, mu[0])
		return
	}
	ref, op, _ := bytes.Cut(rest[1:], []byte("/"))
	m, s, _ := bytes.Cut(ref, []byte("-"))
	id, err1 := strconv.ParseUint(string(m), 10, 64)
	sid, err2 := strconv.ParseUint(string(s), 10, 32)
	if err1 != nil || err2 != nil || (string(op) != "update" && string(op) != "release") {
		refuse(ctx, fasthttp.StatusNotFound, "no such charging data reference")
		return
	}
	used := mu[0].GetUint64("usedUnitContainer", "0", "time")
	l.report(ctx, id, uint32(sid), used, string(op) == "release")
}

func (l *Limit) create(ctx *fasthttp.RequestCtx, v, usage *fastjson.Value) {
	sub := v.GetStringBytes("subscriberIdentifier")
	id, err := strconv.ParseUint(string(bytes.TrimPrefix(sub, []byte("msisdn-"))), 10, 64)
	if err != nil {
		refuse(ctx, fasthttp.StatusBadRequest, "subscriberIdentifier must be msisdn-<E.164 digits>")
		return
	}
	if v.GetBool("oneTimeEvent") {
		units := usage.GetUint64("requestedUnit", "serviceSpecificUnits")
		switch err := l.ChargeEvent(id, units, ctx.Request.Header.Peek("Idempotency-Key")); {
		case errors.Is(err, errLimitRefused):
			ctx.SetStatusCode(fasthttp.StatusForbidden)
			ctx.SetBody(nchfRefused)
		case errors.Is(err, errLimitUnknown):
			refuse(ctx, fasthttp.StatusNotFound, "unknown subscriber")
		case err != nil:
			refuse(ctx, fasthttp.StatusServiceUnavailable, err.Error())
		default:
			ctx.SetStatusCode(fasthttp.StatusCreated)
			ctx.SetBody(nchfSuccess)
		}
		return
	}
	sh := l.shard(id)
	sh.mu.Lock()
	a, ok := sh.accounts[id]
	if !ok {
		sh.mu.Unlock()
		refuse(ctx, fasthttp.StatusNotFound, "unknown subscriber")
		return
	}
	units := usage.GetUint64("requestedUnit", "time")
	cost := l.voice.Cost(units)
	if cost > a.balance-a.reserved || len(a.sessions) >= charging.SessionsMax {
		sh.mu.Unlock()
		ctx.SetStatusCode(fasthttp.StatusForbidden)
		ctx.SetBody(nchfRefused)
		return
	}
	a.nextSess++
	a.sessions = append(a.sessions, limitSession{id: a.nextSess, reserved: cost})
	a.reserved += cost
	sid := a.nextSess
	snap := a.snapshot()
	sh.mu.Unlock()
	ctx.Response.Header.Set("Location", fmt.Sprintf("%s/%d-%d", pathChargingData, id, sid))
	l.reply(ctx, id, snap, limitEntry{}, ctx.Request.Header.Peek("Idempotency-Key"), fasthttp.StatusCreated, nchfSuccess)
}

func (l *Limit) report(ctx *fasthttp.RequestCtx, id uint64, sid uint32, used uint64, release bool) {
	sh := l.shard(id)
	sh.mu.Lock()
	a, ok := sh.accounts[id]
	i := -1
	if ok {
		for j := range a.sessions {
			if a.sessions[j].id == sid {
				i = j
			}
		}
	}
	if i < 0 {
		sh.mu.Unlock()
		refuse(ctx, fasthttp.StatusNotFound, "no such charging data reference")
		return
	}
	s := &a.sessions[i]
	a.reserved -= s.reserved
	s.reserved = 0
	cost := min(l.voice.Cost(s.used+used)-l.voice.Cost(s.used), a.balance-a.reserved)
	s.used += used
	var e limitEntry
	if cost > 0 {
		a.balance -= cost
		a.seq++
		e = limitEntry{seq: a.seq, kind: 4, amount: -cost}
		a.journal = append(a.journal, e)
		l.owed.Add(-int64(cost))
	}
	status, body := fasthttp.StatusNoContent, []byte(nil)
	if release {
		a.sessions = append(a.sessions[:i], a.sessions[i+1:]...)
	} else {
		status, body = fasthttp.StatusOK, nchfSuccess
		more := l.voice.Cost(s.used+sessionGrantSeconds) - l.voice.Cost(s.used)
		if more <= a.balance-a.reserved {
			s.reserved = more
			a.reserved += more
		} else {
			body = nchfRefused
		}
	}
	snap := a.snapshot()
	sh.mu.Unlock()
	l.reply(ctx, id, snap, e, ctx.Request.Header.Peek("Idempotency-Key"), status, body)
}

// quietLogger drops Pebble's informational lines ("Found 0 WALs"), which
// would interleave with the progress output; errors still stop the run.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)         {}
func (quietLogger) Errorf(f string, args ...any) { fmt.Fprintf(os.Stderr, "pebble: "+f+"\n", args...) }
func (quietLogger) Fatalf(f string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+f+"\n", args...)
	os.Exit(1)
}
