package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ocs-engine/ocs/storage"
)

// errInconsistent is check's answer for a database whose records break an
// invariant: main exits 1 with the first violation.
var errInconsistent = errors.New("check: the database is inconsistent")

// check verifies a stopped engine's database (storage.Store.Check): every
// record decodes, each journal adds up to its balance, the ledger totals
// equal the sum of the accounts, and every scratch card agrees with its
// credit. The operator's tool after a crash, a restore from a backup or a
// disk alarm, before serving again. Ctrl-C stops it.
//
// It never writes to the directory it checks, which is often a backup or
// a crashed engine's directory kept as evidence. Opening the database for
// writing would replay its write-ahead log into new tables and rewrite the
// manifest; even Pebble's read-only open (storage.VerifyBackup) creates or
// truncates the LOCK file, and gives no totals to print. So check copies
// the database into a scratch directory (scratchCopy), opens and checks
// the copy, and removes it: the copy's WAL replay is the same as a
// restart's, so a directory a SIGKILL left with an unflushed log is
// checked with everything that log holds.
func check(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	data := fs.String("data", "./data", "directory of the Pebble database (ocs serve must not be running on it); never written to")
	scratch := fs.String("scratch", "", "`directory` in which a scratch copy is checked, then removed (default: $TMPDIR); on the database's file system the tables are linked, not copied")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("check: unexpected argument %q", fs.Arg(0))
	}
	// A mistyped directory must not pass as a healthy, empty one.
	if _, err := os.Stat(*data); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	// Ctrl-C ends the copy or the check, and the scratch copy is removed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	dir, err := scratchCopy(ctx, *data, *scratch)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer os.RemoveAll(dir)
	store, err := storage.Open(dir, storage.Options{})
	if err != nil {
		return fmt.Errorf("check: open %s (copied to %s): %w", *data, dir, err)
	}
	defer store.Close()
	if err := store.Check(ctx); err != nil {
		if errors.Is(err, storage.ErrCorrupt) {
			return fmt.Errorf("%w: %w", errInconsistent, err)
		}
		return fmt.Errorf("check: %w", err)
	}
	t := store.Totals()
	fmt.Fprintf(out, "consistent: %d accounts, %s EUR owed, checked in %v\n", t.Accounts, t.Owed, time.Since(start).Round(time.Millisecond))
	return nil
}

// pebbleLockName is the file a Pebble instance locks in its directory.
const pebbleLockName = "LOCK"

// scratchCopy copies the database in src into a new directory under
// parent ("" : os.TempDir) and returns it; the caller removes it. src is
// only read. A ctx that ends stops the copy between two files.
//
// Tables (.sst, .blob) are hard-linked when parent is on src's file system
// and copied otherwise: Pebble never writes to a table after creating it,
// and the copy's engine only adds and deletes tables of its own, which
// leaves the linked ones intact. Everything else (write-ahead logs, which
// Pebble recycles by writing over them; the manifest it appends to; the
// OPTIONS and marker files) is copied. This is what a Pebble checkpoint
// does, from outside a running instance.
//
// While copying, check holds a shared POSIX lock on src's LOCK file, the
// one Pebble holds exclusively while it runs: a serving engine makes the
// copy fail, and no engine can start on src mid-copy. A directory without
// LOCK (a backup: checkpoints do not copy it) has never been opened by an
// engine, and none is created in it.
func scratchCopy(ctx context.Context, src, parent string) (dir string, err error) {
	unlock, err := lockShared(filepath.Join(src, pebbleLockName))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Listed under the lock: an engine that ran in between would have
	// changed the files.
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", err
	}
	hasManifest := false
	for _, e := range entries {
		hasManifest = hasManifest || strings.HasPrefix(e.Name(), "MANIFEST-")
	}
	if !hasManifest {
		return "", fmt.Errorf("%s holds no database (no MANIFEST file)", src)
	}
	dir, err = os.MkdirTemp(parent, "ocs-check-")
	if err != nil {
		return "", fmt.Errorf("scratch directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		name := e.Name()
		if name == pebbleLockName || !e.Type().IsRegular() {
			continue
		}
		from, to := filepath.Join(src, name), filepath.Join(dir, name)
		if ext := filepath.Ext(name); (ext == ".sst" || ext == ".blob") && os.Link(from, to) == nil {
			continue
		}
		if err := copyFile(from, to); err != nil {
			return "", fmt.Errorf("copy %s to the scratch directory: %w", from, err)
		}
	}
	return dir, nil
}

// lockShared takes a shared lock on the existing file path, or nothing if
// there is none; the file is opened read-only, so neither it nor its
// modification time changes. The returned func releases the lock.
func lockShared(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	lk := syscall.Flock_t{Type: syscall.F_RDLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%s is in use (is ocs serve running on it?): stop the engine first", filepath.Dir(path))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil // closing the file releases the lock
}

// copyFile copies the regular file from into the new file to.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
