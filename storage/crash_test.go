package storage

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// TestCrashRecovery commits random batches while another goroutine takes
// crash images of the file system at random instants (keeping a random
// share of the data that was written but not synced). Each image must
// reopen to exactly the first P batches for some P no smaller than the
// number of commits that had returned when the image was taken: every
// acknowledged batch whole, no partial batch, totals equal to the journal.
//
// The "apply" variant pipelines with Apply and Wait, one batch ahead: a
// batch counts as acknowledged when its Wait returns.
func TestCrashRecovery(t *testing.T) {
	t.Run("commit", func(t *testing.T) { testCrashRecovery(t, 42, false) })
	t.Run("apply", func(t *testing.T) { testCrashRecovery(t, 43, true) })
}

func testCrashRecovery(t *testing.T, seed uint64, pipelined bool) {
	const (
		// Sized to keep the test near 10 s under -race on 2 cores: each
		// image is reopened and compared record by record.
		batches  = 100
		crashes  = 8
		batchMax = 30
	)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	sizes := make([]int, batches)
	for i := range sizes {
		sizes[i] = 1 + rng.IntN(batchMax)
	}

	fs := vfs.NewCrashableMem()
	s, err := Open("db", Options{FS: fs})
	require.NoError(t, err)
	var acked atomic.Int64
	done := make(chan error, 1)
	go func() { done <- writeModel(s, seed, sizes, pipelined, &acked) }()

	type image struct {
		fs    *vfs.MemFS
		acked int
	}
	var images []image
	// Crash points spread over the whole run whatever its speed: wait for
	// a random number of acknowledged batches, then a random instant more.
	targets := make([]int, crashes)
	for i := range targets {
		targets[i] = rng.IntN(batches)
	}
	slices.Sort(targets)
	for _, target := range targets {
		for int(acked.Load()) < target {
			time.Sleep(50 * time.Microsecond)
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
		a := int(acked.Load())
		images = append(images, image{
			fs:    fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(rng.Uint64(), 2))}),
			acked: a,
		})
	}
	require.NoError(t, <-done)
	images = append(images, image{fs: fs.CrashClone(vfs.CrashCloneCfg{}), acked: batches})
	require.NoError(t, s.Close())

	for i, img := range images {
		r, err := Open("db", Options{FS: img.fs})
		require.NoError(t, err, "image %d", i)
		p := presentPrefix(t, r, seed, sizes)
		require.GreaterOrEqual(t, p, img.acked, "image %d lost an acknowledged batch", i)
		want := newModel(seed)
		for _, n := range sizes[:p] {
			want.batch(n)
		}
		requireMatches(t, r, want)
		require.NoError(t, r.Check(context.Background()), "image %d", i)
		require.NoError(t, r.Close())
		t.Logf("image %d: %d acknowledged, %d present", i, img.acked, p)
	}
}

// presentPrefix returns how many leading batches are in r, and fails if
// any batch is present in part or present after a missing one.
func presentPrefix(t *testing.T, r *Store, seed uint64, sizes []int) int {
	t.Helper()
	m := newModel(seed)
	p := -1
	for b, n := range sizes {
		present, keyed := 0, 0
		for _, c := range m.batch(n) {
			if c.Key == "" {
				continue
			}
			keyed++
			if _, found, err := r.LookupRequest(c.Account.ID, c.Key); err == nil && found {
				present++
			}
		}
		if keyed == 0 {
			continue
		}
		require.True(t, present == 0 || present == keyed, "batch %d present in part: %d of %d", b, present, keyed)
		switch {
		case present > 0 && p >= 0:
			t.Fatalf("batch %d present after missing batch %d", b, p)
		case present == 0 && p < 0:
			p = b
		}
	}
	if p < 0 {
		return len(sizes)
	}
	return p
}

// writeModel writes batches of the given sizes from newModel(seed) to s,
// one Commit at a time or pipelined (Apply, then Wait for the batch
// before), adds one to acked as each batch is acknowledged (durable), and
// returns the first error.
func writeModel(s *Store, seed uint64, sizes []int, pipelined bool, acked *atomic.Int64) error {
	m := newModel(seed)
	var prev *Pending
	for _, n := range sizes {
		if !pipelined {
			if err := s.Commit(m.batch(n)); err != nil {
				return err
			}
			acked.Add(1)
			continue
		}
		p, err := s.Apply(m.batch(n))
		if err == nil && prev != nil {
			err = prev.Wait()
			acked.Add(1)
		}
		if err != nil {
			return err
		}
		prev = p
	}
	if prev != nil {
		if err := prev.Wait(); err != nil {
			return err
		}
		acked.Add(1)
	}
	return nil
}
