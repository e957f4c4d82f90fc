package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// benchRing is a ring of realistic changes over 10k subscribers
// (account + journal entry + idempotency record each), made valid again
// for every use by bumping the account's seq.
type benchRing struct {
	changes []charging.Change
	next    int
}

func newBenchRing(n int) *benchRing {
	r := &benchRing{changes: make([]charging.Change, n)}
	for i := range r.changes {
		id := charging.SubscriberID(38349000000 + i%10_000)
		balance := charging.Euros(10)
		// Alternate a top-up and a charge of 0.05 so that the total owed
		// never goes negative.
		kind, amount := charging.EntryTopUp, charging.Amount(500)
		if i%2 == 1 {
			kind, amount = charging.EntryCharge, -500
		}
		r.changes[i] = charging.Change{
			Account: charging.Account{ID: id, Balance: balance, ValidUntil: 1_800_000_000, Created: 1_700_000_000,
				Month: charging.MonthCounters{Month: 202503, Spent: 500, Charges: 10}},
			Entry: charging.Entry{Time: 1_740_000_000_000_000_000, Kind: kind, Channel: charging.ChannelNetwork,
				RatingGroup: charging.RatingGroupSMS, Units: 1, Amount: amount, BalanceAfter: balance, ValidUntilAfter: 1_800_000_000,
				Key: fmt.Sprintf("smsc-7f3a9c2e-%012d", i)},
			Key: fmt.Sprintf("smsc-7f3a9c2e-%012d", i),
			Request: charging.RequestRecord{Fingerprint: uint64(i) * 0x9e3779b97f4a7c15, Kind: charging.KindCharge,
				Outcome: charging.Outcome{Result: charging.ResultOK, Amount: -500, Balance: balance, ValidUntil: 1_800_000_000,
					State: charging.StateActive}},
		}
	}
	return r
}

// batch returns the next n changes, valid for one more commit.
func (r *benchRing) batch(n int) []charging.Change {
	if r.next+n > len(r.changes) {
		r.next = 0
	}
	cs := r.changes[r.next : r.next+n]
	r.next += n
	for i := range cs {
		c := &cs[i]
		c.Account.Seq++
		c.Entry.Seq = c.Account.Seq
		c.Request.Outcome.Seq = c.Account.Seq
	}
	return cs
}

func openBench(b *testing.B) *Store {
	s, err := Open(b.TempDir(), Options{})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, s.Close()) })
	return s
}

// BenchmarkCommit measures synced group commits on the real disk, as the
// engine's single committer issues them.
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s := openBench(b)
			ring := newBenchRing(64 << 10)
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if err := s.Commit(ring.batch(n)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "changes/s")
		})
	}
}

// BenchmarkApplyPipelined is BenchmarkCommit with one batch in flight
// while the next is built and applied: the committer pattern Apply is for.
func BenchmarkApplyPipelined(b *testing.B) {
	for _, n := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s := openBench(b)
			ring := newBenchRing(64 << 10)
			var prev *Pending
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				p, err := s.Apply(ring.batch(n))
				if err != nil {
					b.Fatal(err)
				}
				if prev != nil {
					if err := prev.Wait(); err != nil {
						b.Fatal(err)
					}
				}
				prev = p
			}
			if err := prev.Wait(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "changes/s")
		})
	}
}

// BenchmarkLookupRequestMiss is the Get every charge pays: its request
// key is new, in a store that holds about a million others.
func BenchmarkLookupRequestMiss(b *testing.B) {
	const existing = 1 << 20
	s := openBench(b)
	batch := s.db.NewBatch()
	var q charging.RequestRecord
	q.Kind, q.Outcome.Result, q.Outcome.State = charging.KindCharge, charging.ResultOK, charging.StateActive
	val := appendRequest(nil, &q)
	for i := range existing {
		id := charging.SubscriberID(38349000000 + i%100_000)
		require.NoError(b, batch.Set(appendRequestKey(nil, id, fmt.Sprintf("smsc-7f3a9c2e-%012d", i)), val, nil))
		if batch.Len() > 4<<20 {
			require.NoError(b, batch.Commit(pebble.NoSync))
			batch.Reset()
		}
	}
	require.NoError(b, batch.Commit(pebble.NoSync))
	// Settle the LSM (flush, compact everything) so that the figure is a
	// steady-state read, not one racing a background compaction.
	require.NoError(b, s.db.Flush())
	require.NoError(b, s.db.Compact(context.Background(), tableStart(0), tableStart(0xff), true))
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := s.db.Metrics(); m.Compact.NumInProgress == 0 && m.Compact.EstimatedDebt == 0 {
			break
		}
	}
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("smsc-7f3a9c2e-%012d", existing+i) // never stored
	}
	b.Run("LookupRequest", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			id := charging.SubscriberID(38349000000 + i%100_000)
			_, found, err := s.LookupRequest(id, keys[i%len(keys)])
			if err != nil || found {
				b.Fatal(err, found)
			}
			i++
		}
		m := s.db.Metrics()
		b.ReportMetric(float64(m.ReadAmp()), "read-amp")
	})
	// The rejected alternative, for comparison: DB.Get skips the last
	// level's bloom filters.
	b.Run("DB.Get", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			id := charging.SubscriberID(38349000000 + i%100_000)
			_, _, err := s.db.Get(appendRequestKey(nil, id, keys[i%len(keys)]))
			if !errors.Is(err, pebble.ErrNotFound) {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkLoadAccount is an actor's activation read of a stored account.
func BenchmarkLoadAccount(b *testing.B) {
	s := openBench(b)
	ring := newBenchRing(10_000)
	require.NoError(b, s.Commit(ring.batch(10_000)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, found, err := s.LoadAccount(charging.SubscriberID(38349000000 + i%10_000))
		if err != nil || !found {
			b.Fatal(err, found)
		}
		i++
	}
}
