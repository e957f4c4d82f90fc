package storage

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// ledger stands in for the actors: balances plus idempotency by request key.
type ledger struct {
	bal  map[charging.SubscriberID]charging.Amount
	keys map[string]bool
}

func (l *ledger) move(key string, id charging.SubscriberID, delta charging.Amount) bool {
	if l.keys[key] {
		return true // replayed
	}
	if l.bal[id]+delta < 0 {
		return false
	}
	l.bal[id] += delta
	l.keys[key] = true
	return true
}

// drive runs the protocol from tr's state, stopping after `steps` store
// writes (a crash) when steps >= 0.
func drive(t *testing.T, ts *Transfers, l *ledger, tr charging.Transfer, steps int) {
	t.Helper()
	write := func(next charging.TransferState) bool {
		if steps == 0 {
			return false
		}
		steps--
		var err error
		tr, err = ts.Advance(tr.ID, next)
		require.NoError(t, err)
		return true
	}
	if tr.State == charging.TransferPending {
		if !l.move(tr.DebitKey(), tr.From, -(tr.Amount + tr.Fee)) {
			write(charging.TransferRefused)
			return
		}
		if !write(charging.TransferDebited) {
			return
		}
	}
	if tr.State == charging.TransferDebited {
		if l.move(tr.CreditKey(), tr.To, tr.Amount) {
			write(charging.TransferCredited)
			return
		}
		if !write(charging.TransferReversing) {
			return
		}
	}
	if tr.State == charging.TransferReversing {
		l.move(tr.ReverseKey(), tr.From, tr.Amount+tr.Fee)
		write(charging.TransferReversed)
	}
}

func TestTransferCrashAtEveryStepConservesMoney(t *testing.T) {
	const a, b charging.SubscriberID = 38344000001, 38349000002
	for steps := 0; steps <= 2; steps++ {
		for _, amount := range []charging.Amount{charging.Euros(3), charging.Euros(50)} { // 50: refused
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			require.NoError(t, err)
			ts, err := NewTransfers(s)
			require.NoError(t, err)
			l := &ledger{bal: map[charging.SubscriberID]charging.Amount{a: charging.Euros(10), b: charging.Euros(1)}, keys: map[string]bool{}}
			tr, _, err := ts.Begin("first", a, b, amount, 10*charging.AmountPerCent, vchNow)
			require.NoError(t, err)
			drive(t, ts, l, tr, steps)
			// Crash: reopen, recover every open transfer, twice (recovery
			// itself may be interrupted and run again).
			require.NoError(t, s.Close())
			s, err = Open(dir, Options{})
			require.NoError(t, err)
			ts, err = NewTransfers(s)
			require.NoError(t, err)
			for range 2 {
				open, err := ts.Open(0, 10)
				require.NoError(t, err)
				for _, o := range open {
					drive(t, ts, l, o, -1)
				}
			}
			open, err := ts.Open(0, 10)
			require.NoError(t, err)
			require.Empty(t, open)
			got, err := ts.Get(tr.ID)
			require.NoError(t, err)
			total := l.bal[a] + l.bal[b]
			switch got.State {
			case charging.TransferCredited:
				require.Equal(t, charging.Euros(11)-tr.Fee, total)
				require.Equal(t, charging.Euros(1)+amount, l.bal[b])
			case charging.TransferRefused:
				require.Equal(t, charging.Euros(11), total)
			default:
				t.Fatalf("steps %d: final state %v", steps, got.State)
			}
			// IDs continue after a reopen.
			next, _, err := ts.Begin("second", a, b, charging.Euros(1), 0, vchNow)
			require.NoError(t, err)
			require.Equal(t, tr.ID+1, next.ID)
			require.NoError(t, s.Close())
		}
	}
}

func TestTransferAdvanceRefusesSkips(t *testing.T) {
	s, err := Open("", Options{FS: vfs.NewMem()})
	require.NoError(t, err)
	defer s.Close()
	ts, err := NewTransfers(s)
	require.NoError(t, err)
	tr, _, err := ts.Begin("k", 38344000001, 38349000002, charging.Euros(1), 0, vchNow)
	require.NoError(t, err)
	_, err = ts.Advance(tr.ID, charging.TransferCredited)
	require.ErrorIs(t, err, ErrTransferStep, "a credit before the debit")
	_, err = ts.Advance(999, charging.TransferDebited)
	require.ErrorIs(t, err, ErrTransferNotFound)
	_, _, err = ts.Begin("self", 38344000001, 38344000001, charging.Euros(1), 0, vchNow)
	require.ErrorIs(t, err, ErrInvalid)
}

// A retried transfer request finds the transfer its first attempt began,
// across a reopen; the same key for another transfer is refused.
func TestTransferBeginIsIdempotentByKey(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	ts, err := NewTransfers(s)
	require.NoError(t, err)
	first, existed, err := ts.Begin("U/abc", 38344000001, 38349000002, charging.Euros(2), 1000, vchNow)
	require.NoError(t, err)
	require.False(t, existed)
	require.NoError(t, s.Close())

	s, err = Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	ts, err = NewTransfers(s)
	require.NoError(t, err)
	again, existed, err := ts.Begin("U/abc", 38344000001, 38349000002, charging.Euros(2), 1000, vchNow)
	require.NoError(t, err)
	require.True(t, existed)
	require.Equal(t, first.ID, again.ID)
	_, _, err = ts.Begin("U/abc", 38344000001, 38349000002, charging.Euros(3), 1000, vchNow)
	require.ErrorIs(t, err, ErrTransferKeyReused)
	other, existed, err := ts.Begin("U/abc", 38344000009, 38349000002, charging.Euros(2), 1000, vchNow)
	require.NoError(t, err, "keys are per sender")
	require.False(t, existed)
	require.NotEqual(t, first.ID, other.ID)
	_, _, err = ts.Begin("", 38344000001, 38349000002, charging.Euros(2), 1000, vchNow)
	require.ErrorIs(t, err, ErrInvalid)
}

func FuzzDecodeTransfer(f *testing.F) {
	tr := charging.Transfer{ID: 1, From: 38344000001, To: 38349000002, Amount: charging.Euros(2), Fee: 1000, State: charging.TransferDebited, Created: 5}
	f.Add(appendTransfer(nil, &tr))
	f.Fuzz(func(t *testing.T, v []byte) {
		for i := 0; i < len(v); i++ {
			_, _ = decodeTransfer(v[:i])
		}
		if got, err := decodeTransfer(v); err == nil {
			require.NoError(t, validateTransfer(&got))
			require.Equal(t, v, appendTransfer(nil, &got))
		}
	})
}

// pageAll pages through a listing with limit records a page, each page
// starting after the last key of the one before, until a short page, and
// returns the keys in the order listed. It checks that every page is in
// strictly increasing key order and never longer than limit.
func pageAll[T any, K any](t *testing.T, limit int, list func(after *K, limit int) ([]T, error), key func(*T) K,
	less func(a, b K) bool) []K {
	t.Helper()
	var keys []K
	var after *K
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "paging does not end")
		page, err := list(after, limit)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), limit)
		for i := range page {
			k := key(&page[i])
			if after != nil {
				require.True(t, less(*after, k), "a page starts after its key, in key order")
			}
			keys = append(keys, k)
			after = &k
		}
		if len(page) < limit {
			return keys
		}
	}
}

func lessID(a, b uint64) bool { return a < b }

func TestTransferOpenPagesAfterID(t *testing.T) {
	s, err := Open("", Options{FS: vfs.NewMem()})
	require.NoError(t, err)
	defer s.Close()
	ts, err := NewTransfers(s)
	require.NoError(t, err)
	const a, b charging.SubscriberID = 38344000001, 38344000002
	var want, refused []uint64
	for i := range 23 {
		tr, _, err := ts.Begin("k"+strconv.Itoa(i), a, b, charging.Euros(1), 0, vchNow)
		require.NoError(t, err)
		switch i % 3 {
		case 0: // final: not listed
			_, err = ts.Advance(tr.ID, charging.TransferRefused)
			require.NoError(t, err)
			refused = append(refused, tr.ID)
		case 1:
			_, err = ts.Advance(tr.ID, charging.TransferDebited)
			require.NoError(t, err)
			want = append(want, tr.ID)
		default:
			want = append(want, tr.ID)
		}
	}
	open := func(after *uint64, limit int) ([]charging.Transfer, error) {
		if after == nil {
			return ts.Open(0, limit)
		}
		return ts.Open(*after, limit)
	}
	id := func(tr *charging.Transfer) uint64 { return tr.ID }
	for _, limit := range []int{1, 4, len(want), 100} {
		require.Equal(t, want, pageAll(t, limit, open, id, lessID), "limit %d", limit)
	}
	// after is exclusive, need not be open itself, and may be past the end.
	page, err := ts.Open(want[2], 2)
	require.NoError(t, err)
	require.Equal(t, []uint64{want[3], want[4]}, []uint64{page[0].ID, page[1].ID})
	page, err = ts.Open(refused[1], 1)
	require.NoError(t, err)
	require.Equal(t, refused[1]+1, page[0].ID)
	page, err = ts.Open(want[len(want)-1], 10)
	require.NoError(t, err)
	require.Empty(t, page)
	page, err = ts.Open(math.MaxUint64, 10)
	require.NoError(t, err)
	require.Empty(t, page)
}

// A retried transfer request finds its transfer until the pruner deletes
// the key's entry (the transfer final and past the retention); after that
// the retry begins a new transfer, by contract, and the old record stays.
func TestTransferRetryAfterPruneBeginsNew(t *testing.T) {
	const from, to charging.SubscriberID = 38344000021, 38344000022
	clock, s, ts := transferPruneStore(t, from)
	created := pruneT0.Add(-8 * 24 * time.Hour)
	first, _, err := ts.Begin("U/r", from, to, charging.Euros(2), 0, created)
	require.NoError(t, err)
	_, err = ts.Advance(first.ID, charging.TransferRefused)
	require.NoError(t, err)

	again, existed, err := ts.Begin("U/r", from, to, charging.Euros(2), 0, clock.Now())
	require.NoError(t, err)
	require.True(t, existed, "before the pass: the retry finds its transfer")
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, charging.TransferRefused, again.State)

	p := newTestPruner(t, s, clock, PrunerOptions{})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.TransferKeysDeleted)

	second, existed, err := ts.Begin("U/r", from, to, charging.Euros(2), 0, clock.Now())
	require.NoError(t, err)
	require.False(t, existed, "after the pass: a new transfer")
	require.NotEqual(t, first.ID, second.ID)
	require.Equal(t, charging.TransferPending, second.State)
	old, err := ts.Get(first.ID)
	require.NoError(t, err, "the pruned key's transfer record is kept")
	require.Equal(t, charging.TransferRefused, old.State)

	// The new transfer is open and young: the next pass keeps its entry,
	// and its retries find it.
	_, err = p.Prune(context.Background())
	require.NoError(t, err)
	third, existed, err := ts.Begin("U/r", from, to, charging.Euros(2), 0, clock.Now())
	require.NoError(t, err)
	require.True(t, existed)
	require.Equal(t, second.ID, third.ID)
}

// Retries of one request race passes of the pruner. The only transfers a
// retry may get are the final old one (before its entry goes) and then one
// new transfer, open, which every later retry must find: never a third.
func TestTransferRetriesRacingThePruner(t *testing.T) {
	const from, to charging.SubscriberID = 38344000023, 38344000024
	clock, s, ts := transferPruneStore(t, from)
	old, _, err := ts.Begin("U/race", from, to, charging.Euros(1), 0, pruneT0.Add(-8*24*time.Hour))
	require.NoError(t, err)
	_, err = ts.Advance(old.ID, charging.TransferRefused)
	require.NoError(t, err)
	p := newTestPruner(t, s, clock, PrunerOptions{})

	// Retries of the old transfer are reads (fast), of the new one too:
	// retry until the new one has been found after, bounded in count.
	const retriesMax, afterNew, passesMax = 200_000, 100, 1000
	done := make(chan struct{})
	passes := make(chan int, 1)
	go func() {
		n := 0
		defer func() { passes <- n }()
		for ; n < passesMax; n++ {
			select {
			case <-done:
				return
			default:
			}
			if _, err := p.Prune(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var newID uint64
	found := 0
	for i := 0; i < retriesMax && found < afterNew; i++ {
		tr, existed, err := ts.Begin("U/race", from, to, charging.Euros(1), 0, clock.Now())
		require.NoError(t, err)
		switch {
		case tr.ID == old.ID:
			require.True(t, existed)
			require.Zero(t, newID, "retry %d: the old transfer again after a new one began", i)
		case newID == 0:
			require.False(t, existed)
			newID = tr.ID
		default:
			require.True(t, existed, "retry %d: a second new transfer", i)
			require.Equal(t, newID, tr.ID, "retry %d", i)
			found++
		}
	}
	close(done)
	require.NotZero(t, newID, "the pruner never deleted the old transfer's entry")
	require.Positive(t, <-passes)
	_, err = p.Prune(context.Background())
	require.NoError(t, err)
	require.True(t, indexed(t, s, from, "U/race"), "the open transfer's entry is kept")
}
