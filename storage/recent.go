package storage

import (
	"hash/maphash"
	"sync"
)

// recentKeys lets LookupRequest skip the memtables for request keys that
// cannot be in them.
//
// Nearly every idempotency look-up is for a new key, and most of its cost
// was the seek in Pebble's memtable skiplist (≈ 6–9 µs of a 28–32 µs
// charge in the CPU profile of BenchmarkDurableEventCharges: tens of
// thousands of random nodes, a TLB and cache miss per level), while the
// flushed tables answer a miss from their bloom filters. recentKeys
// remembers a hash of every request key this Store wrote that may not be in
// a flushed table yet. A key whose hash is absent can only be in a flushed
// table, so its look-up reads with IterOptions.OnlyReadGuaranteedDurable,
// which leaves the memtables out. A hash that is present (the key, or a
// collision) takes the full look-up: a false positive costs a memtable
// seek, never a wrong answer.
//
// The invariant, for every request key k in the database:
//
//	k is in a flushed table, or hash(k) is in cur or prev, or all is set.
//
// It holds because:
//   - put adds hash(k) to cur before the batch holding k is applied.
//   - rotate moves cur to prev after that batch is applied (Commit and Apply
//     run on one goroutine), then calls DB.Flush, which returns once every
//     memtable holding a write applied before the call is flushed and the
//     new tables are visible to reads; only then is prev dropped. A flush
//     failure keeps prev (merged back into cur) and sets all: correct, and
//     slow, for the rest of the process.
//   - Keys written before Open (replayed from the write-ahead log into a
//     memtable) are covered by all, set at Open and cleared by the first
//     flush that completes.
//
// Nothing else writes request keys. The pruner deletes them: it adds the
// hashes of the keys it deleted right after applying the deletions, so
// that from then on a look-up reads the tombstones (in the moment between,
// a look-up may still find a record past its retention, which the window
// allows). A rotation after that moves them to prev like any other.
type recentKeys struct {
	seed maphash.Seed
	// rotateKeys is the size of cur that starts a rotation.
	rotateKeys int

	mu       sync.RWMutex
	cur      map[uint64]struct{}
	prev     map[uint64]struct{}
	all      bool // every look-up reads the memtables
	flushing bool
	flushes  sync.WaitGroup
}

// recentRotateKeys: 512k hashes per generation, ≈ 10 MB of map for two
// generations; at 50k keyed writes/s, one extra memtable flush every 10 s,
// about as often as a 64 MiB memtable fills by itself at that rate.
const recentRotateKeys = 1 << 19

func (r *recentKeys) init() {
	r.seed = maphash.MakeSeed()
	r.rotateKeys = recentRotateKeys
	r.cur = make(map[uint64]struct{})
	r.all = true
}

func (r *recentKeys) hash(key []byte) uint64 { return maphash.Bytes(r.seed, key) }

// add records the request key of a batch about to be applied.
func (r *recentKeys) add(key []byte) {
	h := r.hash(key)
	r.mu.Lock()
	r.cur[h] = struct{}{}
	r.mu.Unlock()
}

// addHashes records the hashes of keys whose deletions were just applied
// (the pruner's): until the tombstones are flushed, look-ups of those keys
// must read the memtables, where the tombstones are.
func (r *recentKeys) addHashes(hs []uint64) {
	r.mu.Lock()
	for _, h := range hs {
		r.cur[h] = struct{}{}
	}
	r.mu.Unlock()
}

// mayBeUnflushed reports whether key may be in a memtable.
func (r *recentKeys) mayBeUnflushed(key []byte) bool {
	h := r.hash(key)
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.all {
		return true
	}
	if _, ok := r.cur[h]; ok {
		return true
	}
	_, ok := r.prev[h]
	return ok
}

// maybeRotate starts a rotation if cur is full and none is running. It
// must be called after the batch whose keys were added last is applied.
func (r *recentKeys) maybeRotate(flush func() error) {
	r.mu.Lock()
	if r.flushing || len(r.cur) < r.rotateKeys {
		r.mu.Unlock()
		return
	}
	// Not presized: making a map for 512k keys zeroes ≈ 10 MB at once,
	// 2.6 ms here, and this runs on the committer, which every in-flight
	// commit waits for. An unsized map grows a table at a time.
	r.prev, r.cur = r.cur, make(map[uint64]struct{})
	r.flushing = true
	r.flushes.Add(1)
	r.mu.Unlock()
	go r.flush(flush, false)
}

// flushAll clears all once a flush of everything written before it
// completes: called at Open, for the keys replayed from the log.
func (r *recentKeys) flushAll(flush func() error) {
	r.mu.Lock()
	r.flushing = true
	r.flushes.Add(1)
	r.mu.Unlock()
	go r.flush(flush, true)
}

func (r *recentKeys) flush(flush func() error, clearAll bool) {
	defer r.flushes.Done()
	err := flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushing = false
	if err != nil {
		for h := range r.prev {
			r.cur[h] = struct{}{}
		}
		r.prev, r.all = nil, true
		return
	}
	r.prev = nil
	if clearAll {
		r.all = false
	}
}

// wait blocks until no flush started by r is running; Close calls it
// before closing the database.
func (r *recentKeys) wait() { r.flushes.Wait() }
