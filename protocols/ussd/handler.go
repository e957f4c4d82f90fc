package ussd

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ocs-engine/ocs/charging"
)

// Engine runs the intents of the USSD channel. The lead's actors.Engine
// (through a small adapter in cmd/ocs) implements it; tests use a fake.
// The engine bounds its own waits (actors.Config.RequestTimeout). A
// business refusal is a Reply with its Reason; an error means the engine
// could not answer, and the subscriber is told to retry.
//
// A gateway retry of a request the handler answered is answered again from
// its session table; past that (the session expired or was evicted, the
// engine restarted), each intent is idempotent by what it writes: a card
// is used once, a package paid once a month, and a transfer is keyed by
// its gateway request. Redeem and PayPackage carry no key, so the engine
// recognises the repeat by its record instead: a card used by a credit to
// the same beneficiary, or this month's payment of the same account and
// package, within the last few minutes (flows.RetryAnswerMax), is answered
// as the success it was, with the same transaction ID and the balance
// now, rather than "card used" or "already paid this month".
type Engine interface {
	// Redeem redeems a scratch card dialled by caller for beneficiary
	// (storage.Vouchers.Redeem, then the credit that uses the card in its
	// own batch).
	Redeem(caller, beneficiary charging.SubscriberID, code charging.VoucherCode) (Reply, error)
	// PayPackage pays one month of package pkg of the fixed account from
	// caller's mobile credit: the package price plus the *101# fee, at
	// most once per calendar month per caller.
	PayPackage(caller charging.SubscriberID, pkg charging.PackageID, account string) (Reply, error)
	// Inquire returns caller's balance, validity and state.
	Inquire(caller charging.SubscriberID) (Reply, error)
	// Transfer sends amount from caller to to; the fee is on top. key is
	// derived from the gateway request (session, dialled string, caller):
	// a retry carries the same key, and the engine moves the money once.
	Transfer(key string, caller, to charging.SubscriberID, amount charging.Amount) (Reply, error)
}

// ErrInProgress is what an Engine wraps in the error of an operation that
// failed after it was durably recorded: the engine finishes it on its own
// within about a minute, so the subscriber is told it is being processed
// (txtInProgress), not to try again, which would start another one.
var ErrInProgress = errors.New("ussd: the operation is recorded and being finished")

// Handler limits.
const (
	// InFlightMax bounds intents running at once: beyond it the subscriber
	// is told the service is busy (a bounded queue, never an unbounded one).
	InFlightMax = 1024
)

// Options configures a Handler. Zero fields take the defaults.
type Options struct {
	Menu *Menu            // nil: DemoMenu()
	Now  func() time.Time // nil: time.Now
}

// Handler serves POST /ussd.
type Handler struct {
	engine   Engine
	menu     *Menu
	now      func() time.Time
	sessions *sessions
	inFlight chan struct{}
}

// NewHandler returns a handler running intents on e.
func NewHandler(e Engine, opts Options) *Handler {
	h := &Handler{engine: e, menu: opts.Menu, now: opts.Now,
		sessions: newSessions(SessionsMax, SessionIdleMax), inFlight: make(chan struct{}, InFlightMax)}
	if h.menu == nil {
		h.menu = DemoMenu()
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h
}

// ServeHTTP answers the USSD gateway: form fields sessionId, serviceCode,
// phoneNumber, networkCode, text; reply text/plain "CON …" or "END …".
func (h *Handler) ServeHTTP(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) != "/ussd" {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	if !ctx.IsPost() {
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	args := ctx.PostArgs()
	// Copies: fasthttp reuses the request buffers after the handler.
	sessionID := string(args.Peek("sessionId"))
	serviceCode := string(args.Peek("serviceCode"))
	text := string(args.Peek("text"))
	phone := string(args.Peek("phoneNumber"))
	ctx.SetContentType("text/plain; charset=utf-8")
	if len(sessionID) == 0 || len(sessionID) > SessionIDBytesMax || len(serviceCode) == 0 {
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		ctx.SetBodyString("END " + txtSessionMismatch)
		return
	}
	ctx.SetBodyString(h.answer(sessionID, serviceCode, text, phone))
}

// answer returns the reply body of one request.
func (h *Handler) answer(sessionID, serviceCode, text, phone string) string {
	caller, err := charging.ParseMSISDN(phone)
	if err != nil {
		return "END " + txtUnknownCaller
	}
	now := h.now()
	input := serviceCode + "\x00" + text
	sess, final, ok := h.sessions.touch(sessionID, caller, now, input)
	if !ok {
		return "END " + txtSessionMismatch
	}
	if final != "" {
		return final // a gateway retry: answered once already
	}
	step := h.menu.Parse(serviceCode, text, caller)
	if step.Intent.Kind == 0 {
		return step.Body()
	}
	body := "END " + h.run(&step.Intent, sessionID, input)
	h.sessions.finish(sess, input, body)
	return body
}

// requestKey is "U/" + 32 hex digits of SHA-256(session, input, caller):
// the same gateway request always gets the same key (34 bytes).
func requestKey(sessionID, input string, caller charging.SubscriberID) string {
	s := sha256.New()
	s.Write([]byte(sessionID))
	s.Write([]byte{0})
	s.Write([]byte(input))
	s.Write([]byte{0})
	s.Write(caller.AppendText(nil))
	var sum [sha256.Size]byte
	return "U/" + hex.EncodeToString(s.Sum(sum[:0])[:16])
}

// run executes in on the engine within the in-flight bound. The request
// of session sessionID with input (serviceCode and text) is what a
// transfer's key is derived from.
func (h *Handler) run(in *Intent, sessionID, input string) string {
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		return txtOverloaded
	}
	var r Reply
	var err error
	switch in.Kind {
	case IntentRedeem:
		r, err = h.engine.Redeem(in.Caller, in.Beneficiary, in.Code)
	case IntentPay:
		r, err = h.engine.PayPackage(in.Caller, in.Package, in.Account)
	case IntentInquire:
		r, err = h.engine.Inquire(in.Caller)
	case IntentTransfer:
		r, err = h.engine.Transfer(requestKey(sessionID, input, in.Caller), in.Caller, in.To, in.Amount)
	}
	switch {
	case errors.Is(err, ErrInProgress):
		return txtInProgress
	case err != nil:
		return txtUnavailable
	}
	return h.menu.Render(in, &r)
}
