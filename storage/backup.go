package storage

// Online backups: a consistent copy of the database taken while the engine
// commits, one directory per backup, each openable by Open as it stands.
//
// A backup is a Pebble checkpoint (pebble.DB.Checkpoint): the sstables of
// the current version are hard-linked (copied when the backup directory is
// on another file system), the MANIFEST is copied up to the length that
// matches that version, and the live write-ahead logs are copied, never
// linked, because Pebble recycles WAL files. Opening the copy replays its
// WAL the way a restart after a crash does: the copy is a crash image of the
// database taken at the instant the WAL copy ends, so it holds a prefix of
// the commit stream with every batch whole or absent, like TestCrashRecovery's
// images.
//
// Hard links make a backup cheap at first (no table is written), and it
// grows on disk only as compactions replace the live tables it shares. The
// backup directory should therefore be on the data directory's file system;
// elsewhere every table is copied, which is correct but slower.
//
// The voucher secret (voucher.go) is not in the database and so never in a
// backup: it is backed up apart, on purpose.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Limits of the backup directory.
const (
	// BackupListMax bounds List: a daily backup kept for more than half a
	// year. List stats every file of every backup it returns, and an
	// operator who keeps more prunes the oldest by hand.
	BackupListMax = 200
	// backupSuffixMax bounds the "-N" suffixes tried when two backups are
	// named in the same second. Backups run one at a time, so a handful is
	// the most ever needed; reaching the bound means names are being taken
	// by something else.
	backupSuffixMax = 64
	// backupVerifyCacheBytes is the block cache of the read-only instance
	// that verifies a backup: Check reads every table once, in order, so a
	// cache would only be churned.
	backupVerifyCacheBytes = 8 << 20
	// BackupNameLayout is the UTC time layout of a backup's directory name
	// (e.g. 20261122T041500Z), so names sort by time and say when they were
	// taken; a second backup in the same second gets "-2", and so on.
	BackupNameLayout = "20060102T150405Z"
)

// Suffixes of directories in the backup directory that are not backups:
// an interrupted backup (the process died while it was written) and a
// backup that failed verification. Both are kept for a person to look at,
// never listed, never counted as a success.
const (
	backupPartialSuffix = ".partial"
	backupInvalidSuffix = ".invalid"
)

var (
	// ErrBackupExists is wrapped by Backup when its directory (or the
	// ".partial" beside it) already exists: a backup never overwrites.
	ErrBackupExists = errors.New("storage: backup directory exists")
	// ErrBackupInProgress is returned by Backups.Take while another backup
	// runs: two checkpoints at once would only double the I/O.
	ErrBackupInProgress = errors.New("storage: a backup is already running")
	// ErrBackupDir is wrapped by Backups.Take and List when the backup
	// directory cannot be created, read or written.
	ErrBackupDir = errors.New("storage: backup directory unusable")
)

// BackupInfo describes one backup.
type BackupInfo struct {
	// Name is the base name of the backup's directory.
	Name string
	// Path is the backup's directory: what Open (and `ocs check --data`)
	// takes.
	Path string
	// CreatedAt is when the backup started (UTC, truncated to the second
	// for a backup read back by List, whose name holds the time). Every
	// change acknowledged before it is in the backup.
	CreatedAt time.Time
	// Bytes is the total size of the backup's files. Tables hard-linked
	// with the live database are counted in full although they take no
	// extra space until a compaction replaces them in the live database.
	Bytes int64
	// Duration is how long the backup took (checkpoint, and verification
	// when taken by Backups.Take); zero for a backup found by List.
	Duration time.Duration
}

// Backup writes a consistent copy of the database to dir, which must not
// exist: a backup never overwrites anything. It may run at any time beside
// commits and reads; commits are not paused.
//
// Every change acknowledged before Backup is called is in the copy. The
// engine acknowledges a change only after its batch was committed with
// pebble.Sync (Commit, or Apply then Wait), so the batch is in the
// write-ahead log on stable storage before the call; Checkpoint copies the
// live WAL files after that instant and links the tables of the version
// current at its start, and replaying that WAL over those tables yields
// every synced batch. pebble.WithFlushedWAL also syncs an empty log record
// first, so that a write committed without Sync before the call (the store
// makes none today) would be in the copy too. Batches committed during the
// call are each in the copy whole or not at all, in commit order.
//
// The copy is first written to dir+".partial" and renamed to dir once
// Pebble has synced it, then the rename is synced: a directory under its
// final name is always a complete backup, and a crash during the copy
// leaves only the ".partial" one, which Backup refuses to reuse.
//
// The store must be on the disk (Options.FS nil or vfs.Default): the copy
// is written through the store's file system but named, renamed and
// measured on the disk.
func (s *Store) Backup(dir string) (BackupInfo, error) {
	start := time.Now()
	info := BackupInfo{Name: filepath.Base(dir), Path: dir, CreatedAt: s.now().UTC()}
	partial := dir + backupPartialSuffix
	for _, p := range []string{dir, partial} {
		if _, err := os.Lstat(p); err == nil {
			return info, fmt.Errorf("storage: backup to %s: %w: %s", dir, ErrBackupExists, filepath.Base(p))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return info, fmt.Errorf("storage: backup to %s: %w", dir, err)
		}
	}
	if err := s.db.Checkpoint(partial, pebble.WithFlushedWAL()); err != nil {
		return info, fmt.Errorf("storage: backup to %s: checkpoint: %w", dir, err)
	}
	if _, err := os.Stat(partial); err != nil {
		// Checkpoint wrote through another vfs.FS (a test's memory FS).
		return info, fmt.Errorf("storage: backup to %s: the copy is not on the disk: %w", dir, err)
	}
	if err := os.Rename(partial, dir); err != nil {
		return info, fmt.Errorf("storage: backup to %s: %w", dir, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return info, fmt.Errorf("storage: backup to %s: sync parent: %w", dir, err)
	}
	n, err := dirBytes(dir)
	if err != nil {
		return info, fmt.Errorf("storage: backup to %s: %w", dir, err)
	}
	info.Bytes = n
	info.Duration = time.Since(start)
	s.log.Info("backup written", "dir", dir, "bytes", n, "duration", info.Duration.Round(time.Millisecond))
	return info, nil
}

// VerifyBackup opens the backup in dir read-only (Options.ReadOnly: nothing
// in it is changed, not even a lock file; its WAL is replayed in memory)
// and runs Check on it. Its cost is Check's: one pass over every record.
func VerifyBackup(ctx context.Context, dir string) error {
	v, err := Open(dir, Options{ReadOnly: true, CacheBytes: backupVerifyCacheBytes})
	if err != nil {
		return fmt.Errorf("storage: verify backup %s: %w", dir, err)
	}
	err = v.Check(ctx)
	if cerr := v.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("storage: verify backup %s: %w", dir, err)
	}
	return nil
}

// BackupsOptions configures NewBackups.
type BackupsOptions struct {
	// Dir holds one subdirectory per backup; it is created on the first
	// backup. Required.
	Dir string
	// Registerer, when not nil, receives the backup metrics
	// (ocs_storage_backup*).
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
	// Now names backups; nil means time.Now.
	Now func() time.Time
}

// Backups takes backups of a store into one directory, one at a time, and
// lists them. Its methods are safe from any goroutine.
type Backups struct {
	s   *Store
	dir string
	log *slog.Logger
	now func() time.Time
	m   *backupMetrics // nil: no metrics
	// running admits one Take at a time; a second gets ErrBackupInProgress
	// instead of waiting behind a copy that may take minutes.
	running sync.Mutex
	// beforeCheckpoint, when set by a test, runs inside Take after the
	// directory is named: a backup held in flight.
	beforeCheckpoint func()
}

// NewBackups returns the backups of s in o.Dir. It reads the directory once
// to set the last-success metric from the newest backup there, so that a
// restart does not make an old backup look fresh or hide that there is
// none; a directory that does not exist yet is no error.
func NewBackups(s *Store, o BackupsOptions) (*Backups, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("storage: backups: %w: no directory", ErrInvalid)
	}
	b := &Backups{s: s, dir: filepath.Clean(o.Dir), log: o.Logger, now: o.Now}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if o.Registerer != nil {
		b.m = newBackupMetrics(o.Registerer)
	}
	list, err := b.List()
	switch {
	case err != nil:
		// Not fatal: charging goes on, and Take reports the problem.
		b.log.Warn("cannot read the backup directory", "dir", b.dir, "err", err)
	case len(list) > 0 && b.m != nil:
		b.m.last.Set(float64(list[0].CreatedAt.Unix()))
	}
	if err == nil && len(list) == 0 {
		b.log.Info("no backup found", "dir", b.dir)
	}
	return b, nil
}

// Dir returns the backup directory.
func (b *Backups) Dir() string { return b.dir }

// Take backs the store up into a new subdirectory named after the current
// UTC second, verifies the copy (VerifyBackup) and returns it. A backup
// that fails verification is renamed with the suffix ".invalid" (".partial"
// if ctx ended the verification) and reported as an error: only verified
// backups are listed. ErrBackupInProgress: another Take runs.
func (b *Backups) Take(ctx context.Context) (BackupInfo, error) {
	if !b.running.TryLock() {
		b.m.observe("busy", 0, time.Time{})
		return BackupInfo{}, ErrBackupInProgress
	}
	defer b.running.Unlock()
	start := time.Now()
	info, err := b.take(ctx)
	if err != nil {
		b.m.observe("error", 0, time.Time{})
		b.log.Error("backup failed", "dir", b.dir, "err", err)
		return info, err
	}
	info.Duration = time.Since(start)
	b.m.observe("ok", info.Duration, info.CreatedAt)
	b.log.Info("backup verified", "path", info.Path, "bytes", info.Bytes, "duration", info.Duration.Round(time.Millisecond))
	return info, nil
}

func (b *Backups) take(ctx context.Context) (BackupInfo, error) {
	if err := os.MkdirAll(b.dir, 0o750); err != nil {
		return BackupInfo{}, fmt.Errorf("%w: %w", ErrBackupDir, err)
	}
	createdAt := b.now().UTC()
	base := createdAt.Format(BackupNameLayout)
	name := ""
	for i := 1; i <= backupSuffixMax && name == ""; i++ {
		n := base
		if i > 1 {
			n += "-" + strconv.Itoa(i)
		}
		if !exists(filepath.Join(b.dir, n)) && !exists(filepath.Join(b.dir, n+backupPartialSuffix)) &&
			!exists(filepath.Join(b.dir, n+backupInvalidSuffix)) {
			name = n
		}
	}
	if name == "" {
		return BackupInfo{}, fmt.Errorf("%w: %d backups named %s already", ErrBackupDir, backupSuffixMax, base)
	}
	if b.beforeCheckpoint != nil {
		b.beforeCheckpoint()
	}
	path := filepath.Join(b.dir, name)
	info, err := b.s.Backup(path)
	// The name's clock, so that List reads back the same second.
	info.CreatedAt = createdAt
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w: %w", ErrBackupDir, err)
		}
		return info, err
	}
	if err := VerifyBackup(ctx, path); err != nil {
		aside := path + backupInvalidSuffix
		if ctx.Err() != nil {
			aside = path + backupPartialSuffix // not proven bad: interrupted
		}
		if rerr := os.Rename(path, aside); rerr != nil {
			b.log.Error("cannot set an unverified backup aside", "path", path, "err", rerr)
		}
		return info, err
	}
	return info, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// List returns up to BackupListMax backups of the directory, newest first:
// its subdirectories named by BackupNameLayout (with an optional "-N"),
// so neither an interrupted nor an invalid backup is listed. A directory
// that does not exist yet holds no backup.
func (b *Backups) List() ([]BackupInfo, error) {
	entries, err := os.ReadDir(b.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBackupDir, err)
	}
	type named struct {
		info   BackupInfo
		suffix int
	}
	var found []named
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		t, suffix, ok := parseBackupName(e.Name())
		if ok {
			found = append(found, named{BackupInfo{Name: e.Name(), Path: filepath.Join(b.dir, e.Name()), CreatedAt: t}, suffix})
		}
	}
	slices.SortFunc(found, func(x, y named) int {
		if c := y.info.CreatedAt.Compare(x.info.CreatedAt); c != 0 {
			return c
		}
		return y.suffix - x.suffix
	})
	found = found[:min(len(found), BackupListMax)]
	out := make([]BackupInfo, len(found))
	for i := range found {
		out[i] = found[i].info
		if out[i].Bytes, err = dirBytes(out[i].Path); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBackupDir, err)
		}
	}
	return out, nil
}

// parseBackupName reads "20261122T041500Z" or "20261122T041500Z-2".
func parseBackupName(name string) (t time.Time, suffix int, ok bool) {
	stamp, rest, hasSuffix := strings.Cut(name, "-")
	suffix = 1
	if hasSuffix {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 2 || n > backupSuffixMax || rest != strconv.Itoa(n) {
			return t, 0, false
		}
		suffix = n
	}
	if len(stamp) != len(BackupNameLayout) {
		return t, 0, false
	}
	t, err := time.Parse(BackupNameLayout, stamp)
	if err != nil {
		return t, 0, false
	}
	return t, suffix, true
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	return n, err
}

// syncDir fsyncs a directory, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// backupMetrics are the backup metrics, observed once per Take.
type backupMetrics struct {
	results  *prometheus.CounterVec
	duration prometheus.Histogram
	last     prometheus.Gauge
}

func newBackupMetrics(r prometheus.Registerer) *backupMetrics {
	m := &backupMetrics{
		results: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocs_storage_backups_total",
			Help: "Backups requested, by result: ok (written and verified), error (logged), busy (refused: another backup was running).",
		}, []string{"result"})),
		duration: register(r, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ocs_storage_backup_duration_seconds",
			Help: "Time of one successful backup: checkpoint and verification.",
			// A checkpoint links tables and copies the WAL (well under a
			// second); verification reads every record: seconds on a
			// small store, minutes on tens of millions of accounts.
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms .. 43 min
		})),
		last: register(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ocs_storage_backup_last_success_timestamp_seconds",
			Help: "Unix time at which the newest backup in the backup directory was started (0: none yet); set at start from the directory.",
		})),
	}
	for _, res := range []string{"ok", "error", "busy"} {
		m.results.WithLabelValues(res)
	}
	return m
}

// observe counts one Take; m may be nil (no metrics).
func (m *backupMetrics) observe(result string, d time.Duration, createdAt time.Time) {
	if m == nil {
		return
	}
	m.results.WithLabelValues(result).Inc()
	if result == "ok" {
		m.duration.Observe(d.Seconds())
		m.last.Set(float64(createdAt.Unix()))
	}
}
