package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// bodyBytesMax caps a request body. The largest legitimate body is a
// ChargingDataRequest from an SMF, which may carry PDU-session, location and
// QoS information we ignore: a few KiB. 64 KiB leaves room and bounds what a
// client can make us buffer; it is set on the fasthttp.Server too.
const bodyBytesMax = 64 << 10

// requestTimeoutMax bounds reading a request and writing a response on one
// connection: a client that stalls longer is dropped.
const requestTimeoutMax = 10 * time.Second

// Config is what New needs.
type Config struct {
	Engine Engine
	Keys   Keys
	// Registerer receives the HTTP metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// Logger for operating events (never one line per request); nil
	// discards.
	Logger *slog.Logger
	// Clock stamps invocationTimeStamp in Nchf responses; nil is time.Now.
	Clock func() time.Time
	// Tariffs, when set, names the unit kind of a rating group so that a
	// grant answers a request that named no unit (requestedUnit absent) in
	// the tariff's unit. Optional: without it such grants are in
	// serviceSpecificUnits.
	Tariffs map[charging.RatingGroup]charging.Tariff
	// Metrics, when set, serves GET /metrics (Prometheus exposition) on the
	// same listener, without authentication: it carries no subscriber data.
	Metrics fasthttp.RequestHandler
	// USSD, when set, serves POST /ussd (the USSD gateway convention) on
	// the same listener, for API keys of the network role.
	USSD fasthttp.RequestHandler
	// Vouchers and Fixed serve the ops endpoints of scratch cards, the
	// redemption guard and fixed-service accounts; nil answers 501.
	Vouchers Vouchers
	Fixed    FixedAccounts
	// VoucherGenerator serves POST /v1/voucher-batches; nil answers 501.
	VoucherGenerator VoucherGenerator
	// Catalogue names and validates fixed-service packages; nil is
	// charging.DemoCatalogue().
	Catalogue *charging.Catalogue
}

// Server serves the HTTP API over fasthttp.
type Server struct {
	engine  Engine
	keys    Keys
	log     *slog.Logger
	clock   func() time.Time
	tariffs map[charging.RatingGroup]charging.Tariff
	expose  fasthttp.RequestHandler // GET /metrics
	m       *metrics
	srv     *fasthttp.Server
	states  sync.Pool // *reqState
	metrics fasthttp.RequestHandler
	// Issue 3: optional stores and the USSD gateway.
	ussd      fasthttp.RequestHandler
	vouchers  Vouchers
	fixed     FixedAccounts
	generator VoucherGenerator
	catalogue *charging.Catalogue
}

// reqState is the per-request scratch: one pool Get per request instead of
// one each for a fastjson parser, a Command and an output buffer.
type reqState struct {
	parser fastjson.Parser
	cmd    charging.Command
	buf    []byte
	// args lives here rather than on handle's stack: passed to a handler
	// through a function value, it would escape and cost an allocation.
	args args
	// lost is set when the engine did not answer: it may still hold cmd,
	// so the state must not be reused.
	lost bool
}

// New builds a Server. It panics on a missing Engine or Keys: a wiring bug.
func New(cfg Config) *Server {
	if cfg.Engine == nil || cfg.Keys == nil {
		panic("httpapi: Config needs Engine and Keys")
	}
	s := &Server{engine: cfg.Engine, keys: cfg.Keys, log: cfg.Logger, clock: cfg.Clock,
		tariffs: cfg.Tariffs, m: newMetrics(cfg.Registerer), metrics: cfg.Metrics,
		ussd: cfg.USSD, vouchers: cfg.Vouchers, fixed: cfg.Fixed, generator: cfg.VoucherGenerator, catalogue: cfg.Catalogue}
	if s.catalogue == nil {
		c := charging.DemoCatalogue()
		s.catalogue = &c
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	s.states.New = func() any { return &reqState{buf: make([]byte, 0, 1024)} }
	s.srv = &fasthttp.Server{
		Handler:            s.Handler(),
		ErrorHandler:       s.errorHandler,
		Name:               "ocs",
		MaxRequestBodySize: bodyBytesMax,
		ReadTimeout:        requestTimeoutMax,
		WriteTimeout:       requestTimeoutMax,
		IdleTimeout:        time.Minute,
		CloseOnShutdown:    true,
		Logger:             fasthttpLogger{s.log},
	}
	return s
}

// Handler returns the request handler, for embedding in another server.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// ListenAndServe listens on addr (e.g. 127.0.0.1:8080) and serves until
// Shutdown.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Serve serves on ln until Shutdown; it then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for requests in flight to
// be answered. Call it before stopping the engine, so every request that got
// in gets its durable answer.
func (s *Server) Shutdown() error { return s.srv.Shutdown() }

// errorHandler answers what fasthttp refuses before our handler runs (a body
// over bodyBytesMax, a malformed request line) with a problem document too.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	var p problem
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		p = probBodyTooLarge
	} else {
		p = problem{status: 400, code: "malformed_request", detail: "The HTTP request could not be read."}
	}
	st := s.states.Get().(*reqState)
	writeProblem(ctx, st, p, false)
	s.states.Put(st)
}

// args carries what routing found to an operation handler.
type args struct {
	params [2][]byte // path parameters, in pattern order
	role   Role
	op     op // the route's, refined by a handler (Nchf create: charge or reserve)
}

type handlerFunc func(s *Server, ctx *fasthttp.RequestCtx, st *reqState, a *args) slot

// handle routes, authenticates, runs the operation and counts it.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	if s.metrics != nil && string(ctx.Path()) == "/metrics" {
		s.metrics(ctx)
		return
	}
	var start time.Time
	if s.m != nil {
		start = time.Now()
	}
	st := s.states.Get().(*reqState)
	st.buf = st.buf[:0]
	st.args = args{}
	a := &st.args
	r, methodOK := match(ctx.Path(), ctx.Method(), &a.params)
	var sl slot
	switch {
	case r == nil:
		sl = slotError
		writeProblem(ctx, st, probNotFound, false)
	case !methodOK:
		sl = slotError
		ctx.Response.Header.Set("Allow", r.allow)
		writeProblem(ctx, st, probMethod, false)
	default:
		a.op = r.op
		sl = s.run(ctx, st, r, a)
	}
	if s.m != nil && r != nil {
		if a.op == 0 {
			a.op = r.op
		}
		s.m.requests[a.op][sl].Inc()
		s.m.duration[a.op].Observe(time.Since(start).Seconds())
	}
	if !st.lost {
		st.cmd = charging.Command{}
		st.args = args{} // drop references to this request's bytes
		s.states.Put(st)
	}
}

// run checks the role and body size, then calls the operation.
func (s *Server) run(ctx *fasthttp.RequestCtx, st *reqState, r *route, a *args) slot {
	nchf := opInterface[r.op] == "nchf"
	if r.roles != 0 {
		role, ok := s.authenticate(ctx)
		if !ok {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="ocs"`)
			writeProblem(ctx, st, probUnauthorized, nchf)
			return slotUnauthorized
		}
		if r.roles&(1<<role) == 0 {
			writeProblem(ctx, st, probForbidden, nchf)
			return slotForbidden
		}
		a.role = role
	}
	if len(ctx.PostBody()) > bodyBytesMax {
		writeProblem(ctx, st, probBodyTooLarge, nchf)
		return slotBadRequest
	}
	return r.handler(s, ctx, st, a)
}

// authenticate resolves "Authorization: Bearer <token>".
func (s *Server) authenticate(ctx *fasthttp.RequestCtx) (Role, bool) {
	h := ctx.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(b2s(h[:len(prefix)]), prefix) {
		return 0, false
	}
	role, ok := s.keys.Role(bytes.TrimSpace(h[len(prefix):]))
	if !ok || role < RoleNetwork || role > RoleOps {
		return 0, false
	}
	return role, true
}

// execute runs st.cmd on the engine. On an engine error it answers 503 and
// marks st lost: the engine may still be holding st.cmd.
func (s *Server) execute(ctx *fasthttp.RequestCtx, st *reqState, nchf bool) (charging.Outcome, bool) {
	out, err := s.engine.Execute(&st.cmd)
	if err != nil {
		st.lost = true
		ctx.Response.Header.Set("Retry-After", retryAfterSeconds)
		writeProblem(ctx, st, probUnavailable, nchf)
		return out, false
	}
	return out, true
}

// refuse answers a refused Result as a problem document and returns its slot.
func refuse(ctx *fasthttp.RequestCtx, st *reqState, r charging.Result, nchf bool) slot {
	if r == charging.ResultOverloaded {
		ctx.Response.Header.Set("Retry-After", retryAfterSeconds)
	}
	writeProblem(ctx, st, resultProblem(r), nchf)
	return slotOf(r)
}

// slotOf returns the metric slot of a Result.
func slotOf(r charging.Result) slot {
	if !r.Valid() || int(r) >= len(resultTable) {
		return slotError
	}
	return slot(r)
}

// decodeFailed answers a decoder problem.
func decodeFailed(ctx *fasthttp.RequestCtx, st *reqState, p problem, nchf bool) slot {
	writeProblem(ctx, st, p, nchf)
	return slotBadRequest
}

// writeProblem writes p as an RFC 9457 document. cause (TS 29.500
// ProblemDetails) is written on the Nchf interface only.
func writeProblem(ctx *fasthttp.RequestCtx, st *reqState, p problem, nchf bool) {
	b := st.buf[:0]
	b = append(b, `{"type":"urn:ocs:problem:`...)
	b = append(b, p.code...)
	b = append(b, '"')
	b = appendStringField(b, "title", fasthttp.StatusMessage(p.status))
	b = appendUintField(b, "status", uint64(p.status))
	b = appendStringField(b, "detail", p.detail)
	b = appendStringField(b, "code", p.code)
	if nchf && p.cause != "" {
		b = appendStringField(b, "cause", p.cause)
	}
	b = append(b, '}')
	st.buf = b
	ctx.SetStatusCode(p.status)
	ctx.SetContentType("application/problem+json")
	ctx.SetBody(b)
}

// writeJSON sends st.buf as a JSON body with status.
func writeJSON(ctx *fasthttp.RequestCtx, st *reqState, status int) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(st.buf)
}

// idempotencyKey copies the Idempotency-Key header into an owned string,
// or "" if absent. fasthttp reuses the header's bytes.
//
// The key must be printable ASCII: the IETF draft defines the header as a
// structured-field string, and the key comes back to operations as the
// transaction's reference, which must say exactly what the client sent.
//
// It may not contain '/' or '|'. A subscriber's request keys are one space:
// the client's, and those the engine derives for its own legs, every one
// of which holds a '/' ("T/<id>/r", "P/<id>", "V/<hash>", an Nchf update's
// "<msisdn>-<session>/<isn>", "provision/<msisdn>") or a '|' (an Nchf
// create's "nFName|invocationTimeStamp|invocationSequenceNumber"). A client
// key equal to one of them would take it: the engine's leg would then be
// answered request_key_reused, and a transfer's reversal, say, would never
// run (the sender's money stuck), or a session's usage never be charged.
func idempotencyKey(ctx *fasthttp.RequestCtx) (string, problem) {
	k := ctx.Request.Header.Peek("Idempotency-Key")
	if len(k) == 0 {
		return "", problem{}
	}
	if len(k) > charging.RequestKeyBytesMax {
		return "", probKeyTooLong
	}
	reserved := false
	for _, c := range k {
		if c < 0x20 || c > 0x7e {
			return "", probKeyInvalid
		}
		reserved = reserved || c == '/' || c == '|'
	}
	if reserved {
		return "", probKeyReserved
	}
	return string(k), problem{}
}

// fasthttpLogger sends fasthttp's connection errors (a client sending too
// large a body, a reset) to slog at debug level: they are the client's
// problem, already answered, and must not flood the log under load.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("fasthttp", "msg", fmt.Sprintf(format, args...))
	}
}
