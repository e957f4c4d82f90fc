package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runOCS runs the ocs binary to its end (bounded: a serve that does not
// refuse would listen forever) and returns its output and exit code.
func runOCS(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ocsBinary(t), args...)
	cmd.Env = append(os.Environ(), "OCS_BOOTSTRAP_KEY="+testOpsKey)
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "ocs %v did not exit: %s", args, out)
	if err != nil {
		exit, ok := err.(*exec.ExitError)
		require.True(t, ok, "ocs %v: %v", args, err)
		return string(out), exit.ExitCode()
	}
	return string(out), 0
}

// generateDefault generates a batch with the data directory's demo
// secret (no --secret-file), as the README's fresh-clone walkthrough does.
func generateDefault(t *testing.T, dir string, batch int) (string, int) {
	out := filepath.Join(t.TempDir(), fmt.Sprintf("batch%d.csv", batch))
	return runOCS(t, "vouchers", "generate", "--data", dir, "--out", out,
		"--batch", fmt.Sprint(batch), "--count", "2", "--value", "5", "--expiry", "2099-12-31")
}

// A data directory whose database holds scratch cards and whose demo
// secret is gone (a restore: backups never hold it; a deleted file) is
// refused by ocs serve and ocs vouchers generate, with a message that says
// what to do, and no new secret is made up. A fresh directory still starts
// on the demo defaults and creates its secret, and the cards generated
// with it are redeemable by the engine that created it.
func TestVoucherSecretNotReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // not there yet: a fresh clone
	key := filepath.Join(dir, defaultSecretName)
	s := startServer(t, dir)
	info, err := os.Stat(key)
	require.NoError(t, err, "a fresh directory gets a demo secret")
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	s.stop()
	want, err := os.ReadFile(key)
	require.NoError(t, err)

	out, code := generateDefault(t, dir, 1)
	require.Zero(t, code, out)
	got, err := os.ReadFile(key)
	require.NoError(t, err)
	require.Equal(t, want, got, "generate used the engine's secret")

	require.NoError(t, os.Remove(key))
	out, code = runOCS(t, "serve", "--data", dir, "--listen", freePort(t))
	require.NotZero(t, code, out)
	require.Contains(t, out, "voucher secret lost: "+key+" is missing, but the database in "+dir+" holds scratch cards")
	require.Contains(t, out, "Restore the secret file from its own backup to "+key+", or point --voucher-secret at it")
	require.NoFileExists(t, key, "no new secret over a database with cards")

	out, code = generateDefault(t, dir, 2)
	require.NotZero(t, code, out)
	require.Contains(t, out, "voucher secret lost")
	require.Contains(t, out, "point --secret-file at it")
	require.NoFileExists(t, key)

	// An explicit path that does not exist says so; nothing is created.
	missing := filepath.Join(t.TempDir(), "voucher.key")
	out, code = runOCS(t, "serve", "--data", dir, "--listen", freePort(t), "--voucher-secret", missing)
	require.NotZero(t, code, out)
	require.Contains(t, out, "voucher secret "+missing+" does not exist: restore it from its own backup, or point --voucher-secret at")
	require.NoFileExists(t, missing)
	require.NoFileExists(t, key)

	// A secret file that is not the one the cards were generated with (a
	// wrong backup, another installation's) is refused: under it every
	// card would be a "wrong code".
	other := writeSecret(t)
	out, code = runOCS(t, "serve", "--data", dir, "--listen", freePort(t), "--voucher-secret", other)
	require.NotZero(t, code, out)
	require.Contains(t, out, "the voucher secret is none of those this database's cards were generated under: is --voucher-secret the file")

	// The secret put back: the engine starts again.
	require.NoError(t, os.WriteFile(key, want, 0o600))
	startServer(t, dir).stop()
}

// ocs vouchers generate on a fresh directory creates the demo secret under
// the same rule, and ocs serve then redeems its cards with it.
func TestVoucherSecretCreatedByGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	file := filepath.Join(t.TempDir(), "batch1.csv")
	out, code := runOCS(t, "vouchers", "generate", "--data", dir, "--out", file,
		"--batch", "1", "--count", "1", "--value", "5", "--expiry", "2099-12-31")
	require.Zero(t, code, out)
	require.FileExists(t, filepath.Join(dir, defaultSecretName))
	cards := readCards(t, file)

	s := startServer(t, dir)
	s.provisionSub("044123456", "1")
	net := s.issueKey("network")
	require.Contains(t, s.last(net, "044123456", redeem(cards[0].code)), "END Mbushja u krye: +5.00 EUR")
	s.stop()
}

// readCards reads the codes of a generated batch's CSV.
func readCards(t *testing.T, path string) []card {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	var cards []card
	for _, r := range rows[1:] {
		cards = append(cards, card{serial: r[0], code: r[1]})
	}
	return cards
}
