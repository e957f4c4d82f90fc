package storage

// The idempotency pruner: request records (table 0x03) and the credit
// transfers' request-key index (table 0x1B) are kept for a retention
// window, not forever; voucher redemption guards (table 0x13) are kept
// while they can still affect a decision.
//
// # Contract
//
// A request record older than the retention is deleted; a retry that
// arrives after its record was deleted is evaluated as a new command (and
// charged again). Nchf retries come within seconds and HTTP Idempotency-Key
// conventions use 24 h, so the window (default 7 days, at least 1 day) is
// far beyond any legitimate retry. A record is pruned when its age is
// strictly greater than the retention: one exactly Retention old is kept.
//
// # Transfer key index
//
// Transfers.Begin indexes each transfer under its sender and the client's
// request key, so that a retried transfer request finds its transfer
// instead of beginning a second one. The same retention applies, measured
// from the transfer's Created time: an entry is deleted when its transfer
// is final (credited, reversed or refused) and older than the retention,
// and a retried transfer request after that begins a new transfer, the
// same contract as a retried charge. An entry of an open transfer (pending,
// debited, reversing) is kept whatever its age: the flow is still being driven, and a
// retry must find it rather than move money a second time. The transfer
// records themselves (0x19) are the business history and are never
// pruned. Created is in whole seconds, the transfer began somewhere in
// that second, so an entry is pruned only when Created is before the
// cutoff's whole second: never early, at most a second late. Begin and the
// pruner's deletes take the same per-sender lock (Store.transferKeyLocks);
// deleteTransferKeys explains why a retry racing a delete is safe either
// way.
//
// An entry naming a transfer that does not exist (or one of another
// sender) is corruption: it is counted (TransferKeysMissing, the
// "missing" result of ocs_storage_prune_transfer_keys_total), logged and
// kept for an operator to look at; the pass goes on, so one bad entry does
// not stop the pruning of the rest. Entries and transfer records that do
// not decode stop the pass with ErrCorrupt, as request records do.
//
// # Records the engine's own flows still need
//
// Vouchers, transfers and *101# payments re-drive a leg with the same
// derived request key after a crash or a failed leg ("V/<hash>",
// "T/<id>/<leg>", "P/<id>"), and rely on the record to answer a leg that
// already ran. Their records are kept, whatever their age, while the flow
// is open: a pending voucher marker, an open transfer, a pending payment.
// A flow closes only after its leg is durable, and it never reopens, so a
// record pruned after its flow closed is never asked for again. The
// voucher's Complete is written without fsync, but the pruner's deletes are
// applied after it in the same ordered write-ahead log: a crash that loses
// the Complete (the marker is back) also loses every later delete.
//
// # Old records
//
// Records written before records had a time (codec v1) decode with Time 0.
// They are treated as written at the pruner's epoch: the time of the first
// pass on this database, stored once in meta "requestEpoch" (synced). Every
// v1 record was written by an older build before that pass, so its true age
// is at least its age measured from the epoch: none is pruned early, and
// all of them go one retention after the first pass. Keeping them forever
// was rejected: it leaves exactly the unbounded growth this removes.
//
// # Redeem guards
//
// Vouchers.fail writes a guard record for every caller that ever dialled a
// wrong voucher code, and anyone can dial wrong codes from any MSISDN: kept
// forever, the table grows without bound. When PrunerOptions.Vouchers is
// set (the serving Vouchers: its guard policy and its per-caller locks), a
// third walk deletes each guard that can no longer affect any decision: the
// caller is not barred, and its failure window has expired (or none is
// open), so that its next failure starts a fresh count exactly as it would
// with no record. guardPrunable derives the rule from
// charging.RedeemGuard's Fail and Barred, and a test proves that a deleted
// guard answers every later Fail and Barred as the record would have,
// boundary instants included. Window and bar are measured on the pass's now
// less guardPruneLag (a minute), so that a failure stamped just before the
// pass but counted after it is still counted as the record would count it.
// No retention applies: a deletable guard is deleted at the first pass.
//
// Each guard is re-read, judged and deleted under the same
// Vouchers.guardLock stripe that fail takes (deleteGuards), so a failure
// counted during the pass is never deleted with its record. A guard that
// does not decode stops the pass with ErrCorrupt, as request records do.
//
// The policy is the one the process runs with (flags --redeem-window,
// --redeem-bar): it is not stored. A guard deleted under a window that a
// restart then lengthens had expired under the old one; the caller's count
// restarts, as it would have on its next failure under the old policy.
// Lengthening the window mid-count gives at most FailuresMax−1 more
// guesses, once.
//
// The in-memory set of callers that may have a guard (Vouchers.guardSeen)
// is left as it is: a deleted guard's bit stays set, and that caller's next
// redemption reads the guard and finds nothing, which answers as a zero
// guard. A stale bit costs one point read; the set is rebuilt from the table
// at the next open. Clearing bits would need every other caller hashed to
// the same bit to have no guard, which only a table scan can tell.
//
// # Cost and pacing
//
// Records sort by subscriber and key, not by time, so each pass reads the
// whole table (a time index would cost a second write on every charge),
// then the whole transfer key index (one entry per transfer: small beside
// the request records; each entry costs one more point read, of its
// transfer, which holds the time and state), then the whole guard table
// (one 21-byte record per caller that dialled a wrong code; a deletable
// one costs one more point read, under its lock, and guard batches are at
// most guardPruneBatchMax deletes). A pass over each table is a
// sequence of steps: each opens an iterator at the key where the
// previous one stopped, reads at most pruneScanMax records, deletes at most
// BatchMax of them in one NoSync batch (a lost delete is simply redone next
// pass), closes the iterator (so no step pins memtables or tables for
// long) and sleeps Pause before the next step, so commits and compactions
// keep the CPU. A restart begins the pass again from the first key:
// remembering a cursor across restarts saves at most one pass.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocs-engine/ocs/charging"
)

// Retention and pacing of the pruner.
const (
	// RequestRetentionMin is the shortest retention accepted: a day covers
	// every retry convention (Nchf within seconds, Idempotency-Key 24 h)
	// and a client that retries after a night-long outage of its own.
	RequestRetentionMin = 24 * time.Hour
	// RequestRetentionDefault: a week, so that a retry after a weekend
	// outage is still answered from its record.
	RequestRetentionDefault = 7 * 24 * time.Hour
	// PruneIntervalDefault is the pause between the end of one pass and
	// the start of the next. A pass reads the whole table (records sort by
	// subscriber, not time): at 30M requests a day kept 7 days, about
	// 210M records, 2–3 CPU-minutes a pass. Hourly that is ≈ 4% of a core;
	// against a retention of days, an hour of lateness costs a little disk.
	PruneIntervalDefault = time.Hour
	// PruneBatchMax bounds the deletes of one batch: 10,000 tombstones are
	// about 1 MB of batch, applied in a few milliseconds, short enough
	// that the committer's synced batches queue behind it only briefly.
	PruneBatchMax = 10_000
	// pruneScanMax bounds the records one step reads, so a step over
	// mostly young records (deleting few) is as short as one deleting
	// PruneBatchMax.
	pruneScanMax = 4 * PruneBatchMax
	// PrunePauseDefault is the sleep between steps: a step is a few tens
	// of milliseconds of one core, so the pruner takes at most about half
	// a core while a pass runs and charging keeps the rest.
	PrunePauseDefault = 20 * time.Millisecond
	// metaRequestEpoch names the pruner's epoch (see Old records above).
	metaRequestEpoch = "requestEpoch"
	requestEpochV1   = 1
	requestEpochLen  = 1 + 8
	// pruneMissingLogMax bounds the lines logged per pass for transfer key
	// entries that name no transfer: every one is counted, and a few lines
	// are enough to start looking while a corrupt store does not flood the
	// log every interval.
	pruneMissingLogMax = 10
)

// The pruner names the key-index lock stripes of one delete batch in a
// uint64.
const _ uint = 64 - transferKeyStripes

// ErrRetention is wrapped by the error of a retention below
// RequestRetentionMin.
var ErrRetention = errors.New("storage: request retention too short")

// ValidateRetention returns an error wrapping ErrRetention if d is below
// RequestRetentionMin.
func ValidateRetention(d time.Duration) error {
	if d < RequestRetentionMin {
		return fmt.Errorf("%w: %v is below the minimum of %v (a retry after its record is pruned is charged again)",
			ErrRetention, d, RequestRetentionMin)
	}
	return nil
}

// PrunerOptions configures NewPruner. Zero fields take the defaults.
type PrunerOptions struct {
	// Retention is how long a request record, and the key-index entry of
	// a final transfer (from its Created time), is kept; 0 means
	// RequestRetentionDefault, and below RequestRetentionMin is an error.
	Retention time.Duration
	// Interval is the pause between passes; 0 means PruneIntervalDefault.
	Interval time.Duration
	// BatchMax bounds the deletes per batch, 1..PruneBatchMax; 0 means
	// PruneBatchMax.
	BatchMax int
	// Pause is the sleep between steps; 0 means PrunePauseDefault.
	Pause time.Duration
	// Now is the clock the window is measured on; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per pass, and up to pruneMissingLogMax
	// error lines a pass for dangling transfer key entries; nil discards.
	Logger *slog.Logger
	// Registerer, when not nil, receives ocs_storage_prune_* metrics.
	Registerer prometheus.Registerer
	// Vouchers, when not nil, has its redemption guards pruned (see Redeem
	// guards above) under its guard policy and guard locks. It must be the
	// Vouchers the engine redeems through, on the same Store: a pruner
	// with another one would judge guards by another policy, and delete
	// them without the locks its fail calls take. Nil skips the guard
	// table (offline tools, and stores that serve no vouchers).
	Vouchers *Vouchers
}

// PruneStats describes one pass.
type PruneStats struct {
	Scanned  uint64 // request records read
	Deleted  uint64 // request records older than the retention, deleted
	KeptOpen uint64 // request records older than the retention kept for an open flow
	Batches  int    // delete batches applied, of both tables

	TransferKeysScanned  uint64 // transfer key-index entries read
	TransferKeysDeleted  uint64 // entries of final transfers older than the retention, deleted
	TransferKeysKeptOpen uint64 // entries of transfers older than the retention but not final, kept
	TransferKeysMissing  uint64 // entries naming no transfer of their sender: corruption, logged and kept

	GuardsScanned      uint64 // redeem guards read (zero without PrunerOptions.Vouchers)
	GuardsDeleted      uint64 // guards that could no longer affect a decision, deleted
	GuardsKeptBarred   uint64 // guards of callers barred at the pass's time, kept
	GuardsKeptCounting uint64 // guards of callers not barred whose failure window is still open, kept
}

// Pruner deletes request records and transfer key-index entries older
// than the retention, and redemption guards that can no longer affect a
// decision, in the background (Start, Stop) or one pass at a time
// (Prune). It writes its own batches, apart from the committer: Pebble
// orders them in its log.
type Pruner struct {
	s        *Store
	opts     PrunerOptions
	log      *slog.Logger
	metrics  *pruneMetrics       // nil: no metrics
	batch    *pebble.Batch       // reused between steps; owned by the pass
	hashes   []uint64            // recentKeys hashes of the batch's deletes
	keyDels  []transferKeyDelete // candidates of one transfer key step
	scanMax  int                 // entries one step reads: pruneScanMax; tests lower it
	passMu   sync.Mutex          // one pass at a time (the loop, or a test/ops call)
	onBatch  func(deletes int)   // tests: called before each delete batch is applied
	onKeyDel func()              // tests: called between a transfer key step's scan and its locked re-check

	guardDels    []charging.SubscriberID               // callers of one guard step's deletable guards
	guardStripes [voucherLockStripes / 64]uint64       // guard lock stripes of one delete batch
	onGuardDel   func(callers []charging.SubscriberID) // tests: called between a guard step's scan and its locked re-check

	stop    context.CancelFunc
	done    chan struct{}
	stopped sync.Once
}

// NewPruner returns a pruner of s's request records and transfer key
// index, and of the redemption guards of opts.Vouchers if set. It starts
// nothing: call Start, or Prune.
func NewPruner(s *Store, opts PrunerOptions) (*Pruner, error) {
	if opts.Retention == 0 {
		opts.Retention = RequestRetentionDefault
	}
	if err := ValidateRetention(opts.Retention); err != nil {
		return nil, err
	}
	switch {
	case opts.BatchMax == 0:
		opts.BatchMax = PruneBatchMax
	case opts.BatchMax < 0 || opts.BatchMax > PruneBatchMax:
		return nil, fmt.Errorf("storage: prune batch of %d deletes, want 1..%d", opts.BatchMax, PruneBatchMax)
	}
	if opts.Interval < 0 || opts.Pause < 0 {
		return nil, fmt.Errorf("storage: prune interval %v and pause %v must not be negative", opts.Interval, opts.Pause)
	}
	if opts.Interval == 0 {
		opts.Interval = PruneIntervalDefault
	}
	if opts.Pause == 0 {
		opts.Pause = PrunePauseDefault
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Vouchers != nil && opts.Vouchers.db != s.db {
		return nil, errors.New("storage: the pruner's Vouchers are of another store")
	}
	p := &Pruner{s: s, opts: opts, log: opts.Logger, scanMax: pruneScanMax}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer != nil {
		p.metrics = newPruneMetrics(opts.Registerer)
	}
	return p, nil
}

// Start runs a pass every Interval (the first one Interval after Start,
// so that start-up and flow recovery come first) until Stop.
func (p *Pruner) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.stop, p.done = cancel, make(chan struct{})
	go p.loop(ctx)
}

// Stop ends the loop, interrupting a pass between two steps, and returns
// once it has ended. Call it before Store.Close. Safe to call twice, and
// without Start.
func (p *Pruner) Stop() {
	p.stopped.Do(func() {
		if p.stop == nil {
			return
		}
		p.stop()
		<-p.done
	})
}

func (p *Pruner) loop(ctx context.Context) {
	defer close(p.done)
	t := time.NewTimer(p.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := p.Prune(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("idempotency record prune failed; retried next interval", "err", err)
		}
		t.Reset(p.opts.Interval)
	}
}

// Prune runs one whole pass now and returns what it did. It stops between
// steps when ctx is done (returning ctx's error and the stats so far).
func (p *Pruner) Prune(ctx context.Context) (PruneStats, error) {
	p.passMu.Lock()
	defer p.passMu.Unlock()
	start := time.Now() // wall time of the pass, for the metric only
	var st PruneStats
	err := p.pass(ctx, &st)
	if m := p.metrics; m != nil {
		m.observe(&st, start, err, ctx.Err() != nil)
	}
	if err != nil {
		return st, fmt.Errorf("storage: prune idempotency records: %w", err)
	}
	p.log.Info("idempotency records pruned", "scanned", st.Scanned, "deleted", st.Deleted,
		"keptOpen", st.KeptOpen, "transferKeysScanned", st.TransferKeysScanned,
		"transferKeysDeleted", st.TransferKeysDeleted, "transferKeysKeptOpen", st.TransferKeysKeptOpen,
		"transferKeysMissing", st.TransferKeysMissing, "guardsScanned", st.GuardsScanned, "guardsDeleted", st.GuardsDeleted,
		"guardsKeptBarred", st.GuardsKeptBarred, "guardsKeptCounting", st.GuardsKeptCounting,
		"duration", time.Since(start).Round(time.Millisecond))
	return st, nil
}

func (p *Pruner) pass(ctx context.Context, st *PruneStats) error {
	now := p.opts.Now()
	epoch, err := p.epoch(now)
	if err != nil {
		return err
	}
	cutoff := now.Add(-p.opts.Retention)
	if p.batch == nil {
		p.batch = p.s.db.NewBatch()
	}
	err = p.walk(ctx, tagRequest, func(from []byte) ([]byte, error) {
		return p.step(from, cutoff.UnixNano(), epoch, st)
	})
	if err != nil {
		return err
	}
	if err := p.pause(ctx); err != nil {
		return err
	}
	// Created is in whole seconds: see Transfer key index above.
	err = p.walk(ctx, tagTransferKey, func(from []byte) ([]byte, error) {
		return p.stepTransferKeys(from, cutoff.Unix(), st)
	})
	if err != nil {
		return fmt.Errorf("transfer key index: %w", err)
	}
	v := p.opts.Vouchers
	if v == nil {
		return nil
	}
	if err := p.pause(ctx); err != nil {
		return err
	}
	at := now.Add(-guardPruneLag) // see guardPruneLag
	err = p.walk(ctx, tagRedeemGuard, func(from []byte) ([]byte, error) {
		return p.stepGuards(v, from, at, st)
	})
	if err != nil {
		return fmt.Errorf("redeem guards: %w", err)
	}
	return nil
}

// walk runs step over table tag from its first key, pausing between steps,
// until step reports the end of the table.
func (p *Pruner) walk(ctx context.Context, tag byte, step func(from []byte) (next []byte, err error)) error {
	from := tableStart(tag)
	for {
		if err := p.s.failedErr(); err != nil {
			return err
		}
		next, err := step(from)
		if err != nil || next == nil {
			return err
		}
		from = next
		if err := p.pause(ctx); err != nil {
			return err
		}
	}
}

// pause sleeps Pause, or returns ctx's error once it is done.
func (p *Pruner) pause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err // a select with both cases ready picks at random
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(p.opts.Pause):
		return nil
	}
}

// epoch returns the time v1 records are taken to be written at, writing
// now as the epoch on the first pass.
func (p *Pruner) epoch(now time.Time) (int64, error) {
	k := appendMetaKey(nil, metaRequestEpoch)
	v, found, err := getCopy(p.s.db, k)
	switch {
	case err != nil:
		return 0, fmt.Errorf("read epoch: %w", err)
	case found && (len(v) != requestEpochLen || v[0] != requestEpochV1 || int64(le.Uint64(v[1:])) <= 0):
		return 0, fmt.Errorf("%w: request epoch record %x", ErrCorrupt, v)
	case found:
		return int64(le.Uint64(v[1:])), nil
	}
	t := max(now.UnixNano(), 1)
	if err := p.s.db.Set(k, appendI64([]byte{requestEpochV1}, t), pebble.Sync); err != nil {
		return 0, fmt.Errorf("write epoch: %w", err)
	}
	p.log.Info("request record epoch set: records without a time count from now", "epoch", now)
	return t, nil
}

// step reads records from key from on, deletes the prunable ones and
// returns the key to resume at, or nil at the end of the table.
func (p *Pruner) step(from []byte, cutoff, epoch int64, st *PruneStats) (next []byte, err error) {
	it, err := p.s.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: tableStart(tagRequest + 1)})
	if err != nil {
		return nil, err
	}
	b := p.batch
	deletes, scanned := 0, 0
	for ok := it.First(); ok; ok = it.Next() {
		if deletes == p.opts.BatchMax || scanned == p.scanMax {
			next = append([]byte(nil), it.Key()...)
			break
		}
		scanned++
		prune, err := p.prunable(it.Key(), it.Value(), cutoff, epoch, st)
		if err != nil {
			_ = it.Close()
			b.Reset()
			return nil, err
		}
		if prune {
			if err := b.Delete(it.Key(), nil); err != nil {
				_ = it.Close()
				b.Reset()
				return nil, err
			}
			p.hashes = append(p.hashes, p.s.recent.hash(it.Key()))
			deletes++
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		b.Reset()
		return nil, err
	}
	st.Scanned += uint64(scanned)
	err = p.applyDeletes(b, deletes, st, &st.Deleted)
	if err == nil {
		// The tombstones sit in a memtable: look-ups of these keys must
		// read it (recent.go), or they would still find the records in
		// the flushed tables.
		p.s.recent.addHashes(p.hashes)
	}
	p.hashes = p.hashes[:0]
	if err != nil {
		return nil, err
	}
	return next, nil
}

// applyDeletes applies b, which holds n deletes (none: nothing to do), and
// empties it; on success it adds n to *deleted. NoSync: a delete lost in a
// crash is redone by the next pass.
func (p *Pruner) applyDeletes(b *pebble.Batch, n int, st *PruneStats, deleted *uint64) error {
	if n == 0 {
		return nil
	}
	if p.onBatch != nil {
		p.onBatch(n)
	}
	err := p.s.db.Apply(b, pebble.NoSync)
	b.Reset()
	if err == nil {
		st.Batches++
		*deleted += uint64(n)
	}
	return err
}

// prunable reports whether the record at k is past the window and no open
// flow needs it.
func (p *Pruner) prunable(k, v []byte, cutoff, epoch int64, st *PruneStats) (bool, error) {
	_, id, key, ok := parseSubKey(k)
	if !ok || len(key) == 0 || len(key) > charging.RequestKeyBytesMax {
		return false, fmt.Errorf("%w: request key %x", ErrCorrupt, k)
	}
	q, err := decodeRequest(v)
	if err != nil {
		return false, fmt.Errorf("request %d/%q: %w", id, key, err)
	}
	written := q.Time
	if written == 0 {
		written = epoch
	}
	if written >= cutoff {
		return false, nil
	}
	open, err := p.flowOpen(key)
	if err != nil {
		return false, err
	}
	if open {
		st.KeptOpen++
		return false, nil
	}
	return true, nil
}

// flowOpen reports whether key is the derived key of a leg of a voucher
// redemption, transfer or *101# payment that is still open, and so may be
// re-driven and must find its record. A client key that merely looks like
// one is kept longer, which is harmless.
func (p *Pruner) flowOpen(key []byte) (bool, error) {
	switch {
	case len(key) == len("V/")+32 && key[0] == 'V' && key[1] == '/':
		var h [16]byte
		if _, err := hex.Decode(h[:], key[2:]); err != nil {
			return false, nil
		}
		// RedemptionKey holds the first half of the hash: any pending
		// marker whose hash starts with it.
		lower := append(appendTable(make([]byte, 0, voucherKeyLen+1), tagVoucherPending), h[:]...)
		upper := append(append([]byte(nil), lower...), make([]byte, 16)...)
		for i := len(lower); i < len(upper); i++ {
			upper[i] = 0xff
		}
		upper = append(upper, 0) // after the largest 33-byte key with this prefix
		return anyIn(p.s.db, lower, upper)
	case len(key) > 2 && key[0] == 'T' && key[1] == '/':
		s := string(key[2:])
		i := strings.IndexByte(s, '/')
		if i < 0 {
			return false, nil
		}
		id, err := strconv.ParseUint(s[:i], 10, 64)
		if err != nil {
			return false, nil
		}
		return has(p.s.db, idKey(tagTransferOpen, id))
	case len(key) > 2 && key[0] == 'P' && key[1] == '/':
		id, err := strconv.ParseUint(string(key[2:]), 10, 64)
		if err != nil {
			return false, nil
		}
		return has(p.s.db, binary.BigEndian.AppendUint64(appendTable(nil, tagFixedPayOpen), id))
	}
	return false, nil
}

// transferKeyDelete is a key-index entry a step found prunable: its key
// and the transfer it named when read.
type transferKeyDelete struct {
	key  []byte
	from charging.SubscriberID
	id   uint64
}

// stepTransferKeys reads key-index entries from key from on, deletes the
// prunable ones and returns the key to resume at, or nil at the end of the
// table. cutoff is in Unix seconds, as Transfer.Created.
func (p *Pruner) stepTransferKeys(from []byte, cutoff int64, st *PruneStats) (next []byte, err error) {
	it, err := p.s.db.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: tableStart(tagTransferKey + 1)})
	if err != nil {
		return nil, err
	}
	p.keyDels = p.keyDels[:0]
	scanned := 0
	for ok := it.First(); ok; ok = it.Next() {
		if len(p.keyDels) == p.opts.BatchMax || scanned == p.scanMax {
			next = append([]byte(nil), it.Key()...)
			break
		}
		scanned++
		d, prune, err := p.transferKeyPrunable(it.Key(), it.Value(), cutoff, st)
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		if prune {
			d.key = append([]byte(nil), it.Key()...)
			p.keyDels = append(p.keyDels, d)
		}
	}
	// The iterator is closed before the locks are taken: a step never
	// holds Begin back for its scan.
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	st.TransferKeysScanned += uint64(scanned)
	if len(p.keyDels) == 0 {
		return next, nil
	}
	if p.onKeyDel != nil {
		p.onKeyDel()
	}
	return next, p.deleteTransferKeys(p.keyDels, st)
}

// transferKeyPrunable reports whether the key-index entry k → v names a
// final transfer created before cutoff (Unix seconds).
func (p *Pruner) transferKeyPrunable(k, v []byte, cutoff int64, st *PruneStats) (transferKeyDelete, bool, error) {
	_, from, key, ok := parseSubKey(k)
	if !ok || len(key) == 0 || len(key) > charging.RequestKeyBytesMax || len(v) != 8 {
		return transferKeyDelete{}, false, fmt.Errorf("%w: transfer key index entry %x → %x", ErrCorrupt, k, v)
	}
	d := transferKeyDelete{from: from, id: binary.BigEndian.Uint64(v)}
	// Begin writes the record and its entry in one batch, and records are
	// never deleted: an entry without its record is not a race.
	raw, found, err := getCopy(p.s.db, idKey(tagTransfer, d.id))
	if err != nil {
		return d, false, fmt.Errorf("read transfer %d: %w", d.id, err)
	}
	var tr charging.Transfer
	if found {
		if tr, err = decodeTransfer(raw); err != nil {
			return d, false, fmt.Errorf("transfer %d: %w", d.id, err)
		}
	}
	if !found || tr.From != from {
		st.TransferKeysMissing++
		if st.TransferKeysMissing <= pruneMissingLogMax {
			p.log.Error("transfer key index entry names no transfer of its sender: kept; the store is corrupt",
				"sender", uint64(from), "key", string(key), "transfer", d.id, "found", found)
		}
		return d, false, nil
	}
	switch {
	case tr.Created >= cutoff:
		return d, false, nil
	case !tr.State.Final():
		st.TransferKeysKeptOpen++
		return d, false, nil
	}
	return d, true, nil
}

// deleteTransferKeys deletes the entries dels, each only if it still names
// the transfer it named when the step read it, in one NoSync batch.
//
// # The race with Begin
//
// Begin, under its sender's stripe of Store.transferKeyLocks, reads the entry
// and writes a new one only if there is none. The deletes are checked and
// applied under the stripes of every sender in dels, so each Begin runs
// wholly before or wholly after them:
//   - before: it finds the entry and returns the final transfer (existed);
//     the caller answers from its state and moves no money. Then the entry
//     goes, as it would have without the retry.
//   - after: it misses and begins a new transfer. The old one was final and
//     past the retention: that is the contract, as for request records.
//
// An entry is only deleted if its transfer was read final, and a final
// transfer never reopens (charging.Transfer.Advance), so no delete can
// reach the entry of an open transfer, which is what a retry must find.
// The check under the lock is what keeps that true if the entry changed
// between the step's read and the delete: with one pass at a time per
// Pruner an entry of a final transfer is only ever deleted by this pass,
// so it cannot, but a second Pruner on the same store (an operator's
// one-off pass beside the loop) could delete it and a Begin then write the
// same key anew for an open transfer; a blind delete would remove that
// entry and let the next retry begin a second transfer. Holding a stripe
// through a batch holds back Begin for those senders for the re-reads and
// the apply: a few milliseconds at most, and transfers are rare.
//
// A delete lost in a crash (NoSync) leaves the entry naming a final
// transfer: a retry then finds it, as before the pass, and the next pass
// deletes it again.
func (p *Pruner) deleteTransferKeys(dels []transferKeyDelete, st *PruneStats) error {
	var stripes uint64
	for i := range dels {
		stripes |= 1 << transferKeyStripe(dels[i].from)
	}
	for i := range transferKeyStripes { // increasing: the lock order
		if stripes&(1<<i) != 0 {
			p.s.transferKeyLocks[i].Lock()
		}
	}
	defer func() {
		for i := range transferKeyStripes {
			if stripes&(1<<i) != 0 {
				p.s.transferKeyLocks[i].Unlock()
			}
		}
	}()
	b := p.batch
	deletes := 0
	for i := range dels {
		v, found, err := getCopy(p.s.db, dels[i].key)
		if err != nil {
			b.Reset()
			return err
		}
		if !found || len(v) != 8 || binary.BigEndian.Uint64(v) != dels[i].id {
			continue // changed since the read: not this pass's to delete
		}
		if err := b.Delete(dels[i].key, nil); err != nil {
			b.Reset()
			return err
		}
		deletes++
	}
	return p.applyDeletes(b, deletes, st, &st.TransferKeysDeleted)
}

// pruneMetrics are the pruner's metrics, observed once per pass.
type pruneMetrics struct {
	deleted  prometheus.Counter
	scanned  prometheus.Counter
	keptOpen prometheus.Counter
	errors   prometheus.Counter
	duration prometheus.Histogram
	lastPass prometheus.Gauge

	transferKeysScanned  prometheus.Counter
	transferKeysDeleted  prometheus.Counter // the result="deleted" child
	transferKeysKeptOpen prometheus.Counter // result="kept_open"
	transferKeysMissing  prometheus.Counter // result="missing"

	guardsScanned      prometheus.Counter
	guardsDeleted      prometheus.Counter // the result="deleted" child
	guardsKeptBarred   prometheus.Counter // result="kept_barred"
	guardsKeptCounting prometheus.Counter // result="kept_counting"
}

func newPruneMetrics(r prometheus.Registerer) *pruneMetrics {
	m := &pruneMetrics{
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ocs_storage_prune_records_deleted_total",
			Help: "Request (idempotency) records deleted for being older than the retention.",
		}),
		scanned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ocs_storage_prune_records_scanned_total",
			Help: "Request records read by the pruner: its cost, a whole table per pass.",
		}),
		keptOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ocs_storage_prune_records_kept_open_total",
			Help: "Request records past the retention kept because their voucher, transfer or payment is still open.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ocs_storage_prune_errors_total",
			Help: "Prune passes that ended in an error (logged; retried next interval).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ocs_storage_prune_duration_seconds",
			Help: "Time of one prune pass, pauses between its steps included.",
			// A pass reads the whole table: well under a second on a
			// small store, minutes on hundreds of millions of records.
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms .. 43 min
		}),
		lastPass: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ocs_storage_prune_last_success_timestamp_seconds",
			Help: "Unix time at which the last successful prune pass ended: alert if it falls far behind the interval.",
		}),
	}
	// The transfer key index has counters of its own, not a label on the
	// request-record ones: adding a label to those would change the series
	// the dashboards and alerts already query.
	keys := register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocs_storage_prune_transfer_keys_total",
		Help: "Transfer request-key index entries past the retention, by result: deleted (transfer final), " +
			"kept_open (transfer not final), missing (names no transfer: corruption, logged; alert on any).",
	}, []string{"result"}))
	m.transferKeysDeleted = keys.WithLabelValues("deleted")
	m.transferKeysKeptOpen = keys.WithLabelValues("kept_open")
	m.transferKeysMissing = keys.WithLabelValues("missing")
	m.transferKeysScanned = register(r, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ocs_storage_prune_transfer_keys_scanned_total",
		Help: "Transfer request-key index entries read by the pruner: a whole table per pass.",
	}))
	guards := register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ocs_storage_prune_redeem_guards_total",
		Help: "Voucher redemption guards read by the pruner, by result: deleted (no longer affects a decision), " +
			"kept_barred (caller barred), kept_counting (failure window still open).",
	}, []string{"result"}))
	m.guardsDeleted = guards.WithLabelValues("deleted")
	m.guardsKeptBarred = guards.WithLabelValues("kept_barred")
	m.guardsKeptCounting = guards.WithLabelValues("kept_counting")
	m.guardsScanned = register(r, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ocs_storage_prune_redeem_guards_scanned_total",
		Help: "Voucher redemption guards read by the pruner: a whole table per pass.",
	}))
	m.deleted = register(r, m.deleted)
	m.scanned = register(r, m.scanned)
	m.keptOpen = register(r, m.keptOpen)
	m.errors = register(r, m.errors)
	m.duration = register(r, m.duration)
	m.lastPass = register(r, m.lastPass)
	return m
}

// observe records a pass; one interrupted by Stop is no error.
func (m *pruneMetrics) observe(st *PruneStats, start time.Time, err error, stopped bool) {
	m.deleted.Add(float64(st.Deleted))
	m.scanned.Add(float64(st.Scanned))
	m.keptOpen.Add(float64(st.KeptOpen))
	m.transferKeysScanned.Add(float64(st.TransferKeysScanned))
	m.transferKeysDeleted.Add(float64(st.TransferKeysDeleted))
	m.transferKeysKeptOpen.Add(float64(st.TransferKeysKeptOpen))
	m.transferKeysMissing.Add(float64(st.TransferKeysMissing))
	m.guardsScanned.Add(float64(st.GuardsScanned))
	m.guardsDeleted.Add(float64(st.GuardsDeleted))
	m.guardsKeptBarred.Add(float64(st.GuardsKeptBarred))
	m.guardsKeptCounting.Add(float64(st.GuardsKeptCounting))
	if err != nil {
		if !stopped {
			m.errors.Inc()
		}
		return
	}
	m.duration.Observe(time.Since(start).Seconds())
	m.lastPass.SetToCurrentTime()
}
