package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/storage"
)

// ocs check passes a database a real engine wrote (a card redeemed, a
// charge, a top-up), refuses while the engine holds it and when the
// directory is missing, and fails with exit status 1 once a voucher credit
// that no card accounts for is written behind the engine's back.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	secret := writeSecret(t)
	cards := generate(t, dir, secret, 1, 2, 5)
	s := startServerWith(t, dir, nil, "--voucher-secret", secret)
	s.provisionSub("044123456", "1")
	net := s.issueKey("network")
	require.Contains(t, s.last(net, "044123456", redeem(cards[0].code)), "END Mbushja u krye: +5.00 EUR")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(ocsBinary(t), append([]string{"check"}, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := run("--data", dir)
	require.Error(t, err, "the serving engine holds the database: %s", out)
	s.stop()

	out, err = run("--data", dir)
	require.NoError(t, err, out)
	require.Contains(t, out, "consistent: 1 accounts, 6.00 EUR owed")

	out, err = run("--data", filepath.Join(dir, "missing"))
	require.Error(t, err)
	require.Contains(t, out, "no such file or directory")

	plantForgedCredit(t, dir, "044123456")
	out, err = run("--data", dir)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, out)
	require.Equal(t, 1, exit.ExitCode())
	require.True(t, strings.Contains(out, "inconsistent") && strings.Contains(out, "voucher credits"), out)

	// A directory that holds no database is refused, not checked as an
	// empty one (an open for writing would have made one in it).
	empty := t.TempDir()
	out, err = run("--data", empty)
	require.Error(t, err)
	require.Contains(t, out, "holds no database")
	names, err := os.ReadDir(empty)
	require.NoError(t, err)
	require.Empty(t, names)
}

// plantForgedCredit writes, behind the engine's back, a voucher credit no
// card names: what a card credited twice leaves.
func plantForgedCredit(t *testing.T, dir, msisdn string) {
	t.Helper()
	store, err := storage.Open(dir, storage.Options{})
	require.NoError(t, err)
	id, err := charging.ParseMSISDN(msisdn)
	require.NoError(t, err)
	a, _, err := store.LoadAccount(id)
	require.NoError(t, err)
	cfg := charging.DemoConfig()
	cmd := charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: "V/forged", Subscriber: id, Amount: charging.Euros(5)}
	_, eff := a.Apply(&cfg, &cmd, time.Now())
	require.NoError(t, store.Commit([]charging.Change{{Account: a, Entry: eff.Entry}}))
	require.NoError(t, store.Close())
}

// fileState is what ocs check must not change about a file.
type fileState struct {
	size    int64
	mode    os.FileMode
	modTime time.Time
}

// dirState maps every path under dir (dir itself as ".") to its state.
func dirState(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	m := make(map[string]fileState)
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		m[rel] = fileState{size: info.Size(), mode: info.Mode(), modTime: info.ModTime()}
		return nil
	}))
	return m
}

// ocs check reads and never writes what it checks: a directory a SIGKILL
// left with its last writes only in the write-ahead log, a backup (which
// has no LOCK file), and a database with a planted violation keep every
// file name, size, mode and modification time, while check still counts
// what only the log holds and still finds the violation.
func TestCheckChangesNothing(t *testing.T) {
	root := t.TempDir()
	dir, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	s := startServerWith(t, dir, nil, "--voucher-secret", writeSecret(t), "--backup-dir", backups)
	s.provisionSub("044123456", "3")
	var bk struct{ Path string }
	code, err := s.call("POST", "/v1/backups", testOpsKey, "", nil, &bk)
	require.NoError(t, err)
	require.Equal(t, 201, code)
	s.provisionSub("044123457", "4") // after the backup: only in the live log
	// While the engine runs, check refuses: what it would read is changing.
	live, err := exec.Command(ocsBinary(t), "check", "--data", dir).CombinedOutput()
	require.Error(t, err, "%s", live)
	require.Contains(t, string(live), "is in use (is ocs serve running on it?)")
	s.provisionSub("044123458", "0") // the engine's lock still holds
	s.kill()

	var logBytes int64
	for name, st := range dirState(t, dir) {
		if filepath.Ext(name) == ".log" {
			logBytes += st.size
		}
	}
	require.Positive(t, logBytes, "the killed engine left its last writes in the write-ahead log")

	checkUnchanged := func(dir string) (string, error) {
		t.Helper()
		before := dirState(t, dir)
		out, err := exec.Command(ocsBinary(t), "check", "--data", dir).CombinedOutput()
		require.Equal(t, before, dirState(t, dir), "ocs check changed %s: %s", dir, out)
		return string(out), err
	}
	out, err := checkUnchanged(dir)
	require.NoError(t, err, out)
	require.Contains(t, out, "consistent: 3 accounts, 7.00 EUR owed")

	out, err = checkUnchanged(bk.Path)
	require.NoError(t, err, out)
	require.Contains(t, out, "consistent: 1 accounts, 3.00 EUR owed")
	// A checkpoint has no LOCK file, and neither the backup's verification
	// nor check made one.
	require.NoFileExists(t, filepath.Join(bk.Path, "LOCK"))

	plantForgedCredit(t, dir, "044123456")
	out, err = checkUnchanged(dir)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, out)
	require.Equal(t, 1, exit.ExitCode())
	require.Contains(t, out, "voucher credits")
}
