package storage

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// openTest opens a store on fs (nil: a fresh in-memory one) and checks
// it at cleanup, as every test store must pass Check.
func openTest(t testing.TB, dir string, fs vfs.FS) *Store {
	t.Helper()
	if fs == nil {
		fs = vfs.NewMem()
	}
	s, err := Open(dir, Options{FS: fs, CacheBytes: 8 << 20})
	require.NoError(t, err)
	t.Cleanup(func() {
		if s.db == nil {
			return
		}
		require.NoError(t, s.Check(context.Background()))
		require.NoError(t, s.Close())
	})
	return s
}

// commitModel commits n random changes of m in batches of up to 50.
func commitModel(t testing.TB, s *Store, m *model, n int) {
	t.Helper()
	for n > 0 {
		k := min(n, 1+m.rng.IntN(50))
		require.NoError(t, s.Commit(m.batch(k)))
		n -= k
	}
}

// requireMatches asserts that the store holds exactly m's state.
func requireMatches(t testing.TB, s *Store, m *model) {
	t.Helper()
	for _, id := range m.sortedIDs() {
		a, found, err := s.LoadAccount(id)
		require.NoError(t, err)
		require.True(t, found, "account %d", id)
		require.Equal(t, *m.accounts[id], a, "account %d", id)

		want := slices.Clone(m.journal[id])
		slices.Reverse(want)
		var got []charging.Entry
		for before := uint64(0); ; {
			page, err := s.History(id, before, 7)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			before = page[len(page)-1].Seq
		}
		if len(want) == 0 {
			want = nil
		}
		require.Equal(t, want, got, "history of %d", id)
		for _, e := range m.journal[id] {
			got, refunded, found, err := s.LookupEntry(id, e.Seq)
			require.NoError(t, err)
			require.True(t, found)
			require.Equal(t, e, got)
			require.Equal(t, m.refunded[[2]uint64{uint64(id), e.Seq}], refunded, "refunded %d/%d", id, e.Seq)
		}
		_, _, found, err = s.LookupEntry(id, a.Seq+1)
		require.NoError(t, err)
		require.False(t, found)
	}
	for rid, want := range m.requests {
		var id charging.SubscriberID
		var key string
		for i := range rid {
			if rid[i] == '/' {
				id = charging.SubscriberID(mustAtoi(rid[:i]))
				key = rid[i+1:]
				break
			}
		}
		got, found, err := s.LookupRequest(id, key)
		require.NoError(t, err)
		require.True(t, found, rid)
		require.Equal(t, want, got, rid)
	}
	require.Equal(t, m.totals(), s.Totals())
}

func mustAtoi(s string) uint64 {
	var n uint64
	for _, c := range s {
		n = n*10 + uint64(c-'0')
	}
	return n
}

func TestCommitAndRead(t *testing.T) {
	m := newModel(1)
	s := openTest(t, "db", nil)
	commitModel(t, s, m, 3000)
	require.Greater(t, len(m.accounts), 100)
	require.NotEmpty(t, m.refunded, "the model must exercise refunds")
	requireMatches(t, s, m)

	_, found, err := s.LoadAccount(1)
	require.NoError(t, err)
	require.False(t, found)
	_, found, err = s.LookupRequest(m.ids[0], "never-used")
	require.NoError(t, err)
	require.False(t, found)
}

func TestReopenOnDisk(t *testing.T) {
	dir := t.TempDir()
	m := newModel(2)
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	commitModel(t, s, m, 2000)
	requireMatches(t, s, m)
	require.NoError(t, s.Close())

	s = openTest(t, dir, vfs.Default)
	requireMatches(t, s, m)
	// The reopened store keeps committing on top of what it found.
	commitModel(t, s, m, 500)
	requireMatches(t, s, m)
}

func TestCommitRefusesInvalidChange(t *testing.T) {
	m := newModel(3)
	s := openTest(t, "db", nil)
	commitModel(t, s, m, 50)
	before := s.Totals()

	good := m.batch(3)
	cases := map[string]func(c *charging.Change){
		"negative balance":        func(c *charging.Change) { c.Account.Balance = -1 },
		"balance above max":       func(c *charging.Change) { c.Account.Balance = charging.BalanceMax + 1 },
		"zero id":                 func(c *charging.Change) { c.Account.ID = 0 },
		"entry seq not account's": func(c *charging.Change) { c.Entry.Seq, c.Account.Seq = 5, 6 },
		"entry balance differs": func(c *charging.Change) {
			c.Entry.Seq, c.Account.Seq, c.Entry.Kind = 9, 9, charging.EntryCharge
			c.Entry.BalanceAfter = c.Account.Balance + 1
		},
		"unknown entry kind": func(c *charging.Change) { c.Entry.Seq, c.Account.Seq, c.Entry.Kind = 9, 9, 200 },
		"key too long":       func(c *charging.Change) { c.Key = string(make([]byte, charging.RequestKeyBytesMax+1)) },
		"unknown result":     func(c *charging.Change) { c.Key, c.Request.Outcome.Result = "x", 0 },
		"refund without entry": func(c *charging.Change) {
			c.Entry = charging.Entry{}
			c.RefundOf = 1
		},
		"reserved above balance": func(c *charging.Change) {
			c.Account.Reservations = []charging.Reservation{{Session: 1, Reserved: c.Account.Balance + 1}}
		},
		"journal-only without entry": func(c *charging.Change) { c.Entry, c.JournalOnly = charging.Entry{}, true },
		"journal-only creation":      func(c *charging.Change) { c.Created, c.JournalOnly = true, true },
		"journal-only with reservations": func(c *charging.Change) {
			c.Account.Reservations = []charging.Reservation{{Session: 1, Reserved: 0}}
			c.JournalOnly = true
		},
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			batch := slices.Clone(good)
			batch[1].Account = charging.CloneAccount(&batch[1].Account)
			spoil(&batch[1])
			err := s.Commit(batch)
			require.ErrorIs(t, err, ErrInvalid)
			require.Equal(t, before, s.Totals())
			// Nothing of the batch was written, not even its valid first change.
			if good[0].Key != "" {
				_, found, err := s.LookupRequest(good[0].Account.ID, good[0].Key)
				require.NoError(t, err)
				require.False(t, found)
			}
		})
	}
	// A refused batch does not poison the store: the next one commits.
	require.NoError(t, s.Commit(good))
	require.NotEqual(t, charging.Totals{}, s.Totals())
}

func TestHistoryBounds(t *testing.T) {
	s := openTest(t, "db", nil)
	m := newModel(4)
	commitModel(t, s, m, 400)
	var id charging.SubscriberID
	for _, i := range m.ids {
		if len(m.journal[i]) > len(m.journal[id]) {
			id = i
		}
	}
	j := m.journal[id]
	require.GreaterOrEqual(t, len(j), 4)

	page, err := s.History(id, 0, 2)
	require.NoError(t, err)
	require.Equal(t, []charging.Entry{j[len(j)-1], j[len(j)-2]}, page)
	page, err = s.History(id, 3, HistoryLimitMax)
	require.NoError(t, err)
	require.Equal(t, []charging.Entry{j[1], j[0]}, page)
	page, err = s.History(id, 1, 10)
	require.NoError(t, err)
	require.Empty(t, page)
	page, err = s.History(12345, 0, 10)
	require.NoError(t, err)
	require.Empty(t, page)
	for _, limit := range []int{0, -1, HistoryLimitMax + 1} {
		_, err = s.History(id, 0, limit)
		require.ErrorIs(t, err, ErrInvalid, "limit %d", limit)
	}
	_, _, err = s.LookupRequest(id, "")
	require.ErrorIs(t, err, ErrInvalid)
}

func TestTotalsCountProvisions(t *testing.T) {
	s := openTest(t, "db", nil)
	m := newModel(5)
	cfg := charging.DemoConfig()
	// A zero-balance provision has no journal entry; it still counts.
	cmd := charging.Command{Kind: charging.KindProvision, Key: "p1", Subscriber: 38349111111}
	a, out, eff := charging.NewAccount(&cfg, &cmd, m.now)
	require.Zero(t, eff.Entry.Seq)
	m.accounts[a.ID] = &a
	m.ids = append(m.ids, a.ID)
	require.NoError(t, s.Commit([]charging.Change{m.record(&a, &cmd, out, eff)}))
	require.Equal(t, charging.Totals{Accounts: 1}, s.Totals())
	commitModel(t, s, m, 300)
	require.Equal(t, m.totals(), s.Totals())
	require.Equal(t, uint64(len(m.accounts)), s.Totals().Accounts)
}

func TestEmptyCommit(t *testing.T) {
	s := openTest(t, "db", nil)
	require.NoError(t, s.Commit(nil))
	p, err := s.Apply(nil)
	require.NoError(t, err)
	require.Nil(t, p)
	require.Equal(t, charging.Totals{}, s.Totals())
}

func TestApplyPipelined(t *testing.T) {
	s := openTest(t, "db", nil)
	m := newModel(6)
	var prev *Pending
	for range 40 {
		p, err := s.Apply(m.batch(1 + m.rng.IntN(30)))
		require.NoError(t, err)
		if prev != nil {
			require.NoError(t, prev.Wait())
		}
		prev = p
	}
	require.NoError(t, prev.Wait())
	requireMatches(t, s, m)
}

func TestFailedCommitPoisons(t *testing.T) {
	fs := vfs.NewMem()
	m := newModel(7)
	s, err := Open("db", Options{FS: fs})
	require.NoError(t, err)
	require.NoError(t, s.Commit(m.batch(10)))
	// A real WAL failure cannot be provoked portably (Pebble panics on a
	// closed DB), so inject it where a failed Apply or SyncWait lands.
	p := s.takePending()
	require.Error(t, s.finish(p, errors.New("disk on fire")))
	err = s.Commit(m.batch(1))
	require.ErrorIs(t, err, ErrFailed)
	_, err = s.Apply(m.batch(1))
	require.ErrorIs(t, err, ErrFailed)
	require.NoError(t, s.Close())
}

func TestCheckDetectsCorruption(t *testing.T) {
	// Each case spoils a fresh copy of the same store with a raw write.
	setup := func(t *testing.T) (*Store, charging.SubscriberID, []charging.Entry) {
		m := newModel(8)
		s, err := Open("db", Options{FS: vfs.NewMem()})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
		commitModel(t, s, m, 300)
		require.NoError(t, s.Check(context.Background()))
		for _, id := range m.ids {
			if j := m.journal[id]; len(j) >= 3 && j[0].Kind != charging.EntryCharge {
				return s, id, j
			}
		}
		t.Fatal("no account with 3 entries")
		return nil, 0, nil
	}
	cases := map[string]func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry){
		"journal gap": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			_ = b.Delete(appendJournalKey(nil, id, 2), nil)
		},
		"last entry missing": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			_ = b.Delete(appendJournalKey(nil, id, uint64(len(j))), nil)
		},
		"orphan journal": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			_ = b.Set(appendJournalKey(nil, 1, j[0].Seq), appendEntry(nil, &j[0]), nil)
		},
		"totals off": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			t := s.Totals()
			t.Owed++
			_ = b.Set(appendMetaKey(nil, metaTotals), appendTotals(nil, t), nil)
		},
		"account missing": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			_ = b.Delete(appendAccountKey(nil, id), nil)
		},
		"garbage account": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			_ = b.Set(appendAccountKey(nil, id), []byte{1, 2, 3}, nil)
		},
		"garbage request": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			_ = b.Set(appendRequestKey(nil, id, "zz"), []byte{9}, nil)
		},
		"marker on non-charge": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			_ = b.Set(appendRefundedKey(nil, id, 1), appendRefunded(nil, 2), nil)
		},
		"balance chain broken": func(s *Store, b *pebble.Batch, id charging.SubscriberID, j []charging.Entry) {
			e := j[1]
			e.Amount++
			_ = b.Set(appendJournalKey(nil, id, e.Seq), appendEntry(nil, &e), nil)
		},
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			s, id, j := setup(t)
			b := s.db.NewBatch()
			spoil(s, b, id, j)
			require.NoError(t, b.Commit(pebble.Sync))
			require.ErrorIs(t, s.Check(context.Background()), ErrCorrupt)
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		s, _, _ := setup(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, s.Check(ctx), context.Canceled)
	})
}

// TestSchemaUpgradeAndRefusal: a schema-1 database is upgraded to 2 when
// opened (a build reading only 1 then refuses it rather than take a stale
// account record for the balance); an unknown schema is refused.
func TestSchemaUpgradeAndRefusal(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, CacheBytes: 8 << 20})
	require.NoError(t, err)
	schema := func() []byte {
		v, found, err := getCopy(s.db, appendMetaKey(nil, metaSchema))
		require.NoError(t, err)
		require.True(t, found)
		return v
	}
	require.Equal(t, []byte{schemaV2}, schema(), "a new database is written as schema 2")
	require.NoError(t, s.db.Set(appendMetaKey(nil, metaSchema), []byte{schemaV1}, pebble.Sync))
	require.NoError(t, s.Close())

	s, err = Open("db", Options{FS: fs, CacheBytes: 8 << 20})
	require.NoError(t, err)
	require.Equal(t, []byte{schemaV2}, schema(), "schema 1 is upgraded on open")
	require.NoError(t, s.Close())

	for _, bad := range [][]byte{{3}, {}, {2, 0}} {
		fs := vfs.NewMem()
		s, err := Open("db", Options{FS: fs, CacheBytes: 8 << 20})
		require.NoError(t, err)
		require.NoError(t, s.db.Set(appendMetaKey(nil, metaSchema), bad, pebble.Sync))
		require.NoError(t, s.Close())
		_, err = Open("db", Options{FS: fs, CacheBytes: 8 << 20})
		require.ErrorIs(t, err, ErrCorrupt, "schema %v", bad)
	}
}
