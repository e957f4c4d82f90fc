package storage

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// setRotateKeys shrinks the generations of s so that tests rotate and flush
// every few commits.
func setRotateKeys(s *Store, n int) {
	s.recent.mu.Lock()
	s.recent.rotateKeys = n
	s.recent.mu.Unlock()
}

// TestLookupsAcrossRotations commits with generations of 8 keys, so that
// dozens of rotations and flushes happen, and after every round finds every
// request record, wherever it is (a memtable with its hash in cur or prev,
// or a flushed table read without the memtables).
func TestLookupsAcrossRotations(t *testing.T) {
	m := newModel(7)
	s := openTest(t, "db", nil)
	s.recent.wait() // the flush Open starts
	setRotateKeys(s, 8)
	for range 40 {
		commitModel(t, s, m, 50)
		requireRequestsFound(t, s, m)
	}
	s.recent.wait()
	requireMatches(t, s, m)
	// The durable-only path was taken: most keys are no longer remembered.
	var durable int
	for rid := range m.requests {
		id, key := splitRequestID(rid)
		var kb [requestKeyMax]byte
		if !s.recent.mayBeUnflushed(appendRequestKey(kb[:0], id, key)) {
			durable++
		}
	}
	require.Greater(t, durable, len(m.requests)/2, "rotations must leave most keys to the flushed tables")
	_, found, err := s.LookupRequest(m.ids[0], "never-used")
	require.NoError(t, err)
	require.False(t, found)
}

// TestLookupsRaceRotations reads records known to be durable while the
// committer rotates generations every 4 keys: none may ever be missed.
func TestLookupsRaceRotations(t *testing.T) {
	m := newModel(8)
	s := openTest(t, "db", nil)
	setRotateKeys(s, 4)
	commitModel(t, s, m, 300)
	known := make(map[string]struct{}, len(m.requests))
	for rid := range m.requests {
		known[rid] = struct{}{}
	}
	stop, missed := make(chan struct{}), make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for rid := range known {
				select {
				case <-stop:
					return
				default:
				}
				id, key := splitRequestID(rid)
				if _, found, err := s.LookupRequest(id, key); err != nil || !found {
					missed <- rid
					return
				}
			}
		}
	}()
	commitModel(t, s, m, 3000)
	close(stop)
	<-done
	select {
	case rid := <-missed:
		t.Fatalf("request %s was not found while generations rotated", rid)
	default:
	}
	requireMatches(t, s, m)
}

// TestRecentKeysFlush: a completed flush forgets the generation it covered;
// a failed one keeps it and makes every look-up read the memtables.
func TestRecentKeysFlush(t *testing.T) {
	var r recentKeys
	r.init()
	r.flushAll(func() error { return nil })
	r.wait()
	require.False(t, r.mayBeUnflushed([]byte("never written")))

	r.rotateKeys = 2
	r.add([]byte("a"))
	r.maybeRotate(func() error { t.Fatal("rotated below rotateKeys"); return nil })
	r.add([]byte("b"))
	require.True(t, r.mayBeUnflushed([]byte("a")))
	r.maybeRotate(func() error { return nil })
	r.wait()
	require.False(t, r.mayBeUnflushed([]byte("a")), "flushed: read from the tables only")

	r.add([]byte("c"))
	r.add([]byte("d"))
	r.maybeRotate(func() error { return errors.New("disk on fire") })
	r.wait()
	require.True(t, r.mayBeUnflushed([]byte("c")))
	require.True(t, r.mayBeUnflushed([]byte("never written")), "after a failed flush every look-up reads the memtables")
}

// splitRequestID splits the model's "sub/key" request id.
func splitRequestID(rid string) (id charging.SubscriberID, key string) {
	for i := range rid {
		if rid[i] == '/' {
			return charging.SubscriberID(mustAtoi(rid[:i])), rid[i+1:]
		}
	}
	panic("request id without /: " + rid)
}

// requireRequestsFound looks up every request record of m.
func requireRequestsFound(t *testing.T, s *Store, m *model) {
	t.Helper()
	for rid, want := range m.requests {
		id, key := splitRequestID(rid)
		got, found, err := s.LookupRequest(id, key)
		require.NoError(t, err)
		require.True(t, found, rid)
		require.Equal(t, want, got, rid)
	}
}
