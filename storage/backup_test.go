package storage

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestBackupUnderWrites backs the store up while a committer pipelines
// random batches through Apply and Wait, the engine's path. The copy must
// open, pass Check, and hold a whole prefix of the batches that includes
// every batch acknowledged before Backup was called, exactly as the
// model says.
func TestBackupUnderWrites(t *testing.T) {
	const (
		seed     = 51
		batches  = 300 // ≈ 1 s under -race on 2 cores; the backup lands mid-way
		batchMax = 30
		backupAt = 60 // acknowledged batches before the backup is asked for
	)
	rng := rand.New(rand.NewPCG(seed, 1))
	sizes := make([]int, batches)
	for i := range sizes {
		sizes[i] = 1 + rng.IntN(batchMax)
	}
	root := t.TempDir()
	s := openTest(t, filepath.Join(root, "data"), vfs.Default)

	var acked atomic.Int64
	done := make(chan error, 1)
	go func() { done <- writeModel(s, seed, sizes, true, &acked) }()

	for acked.Load() < backupAt {
		time.Sleep(100 * time.Microsecond)
	}
	ackedBefore := int(acked.Load())
	dir := filepath.Join(root, "backups", "b1")
	require.NoError(t, os.MkdirAll(filepath.Dir(dir), 0o750))
	info, err := s.Backup(dir)
	require.NoError(t, err)
	ackedAfter := int(acked.Load())
	require.NoError(t, <-done)
	t.Logf("backup after %d acknowledged batches (%d when it returned): %d bytes in %v",
		ackedBefore, ackedAfter, info.Bytes, info.Duration)
	require.Equal(t, dir, info.Path)
	require.Equal(t, "b1", info.Name)
	require.Positive(t, info.Bytes)
	require.Less(t, ackedAfter, batches, "the writes must still run when the backup ends, or the test proves nothing")
	require.NoDirExists(t, dir+backupPartialSuffix)

	require.NoError(t, VerifyBackup(context.Background(), dir))
	r, err := Open(dir, Options{CacheBytes: 8 << 20})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.Check(context.Background()))
	p := presentPrefix(t, r, seed, sizes)
	require.GreaterOrEqual(t, p, ackedBefore, "the backup lost a batch acknowledged before it was asked for")
	want := newModel(seed)
	for _, n := range sizes[:p] {
		want.batch(n)
	}
	requireMatches(t, r, want)
	t.Logf("%d batches in the backup", p)
}

func TestBackupRefusesExistingDirectory(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, filepath.Join(root, "data"), vfs.Default)
	m := newModel(52)
	commitModel(t, s, m, 100)

	taken := filepath.Join(root, "taken")
	require.NoError(t, os.MkdirAll(taken, 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(taken, "keep"), []byte("mine"), 0o600))
	_, err := s.Backup(taken)
	require.ErrorIs(t, err, ErrBackupExists)
	got, err := os.ReadFile(filepath.Join(taken, "keep"))
	require.NoError(t, err)
	require.Equal(t, "mine", string(got), "a refused backup leaves the directory alone")
	entries, err := os.ReadDir(taken)
	require.NoError(t, err)
	require.Len(t, entries, 1)

	// A ".partial" left by a crash mid-copy is not reused either.
	crashed := filepath.Join(root, "crashed")
	require.NoError(t, os.MkdirAll(crashed+backupPartialSuffix, 0o750))
	_, err = s.Backup(crashed)
	require.ErrorIs(t, err, ErrBackupExists)
	require.NoDirExists(t, crashed)

	// The store keeps working and a fresh directory takes the backup.
	commitModel(t, s, m, 50)
	_, err = s.Backup(filepath.Join(root, "fresh"))
	require.NoError(t, err)
	r := openTest(t, filepath.Join(root, "fresh"), vfs.Default)
	requireMatches(t, r, m)
}

func TestBackupOnMemoryFSIsRefused(t *testing.T) {
	s := openTest(t, "db", nil)
	dir := filepath.Join(t.TempDir(), "b")
	_, err := s.Backup(dir)
	require.ErrorContains(t, err, "not on the disk")
	require.NoDirExists(t, dir)
}

func TestBackupsTakeListAndMetrics(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, filepath.Join(root, "data"), vfs.Default)
	m := newModel(53)
	commitModel(t, s, m, 200)
	dir := filepath.Join(root, "backups")
	clock := &manualClock{t: time.Date(2026, 11, 22, 4, 15, 0, 700e6, time.UTC)}
	reg := prometheus.NewPedanticRegistry()
	b, err := NewBackups(s, BackupsOptions{Dir: dir, Registerer: reg, Now: clock.Now})
	require.NoError(t, err)
	require.Zero(t, value(t, gather(t, reg), "ocs_storage_backup_last_success_timestamp_seconds", ""), "no backup yet")
	list, err := b.List()
	require.NoError(t, err)
	require.Empty(t, list, "a directory not created yet holds no backup")

	totalsFirst := s.Totals()
	first, err := b.Take(context.Background())
	require.NoError(t, err)
	require.Equal(t, "20261122T041500Z", first.Name)
	require.Equal(t, filepath.Join(dir, first.Name), first.Path)
	require.Positive(t, first.Bytes)
	require.Positive(t, first.Duration)
	commitModel(t, s, m, 10)
	second, err := b.Take(context.Background()) // the same second
	require.NoError(t, err)
	require.Equal(t, "20261122T041500Z-2", second.Name)
	clock.Add(26 * time.Hour)
	third, err := b.Take(context.Background())
	require.NoError(t, err)
	require.Equal(t, "20261123T061500Z", third.Name)

	// Leftovers and strangers in the directory are not backups.
	for _, name := range []string{"20261124T000000Z.partial", "20261124T000000Z.invalid", "20261124T000000Z-1",
		"20261124T000000Z-02", "notes", "2026112T000000Z"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, name), 0o750))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "20261125T000000Z"), nil, 0o600))

	list, err = b.List()
	require.NoError(t, err)
	names := []string{}
	for _, l := range list {
		names = append(names, l.Name)
		require.Positive(t, l.Bytes, l.Name)
		require.Zero(t, l.Duration)
	}
	require.Equal(t, []string{third.Name, second.Name, first.Name}, names, "newest first")
	require.Equal(t, third.CreatedAt.Truncate(time.Second), list[0].CreatedAt)
	require.Equal(t, second.Bytes, list[1].Bytes)

	mfs := gather(t, reg)
	require.Equal(t, 3.0, value(t, mfs, "ocs_storage_backups_total", "ok"))
	require.Equal(t, 0.0, value(t, mfs, "ocs_storage_backups_total", "error"))
	require.Equal(t, 3.0, value(t, mfs, "ocs_storage_backup_duration_seconds", ""))
	require.Equal(t, float64(third.CreatedAt.Unix()), value(t, mfs, "ocs_storage_backup_last_success_timestamp_seconds", ""))

	// Each backup holds what was committed before it.
	r := openTest(t, first.Path, vfs.Default)
	require.Equal(t, totalsFirst, r.Totals())
	require.NotEqual(t, s.Totals(), r.Totals(), "later commits are not in it")

	// A restart reads the newest backup's time back: an old backup stays
	// old, whatever the process uptime.
	reg2 := prometheus.NewPedanticRegistry()
	_, err = NewBackups(s, BackupsOptions{Dir: dir, Registerer: reg2})
	require.NoError(t, err)
	require.Equal(t, float64(time.Date(2026, 11, 23, 6, 15, 0, 0, time.UTC).Unix()),
		value(t, gather(t, reg2), "ocs_storage_backup_last_success_timestamp_seconds", ""))
}

// TestBackupsOneAtATime holds a backup in flight (deterministically, by
// the test hook) and asks for a second one.
func TestBackupsOneAtATime(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, filepath.Join(root, "data"), vfs.Default)
	commitModel(t, s, newModel(54), 50)
	reg := prometheus.NewPedanticRegistry()
	b, err := NewBackups(s, BackupsOptions{Dir: filepath.Join(root, "backups"), Registerer: reg})
	require.NoError(t, err)
	entered, release := make(chan struct{}), make(chan struct{})
	b.beforeCheckpoint = func() {
		close(entered)
		<-release
	}
	first := make(chan error, 1)
	go func() {
		_, err := b.Take(context.Background())
		first <- err
	}()
	<-entered
	_, err = b.Take(context.Background())
	require.ErrorIs(t, err, ErrBackupInProgress)
	close(release)
	require.NoError(t, <-first)
	b.beforeCheckpoint = nil
	_, err = b.Take(context.Background())
	require.NoError(t, err, "the next one runs once the first is done")
	mfs := gather(t, reg)
	require.Equal(t, 1.0, value(t, mfs, "ocs_storage_backups_total", "busy"))
	require.Equal(t, 2.0, value(t, mfs, "ocs_storage_backups_total", "ok"))
}

func TestBackupsUnusableDirectory(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, filepath.Join(root, "data"), vfs.Default)
	file := filepath.Join(root, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	reg := prometheus.NewPedanticRegistry()
	// A regular file where the directory should be: refused even as root,
	// unlike a chmod.
	b, err := NewBackups(s, BackupsOptions{Dir: filepath.Join(file, "backups"), Registerer: reg})
	require.NoError(t, err, "charging must start anyway")
	_, err = b.Take(context.Background())
	require.ErrorIs(t, err, ErrBackupDir)
	_, err = b.List()
	require.ErrorIs(t, err, ErrBackupDir)
	require.Equal(t, 1.0, value(t, gather(t, reg), "ocs_storage_backups_total", "error"))

	_, err = NewBackups(s, BackupsOptions{})
	require.ErrorIs(t, err, ErrInvalid)
}

// TestBackupsSetAsideAnInvalidCopy backs up a store holding a corrupt
// record: the copy fails verification, is renamed ".invalid" and is never
// listed or counted as a success.
func TestBackupsSetAsideAnInvalidCopy(t *testing.T) {
	root := t.TempDir()
	s := openTest(t, filepath.Join(root, "data"), vfs.Default)
	commitModel(t, s, newModel(55), 50)
	bad := appendAccountKey(nil, 38340000001)
	require.NoError(t, s.db.Set(bad, []byte{0xff}, pebble.Sync))
	reg := prometheus.NewPedanticRegistry()
	b, err := NewBackups(s, BackupsOptions{Dir: filepath.Join(root, "backups"), Registerer: reg,
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }})
	require.NoError(t, err)
	_, err = b.Take(context.Background())
	require.ErrorIs(t, err, ErrCorrupt)
	require.DirExists(t, filepath.Join(root, "backups", "20260102T030405Z.invalid"))
	list, err := b.List()
	require.NoError(t, err)
	require.Empty(t, list)
	mfs := gather(t, reg)
	require.Equal(t, 1.0, value(t, mfs, "ocs_storage_backups_total", "error"))
	require.Zero(t, value(t, mfs, "ocs_storage_backup_last_success_timestamp_seconds", ""))
	require.NoError(t, s.db.Delete(bad, pebble.Sync)) // for openTest's Check
}

func FuzzParseBackupName(f *testing.F) {
	for _, s := range []string{"20261122T041500Z", "20261122T041500Z-2", "20261122T041500Z-64", "20261122T041500Z-65",
		"20261122T041500Z-02", "20261122T041500Z-1", "20261122T041500Z.partial", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ts, suffix, ok := parseBackupName(name)
		if !ok {
			return
		}
		// Accepted names are exactly what Take writes: they round-trip.
		want := ts.UTC().Format(BackupNameLayout)
		if suffix > 1 {
			want += "-" + strconv.Itoa(suffix)
		}
		if want != name || suffix < 1 || suffix > backupSuffixMax {
			t.Fatalf("%q parsed as %v suffix %d, which formats as %q", name, ts, suffix, want)
		}
	})
}

// BenchmarkBackup times Store.Backup (the checkpoint) and VerifyBackup
// on a store of about 100,000 changes over some 10,000 accounts, flushed
// so the tables are linked, not only the WAL copied.
func BenchmarkBackup(b *testing.B) {
	root := b.TempDir()
	s, err := Open(filepath.Join(root, "data"), Options{CacheBytes: 8 << 20})
	require.NoError(b, err)
	defer s.Close()
	m := newModel(56)
	commitModel(b, s, m, 100_000)
	require.NoError(b, s.db.Flush())
	commitModel(b, s, m, 1_000) // and a WAL tail to replay
	b.Logf("%d accounts", s.Totals().Accounts)
	b.Run("checkpoint", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		var bytes int64
		for b.Loop() {
			i++
			info, err := s.Backup(filepath.Join(root, "c"+strconv.Itoa(i)))
			require.NoError(b, err)
			bytes = info.Bytes
		}
		b.ReportMetric(float64(bytes), "bytes/backup")
	})
	dir := filepath.Join(root, "verify")
	_, err = s.Backup(dir)
	require.NoError(b, err)
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			require.NoError(b, VerifyBackup(context.Background(), dir))
		}
	})
}
