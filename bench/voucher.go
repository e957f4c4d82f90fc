package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ocs-engine/ocs/charging"
)

// The voucher scenario: before the run, generate scratch cards on the
// server through the ops endpoint POST /v1/voucher-batches (the codes exist
// only in its CSV answer); during the run, each operation redeems one
// unused card by dialling *123*CODE# through the USSD gateway endpoint
// POST /ussd for a provisioned subscriber.

// Limits of voucher preparation.
const (
	// voucherBatchCountMax is the server's httpapi.VoucherBatchCountMax:
	// a run needing more cards asks for several consecutive batches. (bench
	// talks to the server only over the wire, so the figure is repeated.)
	voucherBatchCountMax = 100_000
	// VoucherCardsMax bounds the cards one run generates: 24 bytes each
	// here (48 MB) and two Pebble records each on the server, generated at
	// about 200,000 codes/s before the run starts (10 s).
	VoucherCardsMax = 2_000_000
	// voucherClosedLoopRate sizes a closed-loop run's cards when
	// Config.VoucherCards is 0: twice issue 3's 20,000 redemptions/s
	// target. A faster server runs out of cards and says so.
	voucherClosedLoopRate = 40_000
	// voucherGenerateTimeout bounds one generation request: 100,000 cards
	// take about 0.5 s on a quiet machine, far longer under -race.
	voucherGenerateTimeout = 2 * time.Minute
	// voucherBatchTriesMax bounds the taken batch numbers skipped when the
	// batch number comes from the clock.
	voucherBatchTriesMax = 64
	// voucherValidity is how long generated cards stay redeemable.
	voucherValidity = 30 * 24 * time.Hour
)

// Wire texts of the USSD gateway's answers (protocols/ussd/texts.go): bench
// reads the server as a black box, so it recognises the answers by their
// text, as a gateway operator's monitoring would.
var (
	ussdEnd = []byte("END ")
	// ussdTxnMarker precedes the transaction ID that ends every success.
	ussdTxnMarker = []byte("ID e transaksionit: ")
	// ussdUnavailable starts the answer given when the engine could not
	// answer: the outcome of the redemption is unknown.
	ussdUnavailable = []byte("Shërbimi nuk është i disponueshëm")
)

// pathVoucherBatches and pathUSSD are the endpoints the scenario uses.
const (
	pathVoucherBatches = "/v1/voucher-batches"
	pathUSSD           = "/ussd"
)

// voucherCard is one generated card.
type voucherCard struct {
	code [16]byte
}

// voucherPool hands each generated card out once, to any worker.
type voucherPool struct {
	cards   []voucherCard
	next    atomic.Int64
	value   charging.Amount
	batches []uint32
}

// take returns an unused card, or false when all are handed out.
func (p *voucherPool) take() (*voucherCard, bool) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.cards)) {
		return nil, false
	}
	return &p.cards[i], true
}

// voucherCards returns the cards a run needs: the operations the run can
// send, times the voucher share of its mix, plus 10% and one per worker.
func (c *Config) voucherCards(share float64) int {
	if c.VoucherCards > 0 {
		return c.VoucherCards
	}
	var ops float64
	switch {
	case c.Scenario == ScenarioRamp:
		// Steps start, start+step, … ≤ max, each RampStepFor long.
		k := math.Floor((c.RampMax-c.RampStart)/c.RampStep) + 1
		ops = (k*c.RampStart + c.RampStep*k*(k-1)/2) * c.RampStepFor.Seconds()
	case c.Rate > 0:
		ops = c.Rate * c.Duration.Seconds()
	default:
		ops = voucherClosedLoopRate * c.Duration.Seconds()
	}
	n := ops*share*1.1 + float64(c.Concurrency)
	return int(min(n, VoucherCardsMax))
}

// prepareVouchers generates n cards of cfg.VoucherValue on the server in
// batches of at most voucherBatchCountMax. ErrNotAvailable: the server has
// no generation endpoint (the limit server, or an engine without vouchers).
func (r *runner) prepareVouchers(n int, log io.Writer) error {
	cfg := &r.cfg
	gen, err := NewClient(cfg.Target, cfg.OpsKey, 1, voucherGenerateTimeout)
	if err != nil {
		return err
	}
	defer gen.Close()
	p := &voucherPool{value: cfg.VoucherValue, cards: make([]voucherCard, 0, n)}
	batch, fromClock := cfg.VoucherBatch, cfg.VoucherBatch == 0
	if fromClock {
		batch = uint32(time.Now().Unix())
	}
	expiry := time.Now().Add(voucherValidity)
	fmt.Fprintf(log, "generating %d voucher cards of %s EUR on the server\n", n, cfg.VoucherValue)
	start := time.Now()
	skipped := 0
	for len(p.cards) < n {
		if batch == 0 {
			return errors.New("bench: voucher batch numbers exhausted: pass a lower --voucher-batch")
		}
		count := min(n-len(p.cards), voucherBatchCountMax)
		body, status, err := gen.generateBatch(batch, count, cfg.VoucherValue, expiry)
		switch {
		case err != nil:
			return err
		case status == fasthttp.StatusNotFound || status == fasthttp.StatusNotImplemented || status == fasthttp.StatusMethodNotAllowed:
			return fmt.Errorf("%w (POST %s answered %d)", ErrNotAvailable, pathVoucherBatches, status)
		case status == fasthttp.StatusConflict && fromClock && skipped < voucherBatchTriesMax:
			skipped++
			batch++
			continue
		case status == fasthttp.StatusConflict:
			return fmt.Errorf("bench: voucher batch %d exists on the server: pick another --voucher-batch", batch)
		case status != fasthttp.StatusCreated:
			return fmt.Errorf("bench: generate voucher batch %d: status %d: %s", batch, status, bytes.TrimSpace(body[:min(len(body), 200)]))
		}
		before := len(p.cards)
		if p.cards, err = parseVoucherCSV(body, batch, cfg.VoucherValue, p.cards); err != nil {
			return err
		}
		if got := len(p.cards) - before; got != count {
			return fmt.Errorf("bench: voucher batch %d: asked for %d cards, the CSV has %d", batch, count, got)
		}
		p.batches = append(p.batches, batch)
		batch++
	}
	took := time.Since(start)
	fmt.Fprintf(log, "generated %d cards in batches %v in %s (%.0f/s)\n", len(p.cards), p.batches, took.Round(time.Millisecond),
		float64(len(p.cards))/took.Seconds())
	r.vouchers = p
	return nil
}

// generateBatch asks the server for a batch and returns the answer's body
// (a copy) and status.
func (c *Client) generateBatch(batch uint32, count int, value charging.Amount, expiry time.Time) ([]byte, int, error) {
	k := c.conn()
	defer k.release()
	k.path(pathVoucherBatches)
	b := strconv.AppendUint(append(k.body[:0], `{"batch":`...), uint64(batch), 10)
	b = strconv.AppendInt(append(b, `,"count":`...), int64(count), 10)
	b = value.AppendText(append(b, `,"value":"`...))
	b = expiry.UTC().AppendFormat(append(b, `","expiry":"`...), time.DateOnly)
	k.body = append(b, `"}`...)
	status, err := k.do(fasthttp.MethodPost, c.opsKey, nil, true)
	if err != nil {
		return nil, 0, fmt.Errorf("bench: generate voucher batch %d: %w", batch, err)
	}
	return append([]byte(nil), k.resp.Body()...), status, nil
}

// voucherCSVHeader is the first line of the printer's CSV.
const voucherCSVHeader = "serial,code,value,batch,expiry"

// parseVoucherCSV appends the cards of a generation answer to dst. Every
// row must be "serial,code,value,batch,expiry" with a 16-digit code, the
// value asked for and batch: a card that is not what was asked for would
// make the audit credit the wrong amount.
func parseVoucherCSV(body []byte, batch uint32, value charging.Amount, dst []voucherCard) ([]voucherCard, error) {
	header, rest, _ := bytes.Cut(body, []byte("\n"))
	if string(bytes.TrimSuffix(header, []byte("\r"))) != voucherCSVHeader {
		return dst, fmt.Errorf("bench: voucher CSV: header %q, want %q", header[:min(len(header), 80)], voucherCSVHeader)
	}
	for line := 2; len(rest) > 0; line++ {
		var row []byte
		row, rest, _ = bytes.Cut(rest, []byte("\n"))
		row = bytes.TrimSuffix(row, []byte("\r"))
		if len(row) == 0 && len(rest) == 0 {
			break
		}
		var f [5][]byte
		n := 0
		for field := range bytes.SplitSeq(row, []byte(",")) {
			if n == len(f) {
				n++
				break
			}
			f[n] = field
			n++
		}
		if n != len(f) {
			return dst, fmt.Errorf("bench: voucher CSV line %d: %d fields, want 5", line, n)
		}
		var c voucherCard
		if len(f[1]) != len(c.code) || !allDigits(f[1]) {
			return dst, fmt.Errorf("bench: voucher CSV line %d: code is not 16 digits", line)
		}
		copy(c.code[:], f[1])
		if serial, err := strconv.ParseUint(string(f[0]), 10, 64); err != nil || serial == 0 {
			return dst, fmt.Errorf("bench: voucher CSV line %d: serial %q", line, f[0])
		}
		if v, err := charging.ParseAmount(string(f[2])); err != nil || v != value {
			return dst, fmt.Errorf("bench: voucher CSV line %d: value %q, asked for %s", line, f[2], value)
		}
		if b, err := strconv.ParseUint(string(f[3]), 10, 32); err != nil || uint32(b) != batch {
			return dst, fmt.Errorf("bench: voucher CSV line %d: batch %q, asked for %d", line, f[3], batch)
		}
		if _, err := time.Parse(time.DateOnly, string(f[4])); err != nil {
			return dst, fmt.Errorf("bench: voucher CSV line %d: expiry %q is no date", line, f[4])
		}
		dst = append(dst, c)
	}
	return dst, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// redeem dials *123*CODE# for sub with an unused card. Half the requests
// give the caller in local form (049…), half in E.164 digits, as gateways
// of different networks do.
func (w *worker) redeem(sub uint32) Outcome {
	card, ok := w.r.vouchers.take()
	if !ok {
		return w.failed(fmt.Sprintf("voucher: the run's %d generated cards are used up: raise --voucher-cards", len(w.r.vouchers.cards)))
	}
	k := w.k
	k.path(pathUSSD)
	msisdn := w.msisdn(sub)
	b := append(k.body[:0], "sessionId="...)
	b = append(b, w.nextKey()...) // unique across runs, workers and requests
	b = append(b, "&serviceCode=*123*"...)
	b = append(b, card.code[:]...)
	b = append(b, "%23&phoneNumber="...)
	if w.idemN%2 == 0 {
		b = strconv.AppendUint(append(b, '0'), msisdn-38300000000, 10)
	} else {
		b = strconv.AppendUint(b, msisdn, 10)
	}
	k.body = append(b, "&networkCode=bench&text="...)
	status, err := k.doForm(w.r.networkKey)
	if err != nil {
		w.uncertain(sub)
		return w.failed("voucher: " + err.Error())
	}
	if status != fasthttp.StatusOK {
		w.uncertain(sub)
		return w.failed(k.statusError("voucher", status).Error())
	}
	body := k.resp.Body()
	if !bytes.HasPrefix(body, ussdEnd) {
		return OutcomeRefused // a menu (CON): nothing was run
	}
	if i := bytes.Index(body, ussdTxnMarker); i >= 0 {
		value := w.r.vouchers.value
		w.t.voucherCredited += value
		w.r.audit.add(sub, value)
		if seq, ok := txSeq(bytes.TrimSpace(body[i+len(ussdTxnMarker):]), msisdn); ok {
			if len(w.t.topUpIDs) < w.r.topUpIDsPerWorker {
				w.t.topUpIDs = append(w.t.topUpIDs, topUpID{sub: sub, seq: seq, amount: value, voucher: true})
			}
		} else {
			w.r.audit.missingID()
		}
		return OutcomeOK
	}
	if bytes.HasPrefix(body[len(ussdEnd):], ussdUnavailable) {
		w.uncertain(sub)
		return w.failed("voucher: " + string(body))
	}
	return OutcomeRefused
}
