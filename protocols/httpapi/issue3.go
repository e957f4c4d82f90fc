package httpapi

import (
	"errors"
	"strconv"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// Operations endpoints of issue 3: fixed-service accounts, scratch cards and
// the brute-force guard. Each needs a store the charging Engine does not
// have, declared here as a small interface and wired by cmd/ocs; a nil one
// answers 501 on its endpoints.

// ErrNotFound is what a Vouchers or FixedAccounts implementation returns
// for an unknown serial or batch: the endpoint answers 404.
var ErrNotFound = errors.New("httpapi: not found")

// BarredCaller is one caller barred from redemption, for operations.
type BarredCaller struct {
	Caller charging.SubscriberID
	Guard  charging.RedeemGuard
}

// Vouchers is what the voucher endpoints need (storage.Vouchers, adapted).
type Vouchers interface {
	// Voucher returns the card with the serial printed on it.
	Voucher(serial uint64) (charging.Voucher, error)
	// BlockVoucher blocks an active card and returns the card after the
	// call (a used card stays used).
	BlockVoucher(serial uint64) (charging.Voucher, error)
	// BlockBatch blocks every card of a batch.
	BlockBatch(batch uint32) error
	// BarredCallers lists up to limit callers barred at now.
	BarredCallers(now time.Time, limit int) ([]BarredCaller, error)
	// Guard returns one caller's counters (zero if none).
	Guard(caller charging.SubscriberID) (charging.RedeemGuard, error)
}

// FixedAccounts is what the fixed-account endpoints need (storage.Fixed).
type FixedAccounts interface {
	FixedAccount(id string) (charging.FixedAccount, bool, error)
	PutFixedAccount(a *charging.FixedAccount) error
}

// guardsLimitMax bounds one listing of barred callers (~120 B each).
const guardsLimitMax = 1000

var (
	probNotConfigured = problem{status: 501, code: "not_configured", detail: "This engine was started without this store."}
	probNoSuchRecord  = problem{status: 404, code: "not_found", detail: "No record has this identifier."}
	probInvalidSerial = badRequest("invalid_serial", "The serial must be the number printed on the card.")
	probInvalidBatch  = badRequest("invalid_batch", "The batch must be a number from 1 to 4294967295.")
	probInvalidFixed  = badRequest("invalid_account", charging.ErrFixedID.Error()+".")
)

// storeFailed answers an operating error of a store.
func (s *Server) storeFailed(ctx *fasthttp.RequestCtx, st *reqState, what string, err error) slot {
	if errors.Is(err, ErrNotFound) {
		writeProblem(ctx, st, probNoSuchRecord, false)
		return slotError
	}
	s.log.Warn(what+" failed", "err", err)
	ctx.Response.Header.Set("Retry-After", retryAfterSeconds)
	writeProblem(ctx, st, probUnavailable, false)
	return slotError
}

func notConfigured(ctx *fasthttp.RequestCtx, st *reqState) slot {
	writeProblem(ctx, st, probNotConfigured, false)
	return slotError
}

// fixedBody is a decoded PUT /v1/fixed-accounts/{id} body.
type fixedBody struct {
	kind      charging.FixedKind
	pkg       charging.PackageID
	paidUntil int64
	balance   charging.Amount
}

// decodeFixedAccount reads {"kind", "package", "paidUntil", "balance"}:
// kind is required; package is the catalogue number (1–8), required except
// for telephony, and must be a monthly package of the account's kind;
// balance (≥ 0) only for telephony, TV and DUO TV (pay-per-view credit).
func decodeFixedAccount(p *fastjson.Parser, body []byte, cat *charging.Catalogue) (fixedBody, problem) {
	var fb fixedBody
	v, o, pr := parseObject(p, body)
	if !pr.ok() {
		return fb, pr
	}
	if pr = checkFields(o, "kind", "package", "paidUntil", "balance"); !pr.ok() {
		return fb, pr
	}
	kind, ok, pr := stringOf(v, "kind")
	if !pr.ok() {
		return fb, pr
	}
	if fb.kind, ok = charging.ParseFixedKind(b2s(kind)); !ok {
		return fb, badRequest("invalid_kind", "kind must be \"internet\", \"tv\", \"duotv\" or \"telephony\".")
	}
	if f := v.Get("package"); f != nil {
		n, err := f.Uint()
		pk, found := cat.Lookup(charging.PackageID(min(n, 255)))
		if err != nil || !found || pk.Credit || pk.Kind != fb.kind {
			return fb, badRequest("invalid_package", "package must be the catalogue number of a monthly package of the account's kind.")
		}
		fb.pkg = pk.ID
	} else if fb.kind != charging.FixedTelephony {
		return fb, badRequest("missing_package", "package (the catalogue number) is required for this kind.")
	}
	until, ok, pr := stringOf(v, "paidUntil")
	if !pr.ok() {
		return fb, pr
	}
	if ok {
		t, err := time.Parse(time.RFC3339, string(until))
		if err != nil || t.Unix() <= 0 {
			return fb, badRequest("invalid_paid_until", "paidUntil must be an RFC 3339 time such as 2026-12-31T23:59:59Z.")
		}
		fb.paidUntil = t.Unix()
	}
	if f := v.Get("balance"); f != nil {
		if fb.kind == charging.FixedInternet {
			return fb, badRequest("no_balance", "Only telephony, TV and DUO TV accounts hold a balance.")
		}
		if fb.balance, pr = amountOf(f, "balance"); !pr.ok() {
			return fb, pr
		}
		if fb.balance < 0 {
			return fb, resultProblem(charging.ResultAmountMustBePositive)
		}
	}
	return fb, problem{}
}

// opsFixedPut serves PUT /v1/fixed-accounts/{id}: provision or replace a
// fixed-service account (201 created, 200 replaced). The transaction
// counter of an existing account is kept.
func (s *Server) opsFixedPut(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.fixed == nil {
		return notConfigured(ctx, st)
	}
	id, err := charging.ParseFixedID(b2s(a.params[0]))
	if err != nil {
		return decodeFailed(ctx, st, probInvalidFixed, false)
	}
	fb, p := decodeFixedAccount(&st.parser, ctx.PostBody(), s.catalogue)
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	old, found, err := s.fixed.FixedAccount(id)
	if err != nil {
		return s.storeFailed(ctx, st, "read fixed account", err)
	}
	acc := charging.FixedAccount{ID: id, Kind: fb.kind, Package: fb.pkg, PaidUntil: fb.paidUntil, Balance: fb.balance, Seq: old.Seq}
	if fb.paidUntil > 0 {
		acc.AnchorDay = uint8(time.Unix(fb.paidUntil, 0).UTC().Day())
	}
	if err := s.fixed.PutFixedAccount(&acc); err != nil {
		return s.storeFailed(ctx, st, "put fixed account", err)
	}
	status := fasthttp.StatusCreated
	if found {
		status = fasthttp.StatusOK
	}
	s.writeFixed(ctx, st, &acc, status)
	return slotOf(charging.ResultOK)
}

// opsFixedGet serves GET /v1/fixed-accounts/{id}.
func (s *Server) opsFixedGet(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.fixed == nil {
		return notConfigured(ctx, st)
	}
	id, err := charging.ParseFixedID(b2s(a.params[0]))
	if err != nil {
		return decodeFailed(ctx, st, probInvalidFixed, false)
	}
	acc, found, err := s.fixed.FixedAccount(id)
	if err != nil {
		return s.storeFailed(ctx, st, "read fixed account", err)
	}
	if !found {
		writeProblem(ctx, st, probNoSuchRecord, false)
		return slotError
	}
	s.writeFixed(ctx, st, &acc, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

func (s *Server) writeFixed(ctx *fasthttp.RequestCtx, st *reqState, acc *charging.FixedAccount, status int) {
	b := append(st.buf[:0], '{')
	b = appendStringField(b, "id", acc.ID)
	b = appendStringField(b, "kind", acc.Kind.String())
	if pk, ok := s.catalogue.Lookup(acc.Package); ok {
		b = appendUintField(b, "package", uint64(pk.ID))
		b = appendStringField(b, "packageName", pk.Name)
		b = appendAmountString(b, "price", pk.Price)
	}
	if acc.PaidUntil > 0 {
		b = appendTime(b, "paidUntil", acc.PaidUntil)
	}
	b = appendAmountString(b, "balance", acc.Balance)
	b = appendUintField(b, "transactions", acc.Seq)
	st.buf = append(b, '}')
	writeJSON(ctx, st, status)
}

func parseSerial(b []byte) (uint64, bool) {
	n, err := strconv.ParseUint(b2s(b), 10, 64)
	return n, err == nil && n > 0
}

// opsVoucher serves GET /v1/vouchers/{serial}.
func (s *Server) opsVoucher(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.vouchers == nil {
		return notConfigured(ctx, st)
	}
	serial, ok := parseSerial(a.params[0])
	if !ok {
		return decodeFailed(ctx, st, probInvalidSerial, false)
	}
	v, err := s.vouchers.Voucher(serial)
	if err != nil {
		return s.storeFailed(ctx, st, "read voucher", err)
	}
	s.writeVoucher(ctx, st, &v)
	return slotOf(charging.ResultOK)
}

// opsVoucherBlock serves POST /v1/vouchers/{serial}/block: idempotent; a
// used card stays used (its credit was given) and says so.
func (s *Server) opsVoucherBlock(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.vouchers == nil {
		return notConfigured(ctx, st)
	}
	serial, ok := parseSerial(a.params[0])
	if !ok {
		return decodeFailed(ctx, st, probInvalidSerial, false)
	}
	v, err := s.vouchers.BlockVoucher(serial)
	if err != nil {
		return s.storeFailed(ctx, st, "block voucher", err)
	}
	s.writeVoucher(ctx, st, &v)
	return slotOf(charging.ResultOK)
}

// opsBatchBlock serves POST /v1/voucher-batches/{batch}/block.
func (s *Server) opsBatchBlock(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.vouchers == nil {
		return notConfigured(ctx, st)
	}
	n, err := strconv.ParseUint(b2s(a.params[0]), 10, 32)
	if err != nil || n == 0 {
		return decodeFailed(ctx, st, probInvalidBatch, false)
	}
	if err := s.vouchers.BlockBatch(uint32(n)); err != nil {
		return s.storeFailed(ctx, st, "block batch", err)
	}
	b := append(st.buf[:0], '{')
	b = appendUintField(b, "batch", n)
	st.buf = append(appendStringField(b, "state", charging.VoucherBlocked.String()), '}')
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

// voucherState is the state operations see: an active card past its
// expiry is expired, as a redemption would find it.
func (s *Server) voucherState(v *charging.Voucher) charging.VoucherState {
	if v.State == charging.VoucherActive && s.clock().Unix() >= v.Expiry {
		return charging.VoucherExpired
	}
	return v.State
}

func (s *Server) writeVoucher(ctx *fasthttp.RequestCtx, st *reqState, v *charging.Voucher) {
	b := append(st.buf[:0], '{')
	b = appendUintField(b, "serial", v.Serial)
	b = appendUintField(b, "batch", uint64(v.Batch))
	b = appendAmountString(b, "value", v.Value)
	b = appendStringField(b, "state", s.voucherState(v).String())
	b = appendTime(b, "expiry", v.Expiry)
	if v.State == charging.VoucherUsed {
		b = append(appendKey(b, "usedBy"), '"')
		b = append(v.UsedBy.AppendText(b), '"')
		b = appendTime(b, "usedAt", v.UsedAt)
		if v.CreditSeq != 0 {
			b = append(appendKey(b, "transactionId"), '"')
			b = append(appendTxID(b, v.UsedBy, v.CreditSeq), '"')
		}
	}
	st.buf = append(b, '}')
	writeJSON(ctx, st, fasthttp.StatusOK)
}

// opsGuards serves GET /v1/redeem-guards?limit=N: callers barred now.
func (s *Server) opsGuards(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.vouchers == nil {
		return notConfigured(ctx, st)
	}
	limit, ok := queryUint(ctx, "limit", 100)
	if !ok || limit == 0 || limit > guardsLimitMax {
		return decodeFailed(ctx, st, badRequest("invalid_query", "limit must be an integer from 1 to 1000."), false)
	}
	list, err := s.vouchers.BarredCallers(s.clock(), int(limit))
	if err != nil {
		return s.storeFailed(ctx, st, "list barred callers", err)
	}
	b := append(st.buf[:0], `{"barred":[`...)
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendGuard(b, list[i].Caller, &list[i].Guard)
	}
	st.buf = append(b, "]}"...)
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

// opsGuard serves GET /v1/redeem-guards/{msisdn}.
func (s *Server) opsGuard(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.vouchers == nil {
		return notConfigured(ctx, st)
	}
	id, sl, ok := pathMSISDN(ctx, st, a)
	if !ok {
		return sl
	}
	g, err := s.vouchers.Guard(id)
	if err != nil {
		return s.storeFailed(ctx, st, "read redeem guard", err)
	}
	st.buf = appendGuard(st.buf[:0], id, &g)
	writeJSON(ctx, st, fasthttp.StatusOK)
	return slotOf(charging.ResultOK)
}

func appendGuard(b []byte, id charging.SubscriberID, g *charging.RedeemGuard) []byte {
	b = append(b, `{"msisdn":"`...)
	b = append(id.AppendText(b), '"')
	b = appendUintField(b, "failures", uint64(g.Failures))
	if g.WindowStart > 0 {
		b = appendTime(b, "windowStart", g.WindowStart)
	}
	if g.BarredUntil > 0 {
		b = appendTime(b, "barredUntil", g.BarredUntil)
	}
	return append(b, '}')
}

// ussdGateway serves POST /ussd through Config.USSD, behind the network
// role: the USSD gateway is a network element, and an open /ussd would let
// anyone on the network claim any phoneNumber.
func (s *Server) ussdGateway(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.ussd == nil {
		writeProblem(ctx, st, probNotFound, false)
		return slotError
	}
	s.ussd(ctx)
	return slotOf(charging.ResultOK)
}
