package flows

// The re-driver: Recover finishes what a crash left open, once, at start;
// Redrive does the same while the engine runs, for records a failed leg
// (engine timeout, overload after the leg's retries, a storage error) left
// open, so that a debited transfer gets its credit or reversal, a pending
// payment its debit, and a card marked by a build before the one-batch
// redemption its credit, within about a minute instead of at the next
// restart.
//
// # Safety against a live drive of the same record
//
// Every leg is idempotent by its request key, but a refused leg is not
// recorded under its key (the actor records only what changed the
// account). So two drivers of one record can disagree: one sees the credit
// refused and reverts the card, the other, a moment later, sees it accepted
// and credits it — the money is given and the card is active again. Two
// rules exclude that:
//
//   - One driver at a time per record, in this process (the only one that
//     opens the database): live flows claim the record (records.claim) for
//     the whole drive; the re-driver only takes a record nobody holds.
//   - The re-driver acts on a record only when it has seen it open, with no
//     live drive claiming or releasing it, for at least the minimum age
//     (a "quiet" record). Its listing is read before it takes the claim; a
//     live drive that ended between the two invalidates the quiet entry, so
//     a stale listing is never acted on. The age also outlasts the engine's
//     request timeout: a leg of a live drive that timed out has been run or
//     dropped by its actor before the re-driver sends the same leg again.
//
// The records' own times are not used: vouchers' pending markers and
// payments carry one in storage but the listings do not return it, and a
// transfer's Created says nothing about a client retry driving it now.
// Quiet time measured here is the stricter test, at the cost of one
// interval more before the first re-drive.
//
// # Paging
//
// The listings take a position (the last hash or ID listed) and return
// pages in key order. A round lists at most RoundMax records of each kind
// and the next round goes on after the last one listed (redrivePass), so a
// backlog of records that keep failing never hides the records behind it,
// and a round stays bounded however large the backlog. A pass over the
// whole listing re-drives each record at most once; a record opened behind
// the position waits for the next pass. Recover pages the same way, to the
// end, in one call.

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// Defaults of the re-driver (cmd/ocs flags).
const (
	// DefaultRedriveInterval: a record left open waits at most this much
	// beyond its minimum age. One round lists three small indexes of open
	// records: negligible work every 10 s.
	DefaultRedriveInterval = 10 * time.Second
	// DefaultRedriveMinAge is six times the engine's 5 s request timeout,
	// and well above the longest live drive (three legs, each bounded by
	// that timeout plus legRetriesMax × legRetryWait).
	DefaultRedriveMinAge = 30 * time.Second
	// redriveBackoffMax caps the wait between re-drives of a record that
	// keeps failing (a reversal refused, a fixed account deleted): it is
	// retried, logged and counted every 10 minutes, not every round.
	redriveBackoffMax = 10 * time.Minute
	// DefaultRedriveRoundMax bounds the records one round lists per kind:
	// a backlog larger than that is gone through over several rounds, each
	// going on where the one before stopped, so a round stays well within
	// its interval (listing is a read of an index and a record; a re-drive
	// is a few engine commands) and no record waits behind a backlog of
	// records that keep failing. More than 10,000 open records of a kind
	// means the engine is failing, and the metrics say so.
	DefaultRedriveRoundMax = 10_000
)

// RedriverConfig configures RunRedriver.
type RedriverConfig struct {
	// Interval between rounds; zero or negative: DefaultRedriveInterval.
	Interval time.Duration
	// MinAge is how long a record must be open and quiet before it is
	// re-driven; zero or negative: DefaultRedriveMinAge.
	MinAge time.Duration
	// RoundMax bounds the records of each kind one round lists (and so
	// re-drives); zero or negative: DefaultRedriveRoundMax.
	RoundMax int
}

func (c RedriverConfig) withDefaults() RedriverConfig {
	if c.Interval <= 0 {
		c.Interval = DefaultRedriveInterval
	}
	if c.MinAge <= 0 {
		c.MinAge = DefaultRedriveMinAge
	}
	if c.RoundMax <= 0 {
		c.RoundMax = DefaultRedriveRoundMax
	}
	return c
}

// redrivePass is where the re-driver stands in one kind's listing. A pass
// goes once through the whole listing in key order (hash, or ID), in as
// many rounds as RoundMax takes, each round starting after the last record
// the one before listed; at the end of the listing the next round starts a
// new pass from the first record. So every open record is listed once a
// pass, whatever lies before it. Guarded by Flows.redriving.
type redrivePass struct {
	after    recordKey // the last record listed; valid if started
	started  bool      // false: the next round lists from the first record
	stuck    int       // records open past the minimum age, this pass so far
	stuckEnd int       // the same, at the end of the last complete pass
}

// recordKind names a kind of durable record; it labels the metrics.
type recordKind uint8

const (
	kindRedemption recordKind = iota
	kindTransfer
	kindPayment
	kindCount
)

var kindNames = [kindCount]string{"redemption", "transfer", "payment"}

// recordKey names one durable record: a card by its hash, a transfer or a
// payment by its ID.
type recordKey struct {
	kind recordKind
	id   uint64
	hash [32]byte
}

func redemptionKey(h [32]byte) recordKey { return recordKey{kind: kindRedemption, hash: h} }
func transferKey(id uint64) recordKey    { return recordKey{kind: kindTransfer, id: id} }
func paymentKey(id uint64) recordKey     { return recordKey{kind: kindPayment, id: id} }

// quiet is the re-driver's memory of one open record.
type quiet struct {
	since    time.Time // first seen open with no live drive since
	next     time.Time // earliest next re-drive, after a failed one
	attempts int       // failed re-drives so far
	listed   bool      // in the current round's listing
}

// records holds the claims and the re-driver's view. One mutex, held for
// map operations only, never across I/O.
type records struct {
	mu struct {
		sync.Mutex
		driving map[recordKey]chan struct{} // closed at release
		quiet   map[recordKey]*quiet
	}
}

func (r *records) init() {
	r.mu.driving = make(map[recordKey]chan struct{})
	r.mu.quiet = make(map[recordKey]*quiet)
}

// claim takes k for a live drive, waiting while another driver holds it,
// and reports whether it had to wait: the record may have moved meanwhile.
// It resets the re-driver's quiet time of k.
func (r *records) claim(k recordKey) (waited bool) {
	r.mu.Lock()
	delete(r.mu.quiet, k)
	for {
		ch, held := r.mu.driving[k]
		if !held {
			r.mu.driving[k] = make(chan struct{})
			r.mu.Unlock()
			return waited
		}
		r.mu.Unlock()
		<-ch
		waited = true
		r.mu.Lock()
	}
}

// release gives k back. A live drive resets k's quiet time again: the
// re-driver's listing may predate what this drive did.
func (r *records) release(k recordKey, live bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if live {
		delete(r.mu.quiet, k)
	}
	if ch, ok := r.mu.driving[k]; ok {
		delete(r.mu.driving, k)
		close(ch)
	}
}

// tryRedrive takes k for the re-driver if k has been quiet for minAge, is
// not waiting for a retry and nobody holds it. A record seen for the first
// time starts its quiet time. old says k is older than minAge.
func (r *records) tryRedrive(k recordKey, now time.Time, minAge time.Duration) (take, old bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.mu.quiet[k]
	if q == nil {
		r.mu.quiet[k] = &quiet{since: now, listed: true}
		return false, false
	}
	q.listed = true
	if now.Sub(q.since) < minAge {
		return false, false
	}
	if _, held := r.mu.driving[k]; held || now.Before(q.next) {
		return false, true
	}
	r.mu.driving[k] = make(chan struct{})
	return true, true
}

// failed backs off k's next re-drive: minAge, doubling, capped.
func (r *records) failed(k recordKey, now time.Time, minAge time.Duration) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.mu.quiet[k]
	if q == nil {
		return 0 // a live drive claimed it meanwhile (it waited for us)
	}
	q.attempts++
	wait := redriveBackoffMax
	if q.attempts < 20 {
		wait = min(minAge<<(q.attempts-1), redriveBackoffMax)
	}
	q.next = now.Add(wait)
	return q.attempts
}

// prune forgets records of kind not listed this pass (finished, or
// finished and listed no more) and clears the listed marks for the next
// pass.
func (r *records) prune(kind recordKind) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, q := range r.mu.quiet {
		if k.kind != kind {
			continue
		}
		if !q.listed {
			delete(r.mu.quiet, k)
			continue
		}
		q.listed = false
	}
}

// Redrive re-drives, once, every open redemption, transfer and payment
// that has been open and quiet (no live drive) for at least minAge at now,
// each from its record's state with the same request keys. A record seen
// for the first time starts its quiet time, so a record needs two passes
// minAge apart. A call lists at most roundMax records of each kind (zero
// or negative: DefaultRedriveRoundMax), going on where the call before
// stopped (redrivePass), so with more open records than that a pass takes
// several calls. It returns how many records it finished; a record whose
// re-drive fails is logged, counted and retried later with back-off, and
// does not stop the round. The error reports listings that failed: that
// kind stops for this call and the next goes on from the same place. Stops
// between records when ctx is done. Calls are serialised.
func (f *Flows) Redrive(ctx context.Context, now time.Time, minAge time.Duration, roundMax int) (Recovered, error) {
	f.redriving.Lock()
	defer f.redriving.Unlock()
	if roundMax <= 0 {
		roundMax = DefaultRedriveRoundMax
	}
	r := redriveRound{ctx: ctx, f: f, now: now, minAge: minAge, roundMax: roundMax}
	var n Recovered
	var errs []error
	var err error
	if f.cfg.Vouchers != nil {
		n.Redemptions, err = redriveKind(&r, kindRedemption, f.listRedemptions, redemptionID, f.redriveRedemption)
		errs = append(errs, err)
	}
	if f.cfg.Transfers != nil {
		n.Transfers, err = redriveKind(&r, kindTransfer, f.listTransfers, transferID, f.redriveTransfer)
		errs = append(errs, err)
	}
	if f.cfg.Fixed != nil {
		n.Payments, err = redriveKind(&r, kindPayment, f.listPayments, paymentID, f.redrivePayment)
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// redriveRound is one Redrive call's parameters.
type redriveRound struct {
	ctx      context.Context
	f        *Flows
	now      time.Time
	minAge   time.Duration
	roundMax int
}

// redriveKind goes on with kind's pass: it lists pages from where the pass
// stands, re-drives each page's quiet records, and stops at the end of the
// listing (the pass is complete: the next call starts a new one), after
// roundMax records, at a listing error or when ctx is done. It returns how
// many records it finished.
func redriveKind[T any](r *redriveRound, kind recordKind, list func(after *recordKey, limit int) ([]T, error),
	ident func(*T) (recordKey, string), drive func(*T) (string, error)) (int, error) {
	f, p := r.f, &r.f.passes[kind]
	done, listed := 0, 0
	for listed < r.roundMax && r.ctx.Err() == nil {
		limit := min(f.pageMax, r.roundMax-listed)
		var after *recordKey
		if p.started {
			after = &p.after
		}
		page, err := list(after, limit)
		if err != nil {
			f.metrics.redriveStuck(kind, max(p.stuck, p.stuckEnd))
			return done, err
		}
		listed += len(page)
		done += redriveEach(r, kind, p, page, ident, drive)
		if len(page) < limit && r.ctx.Err() == nil {
			// The end of the listing: records not listed in this pass are
			// finished, and the count of stuck ones is complete.
			f.records.prune(kind)
			p.stuckEnd, p.stuck, p.started = p.stuck, 0, false
			f.metrics.redriveStuck(kind, p.stuckEnd)
			return done, nil
		}
	}
	// Mid-pass: the gauge shows the larger of the last pass's count and
	// this one's so far, so a growing backlog shows before the pass ends.
	f.metrics.redriveStuck(kind, max(p.stuck, p.stuckEnd))
	return done, nil
}

// redriveEach re-drives the quiet records of list, one at a time, moves
// the pass past each record it looked at, and returns how many it
// finished. ident names a record (its key, and its id for the log); drive
// re-drives it and names the result.
func redriveEach[T any](r *redriveRound, kind recordKind, p *redrivePass, list []T,
	ident func(*T) (recordKey, string), drive func(*T) (string, error)) int {
	f := r.f
	done := 0
	for i := range list {
		if r.ctx.Err() != nil {
			return done
		}
		k, id := ident(&list[i])
		p.after, p.started = k, true
		take, old := f.records.tryRedrive(k, r.now, r.minAge)
		if !take {
			if old {
				p.stuck++ // held by a live drive, or backing off
			}
			continue
		}
		result, err := drive(&list[i])
		f.metrics.redriven(kind, result)
		if err != nil {
			p.stuck++
			attempts := f.records.failed(k, r.now, r.minAge)
			f.records.release(k, false)
			f.log.Warn("re-drive of an open record failed; retried later", "kind", kindNames[kind], "id", id,
				"attempts", attempts, "err", err)
			continue
		}
		f.records.release(k, false)
		f.log.Info("re-drove an open record", "kind", kindNames[kind], "id", id, "result", result)
		done++
	}
	return done
}

// Results of a re-drive, as counted in ocs_redrives_total.
const (
	redriveCredited  = "credited"  // card credited, transfer credited to its receiver
	redriveReverted  = "reverted"  // card active again: its credit was refused
	redriveReversed  = "reversed"  // transfer's credit refused, sender paid back
	redriveRefused   = "refused"   // transfer's debit refused: nothing moved
	redriveApplied   = "applied"   // payment debited and applied to the fixed account
	redriveCancelled = "cancelled" // payment's debit refused: nothing moved
)

// redriveResults are the results each kind can have, besides error.
var redriveResults = [kindCount][]string{
	kindRedemption: {redriveCredited, redriveReverted},
	kindTransfer:   {redriveCredited, redriveReversed, redriveRefused},
	kindPayment:    {redriveApplied, redriveCancelled},
}

// redemptionID logs a card by its credit's request key, the transaction
// reference the subscriber may quote; the code is never logged.
func redemptionID(r *Redemption) (recordKey, string) {
	id := r.Credit.Key
	if id == "" {
		id = "V/" + hex.EncodeToString(r.Hash[:16])
	}
	return redemptionKey(r.Hash), id
}

func transferID(tr *charging.Transfer) (recordKey, string) {
	return transferKey(tr.ID), strconv.FormatUint(tr.ID, 10)
}

func paymentID(p *Payment) (recordKey, string) {
	return paymentKey(p.ID), strconv.FormatUint(p.ID, 10)
}

func (f *Flows) redriveRedemption(r *Redemption) (string, error) {
	credited, err := f.finishMarker(r)
	switch {
	case err != nil:
		return labelError, err
	case credited:
		return redriveCredited, nil
	}
	return redriveReverted, nil
}

func (f *Flows) redriveTransfer(tr *charging.Transfer) (string, error) {
	var res Result
	if err := f.driveTransfer(*tr, &res, driveAgain); err != nil {
		return labelError, err
	}
	switch {
	case res.Account == charging.ResultOK:
		return redriveCredited, nil
	case res.ByReceiver:
		return redriveReversed, nil
	default:
		return redriveRefused, nil
	}
}

func (f *Flows) redrivePayment(p *Payment) (string, error) {
	var res Result
	if err := f.drivePayment(*p, &res, driveAgain); err != nil {
		return labelError, err
	}
	if res.Account == charging.ResultOK {
		return redriveApplied, nil
	}
	return redriveCancelled, nil
}

// RunRedriver calls Redrive every cfg.Interval with the Flows' clock until
// ctx is done, and returns once the round in progress stopped (between two
// records). Start it after Recover; stop it before the engine stops.
func (f *Flows) RunRedriver(ctx context.Context, cfg RedriverConfig) {
	cfg = cfg.withDefaults()
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := f.Redrive(ctx, f.now(), cfg.MinAge, cfg.RoundMax); err != nil {
			f.log.Warn("re-drive: listing open records failed; next round retries", "err", err)
		}
	}
}

// StartRedriver runs RunRedriver in a goroutine. stop cancels it and
// returns once it has returned: no leg runs after stop.
func (f *Flows) StartRedriver(cfg RedriverConfig) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.RunRedriver(ctx, cfg)
	}()
	return func() {
		cancel()
		<-done
	}
}
