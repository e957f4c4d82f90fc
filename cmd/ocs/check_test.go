package main

import (
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

	// A voucher credit no card names: what a card credited twice leaves.
	store, err := storage.Open(dir, storage.Options{})
	require.NoError(t, err)
	id, err := charging.ParseMSISDN("044123456")
	require.NoError(t, err)
	a, _, err := store.LoadAccount(id)
	require.NoError(t, err)
	cfg := charging.DemoConfig()
	cmd := charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: "V/forged", Subscriber: id, Amount: charging.Euros(5)}
	_, eff := a.Apply(&cfg, &cmd, time.Now())
	require.NoError(t, store.Commit([]charging.Change{{Account: a, Entry: eff.Entry}}))
	require.NoError(t, store.Close())
	out, err = run("--data", dir)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, out)
	require.Equal(t, 1, exit.ExitCode())
	require.True(t, strings.Contains(out, "inconsistent") && strings.Contains(out, "voucher credits"), out)
}
