package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A store opened with Options.ReadOnly reads a database without changing a
// byte of its directory: `ocs check` on a crashed engine's directory kept
// as evidence, and the verification of a backup, must leave what they read
// as they found it. Pebble's read-only mode replays the write-ahead log
// into memory and writes no table, log or manifest, but its directory lock
// creates (and truncates) the LOCK file. readOnlyFS closes that gap and
// makes the promise hold by construction: every call that would write
// fails, so a Pebble path we did not foresee fails the open loudly rather
// than changing the directory.

// errReadOnly is what every writing call of readOnlyFS returns.
var errReadOnly = errors.New("storage: opened read-only: nothing may be written")

// ErrNoDatabase is returned by a read-only Open of a directory that holds
// no database: never read as an empty one (a mistyped directory would
// pass every check).
var ErrNoDatabase = errors.New("storage: the directory holds no database")

// ErrInUse is returned by a read-only Open while an engine holds the
// database: what it would read is being changed under it.
var ErrInUse = errors.New("storage: the database is in use by a running engine")

type readOnlyFS struct{ vfs.FS }

func (readOnlyFS) Create(string, vfs.DiskWriteCategory) (vfs.File, error) { return nil, errReadOnly }
func (readOnlyFS) Link(string, string) error                              { return errReadOnly }
func (readOnlyFS) OpenReadWrite(string, vfs.DiskWriteCategory, ...vfs.OpenOption) (vfs.File, error) {
	return nil, errReadOnly
}
func (readOnlyFS) Remove(string) error                { return errReadOnly }
func (readOnlyFS) RemoveAll(string) error             { return errReadOnly }
func (readOnlyFS) Rename(string, string) error        { return errReadOnly }
func (readOnlyFS) MkdirAll(string, os.FileMode) error { return errReadOnly }
func (readOnlyFS) ReuseForWrite(string, string, vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, errReadOnly
}

// Lock takes a shared POSIX lock on an existing LOCK file, opened for
// reading: it conflicts with the exclusive lock a running engine holds
// (Pebble's, also fcntl), so a live database is refused (ErrInUse) and no
// engine can open it while it is read. A directory without a LOCK (a
// backup) is read without one: nothing may create it.
func (f readOnlyFS) Lock(name string) (io.Closer, error) {
	if f.FS != vfs.Default {
		return noLock{}, nil // a test's memory file system: one process
	}
	file, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return noLock{}, nil
	}
	if err != nil {
		return nil, err
	}
	spec := syscall.Flock_t{Type: syscall.F_RDLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(file.Fd(), syscall.F_SETLK, &spec); err != nil {
		_ = file.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("%w (%s is locked)", ErrInUse, name)
		}
		return nil, fmt.Errorf("storage: lock %s for reading: %w", name, err)
	}
	return file, nil // closing the file releases the lock
}

func (f readOnlyFS) Unwrap() vfs.FS { return f.FS }

type noLock struct{}

func (noLock) Close() error { return nil }
