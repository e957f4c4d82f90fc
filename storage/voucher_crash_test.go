package storage

import (
	crand "crypto/rand"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// A redemption's mark is written without fsync, because the credit that
// follows is a synced batch later in the same write-ahead log. After a power
// loss the mark must be there whenever the credit is; when no synced write
// followed it, losing it is allowed and leaves the card active, never used
// without a credit.
func TestRedemptionMarkIsDurableWithTheCredit(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, v := vchOpen(t, "db", fs)
	rows := vchGenerate(t, v, 1, 2, crand.Reader)
	const beneficiary = charging.SubscriberID(38349000001)

	// Card 0: mark, then a synced credit, as the engine makes it.
	r, err := v.Redeem(rows[0].code, beneficiary, beneficiary, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r.Result)
	cfg := charging.DemoConfig()
	a, _, eff := charging.NewAccount(&cfg, &charging.Command{Kind: charging.KindProvision, Subscriber: beneficiary}, vchNow)
	require.NoError(t, s.Commit([]charging.Change{{Account: a, Entry: eff.Entry, Created: true}}))
	// Card 1: marked, and then the power fails before any synced write.
	r1, err := v.Redeem(rows[1].code, beneficiary, beneficiary, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r1.Result)

	image := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	require.NoError(t, s.Close())
	s2, v2 := vchOpen(t, "db", image)
	defer s2.Close()

	_, rec, err := v2.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherUsed, rec.State, "the synced write after the mark made it durable")
	pending, err := v2.Pending(nil, 10)
	require.NoError(t, err)
	pendingOf := map[VoucherHash]bool{}
	for _, p := range pending {
		pendingOf[p.Hash] = true
	}
	require.True(t, pendingOf[r.Hash], "card 0 awaits its credit's completion")

	// Card 1's mark had no synced write after it: it may be lost (the card
	// is active again) or kept, but a used card always has its pending
	// credit, so recovery credits it.
	_, rec, err = v2.BySerial(rows[1].serial)
	require.NoError(t, err)
	switch rec.State {
	case charging.VoucherActive:
		require.False(t, pendingOf[r1.Hash], "an active card has no pending credit")
	case charging.VoucherUsed:
		require.True(t, pendingOf[r1.Hash], "a used card without its pending credit would be burned for nothing")
	default:
		t.Fatalf("card 1 is %v", rec.State)
	}
}
