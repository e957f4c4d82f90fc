package storage

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// dirState is what a read-only open must leave as it was: every file's
// name, size, mode and modification time.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st[path] = info.Mode().String() + " " + time.Duration(info.Size()).String() + " " + info.ModTime().Format(time.RFC3339Nano)
		return nil
	}))
	return st
}

// A read-only open of a database whose last writes are only in its
// write-ahead log (an engine killed, or closed without a flush) reads
// everything that log holds, passes Check, and changes no file of the
// directory; without a LOCK file (a backup) it creates none. Writes fail.
func TestReadOnlyOpenChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	m := newModel(7)
	for range 20 {
		p, err := s.Apply(m.batch(10))
		require.NoError(t, err)
		require.NoError(t, p.Wait())
	}
	want := s.Totals()
	require.NoError(t, s.Close())

	for _, lock := range []bool{true, false} {
		if !lock {
			require.NoError(t, os.Remove(filepath.Join(dir, "LOCK")))
		}
		before := dirState(t, dir)
		r, err := Open(dir, Options{ReadOnly: true})
		require.NoError(t, err)
		require.Equal(t, want, r.Totals(), "the totals of every acknowledged batch, replayed from the log")
		require.NoError(t, r.Check(context.Background()))
		require.Error(t, r.Commit(m.batch(1)), "a read-only store refuses writes")
		require.NoError(t, r.Close())
		require.Equal(t, before, dirState(t, dir), "LOCK present: %v", lock)
	}
}

// A directory holding no database is refused, not read as an empty one
// that passes Check (a mistyped --data).
func TestReadOnlyOpenRefusesAMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir, Options{ReadOnly: true})
	require.ErrorIs(t, err, ErrNoDatabase)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing created")
}

// Every writing call of the read-only file system fails: a Pebble path
// that would write fails the open instead of changing the directory.
func TestReadOnlyFSRefusesWrites(t *testing.T) {
	mem := vfs.NewMem()
	f := readOnlyFS{mem}
	_, err := f.Create("a", vfs.WriteCategoryUnspecified)
	require.ErrorIs(t, err, errReadOnly)
	_, err = f.OpenReadWrite("a", vfs.WriteCategoryUnspecified)
	require.ErrorIs(t, err, errReadOnly)
	_, err = f.ReuseForWrite("a", "b", vfs.WriteCategoryUnspecified)
	require.ErrorIs(t, err, errReadOnly)
	for _, e := range []error{f.Link("a", "b"), f.Remove("a"), f.RemoveAll("a"), f.Rename("a", "b"), f.MkdirAll("d", 0o755)} {
		require.ErrorIs(t, e, errReadOnly)
	}
	names, err := mem.List("")
	require.NoError(t, err)
	require.Empty(t, names)
}

func TestHoldsVouchers(t *testing.T) {
	s := openTest(t, "", vfs.NewMem())
	held, err := s.HoldsVouchers()
	require.NoError(t, err)
	require.False(t, held)
	require.NoError(t, s.db.Set(voucherBatchKey(nil, 4_000_000_000), []byte{1}, nil))
	held, err = s.HoldsVouchers()
	require.NoError(t, err)
	require.True(t, held, "a batch record")
	require.NoError(t, s.db.Delete(voucherBatchKey(nil, 4_000_000_000), nil))
	var h VoucherHash
	h[31] = 0xff
	require.NoError(t, s.db.Set(voucherKey(nil, &h), []byte{1}, nil))
	held, err = s.HoldsVouchers()
	require.NoError(t, err)
	require.True(t, held, "a card without its batch record (a generation cut short)")
	require.NoError(t, s.db.Delete(voucherKey(nil, &h), nil)) // not a card Check would accept
}
