package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// manualClock is the injected clock of these tests.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// pruneStore opens a store on disk in a temp dir with clock as its stamp
// clock, and provisions account id; Check runs at cleanup.
func pruneStore(t *testing.T, clock *manualClock, id charging.SubscriberID) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{FS: vfs.Default, CacheBytes: 8 << 20, Now: clock.Now})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, s.Check(context.Background()))
		require.NoError(t, s.Close())
	})
	require.NoError(t, s.Commit([]charging.Change{{Account: charging.Account{ID: id}, Created: true}}))
	return s
}

// record is a request record with result OK and the given time.
func record(fingerprint uint64, at int64) charging.RequestRecord {
	return charging.RequestRecord{Fingerprint: fingerprint, Kind: charging.KindCharge,
		Outcome: charging.Outcome{Result: charging.ResultOK, Seq: fingerprint}, Time: at}
}

// putRequests commits one change per key, each recording rec(i).
func putRequests(t *testing.T, s *Store, id charging.SubscriberID, keys []string, rec func(i int) charging.RequestRecord) {
	t.Helper()
	changes := make([]charging.Change, len(keys))
	for i, k := range keys {
		changes[i] = charging.Change{Account: charging.Account{ID: id}, Key: k, Request: rec(i)}
	}
	require.NoError(t, s.Commit(changes))
}

func found(t *testing.T, s *Store, id charging.SubscriberID, key string) bool {
	t.Helper()
	_, ok, err := s.LookupRequest(id, key)
	require.NoError(t, err)
	return ok
}

func newTestPruner(t *testing.T, s *Store, clock *manualClock, opts PrunerOptions) *Pruner {
	t.Helper()
	opts.Now = clock.Now
	if opts.Pause == 0 {
		opts.Pause = time.Microsecond
	}
	p, err := NewPruner(s, opts)
	require.NoError(t, err)
	t.Cleanup(p.Stop)
	return p
}

// transferPruneStore is pruneStore with its transfer store and the clock
// that both run on.
func transferPruneStore(t *testing.T, from charging.SubscriberID) (*manualClock, *Store, *Transfers) {
	t.Helper()
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, from)
	ts, err := NewTransfers(s)
	require.NoError(t, err)
	return clock, s, ts
}

// pruneInBatches runs one pass of p and returns its stats, the size of
// each delete batch, every one at most batchMax, and their sum.
func pruneInBatches(t *testing.T, p *Pruner, batchMax int) (st PruneStats, sizes []int, sum int) {
	t.Helper()
	p.onBatch = func(n int) { sizes = append(sizes, n) }
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	for _, n := range sizes {
		require.LessOrEqual(t, n, batchMax)
		sum += n
	}
	return st, sizes, sum
}

var pruneT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestPruneKeepsTheExactBoundary(t *testing.T) {
	const id = 38344000001
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, id)
	retention := 48 * time.Hour
	ages := map[string]time.Duration{
		"older":       retention + time.Nanosecond,
		"much-older":  30 * 24 * time.Hour,
		"exact":       retention,
		"just-within": retention - time.Nanosecond,
		"fresh":       0,
	}
	keys := []string{"older", "much-older", "exact", "just-within", "fresh"}
	putRequests(t, s, id, keys, func(i int) charging.RequestRecord {
		return record(uint64(i+1), pruneT0.Add(-ages[keys[i]]).UnixNano())
	})
	p := newTestPruner(t, s, clock, PrunerOptions{Retention: retention})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{Scanned: 5, Deleted: 2, Batches: 1}, st)
	for _, k := range keys {
		require.Equal(t, ages[k] <= retention, found(t, s, id, k), k)
	}
	require.NoError(t, s.Check(context.Background()))

	// One nanosecond later the boundary record is past the window.
	clock.Add(time.Nanosecond)
	st, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.Deleted)
	require.False(t, found(t, s, id, "exact"))
	require.True(t, found(t, s, id, "just-within"))
}

// A retry of a pruned key is new to the engine: LookupRequest misses (the
// actor then evaluates the command, see actors/subscriber.go replay); a
// retry within the window is answered from its record, unchanged.
func TestPrunedRetryIsNewAndYoungRetryReplays(t *testing.T) {
	const id = 38344000002
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, id)
	old := record(11, pruneT0.Add(-8*24*time.Hour).UnixNano())
	young := record(12, pruneT0.Add(-time.Hour).UnixNano())
	putRequests(t, s, id, []string{"old", "young"}, func(i int) charging.RequestRecord {
		return []charging.RequestRecord{old, young}[i]
	})
	p := newTestPruner(t, s, clock, PrunerOptions{})
	_, err := p.Prune(context.Background())
	require.NoError(t, err)

	require.False(t, found(t, s, id, "old"), "a retry of a pruned key must be evaluated as new")
	got, ok, err := s.LookupRequest(id, "young")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, young, got)

	// The retry of "old" is charged again: its new record is written with
	// the engine's time and survives the next pass.
	putRequests(t, s, id, []string{"old"}, func(int) charging.RequestRecord { return record(11, clock.Now().UnixNano()) })
	_, err = p.Prune(context.Background())
	require.NoError(t, err)
	got, ok, err = s.LookupRequest(id, "old")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, clock.Now().UnixNano(), got.Time)
}

// Records without a time are stamped by the store's clock once per batch,
// without changing the caller's changes.
func TestCommitStampsRecordsWithoutTime(t *testing.T) {
	const id = 38344000003
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, id)
	changes := []charging.Change{
		{Account: charging.Account{ID: id}, Key: "a", Request: record(1, 0)},
		{Account: charging.Account{ID: id}, Key: "b", Request: record(2, 0)},
		{Account: charging.Account{ID: id}, Key: "c", Request: record(3, 77)},
	}
	require.NoError(t, s.Commit(changes))
	require.Zero(t, changes[0].Request.Time, "Commit must not write into the caller's changes")
	for key, want := range map[string]int64{"a": pruneT0.UnixNano(), "b": pruneT0.UnixNano(), "c": 77} {
		got, ok, err := s.LookupRequest(id, key)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, got.Time, key)
	}
	err := s.Commit([]charging.Change{{Account: charging.Account{ID: id}, Key: "d", Request: record(4, -1)}})
	require.ErrorIs(t, err, ErrInvalid)
}

// Records written by an older build have no time: they count from the
// epoch of the first pass, which survives a restart.
func TestPruneOldVersionRecordsFromEpoch(t *testing.T) {
	const id = 38344000004
	dir := t.TempDir()
	clock := &manualClock{t: pruneT0}
	s, err := Open(dir, Options{FS: vfs.Default, CacheBytes: 8 << 20, Now: clock.Now})
	require.NoError(t, err)
	require.NoError(t, s.Commit([]charging.Change{{Account: charging.Account{ID: id}, Created: true}}))
	q := record(5, 0)
	for _, key := range []string{"v1-a", "v1-b"} {
		require.NoError(t, s.db.Set(appendRequestKey(nil, id, key), appendRequestV1(nil, &q), pebble.Sync))
	}
	// Written behind the store's back, as an older version would have:
	// such records are in flushed tables by the time this version reads
	// them (recent.go), so flush them as Open would.
	require.NoError(t, s.db.Flush())
	got, ok, err := s.LookupRequest(id, "v1-a")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, q, got)

	retention := 24 * time.Hour
	p, err := NewPruner(s, PrunerOptions{Retention: retention, Now: clock.Now})
	require.NoError(t, err)
	st, err := p.Prune(context.Background()) // sets the epoch to now
	require.NoError(t, err)
	require.Zero(t, st.Deleted)
	require.NoError(t, s.Close())

	clock.Add(retention)
	s, err = Open(dir, Options{FS: vfs.Default, CacheBytes: 8 << 20, Now: clock.Now})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, s.Check(context.Background()))
		require.NoError(t, s.Close())
	})
	p, err = NewPruner(s, PrunerOptions{Retention: retention, Now: clock.Now})
	require.NoError(t, err)
	st, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.Zero(t, st.Deleted, "exactly one retention after the epoch: kept")
	require.True(t, found(t, s, id, "v1-b"))

	clock.Add(time.Nanosecond)
	st, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(2), st.Deleted, "the epoch must have survived the restart")
	require.False(t, found(t, s, id, "v1-a"))
}

func TestPruneBatchesAreBounded(t *testing.T) {
	const id = 38344000005
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, id)
	const old, young, batchMax = 60, 20, 7
	keys := make([]string, old+young)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	putRequests(t, s, id, keys, func(i int) charging.RequestRecord {
		if i%4 == 0 && i/4 < young { // young ones interleaved with old ones
			return record(uint64(i+1), pruneT0.UnixNano())
		}
		return record(uint64(i+1), pruneT0.Add(-30*24*time.Hour).UnixNano())
	})
	p := newTestPruner(t, s, clock, PrunerOptions{BatchMax: batchMax})
	st, sizes, sum := pruneInBatches(t, p, batchMax)
	require.Equal(t, old, sum)
	require.Equal(t, (old+batchMax-1)/batchMax, len(sizes))
	require.Equal(t, PruneStats{Scanned: old + young, Deleted: old, Batches: len(sizes)}, st)
	n := 0
	for i, k := range keys {
		if found(t, s, id, k) {
			n++
			require.True(t, i%4 == 0 && i/4 < young, k)
		}
	}
	require.Equal(t, young, n)
}

// Records of a voucher credit, transfer leg or *101# debit stay while the
// flow is open (a re-drive needs them), and go once it closes.
func TestPruneKeepsRecordsOfOpenFlows(t *testing.T) {
	const id = 38344000006
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, id)
	var h VoucherHash
	for i := range h {
		h[i] = byte(i * 7)
	}
	tr := charging.Transfer{ID: 42}
	pay := FixedPayment{ID: 9}
	open := []struct{ key, marker []byte }{
		{[]byte(RedemptionKey(h)), voucherPendingKey(nil, &h)},
		{[]byte(tr.DebitKey()), idKey(tagTransferOpen, tr.ID)},
		{[]byte(tr.ReverseKey()), idKey(tagTransferOpen, tr.ID)},
		{[]byte(pay.DebitKey()), binary.BigEndian.AppendUint64(appendTable(nil, tagFixedPayOpen), pay.ID)},
	}
	keys := []string{"client-key"}
	for _, o := range open {
		keys = append(keys, string(o.key))
		require.NoError(t, s.db.Set(o.marker, []byte{1}, pebble.Sync))
	}
	putRequests(t, s, id, keys, func(i int) charging.RequestRecord {
		return record(uint64(i+1), pruneT0.Add(-10*24*time.Hour).UnixNano())
	})
	p := newTestPruner(t, s, clock, PrunerOptions{})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{Scanned: 5, Deleted: 1, KeptOpen: 4, Batches: 1}, st)
	for _, k := range keys[1:] {
		require.True(t, found(t, s, id, k), k)
	}
	for _, o := range open {
		require.NoError(t, s.db.Delete(o.marker, pebble.Sync))
	}
	st, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(4), st.Deleted)
}

func TestPrunerOptionsValidated(t *testing.T) {
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, 38344000007)
	_, err := NewPruner(s, PrunerOptions{Retention: 23 * time.Hour})
	require.ErrorIs(t, err, ErrRetention)
	require.ErrorContains(t, err, "below the minimum of 24h0m0s")
	require.ErrorIs(t, ValidateRetention(-time.Hour), ErrRetention)
	require.NoError(t, ValidateRetention(RequestRetentionMin))
	_, err = NewPruner(s, PrunerOptions{BatchMax: PruneBatchMax + 1})
	require.Error(t, err)
	_, err = NewPruner(s, PrunerOptions{Interval: -time.Second})
	require.Error(t, err)
	p, err := NewPruner(s, PrunerOptions{})
	require.NoError(t, err)
	require.Equal(t, RequestRetentionDefault, p.opts.Retention)
	p.Stop() // without Start: a no-op
}

// The loop prunes in the background, counts what it did, and Stop ends it
// even in the middle of a pass.
func TestPrunerLoopMetricsAndStop(t *testing.T) {
	const id = 38344000008
	clock := &manualClock{t: pruneT0}
	s := pruneStore(t, clock, id)
	keys := []string{"a", "b", "c", "d"}
	putRequests(t, s, id, keys, func(i int) charging.RequestRecord {
		return record(uint64(i+1), pruneT0.Add(-8*24*time.Hour).UnixNano())
	})
	reg := prometheus.NewRegistry()
	// One delete per batch and an hour between steps: the first step runs,
	// then the pass waits until Stop interrupts it.
	p := newTestPruner(t, s, clock, PrunerOptions{Interval: time.Millisecond, BatchMax: 1, Pause: time.Hour, Registerer: reg})
	batches := make(chan int, len(keys))
	p.onBatch = func(n int) { batches <- n }
	p.Start()
	select {
	case n := <-batches:
		require.Equal(t, 1, n)
	case <-time.After(10 * time.Second):
		t.Fatal("no batch within 10 s")
	}
	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not interrupt the pass")
	}
	p.Stop()
	mfs := gather(t, reg)
	require.Equal(t, 1.0, value(t, mfs, "ocs_storage_prune_records_deleted_total", ""))
	require.Equal(t, 0.0, value(t, mfs, "ocs_storage_prune_errors_total", ""), "an interrupted pass is no error")
	require.Equal(t, 0.0, value(t, mfs, "ocs_storage_prune_last_success_timestamp_seconds", ""))
	require.Equal(t, 0.0, value(t, mfs, "ocs_storage_prune_duration_seconds", ""))

	// A whole pass, by hand: counted, timed, stamped.
	p2 := newTestPruner(t, s, clock, PrunerOptions{Registerer: reg})
	_, err := p2.Prune(context.Background())
	require.NoError(t, err)
	mfs = gather(t, reg)
	require.Equal(t, 4.0, value(t, mfs, "ocs_storage_prune_records_deleted_total", ""), "the same counters after a re-registration")
	require.Equal(t, 4.0, value(t, mfs, "ocs_storage_prune_records_scanned_total", ""), "1 by the interrupted pass, 3 by the whole one")
	require.Greater(t, value(t, mfs, "ocs_storage_prune_last_success_timestamp_seconds", ""), float64(pruneT0.Unix()))
	require.Equal(t, 1.0, value(t, mfs, "ocs_storage_prune_duration_seconds", ""), "one pass observed")
	for _, k := range keys {
		require.False(t, found(t, s, id, k), k)
	}
}

// transferAt begins a transfer of from under key, created at created, and
// drives it to state (pending: left as begun).
func transferAt(t *testing.T, s *Store, ts *Transfers, key string, from charging.SubscriberID, created time.Time, state charging.TransferState) charging.Transfer {
	t.Helper()
	tr, existed, err := ts.Begin(key, from, from+1, charging.Euros(1), 0, created)
	require.NoError(t, err)
	require.False(t, existed, key)
	var path []charging.TransferState
	switch state {
	case charging.TransferDebited:
		path = []charging.TransferState{charging.TransferDebited}
	case charging.TransferCredited:
		path = []charging.TransferState{charging.TransferDebited, state}
	case charging.TransferReversing:
		path = []charging.TransferState{charging.TransferDebited, state}
	case charging.TransferReversed:
		path = []charging.TransferState{charging.TransferDebited, charging.TransferReversing, state}
	case charging.TransferRefused:
		path = []charging.TransferState{state}
	}
	for _, next := range path {
		tr, err = ts.Advance(tr.ID, next)
		require.NoError(t, err)
	}
	landLegs(t, s, tr)
	return tr
}

func transferKeyIndexKey(from charging.SubscriberID, key string) []byte {
	return append(binary.BigEndian.AppendUint64(appendTable(nil, tagTransferKey), uint64(from)), key...)
}

// indexed reports whether sender from's key is in the transfer key index.
func indexed(t *testing.T, s *Store, from charging.SubscriberID, key string) bool {
	t.Helper()
	_, ok, err := getCopy(s.db, transferKeyIndexKey(from, key))
	require.NoError(t, err)
	return ok
}

// An entry goes when its transfer is final and older than the retention;
// young, exactly-Retention-old and open ones stay; the records all stay.
func TestPruneTransferKeysOfFinalOldTransfers(t *testing.T) {
	const from = 38344000010
	clock, s, ts := transferPruneStore(t, from)
	retention := 48 * time.Hour
	cases := []struct {
		key   string
		age   time.Duration
		state charging.TransferState
		kept  bool
	}{
		{"credited-old", retention + time.Second, charging.TransferCredited, false},
		{"reversed-old", 30 * 24 * time.Hour, charging.TransferReversed, false},
		{"refused-old", retention + time.Second, charging.TransferRefused, false},
		{"credited-young", retention - time.Second, charging.TransferCredited, true},
		{"credited-exact", retention, charging.TransferCredited, true},
		{"pending-old", 30 * 24 * time.Hour, charging.TransferPending, true},
		{"debited-old", 30 * 24 * time.Hour, charging.TransferDebited, true},
		{"reversing-old", 30 * 24 * time.Hour, charging.TransferReversing, true},
	}
	ids := map[string]uint64{}
	for _, c := range cases {
		ids[c.key] = transferAt(t, s, ts, c.key, from, pruneT0.Add(-c.age), c.state).ID
	}
	p := newTestPruner(t, s, clock, PrunerOptions{Retention: retention})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{Batches: 1, TransferKeysScanned: 8, TransferKeysDeleted: 3, TransferKeysKeptOpen: 3}, st)
	for _, c := range cases {
		require.Equal(t, c.kept, indexed(t, s, from, c.key), c.key)
		tr, err := ts.Get(ids[c.key])
		require.NoError(t, err, "transfer records are kept forever")
		require.Equal(t, c.state, tr.State)
	}

	// One second later the boundary entry is past the window; the open
	// ones go once their transfers close, and not before.
	clock.Add(time.Second)
	st, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.TransferKeysDeleted)
	require.Equal(t, uint64(3), st.TransferKeysKeptOpen)
	require.False(t, indexed(t, s, from, "credited-exact"))
	_, err = ts.Advance(ids["pending-old"], charging.TransferRefused)
	require.NoError(t, err)
	credited, err := ts.Advance(ids["debited-old"], charging.TransferCredited)
	require.NoError(t, err)
	landLegs(t, s, credited)
	reversed, err := ts.Advance(ids["reversing-old"], charging.TransferReversed)
	require.NoError(t, err)
	landLegs(t, s, reversed)
	st, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{Batches: 1, TransferKeysScanned: 4, TransferKeysDeleted: 3}, st)
	require.True(t, indexed(t, s, from, "credited-young"))
}

// A pass over the index spans steps bounded by the scan and the batch,
// resumes each where the last stopped, and locks the stripes of many
// senders at once.
func TestPruneTransferKeysAcrossSteps(t *testing.T) {
	const first = 38344000100
	clock, s, ts := transferPruneStore(t, first)
	const n, batchMax = 30, 3
	kept := map[int]bool{}
	for i := range n {
		from := charging.SubscriberID(first + i%7*13) // several senders and stripes
		state, age := charging.TransferCredited, 10*24*time.Hour
		switch i % 5 {
		case 1:
			state, kept[i] = charging.TransferDebited, true
		case 3:
			age, kept[i] = time.Hour, true
		}
		transferAt(t, s, ts, fmt.Sprintf("k%02d", i), from, pruneT0.Add(-age), state)
	}
	p := newTestPruner(t, s, clock, PrunerOptions{BatchMax: batchMax})
	p.scanMax = 4 // some steps end on the scan bound, some on the batch
	st, sizes, sum := pruneInBatches(t, p, batchMax)
	deleted := n - len(kept)
	require.Equal(t, deleted, sum)
	require.Greater(t, len(sizes), deleted/batchMax, "more than one step")
	require.Equal(t, PruneStats{Batches: len(sizes), TransferKeysScanned: n, TransferKeysDeleted: uint64(deleted),
		TransferKeysKeptOpen: n / 5}, st, "every entry read exactly once")
	for i := range n {
		from := charging.SubscriberID(first + i%7*13)
		require.Equal(t, kept[i], indexed(t, s, from, fmt.Sprintf("k%02d", i)), i)
	}
}

// A cancelled pass stops between two steps of the index, keeping what it
// deleted; the next pass finishes.
func TestPruneTransferKeysCancelled(t *testing.T) {
	const from = 38344000011
	clock, s, ts := transferPruneStore(t, from)
	keys := []string{"a", "b", "c", "d"}
	for _, k := range keys {
		transferAt(t, s, ts, k, from, pruneT0.Add(-8*24*time.Hour), charging.TransferCredited)
	}
	p := newTestPruner(t, s, clock, PrunerOptions{BatchMax: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.onBatch = func(int) { cancel() }
	st, err := p.Prune(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, PruneStats{Batches: 1, TransferKeysScanned: 1, TransferKeysDeleted: 1}, st)
	require.False(t, indexed(t, s, from, "a"))
	require.True(t, indexed(t, s, from, "b"))

	p.onBatch = nil
	st, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(3), st.TransferKeysDeleted)
}

// An entry naming no transfer, or another sender's, is counted, logged and
// kept; the pass goes on. One that does not decode stops it.
func TestPruneTransferKeysMissingTransfer(t *testing.T) {
	const from, other = 38344000012, 38344000099
	clock, s, ts := transferPruneStore(t, from)
	old := pruneT0.Add(-8 * 24 * time.Hour)
	theirs := transferAt(t, s, ts, "theirs", other, old, charging.TransferCredited)
	transferAt(t, s, ts, "z-valid", from, old, charging.TransferCredited) // sorts after the bad ones
	bad := map[string]uint64{"a-no-such-id": 999, "b-other-sender": theirs.ID}
	for k, id := range bad {
		require.NoError(t, s.db.Set(transferKeyIndexKey(from, k), binary.BigEndian.AppendUint64(nil, id), pebble.Sync))
	}
	reg := prometheus.NewRegistry()
	var logs lockedBuffer
	p := newTestPruner(t, s, clock, PrunerOptions{Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, PruneStats{Batches: 1, TransferKeysScanned: 4, TransferKeysDeleted: 2, TransferKeysMissing: 2}, st)
	for k := range bad {
		require.True(t, indexed(t, s, from, k), k)
	}
	require.False(t, indexed(t, s, from, "z-valid"))
	require.False(t, indexed(t, s, other, "theirs"))
	require.Equal(t, 2, strings.Count(logs.String(), "names no transfer of its sender"), logs.String())
	require.Contains(t, logs.String(), "transfer=999")
	mfs := gather(t, reg)
	require.Equal(t, 2.0, value(t, mfs, "ocs_storage_prune_transfer_keys_total", "missing"))
	require.Equal(t, 2.0, value(t, mfs, "ocs_storage_prune_transfer_keys_total", "deleted"))
	require.Equal(t, 0.0, value(t, mfs, "ocs_storage_prune_transfer_keys_total", "kept_open"))
	require.Equal(t, 4.0, value(t, mfs, "ocs_storage_prune_transfer_keys_scanned_total", ""))

	// A value that is no transfer id is undecodable: the pass fails, named.
	require.NoError(t, s.db.Set(transferKeyIndexKey(from, "c-short"), []byte{1, 2, 3}, pebble.Sync))
	_, err = p.Prune(context.Background())
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "transfer key index")
	require.Equal(t, 1.0, value(t, gather(t, reg), "ocs_storage_prune_errors_total", ""))
	require.NoError(t, s.db.Delete(transferKeyIndexKey(from, "c-short"), pebble.Sync))
	for k := range bad { // Check, at cleanup, rejects them too
		require.NoError(t, s.db.Delete(transferKeyIndexKey(from, k), pebble.Sync))
	}
}

// lockedBuffer is a log sink safe for the pruner's goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// If the entry changes between the step's read and its delete (a second
// pruner deleted it and a retry began a new, open transfer under the same
// key), the delete must spare it: a blind delete would let the next retry
// begin a second transfer while the first is still being driven.
func TestPruneTransferKeysRechecksUnderTheLock(t *testing.T) {
	const from = 38344000013
	clock, s, ts := transferPruneStore(t, from)
	transferAt(t, s, ts, "k", from, pruneT0.Add(-8*24*time.Hour), charging.TransferCredited)
	p := newTestPruner(t, s, clock, PrunerOptions{})
	var open charging.Transfer
	p.onKeyDel = func() {
		require.NoError(t, s.db.Delete(transferKeyIndexKey(from, "k"), pebble.Sync))
		var existed bool
		var err error
		open, existed, err = ts.Begin("k", from, from+1, charging.Euros(1), 0, clock.Now())
		require.NoError(t, err)
		require.False(t, existed)
	}
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Zero(t, st.TransferKeysDeleted)
	require.Zero(t, st.Batches)
	again, existed, err := ts.Begin("k", from, from+1, charging.Euros(1), 0, clock.Now())
	require.NoError(t, err)
	require.True(t, existed, "the retry of an open transfer must find it")
	require.Equal(t, open.ID, again.ID)
}
