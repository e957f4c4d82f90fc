package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ocs-engine/ocs/charging"
)

// Limits.
const (
	// HistoryLimitMax bounds one History call: a page a person reads, or
	// an export paged by beforeSeq. More in one call would hold an
	// iterator and build a slice for an unbounded time.
	HistoryLimitMax = 1000
	// CacheBytesDefault is the block cache when Options.CacheBytes is 0:
	// enough for the index and filter blocks of about 10M accounts plus
	// their idempotency records, so that a miss costs no disk read.
	CacheBytesDefault int64 = 128 << 20
	// memTableReserveBytes is added to the block cache: Pebble charges
	// every memtable's memory to the block cache, and without this the
	// queued memtables (up to memTableStopWrites of them) can take all of
	// it. Measured: with a 128 MiB cache and 64 MiB memtables nothing was
	// cached at all and every lookup read its filter block from disk
	// (58 µs per idempotency miss instead of a few).
	memTableReserveBytes int64 = memTableBytes * memTableStopWrites
	// pendingFreeMax bounds the pooled batches kept for reuse: a committer
	// pipelines a handful at most; beyond that a batch is dropped to GC.
	pendingFreeMax = 8
)

// Pebble tuning for many small synced writes and point reads that mostly
// miss (an idempotency key is new on nearly every charge).
const (
	// memTableBytes: 64 MiB instead of 4 MiB, so flushes (and so L0 files
	// and compactions) are 16 times rarer under a steady 150k changes/s
	// (≈ 40 MB/s of batch data); memory is bounded by memTableStopWrites.
	memTableBytes = 64 << 20
	// memTableStopWrites: up to 4 memtables queued before writes stall,
	// so a slow flush absorbs a burst instead of stopping every charge.
	memTableStopWrites = 4
	// l0CompactionThreshold: compact L0 at 2 sublevels (default 4): every
	// charge pays a Get that probes each L0 sublevel's filter, so L0 is
	// kept shallow at the price of slightly more compaction.
	l0CompactionThreshold = 2
	// l0StopWritesThreshold: stall only at 32 sublevels (default 12). A
	// stall blocks every charge in the engine, while extra sublevels cost
	// one more filter probe each: reads degrade gracefully, stalls do not.
	l0StopWritesThreshold = 32
	// lBaseMaxBytes: 256 MiB so that one level below L0 holds several
	// flushed memtables and the LSM stays shallow (fewer levels to probe).
	lBaseMaxBytes = 256 << 20
	// bloomBitsPerKey: 10 bits per key gives ≈ 1% false positives, so a
	// Get of a key that does not exist touches a data block in about one
	// of 100 tables it consults. Filters are on every level, L0 included
	// (Pebble's default has none in L0).
	bloomBitsPerKey = 10
)

// Options configures Open. The zero value is a disk store with defaults.
type Options struct {
	// CacheBytes is the block cache size; 0 means CacheBytesDefault. The
	// memtables' memory (up to 256 MiB) comes on top.
	CacheBytes int64
	// FS is the file system; nil means the disk. Tests pass vfs.NewMem()
	// or vfs.NewCrashableMem().
	FS vfs.FS
	// Logger receives Pebble's own messages (informational ones at Debug)
	// and the store's; nil discards them.
	Logger *slog.Logger
	// Registerer, when not nil, receives the store's own metrics
	// (ocs_storage_*). Nil means none, at no cost on the commit path.
	// Pebble's metrics are a separate collector: NewCollector.
	Registerer prometheus.Registerer
	// Now stamps request records committed without a Time (read once per
	// batch that has one); nil means time.Now. The engine sets Time from
	// its own clock, so this is a fallback; tests inject a manual clock.
	Now func() time.Time
	// ReadOnly opens an existing database for reading only, changing
	// nothing in its directory, not even a lock file (readonly.go): its
	// write-ahead log is replayed in memory. It is refused (ErrInUse)
	// while an engine holds the database. Reads and Check work; Commit
	// and Apply fail.
	ReadOnly bool
}

// Store is the durable state of the engine on one Pebble database.
//
// Concurrency: reads (LoadAccount, LookupRequest, LookupEntry, History,
// Totals, KeyRole, Check) are safe from any goroutine. Commit and Apply
// must be called by one goroutine at a time (the engine's committer):
// they reuse batches and buffers and keep the running totals without a
// lock. Pending.Wait may be called from another goroutine.
type Store struct {
	db *pebble.DB
	// transferKeyLocks order Transfers.Begin's look-up of the transfer
	// key index against the Pruner's deletes in it (transfer.go).
	transferKeyLocks transferKeyLocks
	cache            *pebble.Cache
	log              *slog.Logger
	metrics          *storeMetrics // nil: no metrics

	lookupOpts  pebble.IterOptions // read-only after Open
	durableOpts pebble.IterOptions // lookupOpts without the memtables
	recent      recentKeys         // which request keys may be in a memtable
	now         func() time.Time   // read-only after Open

	// Owned by the committer goroutine.
	buf     []byte          // value encoding scratch
	keyBuf  []byte          // key encoding scratch
	applied charging.Totals // totals including applied, maybe not durable, batches
	stamp   int64           // Unix ns of the batch being built; 0 until needed
	order   uint64          // number of the last batch applied

	free struct {
		sync.Mutex
		list []*Pending
	}

	// mu guards what readers and Wait share with the committer.
	mu struct {
		sync.Mutex
		totals charging.Totals // as of the newest durable batch
		order  uint64          // the batch totals is from
		failed error           // sticky: the first commit error
	}

	keys struct {
		sync.RWMutex
		roles map[[32]byte]uint8
	}

	readOnly bool // Options.ReadOnly
}

// ErrFailed is wrapped by every Commit and Apply after a commit failed:
// the store can no longer tell what is durable, and the engine must stop.
var ErrFailed = errors.New("storage: an earlier commit failed")

// Open opens (or creates) the store in dir. A crash at any moment leaves
// the directory in a state Open recovers: Pebble replays its write-ahead
// log, and every batch is in it whole or not at all.
func Open(dir string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = CacheBytesDefault
	}
	s := &Store{log: log, cache: pebble.NewCache(cacheBytes + memTableReserveBytes), now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	s.keys.roles = make(map[[32]byte]uint8)
	s.lookupOpts.UseL6Filters = true
	s.durableOpts = pebble.IterOptions{UseL6Filters: true, OnlyReadGuaranteedDurable: true}
	s.recent.init()
	po := pebbleOptions(s.cache, opts.FS, log)
	if opts.ReadOnly {
		s.readOnly = true
		po.ReadOnly, po.ErrorIfNotExists = true, true
		fs := opts.FS
		if fs == nil {
			fs = vfs.Default
		}
		po.FS = readOnlyFS{fs}
	}
	db, err := pebble.Open(dir, po)
	s.cache.Unref() // the DB holds its own reference until Close
	if opts.ReadOnly && errors.Is(err, pebble.ErrDBDoesNotExist) {
		err = ErrNoDatabase
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if opts.Registerer != nil {
		s.metrics = newStoreMetrics(opts.Registerer)
	}
	// Keys replayed from the write-ahead log sit in a memtable: look-ups
	// read the memtables until they are flushed (recent.go). A read-only
	// store never flushes, and all stays set.
	if !s.readOnly {
		s.recent.flushAll(db.Flush)
	}
	log.Info("storage opened", "dir", dir, "accounts", s.applied.Accounts, "owed", s.applied.Owed.String())
	return s, nil
}

func pebbleOptions(cache *pebble.Cache, fs vfs.FS, log *slog.Logger) *pebble.Options {
	po := &pebble.Options{
		Cache:                       cache,
		FS:                          fs,
		Logger:                      pebbleLogger{log},
		MemTableSize:                memTableBytes,
		MemTableStopWritesThreshold: memTableStopWrites,
		L0CompactionThreshold:       l0CompactionThreshold,
		L0StopWritesThreshold:       l0StopWritesThreshold,
		LBaseMaxBytes:               lBaseMaxBytes,
		// Pinned, so that a Pebble upgrade never ratchets the on-disk
		// format (irreversibly) without a deliberate change here.
		FormatMajorVersion: pebble.FormatValueSeparation,
		// Two cores: a second compaction may run only when L0 debt
		// builds up, never as routine.
		CompactionConcurrencyRange: func() (int, int) { return 1, 2 },
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { log.Error("pebble background error", "err", err) },
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				log.Warn("pebble write stall", "reason", info.Reason)
			},
			WriteStallEnd: func() { log.Warn("pebble write stall ended") },
		},
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	}
	return po
}

// load reads the schema version, the totals and the API keys.
func (s *Store) load() error {
	k := appendMetaKey(nil, metaSchema)
	v, found, err := getCopy(s.db, k)
	switch {
	case err != nil:
		return fmt.Errorf("storage: read schema: %w", err)
	case found && (len(v) != 1 || (v[0] != schemaV1 && v[0] != schemaV2)):
		return fmt.Errorf("%w: schema %v, this build reads %d and %d", ErrCorrupt, v, schemaV1, schemaV2)
	case (!found || v[0] == schemaV1) && !s.readOnly:
		if err := s.db.Set(k, []byte{schemaV2}, pebble.Sync); err != nil {
			return fmt.Errorf("storage: write schema: %w", err)
		}
	}
	v, found, err = getCopy(s.db, appendMetaKey(nil, metaTotals))
	if err != nil {
		return fmt.Errorf("storage: read totals: %w", err)
	}
	if found {
		t, err := decodeTotals(v)
		if err != nil {
			return fmt.Errorf("storage: read totals: %w", err)
		}
		s.applied = t
		s.mu.totals = t
	}
	return s.loadAPIKeys()
}

// getCopy returns a copy of the value of k in r (the database or a
// snapshot); found is false if absent.
func getCopy(r pebble.Reader, k []byte) (v []byte, found bool, err error) {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v = append([]byte(nil), v...)
	return v, true, closer.Close()
}

// has reports whether k is in r (the database or a snapshot).
func has(r pebble.Reader, k []byte) (bool, error) {
	_, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}

// anyIn reports whether r holds a key in [lower, upper).
func anyIn(r pebble.Reader, lower, upper []byte) (bool, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return false, err
	}
	found := it.First()
	return found, errors.Join(it.Error(), it.Close())
}

// Close closes the database. Pending batches must have been waited for.
func (s *Store) Close() error {
	s.recent.wait()
	s.free.Lock()
	for _, p := range s.free.list {
		_ = p.b.Close()
	}
	s.free.list = nil
	s.free.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// Totals returns the ledger totals as of the newest durable commit. It
// takes no disk read: the totals are kept in memory and in every batch.
func (s *Store) Totals() charging.Totals {
	s.mu.Lock()
	t := s.mu.totals
	s.mu.Unlock()
	return t
}

// LoadAccount returns the account of id; found is false if there is none.
// The account is its record with the journal entries written after it
// folded in (charging.Change.JournalOnly).
func (s *Store) LoadAccount(id charging.SubscriberID) (a charging.Account, found bool, err error) {
	var kb [accountKeyLen]byte
	v, closer, err := s.db.Get(appendAccountKey(kb[:0], id))
	if errors.Is(err, pebble.ErrNotFound) {
		return a, false, nil
	}
	if err != nil {
		return a, false, fmt.Errorf("storage: load account %d: %w", id, err)
	}
	a, err = decodeAccount(v)
	_ = closer.Close()
	if err != nil {
		return a, false, fmt.Errorf("storage: load account %d: %w", id, err)
	}
	if a.ID != id {
		return charging.Account{}, false, fmt.Errorf("storage: load account %d: %w: record holds account %d", id, ErrCorrupt, a.ID)
	}
	if err := s.foldJournal(&a); err != nil {
		return charging.Account{}, false, fmt.Errorf("storage: load account %d: %w", id, err)
	}
	return a, true, nil
}

// foldJournal folds into a, as read from its record, the journal entries
// written after the record (Seq above a.Seq), which must follow on without
// a gap. The engine rewrites the record at least every few entries, so
// this reads a handful at most.
func (s *Store) foldJournal(a *charging.Account) error {
	var lo, hi [journalKeyLen]byte
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: appendJournalKey(lo[:0], a.ID, a.Seq+1),
		UpperBound: appendJournalKey(hi[:0], a.ID, math.MaxUint64),
	})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		e, err := decodeJournal(it.Key(), it.Value(), a.ID)
		if err != nil {
			_ = it.Close()
			return err
		}
		if e.Seq != a.Seq+1 {
			_ = it.Close()
			return fmt.Errorf("%w: journal goes from %d to %d after the account record", ErrCorrupt, a.Seq, e.Seq)
		}
		a.Fold(&e)
	}
	return it.Close()
}

// LookupRequest returns the idempotency record of (id, key). A key longer
// than charging.RequestKeyBytesMax can never have been stored and is an
// error, not a miss, so that a caller that forgot to bound it finds out.
func (s *Store) LookupRequest(id charging.SubscriberID, key string) (r charging.RequestRecord, found bool, err error) {
	if len(key) == 0 || len(key) > charging.RequestKeyBytesMax {
		return r, false, fmt.Errorf("storage: lookup request %d: %w: key of %d bytes, want 1..%d",
			id, ErrInvalid, len(key), charging.RequestKeyBytesMax)
	}
	var kb [requestKeyMax]byte
	k := appendRequestKey(kb[:0], id, key)
	// Most keys looked up are new. DB.Get skips the bloom filters of the
	// last level (where most records live once compacted) and so searches
	// a data block for every miss; a prefix seek with UseL6Filters stops
	// at the filter. BenchmarkLookupRequestMiss (1M keys, loaded 2-core
	// box): 2.6–5.4 µs and 1 alloc here against 7.3 µs and 4 allocs.
	// A key that cannot be in a memtable skips them (recent.go).
	opts := &s.lookupOpts
	if !s.recent.mayBeUnflushed(k) {
		opts = &s.durableOpts
	}
	it, err := s.db.NewIter(opts)
	if err != nil {
		return r, false, fmt.Errorf("storage: lookup request %d: %w", id, err)
	}
	if it.SeekPrefixGE(k) && bytes.Equal(it.Key(), k) {
		r, err = decodeRequest(it.Value())
		found = err == nil
	}
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return charging.RequestRecord{}, false, fmt.Errorf("storage: lookup request %d: %w", id, err)
	}
	return r, found, nil
}

// LookupEntry returns journal entry seq of id, and whether a refund of it
// has been recorded.
func (s *Store) LookupEntry(id charging.SubscriberID, seq uint64) (e charging.Entry, refunded bool, found bool, err error) {
	var kb [journalKeyLen]byte
	v, closer, err := s.db.Get(appendJournalKey(kb[:0], id, seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return e, false, false, nil
	}
	if err != nil {
		return e, false, false, fmt.Errorf("storage: lookup entry %d/%d: %w", id, seq, err)
	}
	e, err = decodeEntry(v)
	_ = closer.Close()
	if err == nil && e.Seq != seq {
		err = fmt.Errorf("%w: key seq %d holds entry %d", ErrCorrupt, seq, e.Seq)
	}
	if err != nil {
		return charging.Entry{}, false, false, fmt.Errorf("storage: lookup entry %d/%d: %w", id, seq, err)
	}
	v, closer, err = s.db.Get(appendRefundedKey(kb[:0], id, seq))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return e, false, true, nil
	case err != nil:
		return charging.Entry{}, false, false, fmt.Errorf("storage: lookup refund of %d/%d: %w", id, seq, err)
	}
	_, err = decodeRefunded(v)
	_ = closer.Close()
	if err != nil {
		return charging.Entry{}, false, false, fmt.Errorf("storage: lookup refund of %d/%d: %w", id, seq, err)
	}
	return e, true, true, nil
}

// History returns up to limit (1..HistoryLimitMax) entries of id with
// Seq < beforeSeq (0: from the newest), newest first.
func (s *Store) History(id charging.SubscriberID, beforeSeq uint64, limit int) ([]charging.Entry, error) {
	if limit < 1 || limit > HistoryLimitMax {
		return nil, fmt.Errorf("storage: history %d: %w: limit %d, want 1..%d", id, ErrInvalid, limit, HistoryLimitMax)
	}
	var lo, hi [journalKeyLen + 1]byte
	lower := appendJournalKey(lo[:0], id, 1)
	var upper []byte
	if beforeSeq == 0 {
		// Past the largest seq: keys are exactly journalKeyLen bytes.
		upper = append(appendJournalKey(hi[:0], id, ^uint64(0)), 0)
	} else {
		upper = appendJournalKey(hi[:0], id, beforeSeq)
		limit = int(min(uint64(limit), beforeSeq-1))
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("storage: history %d: %w", id, err)
	}
	out := make([]charging.Entry, 0, min(limit, 64))
	for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
		e, err := decodeJournal(it.Key(), it.Value(), id)
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("storage: history %d: %w", id, err)
		}
		out = append(out, e)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("storage: history %d: %w", id, err)
	}
	return out, nil
}

// decodeJournal decodes a journal record and checks it against its key.
func decodeJournal(k, v []byte, want charging.SubscriberID) (charging.Entry, error) {
	id, seq, ok := parseSeqKey(k)
	if !ok || id != want {
		return charging.Entry{}, fmt.Errorf("%w: journal key %x", ErrCorrupt, k)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return e, err
	}
	if e.Seq != seq {
		return charging.Entry{}, fmt.Errorf("%w: journal key seq %d holds entry %d", ErrCorrupt, seq, e.Seq)
	}
	return e, nil
}

// pebbleLogger sends Pebble's messages to slog: Infof (flushes,
// compactions, WAL recycling: many per minute under load) at Debug,
// so they are quiet unless asked for.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on an unrecoverable internal error; it must
// not return. It logs and exits, as Pebble's own default logger does: a
// panic would unwind through Pebble code holding its mutexes and end in
// "unlock of unlocked mutex", hiding the cause. Exiting loses nothing
// acknowledged: every acknowledged change is already synced.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("pebble: fatal: " + fmt.Sprintf(format, args...))
	os.Exit(exitPebbleFatal)
}

// exitPebbleFatal is the exit status after a fatal Pebble error (EX_SOFTWARE).
const exitPebbleFatal = 70

var _ io.Closer = (*Store)(nil)
