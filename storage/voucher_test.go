package storage

import (
	"bytes"
	"encoding/csv"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

var vchNow = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

func vchSecret(b byte) []byte { return bytes.Repeat([]byte{b}, VoucherSecretBytesMin) }

func vchOpen(t testing.TB, dir string, fs vfs.FS, secrets ...[]byte) (*Store, *Vouchers) {
	t.Helper()
	s, err := Open(dir, Options{FS: fs})
	require.NoError(t, err)
	if len(secrets) == 0 {
		secrets = [][]byte{vchSecret(7)}
	}
	v, err := NewVouchers(s, secrets, charging.DefaultGuardPolicy())
	require.NoError(t, err)
	return s, v
}

type vchRow struct {
	serial uint64
	code   charging.VoucherCode
}

func vchGenerate(t testing.TB, v *Vouchers, batch uint32, n int, src io.Reader) []vchRow {
	t.Helper()
	var out bytes.Buffer
	calls := 0
	b, err := v.Generate(GenerateOptions{Batch: batch, Count: n, Value: charging.Euros(10), Expiry: vchNow.Add(365 * 24 * time.Hour),
		Now: vchNow, Rand: src, Progress: func(done, total int) { calls++; require.Equal(t, n, total); require.LessOrEqual(t, done, n) }}, &out)
	require.NoError(t, err)
	require.Equal(t, uint32(n), b.Count)
	require.Positive(t, calls)
	recs, err := csv.NewReader(&out).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"serial", "code", "value", "batch", "expiry"}, recs[0])
	rows := make([]vchRow, 0, n)
	for _, r := range recs[1:] {
		c, err := charging.ParseVoucherCode(r[1])
		require.NoError(t, err)
		serial, err := strconv.ParseUint(r[0], 10, 64)
		require.NoError(t, err)
		require.Equal(t, "10.00", r[2])
		require.Equal(t, strconv.Itoa(int(batch)), r[3])
		require.Equal(t, "2027-04-01", r[4])
		rows = append(rows, vchRow{serial, c})
	}
	require.Len(t, rows, n)
	return rows
}

func TestVoucherGenerateNeverStoresClearCodes(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem())
	defer s.Close()
	rows := vchGenerate(t, v, 1, 3000, nil)
	seen := map[charging.VoucherCode]bool{}
	for _, r := range rows {
		require.False(t, seen[r.code], "duplicate code in batch")
		seen[r.code] = true
	}
	// No key or value anywhere in the database contains a clear code.
	it, err := s.db.NewIter(nil)
	require.NoError(t, err)
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		for _, r := range rows[:50] {
			require.False(t, bytes.Contains(it.Key(), r.code[:]) || bytes.Contains(it.Value(), r.code[:]))
		}
		n++
	}
	require.NoError(t, it.Close())
	require.GreaterOrEqual(t, n, 2*len(rows))
	// Every card is findable by its serial and active.
	_, rec, err := v.BySerial(rows[42].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherActive, rec.State)
	require.Equal(t, charging.Euros(10), rec.Value)
	// A batch number is used once.
	_, err = v.Generate(GenerateOptions{Batch: 1, Count: 1, Value: charging.Euros(5), Expiry: vchNow.Add(time.Hour), Now: vchNow}, io.Discard)
	require.ErrorIs(t, err, ErrVoucherBatchExists)
}

func TestVoucherGenerateRefusesBadOptions(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem())
	defer s.Close()
	for _, o := range []GenerateOptions{
		{Batch: 2, Count: 0, Value: charging.Euros(5), Expiry: vchNow.Add(time.Hour), Now: vchNow},
		{Batch: 2, Count: GenerateCountMax + 1, Value: charging.Euros(5), Expiry: vchNow.Add(time.Hour), Now: vchNow},
		{Batch: 2, Count: 1, Value: charging.Euros(7), Expiry: vchNow.Add(time.Hour), Now: vchNow},
		{Batch: 2, Count: 1, Value: charging.Euros(5), Expiry: vchNow, Now: vchNow},
	} {
		_, err := v.Generate(o, io.Discard)
		require.ErrorIs(t, err, ErrGenerate)
	}
	_, err := NewVouchers(s, [][]byte{[]byte("short")}, charging.DefaultGuardPolicy())
	require.ErrorIs(t, err, ErrVoucherSecret)
}

// repeatReader yields the same 8 bytes reps times, then counts up: the
// generator must draw again on every duplicate.
type repeatReader struct {
	reps, i int
	next    uint64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := len(p) - len(p)%8
	for len(p) >= 8 {
		x := uint64(12345)
		if r.i >= r.reps {
			r.next++
			x = 1_000_000 + r.next
		}
		r.i++
		for j := 0; j < 8; j++ {
			p[j] = byte(x >> (8 * j))
		}
		p = p[8:]
	}
	return n, nil
}

func TestVoucherGenerateDrawsAgainOnCollision(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem())
	defer s.Close()
	a := vchGenerate(t, v, 1, 100, &repeatReader{reps: 10})
	// Same stream again: every code collides with the store until the
	// counter passes the first batch.
	b := vchGenerate(t, v, 2, 100, &repeatReader{reps: 10})
	seen := map[charging.VoucherCode]bool{}
	for _, r := range append(a, b...) {
		require.False(t, seen[r.code], "duplicate %s", r.code)
		seen[r.code] = true
	}
}

func TestVoucherRedeemLifecycle(t *testing.T) {
	dir := t.TempDir()
	s, v := vchOpen(t, dir, nil)
	rows := vchGenerate(t, v, 3, 20, nil)
	const caller, other charging.SubscriberID = 38344000001, 38349000002
	r, err := v.Redeem(rows[0].code, caller, other, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r.Result)
	require.Equal(t, other, r.Beneficiary)
	require.Equal(t, charging.Euros(10), r.Value)
	cmd := r.Command()
	require.Equal(t, charging.ChannelVoucher, cmd.Channel)
	require.Equal(t, other, cmd.Subscriber)
	require.Len(t, cmd.Key, 34)
	r2, err := v.Redeem(rows[0].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherAlreadyUsed, r2.Result)

	// The pending credit survives a reopen: recovery finds it.
	require.NoError(t, s.Close())
	s, v = vchOpen(t, dir, nil)
	defer s.Close()
	p, err := v.Pending(nil, 10)
	require.NoError(t, err)
	require.Len(t, p, 1)
	require.Equal(t, r.Hash, p[0].Hash)
	require.Equal(t, r.Command(), p[0].Command(), "a re-driven credit carries the same request key")
	require.NoError(t, v.Complete(r.Hash, 9))
	p, err = v.Pending(nil, 10)
	require.NoError(t, err)
	require.Empty(t, p)
	_, rec, err := v.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherUsed, rec.State)
	require.Equal(t, other, rec.UsedBy)
	require.Equal(t, uint64(9), rec.CreditSeq)
	require.ErrorIs(t, v.Revert(r.Hash), ErrVoucherNotPending, "a credited card cannot be reverted")

	// A refused credit reverts the card, which can then be redeemed.
	r3, err := v.Redeem(rows[1].code, caller, 38349999999, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r3.Result)
	require.NoError(t, v.Revert(r3.Hash))
	r4, err := v.Redeem(rows[1].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r4.Result)

	// Expiry.
	r5, err := v.Redeem(rows[2].code, caller, caller, vchNow.Add(365*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, charging.VoucherIsExpired, r5.Result)

	// Blocking one card by serial, then the whole batch.
	st, err := v.Block(rows[3].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherBlocked, st)
	st, err = v.Block(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherUsed, st, "a used card stays used")
	r6, err := v.Redeem(rows[3].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherIsBlocked, r6.Result)
	r7, err := v.Redeem(rows[4].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r7.Result)
	require.NoError(t, v.BlockBatch(3))
	r8, err := v.Redeem(rows[5].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherIsBlocked, r8.Result)
	require.ErrorIs(t, v.BlockBatch(99), ErrVoucherNotFound)
	_, err = v.Block(1)
	require.ErrorIs(t, err, ErrVoucherNotFound)
}

// TestVoucherConcurrentRedeemExactlyOne: many subscribers redeem one code
// at the same instant; exactly one wins, every other is told it is used.
func TestVoucherConcurrentRedeemExactlyOne(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem())
	defer s.Close()
	rows := vchGenerate(t, v, 4, 8, nil)
	const goroutines = 64
	for _, row := range rows {
		var wg sync.WaitGroup
		results := make([]charging.VoucherResult, goroutines)
		start := make(chan struct{})
		for i := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				id := charging.SubscriberID(38344000000 + i)
				r, err := v.Redeem(row.code, id, id, vchNow)
				if err != nil {
					t.Error(err)
				}
				results[i] = r.Result
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, r := range results {
			switch r {
			case charging.VoucherOK:
				wins++
			case charging.VoucherAlreadyUsed:
			default:
				t.Fatalf("unexpected result %v", r)
			}
		}
		require.Equal(t, 1, wins)
	}
	p, err := v.Pending(nil, 100)
	require.NoError(t, err)
	require.Len(t, p, len(rows), "one pending credit per card")
}

// Pending pages through the markers in hash order, each page after the
// last hash of the one before: every pending card is listed exactly once,
// whatever the page size, and a completed card never.
func TestVoucherPendingPagesAfterHash(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem())
	defer s.Close()
	rows := vchGenerate(t, v, 4, 23, nil)
	const caller charging.SubscriberID = 38344000001
	want := map[VoucherHash]bool{}
	var completed VoucherHash
	for i, row := range rows {
		r, err := v.Redeem(row.code, caller, caller, vchNow)
		require.NoError(t, err)
		require.Equal(t, charging.VoucherOK, r.Result)
		if i%4 == 0 {
			require.NoError(t, v.Complete(r.Hash, uint64(i+1)))
			completed = r.Hash
			continue
		}
		want[r.Hash] = true
	}
	pending := func(after *VoucherHash, limit int) ([]Redemption, error) { return v.Pending(after, limit) }
	hash := func(r *Redemption) VoucherHash { return r.Hash }
	less := func(a, b VoucherHash) bool { return bytes.Compare(a[:], b[:]) < 0 }
	for _, limit := range []int{1, 4, len(want), 100} {
		got := pageAll(t, limit, pending, hash, less)
		require.Len(t, got, len(want), "limit %d", limit)
		for _, h := range got {
			require.True(t, want[h], "limit %d: listed once, and only if pending", limit)
		}
	}
	// after is exclusive and need not be pending itself.
	all, err := v.Pending(nil, 100)
	require.NoError(t, err)
	page, err := v.Pending(&all[2].Hash, 1)
	require.NoError(t, err)
	require.Equal(t, all[3].Hash, page[0].Hash)
	page, err = v.Pending(&completed, 100)
	require.NoError(t, err)
	n := 0
	for _, r := range all {
		if less(completed, r.Hash) {
			require.Equal(t, r.Hash, page[n].Hash)
			n++
		}
	}
	require.Len(t, page, n)
	last := all[len(all)-1].Hash
	page, err = v.Pending(&last, 100)
	require.NoError(t, err)
	require.Empty(t, page)
}

func TestVoucherBruteForceBar(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem())
	defer s.Close()
	rows := vchGenerate(t, v, 5, 2, nil)
	const guesser charging.SubscriberID = 38344123456
	wrong, _ := charging.ParseVoucherCode("0000000000000000")
	for i := range 4 {
		r, err := v.Redeem(wrong, guesser, guesser, vchNow.Add(time.Duration(i)*time.Hour))
		require.NoError(t, err)
		require.Equal(t, charging.VoucherUnknown, r.Result)
		require.Zero(t, r.BarredUntil)
	}
	fifth := vchNow.Add(23 * time.Hour)
	r, err := v.Redeem(wrong, guesser, guesser, fifth)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherUnknown, r.Result)
	require.Equal(t, fifth.Add(24*time.Hour).Unix(), r.BarredUntil)
	// Barred: even a good code is refused, and the card stays active.
	r, err = v.Redeem(rows[0].code, guesser, guesser, fifth.Add(24*time.Hour-time.Second))
	require.NoError(t, err)
	require.Equal(t, charging.VoucherBarred, r.Result)
	_, rec, err := v.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherActive, rec.State)
	// Visible to ops; another caller is not affected.
	barred, err := v.BarredCallers(fifth, 10)
	require.NoError(t, err)
	require.Len(t, barred, 1)
	require.Equal(t, guesser, barred[0].Caller)
	r, err = v.Redeem(rows[1].code, guesser+1, guesser+1, fifth)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r.Result)
	// The bar lifts at the configured instant.
	r, err = v.Redeem(rows[0].code, guesser, guesser, fifth.Add(24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r.Result)
	barred, err = v.BarredCallers(fifth.Add(24*time.Hour), 10)
	require.NoError(t, err)
	require.Empty(t, barred)
}

func TestVoucherSecretRotation(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem(), vchSecret(1))
	defer s.Close()
	old := vchGenerate(t, v, 6, 3, nil)
	v2, err := NewVouchers(s, [][]byte{vchSecret(2), vchSecret(1)}, charging.DefaultGuardPolicy())
	require.NoError(t, err)
	fresh := vchGenerate(t, v2, 7, 3, nil)
	for _, row := range append(old, fresh...) {
		r, err := v2.Redeem(row.code, 38344000001, 38344000001, vchNow)
		require.NoError(t, err)
		require.Equal(t, charging.VoucherOK, r.Result)
	}
	// Without the old secret the old cards are unknown.
	v3, err := NewVouchers(s, [][]byte{vchSecret(2)}, charging.DefaultGuardPolicy())
	require.NoError(t, err)
	r, err := v3.Redeem(old[0].code, 38344000002, 38344000002, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherUnknown, r.Result)
}

func FuzzDecodeVoucherRecords(f *testing.F) {
	rec := charging.Voucher{Batch: 1, Serial: 10000001, Value: charging.Euros(5), State: charging.VoucherUsed,
		Expiry: 1 << 31, UsedBy: 38344000001, UsedAt: 5, CreditSeq: 3}
	b := VoucherBatch{ID: 1, Value: charging.Euros(5), Expiry: 9, Count: 3, Blocked: true}
	g := charging.RedeemGuard{WindowStart: 1, Failures: 2, BarredUntil: 3}
	f.Add(appendVoucher(nil, &rec))
	f.Add(appendVoucherBatch(nil, &b))
	f.Add(appendVoucherPending(nil, 38344000001, charging.Euros(5), 7))
	f.Add(appendRedeemGuard(nil, &g))
	f.Fuzz(func(t *testing.T, v []byte) {
		if r, err := decodeVoucher(v); err == nil {
			require.NoError(t, validateVoucher(&r))
			require.Equal(t, v, appendVoucher(nil, &r))
		}
		if r, err := decodeVoucherBatch(v); err == nil {
			require.Equal(t, v, appendVoucherBatch(nil, &r))
		}
		if to, val, at, err := decodeVoucherPending(v); err == nil {
			require.Equal(t, v, appendVoucherPending(nil, to, val, at))
		}
		if r, err := decodeRedeemGuard(v); err == nil {
			require.Equal(t, v, appendRedeemGuard(nil, &r))
		}
		// Split input: every prefix decodes or errors, never panics.
		for i := 0; i < len(v); i++ {
			_, _ = decodeVoucher(v[:i])
			_, _ = decodeVoucherBatch(v[:i])
		}
	})
}

// BenchmarkVoucherGenerate measures codes per second into a disk Pebble,
// crypto/rand, uniqueness checks and CSV included (target ≥ 200,000/s).
func BenchmarkVoucherGenerate(b *testing.B) {
	s, v := vchOpen(b, b.TempDir(), nil)
	defer s.Close()
	const perOp = 100_000
	batch := uint32(0)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		batch++
		_, err := v.Generate(GenerateOptions{Batch: batch, Count: perOp, Value: charging.Euros(5),
			Expiry: vchNow.Add(time.Hour), Now: vchNow}, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(perOp)*float64(b.N)/time.Since(start).Seconds(), "codes/s")
}

// BenchmarkVoucherRedeem measures the storage half of a redemption: lookup,
// lock, synced used+pending write, then Complete.
func BenchmarkVoucherRedeem(b *testing.B) {
	s, v := vchOpen(b, b.TempDir(), nil)
	defer s.Close()
	rows := vchGenerate(b, v, 1, 20_000, nil)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == len(rows) {
			b.Fatal("out of codes: lower -benchtime")
		}
		r, err := v.Redeem(rows[i].code, 38344000001, 38344000001, vchNow)
		if err != nil || r.Result != charging.VoucherOK {
			b.Fatal(err, r.Result)
		}
		if err := v.Complete(r.Hash, 1); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkVoucherRedeemConcurrent: 64 callers redeem different cards at
// once, as the USSD handler does under load; Pebble groups their synced
// commits. One op = 64 redemptions (+ Complete each).
func BenchmarkVoucherRedeemConcurrent(b *testing.B) {
	s, v := vchOpen(b, b.TempDir(), nil)
	defer s.Close()
	const callers = 64
	rows := vchGenerate(b, v, 1, 64_000, nil)
	next := 0
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if next+callers > len(rows) {
			b.Fatal("out of codes: lower -benchtime")
		}
		var wg sync.WaitGroup
		for i := range callers {
			wg.Add(1)
			go func(row vchRow) {
				defer wg.Done()
				id := charging.SubscriberID(38344000000 + i)
				r, err := v.Redeem(row.code, id, id, vchNow)
				if err != nil || r.Result != charging.VoucherOK {
					b.Error(err, r.Result)
					return
				}
				if err := v.Complete(r.Hash, 1); err != nil {
					b.Error(err)
				}
			}(rows[next+i])
		}
		wg.Wait()
		next += callers
	}
	b.ReportMetric(float64(next)/time.Since(start).Seconds(), "redemptions/s")
}
