package httpapi

import (
	"errors"
	"io"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// POST /v1/voucher-batches generates a batch of scratch cards on a running
// engine, for operations and for the load tool (bench's voucher scenario),
// which cannot use `ocs vouchers generate` while the server holds Pebble's
// lock. The clear codes exist only in the 201 response, exactly like the
// printer's CSV of the command: the store keeps keyed hashes.

// VoucherBatchCountMax bounds the cards of one request. The response holds
// every clear code (about 65 bytes a row: 6.5 MB at the bound) in the
// server's memory before it is sent, and generation (≈ 200,000 codes/s)
// holds the generation lock and a request worker for about half a second.
// Print runs of millions stay with `ocs vouchers generate`; a client that
// needs more cards asks for several batches.
const VoucherBatchCountMax = 100_000

// voucherExpiryMax bounds how far ahead a batch may expire: a typo in the
// year (2226) would otherwise make a card redeemable for ever.
const voucherExpiryMax = 10 * 366 * 24 * time.Hour

// ErrExists is what a VoucherGenerator returns for a batch number that is
// taken: the endpoint answers 409.
var ErrExists = errors.New("httpapi: already exists")

// VoucherBatch is a batch to generate.
type VoucherBatch struct {
	ID    uint32 // new, 1 … 4294967295
	Count int    // 1 … VoucherBatchCountMax
	Value charging.Amount
	// Expiry is the instant from which the cards are refused: the end of
	// the last day named in the request (UTC), as the CLI's --expiry.
	Expiry time.Time
}

// VoucherGenerator generates batches on a running server
// (storage.Vouchers.Generate, the CLI's path, adapted by cmd/ocs).
type VoucherGenerator interface {
	// GenerateBatch creates b's cards at now and writes the header
	// "serial,code,value,batch,expiry" and one row per card to csv, each
	// row only once its card is stored. ErrExists: the batch number is
	// taken and nothing was written to the store.
	GenerateBatch(b VoucherBatch, now time.Time, csv io.Writer) error
}

var (
	probBatchExists = problem{status: 409, code: "batch_exists",
		detail: "A voucher batch with this number exists: pick another number."}
	probGenerateFailed = problem{status: 503, code: "unavailable",
		detail: "Generation failed part-way and no code was handed out: block this batch (POST /v1/voucher-batches/{batch}/block) and generate another."}
)

// decodeVoucherBatch reads {"batch", "count", "value", "expiry"}, all
// required: batch 1–4294967295, count 1–VoucherBatchCountMax, value a
// card's face value ("5.00", "10.00", "20.00"), expiry the last day the
// cards are redeemable, YYYY-MM-DD (UTC), later than now and within
// voucherExpiryMax.
func decodeVoucherBatch(p *fastjson.Parser, body []byte, now time.Time) (VoucherBatch, problem) {
	var b VoucherBatch
	v, o, pr := parseObject(p, body)
	if !pr.ok() {
		return b, pr
	}
	if pr = checkFields(o, "batch", "count", "value", "expiry"); !pr.ok() {
		return b, pr
	}
	id, err := uintField(v, "batch")
	if err != nil || id == 0 || id > 1<<32-1 {
		return b, probInvalidBatch
	}
	b.ID = uint32(id)
	count, err := uintField(v, "count")
	if err != nil || count == 0 || count > VoucherBatchCountMax {
		return b, badRequest("invalid_count", "count must be an integer from 1 to 100000; generate larger print runs with `ocs vouchers generate`.")
	}
	b.Count = int(count)
	if b.Value, pr = amountOf(v.Get("value"), "value"); !pr.ok() {
		return b, pr
	}
	if !charging.ValidVoucherValue(b.Value) {
		return b, badRequest("invalid_value", "value must be the face value of a card: 5.00, 10.00 or 20.00.")
	}
	day, ok, pr := stringOf(v, "expiry")
	if !pr.ok() {
		return b, pr
	}
	t, err := time.Parse(time.DateOnly, b2s(day))
	if !ok || err != nil {
		return b, badRequest("invalid_expiry", "expiry must be the last day the cards are redeemable, YYYY-MM-DD (UTC).")
	}
	b.Expiry = t.Add(24 * time.Hour)
	if !b.Expiry.After(now) || b.Expiry.Sub(now) > voucherExpiryMax {
		return b, badRequest("invalid_expiry", "expiry must be a day from today to ten years ahead.")
	}
	return b, problem{}
}

// uintField reads a required non-negative integer field.
func uintField(v *fastjson.Value, key string) (uint64, error) {
	f := v.Get(key)
	if f == nil {
		return 0, errors.New("missing")
	}
	return f.Uint64()
}

// opsBatchGenerate serves POST /v1/voucher-batches: 201 with the batch as
// text/csv, the only copy of its clear codes.
func (s *Server) opsBatchGenerate(ctx *fasthttp.RequestCtx, st *reqState, a *args) slot {
	if s.generator == nil {
		return notConfigured(ctx, st)
	}
	b, p := decodeVoucherBatch(&st.parser, ctx.PostBody(), s.clock())
	if !p.ok() {
		return decodeFailed(ctx, st, p, false)
	}
	// The rows go straight into the response body (never a full copy in a
	// second buffer); on an error the body is replaced by the problem.
	ctx.Response.ResetBody()
	err := s.generator.GenerateBatch(b, s.clock(), ctx.Response.BodyWriter())
	switch {
	case errors.Is(err, ErrExists):
		writeProblem(ctx, st, probBatchExists, false)
		return slotError
	case err != nil:
		s.log.Warn("generate voucher batch failed: block it", "batch", b.ID, "err", err)
		ctx.Response.Header.Set("Retry-After", retryAfterSeconds)
		writeProblem(ctx, st, probGenerateFailed, false)
		return slotError
	}
	s.log.Info("generated a voucher batch over the ops API", "batch", b.ID, "count", b.Count, "value", b.Value.String(),
		"expiry", b.Expiry.Add(-24*time.Hour).Format(time.DateOnly))
	ctx.SetStatusCode(fasthttp.StatusCreated)
	ctx.SetContentType("text/csv; charset=utf-8")
	// The codes are bearer money: no cache on the way may keep them.
	ctx.Response.Header.Set("Cache-Control", "no-store")
	return slotOf(charging.ResultOK)
}
