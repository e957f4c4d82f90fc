package storage

import (
	"context"
	crand "crypto/rand"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// A card becomes used in the batch of its credit. Whatever a power loss
// keeps of batches that were applied but not yet synced, a card is used if
// and only if its credit is in the journal, with that credit's Seq: never
// burned without a credit, never credited and still active.
func TestRedemptionCardAndCreditAreOneBatch(t *testing.T) {
	const cards = 12
	for seed := range uint64(8) {
		fs := vfs.NewCrashableMem()
		s, v := vchOpen(t, "db", fs)
		rows := vchGenerate(t, v, 1, cards, crand.Reader)
		const beneficiary = charging.SubscriberID(38349000001)
		e := newVchEngine(t, s)
		e.provision(beneficiary)

		// The first cards are credited and acknowledged (synced); the rest
		// are applied as the committer applies a batch, and the power fails
		// before their fsync.
		acked := cards / 2
		for i, row := range rows {
			r, err := v.Redeem(row.code, beneficiary, beneficiary, vchNow)
			require.NoError(t, err)
			require.Equal(t, charging.VoucherOK, r.Result)
			if i < acked {
				require.Equal(t, charging.ResultOK, e.credit(&r).Result)
				continue
			}
			c, out, _ := e.change(&r)
			require.Equal(t, charging.ResultOK, out.Result)
			p, err := s.Apply([]charging.Change{c})
			require.NoError(t, err)
			_ = p // never waited for: the power fails first
			r.Release()
		}
		rng := rand.New(rand.NewPCG(seed, 3))
		image := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		require.NoError(t, s.Close())

		s2, v2 := vchOpen(t, "db", image)
		hist, err := s2.History(beneficiary, 0, 100)
		require.NoError(t, err)
		credits := map[uint64]bool{}
		for _, en := range hist {
			if en.Channel == charging.ChannelVoucher {
				credits[en.Seq] = true
			}
		}
		used := 0
		for i, row := range rows {
			_, rec, err := v2.BySerial(row.serial)
			require.NoError(t, err)
			switch rec.State {
			case charging.VoucherUsed:
				used++
				require.True(t, credits[rec.CreditSeq], "seed %d card %d: used without its credit %d", seed, i, rec.CreditSeq)
			case charging.VoucherActive:
				require.GreaterOrEqual(t, i, acked, "seed %d card %d: an acknowledged redemption was lost", seed, i)
			default:
				t.Fatalf("seed %d card %d is %v", seed, i, rec.State)
			}
		}
		require.Equal(t, len(credits), used, "seed %d: a credit without its card used", seed)
		pending, err := v2.Pending(nil, 100)
		require.NoError(t, err)
		require.Empty(t, pending, "the one-batch protocol leaves no marker")
		require.NoError(t, s2.Check(context.Background()), "seed %d", seed)
		require.NoError(t, s2.Close())
	}
}
