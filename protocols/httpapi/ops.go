package httpapi

import (
	_ "embed"
	"strconv"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// openAPI is the OpenAPI 3.1 description of every route; a test keeps it and
// the router in step.
//
//go:embed openapi.json
var openAPI []byte

// History paging limits: historyLimitDefault fits a phone screen of
// transactions; historyLimitMax bounds one response (~200 B an entry).
const (
	historyLimitDefault = 50
	historyLimitMax     = 1000
)

// provision is a decoded PUT /v1/subscribers/{msisdn} body.
type provision struct {
	balance    charging.Amount
	validUntil int64
}

// decodeProvision reads the optional body {"balance", "validUntil"}; an
// empty body provisions with a zero balance and the default validity.
// Unknown fields are refused (ops clients are ours: a typo is a bug).
func decodeProvision(p *fastjson.Parser, body []byte) (provision, problem) {
	var pv provision
	if len(body) == 0 {
		return pv, problem{}
	}
	v, o, pr := parseObject(p, body)
	if !pr.ok() {
		return pv, pr
	}
	if pr = checkFields(o, "balance", "validUntil"); !pr.ok() {
		return pv, pr
	}
	if f := v.Get("balance"); f != nil {
		if pv.balance, pr = amountOf(f, "balance"); !pr.ok() {
			return pv, pr
		}
	}
	until, ok, pr := stringOf(v, "validUntil")
	if !pr.ok() {
		return pv, pr
	}
	if ok {
		t, err := time.Parse(time.RFC3339, string(until))
		if err != nil || t.Unix() <= 0 {
			return pv, badRequest("invalid_valid_until", "validUntil must be an RFC 3339 time such as 2026-12-31T23:59:59Z.")
		}
		pv.validUntil = t.Unix()
	}
	return pv, problem{}
}

// pathMSISDN parses the {msisdn} path parameter, in any local form.
func pathMSISDN(ctx *fasthttp.RequestCtx, st *reqState, a *args) (charging.SubscriberID, slot, bool) {
	id, p := msisdnOf(a.params[0])
	if !p.ok() {
		return 0, decodeFailed(ctx, st, p, false), false
	}
	return id, 0, true
}

// opsProvision serves PUT /v1/subscribers/{msisdn}: create if absent, never
// modify. 201 with the new subscriber; 200 with the current state when the
// subscriber already exists (whatever the body asked): compare the body.
func (s *Server) opsProvision(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	id, sl, ok := pathMSISDN(ctx, st, a)
	if !ok {
		return sl
	}
	pv, p := decodeProvision(&st.parser, ctx.PostBody())
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	b := append(st.buf[:0], "provision/"...)
	st.buf = id.AppendText(b)
	st.cmd = charging.Command{Kind: charging.KindProvision, Channel: charging.ChannelOps, Key: string(st.buf),
		Subscriber: id, Amount: pv.balance, ValidUntil: pv.validUntil}
	out, ok := s.execute(ctx, st, false)
	if !ok {
		return slotError
	}
	switch {
	case out.Result == charging.ResultOK && !out.Replayed:
		writeSubscriber(ctx, st, id, &out, fasthttp.StatusCreated)
		return slotOf(out.Result)
	case out.Result == charging.ResultOK, out.Result == charging.ResultSubscriberExists,
		out.Result == charging.ResultRequestKeyReused:
		// It exists: answer what is there now, not what was asked.
		return s.inquireAndWrite(ctx, st, id, slotOf(charging.ResultSubscriberExists))
	}
	return refuse(ctx, st, out.Result, false)
}

// opsSubscriber serves GET /v1/subscribers/{msisdn}.
func (s *Server) opsSubscriber(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	id, sl, ok := pathMSISDN(ctx, st, a)
	if !ok {
		return sl
	}
	return s.inquireAndWrite(ctx, st, id, slotOf(charging.ResultOK))
}

func (s *Server) inquireAndWrite(ctx *fasthttp.RequestCtx, st *reqState, id charging.SubscriberID, okSlot slot) slot {
	out, ok := s.inquire(ctx, st, id)
	if !ok {
		return slotError
	}
	if out.Result != charging.ResultOK {
		return refuse(ctx, st, out.Result, false)
	}
	writeSubscriber(ctx, st, id, &out, fasthttp.StatusOK)
	return okSlot
}

func (s *Server) inquire(ctx *fasthttp.RequestCtx, st *reqState, id charging.SubscriberID) (charging.Outcome, bool) {
	st.cmd = charging.Command{Kind: charging.KindInquire, Subscriber: id}
	return s.execute(ctx, st, false)
}

func writeSubscriber(ctx *fasthttp.RequestCtx, st *reqState, id charging.SubscriberID, out *charging.Outcome, status int) {
	b := append(st.buf[:0], `{"msisdn":"`...)
	b = id.AppendText(b)
	b = append(b, '"')
	b = appendAmountString(b, "balance", out.Balance)
	b = appendTime(b, "validUntil", out.ValidUntil)
	b = appendStringField(b, "state", out.State.String())
	st.buf = append(b, '}')
	writeJSON(ctx, st, status)
}

// queryUint reads an optional unsigned query parameter.
func queryUint(ctx *fasthttp.RequestCtx, name string, def uint64) (uint64, bool) {
	raw := ctx.QueryArgs().Peek(name)
	if len(raw) == 0 {
		return def, true
	}
	n, err := strconv.ParseUint(b2s(raw), 10, 64)
	return n, err == nil
}

// opsTransactions serves GET /v1/subscribers/{msisdn}/transactions, newest
// first; next is the `before` of the following page, absent on the last.
func (s *Server) opsTransactions(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	id, sl, ok := pathMSISDN(ctx, st, a)
	if !ok {
		return sl
	}
	before, okBefore := queryUint(ctx, "before", 0)
	limit, okLimit := queryUint(ctx, "limit", historyLimitDefault)
	if !okBefore || !okLimit || limit == 0 || limit > historyLimitMax {
		return decodeFailed(ctx, st, badRequest("invalid_query", "before must be a transaction sequence number and limit an integer from 1 to 1000."), false)
	}
	// History cannot tell an unknown subscriber from one with no entries.
	out, ok := s.inquire(ctx, st, id)
	if !ok {
		return slotError
	}
	if out.Result != charging.ResultOK {
		return refuse(ctx, st, out.Result, false)
	}
	entries, err := s.engine.History(id, before, int(limit))
	if err != nil {
		s.log.Warn("history failed", "err", err)
		ctx.Response.Header.Set("Retry-After", retryAfterSeconds)
		writeProblem(ctx, st, probUnavailable, false)
		return slotError
	}
	b := append(st.buf[:0], `{"transactions":[`...)
	for i := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEntry(b, id, &entries[i])
	}
	b = append(b, ']')
	if n := len(entries); n == int(limit) && entries[n-1].Seq > 1 {
		b = appendUintField(b, "next", entries[n-1].Seq)
	}
	st.buf = append(b, '}')
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

func appendEntry(b []byte, id charging.SubscriberID, e *charging.Entry) []byte {
	b = append(b, `{"id":"`...)
	b = appendTxID(b, id, e.Seq)
	b = append(b, '"')
	b = appendUintField(b, "seq", e.Seq)
	b = append(appendKey(b, "time"), '"')
	b = time.Unix(0, e.Time).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendStringField(b, "kind", e.Kind.String())
	b = appendStringField(b, "channel", e.Channel.String())
	b = appendAmountString(b, "amount", e.Amount)
	b = appendAmountString(b, "balanceAfter", e.BalanceAfter)
	b = appendTime(b, "validUntilAfter", e.ValidUntilAfter)
	if e.RatingGroup != 0 {
		b = appendUintField(b, "ratingGroup", uint64(e.RatingGroup))
	}
	if e.Units != 0 {
		b = appendUintField(b, "units", e.Units)
	}
	if e.Kind == charging.EntryRefund && e.Ref != 0 {
		b = append(appendKey(b, "refunds"), '"')
		b = appendTxID(b, id, e.Ref)
		b = append(b, '"')
	}
	if e.Key != "" {
		// What a channel reconciles by: its own request key.
		b = appendStringField(b, "reference", e.Key)
	}
	return append(b, '}')
}

// parseTxID reads a transaction ID "<msisdn digits>-<seq>".
func parseTxID(b []byte) (charging.SubscriberID, uint64, bool) {
	dash := -1
	for i, c := range b {
		if c == '-' {
			dash = i
			break
		}
		if c < '0' || c > '9' {
			return 0, 0, false
		}
	}
	if dash < 11 || dash > 15 || b[0] == '0' || dash+1 == len(b) || b[dash+1] == '0' {
		return 0, 0, false
	}
	id, err := strconv.ParseUint(b2s(b[:dash]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(b2s(b[dash+1:]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return charging.SubscriberID(id), seq, true
}

// refundRequest is a decoded refund body.
type refundRequest struct {
	seq    uint64
	amount charging.Amount // 0: all of the charge
}

func decodeRefund(p *fastjson.Parser, body []byte, id charging.SubscriberID) (refundRequest, problem) {
	var r refundRequest
	v, o, pr := parseObject(p, body)
	if !pr.ok() {
		return r, pr
	}
	if pr = checkFields(o, "transactionId", "amount"); !pr.ok() {
		return r, pr
	}
	tx, ok, pr := stringOf(v, "transactionId")
	if !pr.ok() {
		return r, pr
	}
	if !ok {
		return r, badRequest("missing_transaction_id", "transactionId (\"<msisdn>-<seq>\", as a charge confirmation quotes it) is required.")
	}
	txID, seq, ok := parseTxID(tx)
	if !ok || txID != id {
		return r, badRequest("invalid_transaction_id", "transactionId must be \"<msisdn>-<seq>\" of this subscriber, e.g. \"38349123456-7\".")
	}
	r.seq = seq
	if f := v.Get("amount"); f != nil {
		if r.amount, pr = amountOf(f, "amount"); !pr.ok() {
			return r, pr
		}
		if r.amount <= 0 {
			return r, resultProblem(charging.ResultAmountMustBePositive)
		}
	}
	return r, problem{}
}

// opsRefund serves POST /v1/subscribers/{msisdn}/refunds: refund a charge,
// wholly or partly (amount), once.
func (s *Server) opsRefund(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	id, sl, ok := pathMSISDN(ctx, st, a)
	if !ok {
		return sl
	}
	key, p := idempotencyKey(ctx)
	if p.ok() && key == "" {
		p = probMissingIdemKey
	}
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	r, p := decodeRefund(&st.parser, ctx.PostBody(), id)
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	ch := charging.ChannelOps
	if a.role == RoleNetwork {
		ch = charging.ChannelNetwork
	}
	st.cmd = charging.Command{Kind: charging.KindRefund, Channel: ch, Key: key, Subscriber: id,
		Amount: r.amount, Ref: r.seq}
	out, ok := s.execute(ctx, st, false)
	if !ok {
		return slotError
	}
	if out.Result != charging.ResultOK {
		return refuse(ctx, st, out.Result, false)
	}
	b := append(st.buf[:0], `{"id":"`...)
	b = appendTxID(b, id, out.Seq)
	b = append(b, `","transactionId":"`...)
	b = appendTxID(b, id, out.Seq)
	b = append(b, `","refunds":"`...)
	b = appendTxID(b, id, r.seq)
	b = append(b, '"')
	b = appendAmountString(b, "amount", out.Amount)
	b = appendAmountString(b, "balance", out.Balance)
	b = appendTime(b, "validUntil", out.ValidUntil)
	st.buf = append(b, '}')
	writeJSON(ctx, st, fasthttp.StatusCreated)
	return slotOf(out.Result)
}

// opsLedger serves GET /v1/ledger: what the operator owes its subscribers.
func (s *Server) opsLedger(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	t := s.engine.Totals()
	b := append(st.buf[:0], '{')
	b = appendAmountString(b, "owed", t.Owed)
	b = appendUintField(b, "accounts", t.Accounts)
	st.buf = append(b, '}')
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

var roleNames = [...]string{RoleNetwork: "network", RoleChannel: "channel", RoleOps: "ops"}

// opsAPIKeys serves POST /v1/apikeys {"role"}: the key is shown only here.
func (s *Server) opsAPIKeys(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	v, o, p := parseObject(&st.parser, ctx.PostBody())
	if p.ok() {
		p = checkFields(o, "role")
	}
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	name, _, _ := stringOf(v, "role")
	var role Role
	for r, n := range roleNames {
		if n != "" && b2s(name) == n {
			role = Role(r)
		}
	}
	if role == 0 {
		return decodeFailed(ctx, st, badRequest("invalid_role", "role must be \"network\", \"channel\" or \"ops\"."), false)
	}
	key, err := s.keys.Issue(role)
	if err != nil {
		s.log.Error("issue api key", "err", err)
		writeProblem(ctx, st, probUnavailable, false)
		return slotError
	}
	b := append(st.buf[:0], '{')
	b = appendStringField(b, "key", key)
	b = appendStringField(b, "role", roleNames[role])
	st.buf = append(b, '}')
	writeJSON(ctx, st, fasthttp.StatusCreated)
	return slotOf(charging.ResultOK)
}

func (s *Server) healthz(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	st.buf = append(st.buf[:0], `{"status":"ok"}`...)
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

var probNotReady = problem{status: 503, code: "not_ready", detail: "The engine is not accepting work yet (starting) or any more (stopping)."}

func (s *Server) readyz(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if !s.engine.Ready() {
		writeProblem(ctx, st, probNotReady, false)
		return slotError
	}
	st.buf = append(st.buf[:0], `{"status":"ready"}`...)
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

func (s *Server) openapi(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(openAPI)
	return slotOf(charging.ResultOK)
}

// metricsExposition serves GET /metrics through Config.Metrics.
func (s *Server) metricsExposition(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.expose == nil {
		writeProblem(ctx, st, probNotFound, false)
		return slotError
	}
	s.expose(ctx)
	return slotOf(charging.ResultOK)
}
