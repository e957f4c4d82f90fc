package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// backupView is a backup as POST /v1/backups answers it.
type backupView struct {
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	CreatedAt  time.Time `json:"createdAt"`
	Bytes      int64     `json:"bytes"`
	DurationMs int64     `json:"durationMs"`
}

// entryView is a history entry with what the backup test compares.
type entryView struct {
	ID           string `json:"id"`
	Seq          uint64 `json:"seq"`
	Kind         string `json:"kind"`
	Amount       string `json:"amount"`
	BalanceAfter string `json:"balanceAfter"`
	Reference    string `json:"reference"`
}

// entries returns msisdn's whole history, oldest first.
func (s *server) entries(msisdn string) []entryView {
	var h struct {
		Transactions []entryView `json:"transactions"`
	}
	code, err := s.call("GET", "/v1/subscribers/"+msisdn+"/transactions?limit=1000", testOpsKey, "", nil, &h)
	require.NoError(s.t, err)
	require.Equal(s.t, 200, code)
	out := h.Transactions
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// TestBackupWhileCharging takes a backup over HTTP while workers charge
// and top up, then proves the backup is what an operator restores: `ocs
// check` passes on it, and an engine started on a copy of it holds every
// operation acknowledged before the backup was asked for, in the order the
// live engine committed them, with balances that sum to its ledger.
func TestBackupWhileCharging(t *testing.T) {
	const (
		subscribers = 24
		workers     = 4  // each owns subscribers/workers subscribers
		opsPerSub   = 12 // bounded: 288 operations in all
		backupAfter = 96 // acknowledged operations before the backup
	)
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	s := startServerWith(t, data, nil, "--backup-dir", backups)
	channel, network := s.issueKey("channel"), s.issueKey("network")
	msisdn := func(i int) string { return strconv.Itoa(38349300000 + i) }
	for i := range subscribers {
		s.provisionSub(msisdn(i), "20")
	}

	var code int
	var err error
	code, err = s.call("POST", "/v1/backups", network, "", nil, nil)
	require.NoError(t, err)
	require.Equal(t, 403, code, "the network role takes no backup")
	var list struct{ Backups []backupView }
	code, err = s.call("GET", "/v1/backups", testOpsKey, "", nil, &list)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Empty(t, list.Backups)

	acked := make([]atomic.Int64, subscribers) // operations answered 2xx, per subscriber
	var total atomic.Int64
	failures := make(chan string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range opsPerSub {
				for sub := w; sub < subscribers; sub += workers {
					key := fmt.Sprintf("op-%d-%d", sub, n)
					var ok bool
					if n%4 == 3 {
						code, err := s.call("POST", "/tmf-api/prepayBalanceManagement/v4/topupBalance", channel, key, topUpBody(msisdn(sub), "1.00"), nil)
						ok = err == nil && code == 201
					} else {
						var out nchfAnswer
						code, err := s.call("POST", "/nchf-convergedcharging/v3/chargingdata", network, key, smsBody(msisdn(sub)), &out)
						ok = err == nil && code == 201 && len(out.MultipleUnitInformation) == 1 && out.MultipleUnitInformation[0].ResultCode == "SUCCESS"
					}
					if !ok {
						failures <- key
						return
					}
					acked[sub].Add(1)
					total.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for total.Load() < backupAfter && time.Now().Before(deadline) && len(failures) == 0 {
		time.Sleep(time.Millisecond)
	}
	require.Empty(t, failures)
	require.GreaterOrEqual(t, total.Load(), int64(backupAfter), "the load did not progress")
	before := make([]int64, subscribers) // acknowledged before the request was sent
	for i := range before {
		before[i] = acked[i].Load()
	}
	var bk backupView
	start := time.Now()
	code, err = s.call("POST", "/v1/backups", testOpsKey, "", nil, &bk)
	took := time.Since(start)
	atBackupEnd := total.Load()
	require.NoError(t, err)
	require.Equal(t, 201, code)
	wg.Wait()
	close(failures)
	for key := range failures {
		t.Fatalf("operation %s was not acknowledged", key)
	}
	t.Logf("backup %s: %d bytes, %d ms on the server (%v round trip), %d operations acknowledged before, %d when it ended, of %d",
		bk.Name, bk.Bytes, bk.DurationMs, took.Round(time.Millisecond), backupAfter, atBackupEnd, subscribers*opsPerSub)
	require.Equal(t, filepath.Join(backups, bk.Name), bk.Path)
	require.Positive(t, bk.Bytes)
	require.WithinDuration(t, start, bk.CreatedAt, 2*time.Second)
	require.Less(t, atBackupEnd, int64(subscribers*opsPerSub), "the load must outlast the backup, or the test proves nothing")

	code, err = s.call("GET", "/v1/backups", testOpsKey, "", nil, &list)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.Len(t, list.Backups, 1)
	require.Equal(t, bk.Name, list.Backups[0].Name)
	require.Equal(t, bk.Bytes, list.Backups[0].Bytes)

	live := make([][]entryView, subscribers)
	for i := range live {
		live[i] = s.entries(msisdn(i))
		require.Len(t, live[i], 1+opsPerSub, "provision and every operation")
	}
	s.stop()

	out, err := exec.Command(ocsBinary(t), "check", "--data", bk.Path).CombinedOutput()
	require.NoError(t, err, "ocs check on the backup: %s", out)
	require.Contains(t, string(out), "consistent: "+strconv.Itoa(subscribers)+" accounts")

	restored := filepath.Join(root, "restored")
	copyTree(t, bk.Path, restored)
	r := startServer(t, restored)
	var sum charging.Amount
	inBackup := 0
	for i := range subscribers {
		got := r.entries(msisdn(i))
		require.GreaterOrEqual(t, int64(len(got)), 1+before[i], "%s lost an operation acknowledged before the backup", msisdn(i))
		require.Equal(t, live[i][:len(got)], got, "%s: the backup holds a prefix of what the engine committed", msisdn(i))
		v := r.subscriber(msisdn(i))
		require.Equal(t, got[len(got)-1].BalanceAfter, v.Balance, msisdn(i))
		sum += mustAmount(t, v.Balance)
		inBackup += len(got) - 1
	}
	owed, accounts := r.ledger()
	require.Equal(t, uint64(subscribers), accounts)
	require.Equal(t, sum.String(), owed, "the ledger is the sum of the balances")
	t.Logf("%d operations in the backup", inBackup)
	r.stop()
}

// copyTree copies the regular files of src into a new directory dst: what
// an operator's cp -a does for a restore.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			_ = out.Close()
			return err
		}
		return out.Close()
	}))
}

func TestBackupDirOf(t *testing.T) {
	for _, c := range []struct{ flag, file, data, want string }{
		{"", "", "./data", "data-backups"},
		{"", "", "/var/lib/ocs/", "/var/lib/ocs-backups"},
		{"", "/srv/bk", "/var/lib/ocs", "/srv/bk"},
		{"/mnt/bk", "/srv/bk", "/var/lib/ocs", "/mnt/bk"},
		{"../bk", "", "data", "../bk"},
		{"/var/lib/..ocs", "", "/var/lib/ocs", "/var/lib/..ocs"},
	} {
		got, err := backupDirOf(c.flag, c.file, c.data)
		require.NoError(t, err, "%+v", c)
		require.Equal(t, c.want, got, "%+v", c)
	}
	for _, c := range []struct{ flag, file, data string }{
		{"/var/lib/ocs", "", "/var/lib/ocs"},
		{"/var/lib/ocs/backups", "", "/var/lib/ocs"},
		{"", "data/bk", "./data"},
		{"data/../data/x", "", "data"},
	} {
		_, err := backupDirOf(c.flag, c.file, c.data)
		require.ErrorContains(t, err, "inside the data directory", "%+v", c)
	}

	path := filepath.Join(t.TempDir(), "ocs.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"backupDir":"/srv/ocs-backups"}`), 0o600))
	c, err := loadConfig(path)
	require.NoError(t, err)
	require.Equal(t, "/srv/ocs-backups", c.backup)
	_, err = parseServeFlags([]string{"--backup-dir", "/x"})
	require.NoError(t, err)
}
