package storage

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
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

// vchEngine credits redemptions as the engine does: the credit command
// applied to the beneficiary's account, and the card, with the credit's
// journal Seq, in the same synced batch (Change.Card). Safe for concurrent
// use (Commit is called by one goroutine at a time).
type vchEngine struct {
	t   testing.TB
	s   *Store
	cfg charging.Config
	mu  sync.Mutex
}

func newVchEngine(t testing.TB, s *Store) *vchEngine {
	return &vchEngine{t: t, s: s, cfg: charging.DemoConfig()}
}

func (e *vchEngine) provision(ids ...charging.SubscriberID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		a, _, eff := charging.NewAccount(&e.cfg, &charging.Command{Kind: charging.KindProvision, Subscriber: id}, vchNow)
		require.NoError(e.t, e.s.Commit([]charging.Change{{Account: a, Entry: eff.Entry, Created: true}}))
	}
}

// credit runs r's credit and then releases the card, as flows.Redeem does.
func (e *vchEngine) credit(r *Redemption) charging.Outcome {
	defer r.Release()
	e.mu.Lock()
	defer e.mu.Unlock()
	c, out, dirty := e.change(r)
	if dirty {
		require.NoError(e.t, e.s.Commit([]charging.Change{c}))
	}
	return out
}

// change applies r's credit to its beneficiary's stored account and
// returns the change the actor would hand the committer: the card, with
// the credit's Seq, rides on it (no request record: actors' keyed).
func (e *vchEngine) change(r *Redemption) (c charging.Change, out charging.Outcome, dirty bool) {
	cmd := r.Command()
	a, found, err := e.s.LoadAccount(cmd.Subscriber)
	require.NoError(e.t, err)
	if !found {
		return c, charging.Outcome{Result: charging.ResultUnknownSubscriber}, false
	}
	out, eff := a.Apply(&e.cfg, &cmd, vchNow)
	if !eff.Dirty {
		return c, out, false
	}
	c = charging.Change{Account: a, Entry: eff.Entry}
	if cmd.Card != nil {
		card := *cmd.Card
		card.Card.CreditSeq = eff.Entry.Seq
		c.Card = &card
	}
	return c, out, true
}

// vchMarkPending leaves code as a build before the one-batch protocol did
// when it crashed between marking a card and its credit: used by to, with
// a pending marker.
func vchMarkPending(t testing.TB, v *Vouchers, code charging.VoucherCode, to charging.SubscriberID) VoucherHash {
	t.Helper()
	h, rec, found, lock, err := v.findLocked(code)
	require.NoError(t, err)
	require.True(t, found)
	defer lock.Unlock()
	require.Equal(t, charging.VoucherOK, charging.RedeemVoucher(&rec, false, to, vchNow))
	b := v.db.NewBatch()
	defer b.Close()
	require.NoError(t, b.Set(voucherKey(nil, &h), appendVoucher(nil, &rec), nil))
	require.NoError(t, b.Set(voucherPendingKey(nil, &h), appendVoucherPending(nil, to, rec.Value, vchNow.Unix()), nil))
	require.NoError(t, b.Commit(pebble.NoSync))
	return h
}

func TestVoucherRedeemLifecycle(t *testing.T) {
	dir := t.TempDir()
	s, v := vchOpen(t, dir, nil)
	rows := vchGenerate(t, v, 3, 20, nil)
	const caller, other charging.SubscriberID = 38344000001, 38349000002
	e := newVchEngine(t, s)
	e.provision(caller, other)
	r, err := v.Redeem(rows[0].code, caller, other, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r.Result)
	require.Equal(t, other, r.Beneficiary)
	require.Equal(t, charging.Euros(10), r.Value)
	cmd := r.Command()
	require.Equal(t, charging.ChannelVoucher, cmd.Channel)
	require.Equal(t, other, cmd.Subscriber)
	require.Len(t, cmd.Key, 34)
	require.NotNil(t, cmd.Card, "the credit carries the card")
	require.Equal(t, [32]byte(r.Hash), cmd.Card.Hash)
	require.Equal(t, charging.VoucherUsed, cmd.Card.Card.State)
	require.Equal(t, other, cmd.Card.Card.UsedBy)
	// Nothing is written before the credit.
	_, rec, err := v.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherActive, rec.State)
	out := e.credit(&r)
	require.Equal(t, charging.ResultOK, out.Result)
	r2, err := v.Redeem(rows[0].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherAlreadyUsed, r2.Result)

	// The card was used in its credit's batch, which survives a reopen;
	// no marker is left to finish.
	require.NoError(t, s.Close())
	s, v = vchOpen(t, dir, nil)
	defer s.Close()
	e = newVchEngine(t, s)
	p, err := v.Pending(nil, 10)
	require.NoError(t, err)
	require.Empty(t, p)
	_, rec, err = v.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherUsed, rec.State)
	require.Equal(t, other, rec.UsedBy)
	require.Equal(t, out.Seq, rec.CreditSeq)
	hist, err := s.History(other, 0, 1)
	require.NoError(t, err)
	require.Equal(t, rec.CreditSeq, hist[0].Seq)
	require.Equal(t, charging.ChannelVoucher, hist[0].Channel)
	require.ErrorIs(t, v.Revert(r.Hash), ErrVoucherNotPending, "a credited card cannot be reverted")

	// A refused credit (no such beneficiary) writes nothing: the card stays
	// active and can then be redeemed.
	r3, err := v.Redeem(rows[1].code, caller, 38349999999, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r3.Result)
	require.Equal(t, charging.ResultUnknownSubscriber, e.credit(&r3).Result)
	r4, err := v.Redeem(rows[1].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r4.Result)
	r4.Release() // as if the credit were refused
	r4.Release() // and a second Release does nothing

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
	r7.Release()
	require.NoError(t, v.BlockBatch(3))
	r8, err := v.Redeem(rows[5].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherIsBlocked, r8.Result)
	require.ErrorIs(t, v.BlockBatch(99), ErrVoucherNotFound)
	_, err = v.Block(1)
	require.ErrorIs(t, err, ErrVoucherNotFound)
	require.NoError(t, s.Check(context.Background()))
}

// A pending marker left by an older build survives a reopen, is listed
// with the credit it awaits (no card: the card is marked already), and is
// finished by Complete or Revert, each once.
func TestVoucherPendingMarkerOfOlderBuild(t *testing.T) {
	dir := t.TempDir()
	s, v := vchOpen(t, dir, nil)
	rows := vchGenerate(t, v, 3, 3, nil)
	const caller charging.SubscriberID = 38344000001
	h := vchMarkPending(t, v, rows[0].code, caller)
	h1 := vchMarkPending(t, v, rows[1].code, caller)
	r, err := v.Redeem(rows[0].code, caller, caller, vchNow)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherAlreadyUsed, r.Result)
	require.NoError(t, s.Close())
	s, v = vchOpen(t, dir, nil)
	defer s.Close()
	p, err := v.Pending(nil, 10)
	require.NoError(t, err)
	require.Len(t, p, 2)
	byHash := map[VoucherHash]*Redemption{p[0].Hash: &p[0], p[1].Hash: &p[1]}
	cmd := byHash[h].Command()
	require.Nil(t, cmd.Card)
	require.Equal(t, RedemptionKey(h), cmd.Key, "a re-driven credit carries the card's request key")
	require.Equal(t, caller, cmd.Subscriber)
	require.Equal(t, charging.Euros(10), cmd.Amount)

	require.NoError(t, v.Complete(h, 9))
	_, rec, err := v.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherUsed, rec.State)
	require.Equal(t, uint64(9), rec.CreditSeq)
	require.ErrorIs(t, v.Revert(h), ErrVoucherNotPending, "a credited card cannot be reverted")

	require.NoError(t, v.Revert(h1))
	_, rec, err = v.BySerial(rows[1].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherActive, rec.State, "a refused credit does not burn the card")
	p, err = v.Pending(nil, 10)
	require.NoError(t, err)
	require.Empty(t, p)
}

// TestVoucherConcurrentRedeemExactlyOne: many subscribers redeem one code
// at the same instant, each crediting its card as the engine does; exactly
// one wins, every other is told it is used, and the card records the
// winner's credit.
func TestVoucherConcurrentRedeemExactlyOne(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem())
	defer s.Close()
	rows := vchGenerate(t, v, 4, 8, nil)
	const goroutines = 64
	e := newVchEngine(t, s)
	for i := range goroutines {
		e.provision(charging.SubscriberID(38344000000 + i))
	}
	for _, row := range rows {
		var wg sync.WaitGroup
		results := make([]charging.VoucherResult, goroutines)
		seqs := make([]uint64, goroutines)
		start := make(chan struct{})
		for i := range goroutines {
			wg.Go(func() {
				<-start
				id := charging.SubscriberID(38344000000 + i)
				r, err := v.Redeem(row.code, id, id, vchNow)
				if err != nil {
					t.Error(err)
				}
				results[i] = r.Result
				if r.Result == charging.VoucherOK {
					seqs[i] = e.credit(&r).Seq
				}
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, r := range results {
			switch r {
			case charging.VoucherOK:
				require.Equal(t, -1, winner, "a second winner")
				winner = i
			case charging.VoucherAlreadyUsed:
			default:
				t.Fatalf("unexpected result %v", r)
			}
		}
		require.NotEqual(t, -1, winner)
		_, rec, err := v.BySerial(row.serial)
		require.NoError(t, err)
		require.Equal(t, charging.SubscriberID(38344000000+winner), rec.UsedBy)
		require.Equal(t, seqs[winner], rec.CreditSeq)
	}
	var credited charging.Amount
	for i := range goroutines {
		a, _, err := s.LoadAccount(charging.SubscriberID(38344000000 + i))
		require.NoError(t, err)
		credited += a.Balance
	}
	require.Equal(t, charging.Amount(len(rows))*charging.Euros(10), credited, "one credit per card")
	p, err := v.Pending(nil, 100)
	require.NoError(t, err)
	require.Empty(t, p)
	require.NoError(t, s.Check(context.Background()))
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
		h := vchMarkPending(t, v, row.code, caller)
		if i%4 == 0 {
			require.NoError(t, v.Complete(h, uint64(i+1)))
			completed = h
			continue
		}
		want[h] = true
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
	r.Release()
	// The bar lifts at the configured instant.
	r, err = v.Redeem(rows[0].code, guesser, guesser, fifth.Add(24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r.Result)
	r.Release()
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
		r.Release()
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

// BenchmarkVoucherRedeem measures the storage half of a redemption: the
// caller's guard, the card's lookup under its lock, the verdict and the
// release. The card's write rides on the credit's batch (engine's work).
func BenchmarkVoucherRedeem(b *testing.B) {
	s, v := vchOpen(b, b.TempDir(), nil)
	defer s.Close()
	rows := vchGenerate(b, v, 1, 20_000, nil)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		r, err := v.Redeem(rows[i%len(rows)].code, 38344000001, 38344000001, vchNow)
		if err != nil || r.Result != charging.VoucherOK {
			b.Fatal(err, r.Result)
		}
		r.Release()
		i++
	}
}

// BenchmarkVoucherRedeemConcurrent: 64 callers redeem different cards at
// once, as the USSD handler does under load. One op = 64 redemptions.
func BenchmarkVoucherRedeemConcurrent(b *testing.B) {
	s, v := vchOpen(b, b.TempDir(), nil)
	defer s.Close()
	const callers = 64
	rows := vchGenerate(b, v, 1, 64_000, nil)
	next := 0
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		var wg sync.WaitGroup
		for i := range callers {
			row := rows[(next+i)%len(rows)]
			wg.Go(func() {
				id := charging.SubscriberID(38344000000 + i)
				r, err := v.Redeem(row.code, id, id, vchNow)
				if err != nil || r.Result != charging.VoucherOK {
					b.Error(err, r.Result)
					return
				}
				r.Release()
			})
		}
		wg.Wait()
		next += callers
	}
	b.ReportMetric(float64(next)/time.Since(start).Seconds(), "redemptions/s")
}

// A card rides only on the credit it pays for: any other pairing is refused
// before anything is written, so a card can never record a credit it did
// not make.
func TestCardOnlyWithItsCredit(t *testing.T) {
	s, v := vchOpen(t, "", vfs.NewMem())
	defer s.Close()
	rows := vchGenerate(t, v, 1, 1, nil)
	const id, other charging.SubscriberID = 38344000001, 38344000002
	e := newVchEngine(t, s)
	e.provision(id)
	r, err := v.Redeem(rows[0].code, id, id, vchNow)
	require.NoError(t, err)
	defer r.Release()
	credit, out, _ := e.change(&r)
	require.Equal(t, charging.ResultOK, out.Result)
	good := *credit.Card
	bad := map[string]func(c *charging.Change){
		"credit seq":     func(c *charging.Change) { c.Card.Card.CreditSeq++ },
		"beneficiary":    func(c *charging.Change) { c.Card.Card.UsedBy = other },
		"value":          func(c *charging.Change) { c.Card.Card.Value++ },
		"state":          func(c *charging.Change) { c.Card.Card.State = charging.VoucherActive },
		"channel":        func(c *charging.Change) { c.Entry.Channel = charging.ChannelElectronic },
		"without credit": func(c *charging.Change) { c.Entry = charging.Entry{} },
	}
	for name, spoil := range bad {
		card := good
		c := credit
		c.Card = &card
		spoil(&c)
		require.ErrorIs(t, s.Commit([]charging.Change{c}), ErrInvalid, name)
	}
	_, rec, err := v.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, charging.VoucherActive, rec.State, "nothing was written")
	require.NoError(t, s.Commit([]charging.Change{credit}))
	_, rec, err = v.BySerial(rows[0].serial)
	require.NoError(t, err)
	require.Equal(t, good.Card, rec)
}

// A bar outlives a restart: the guards written before are found again
// (the in-memory set of callers with guards is rebuilt at open), and a
// caller without one is still free to redeem.
func TestVoucherBarSurvivesReopen(t *testing.T) {
	fs := vfs.NewMem()
	s, v := vchOpen(t, "db", fs)
	rows := vchGenerate(t, v, 5, 2, nil)
	const guesser charging.SubscriberID = 38344123456
	wrong, _ := charging.ParseVoucherCode("0000000000000000")
	var until int64
	for range 5 {
		r, err := v.Redeem(wrong, guesser, guesser, vchNow)
		require.NoError(t, err)
		until = max(until, r.BarredUntil)
	}
	require.NotZero(t, until)
	require.NoError(t, s.Close())

	s, v = vchOpen(t, "db", fs)
	defer s.Close()
	r, err := v.Redeem(rows[0].code, guesser, guesser, vchNow.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, charging.VoucherBarred, r.Result)
	require.Equal(t, until, r.BarredUntil)
	r, err = v.Redeem(rows[0].code, guesser+1, guesser+1, vchNow.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, charging.VoucherOK, r.Result)
	r.Release()
}

// Check holds every card to its credit: a card credited twice, credited and
// still active, or used with no credit and no pending marker is corruption.
func TestCheckCardsAgainstTheirCredits(t *testing.T) {
	setup := func(t *testing.T) (*Store, *Vouchers, *vchEngine, []vchRow) {
		s, v := vchOpen(t, "", vfs.NewMem())
		t.Cleanup(func() { _ = s.Close() })
		rows := vchGenerate(t, v, 1, 3, nil)
		e := newVchEngine(t, s)
		e.provision(38344000001, 38344000002)
		r, err := v.Redeem(rows[0].code, 38344000001, 38344000001, vchNow)
		require.NoError(t, err)
		require.Equal(t, charging.ResultOK, e.credit(&r).Result)
		vchMarkPending(t, v, rows[1].code, 38344000002) // an older build's half-way redemption
		require.NoError(t, s.Check(context.Background()))
		return s, v, e, rows
	}
	card := func(t *testing.T, v *Vouchers, row vchRow) (VoucherHash, charging.Voucher) {
		h, rec, err := v.BySerial(row.serial)
		require.NoError(t, err)
		return h, rec
	}
	put := func(t *testing.T, v *Vouchers, h VoucherHash, rec charging.Voucher) {
		require.NoError(t, v.db.Set(voucherKey(nil, &h), appendVoucher(nil, &rec), pebble.Sync))
	}
	for name, spoil := range map[string]func(t *testing.T, s *Store, v *Vouchers, e *vchEngine, rows []vchRow){
		"credited card made active again": func(t *testing.T, _ *Store, v *Vouchers, _ *vchEngine, rows []vchRow) {
			h, rec := card(t, v, rows[0])
			rec.State, rec.UsedBy, rec.UsedAt, rec.CreditSeq = charging.VoucherActive, 0, 0, 0
			put(t, v, h, rec)
		},
		"card names another entry": func(t *testing.T, s *Store, v *Vouchers, e *vchEngine, rows []vchRow) {
			a, _, err := s.LoadAccount(38344000001)
			require.NoError(t, err)
			cmd := charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelElectronic, Key: "e",
				Subscriber: 38344000001, Amount: charging.Euros(10)}
			_, eff := a.Apply(&e.cfg, &cmd, vchNow)
			require.NoError(t, s.Commit([]charging.Change{{Account: a, Entry: eff.Entry}}))
			h, rec := card(t, v, rows[0])
			rec.CreditSeq = eff.Entry.Seq // an electronic top-up of the same value
			put(t, v, h, rec)
		},
		"card names a missing entry": func(t *testing.T, _ *Store, v *Vouchers, _ *vchEngine, rows []vchRow) {
			h, rec := card(t, v, rows[0])
			rec.CreditSeq = 99
			put(t, v, h, rec)
		},
		"used without credit or marker": func(t *testing.T, _ *Store, v *Vouchers, _ *vchEngine, rows []vchRow) {
			h, rec := card(t, v, rows[2])
			rec.State, rec.UsedBy, rec.UsedAt = charging.VoucherUsed, 38344000001, vchNow.Unix()
			put(t, v, h, rec)
		},
		"marker of an active card": func(t *testing.T, _ *Store, v *Vouchers, _ *vchEngine, rows []vchRow) {
			h, _ := card(t, v, rows[2])
			require.NoError(t, v.db.Set(voucherPendingKey(nil, &h), appendVoucherPending(nil, 38344000001, charging.Euros(10), 1), pebble.Sync))
		},
		"a second credit of a card": func(t *testing.T, s *Store, v *Vouchers, e *vchEngine, rows []vchRow) {
			// The pending card's credit lands, recorded under its key as an
			// older build did (allowed); then a voucher credit no card names.
			h, _ := card(t, v, rows[1])
			credit := func(id charging.SubscriberID, key string, record bool) {
				a, _, err := s.LoadAccount(id)
				require.NoError(t, err)
				cmd := charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: key,
					Subscriber: id, Amount: charging.Euros(10)}
				out, eff := a.Apply(&e.cfg, &cmd, vchNow)
				c := charging.Change{Account: a, Entry: eff.Entry}
				if record {
					c.Key, c.Request = key, charging.RequestRecord{Fingerprint: cmd.Fingerprint(), Kind: cmd.Kind, Outcome: out}
				}
				require.NoError(t, s.Commit([]charging.Change{c}))
			}
			credit(38344000002, RedemptionKey(h), true)
			require.NoError(t, s.Check(context.Background()), "a pending card's credit may have landed")
			credit(38344000001, "V/again", false)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, v, e, rows := setup(t)
			spoil(t, s, v, e, rows)
			require.ErrorIs(t, s.Check(context.Background()), ErrCorrupt)
		})
	}
}

// A secret under which no batch of the database was generated is refused
// at open (every card would be a "wrong code"); the one that generated a
// batch is accepted, first or as an older secret of a rotation, and a
// database without any batch takes any secret.
func TestVoucherSecretMustBeOneThatGenerated(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("", Options{FS: fs})
	require.NoError(t, err)
	defer s.Close()
	_, err = NewVouchers(s, [][]byte{vchSecret(9)}, charging.DefaultGuardPolicy())
	require.NoError(t, err, "no batch yet: any secret")

	v, err := NewVouchers(s, [][]byte{vchSecret(7)}, charging.DefaultGuardPolicy())
	require.NoError(t, err)
	vchGenerate(t, v, 1, 3, nil)

	_, err = NewVouchers(s, [][]byte{vchSecret(9)}, charging.DefaultGuardPolicy())
	require.ErrorIs(t, err, ErrVoucherSecretUnknown)
	_, err = NewVouchers(s, [][]byte{vchSecret(9), vchSecret(7)}, charging.DefaultGuardPolicy())
	require.NoError(t, err, "the generating secret, kept for lookups after a rotation")
	_, err = NewVouchers(s, [][]byte{vchSecret(7)}, charging.DefaultGuardPolicy())
	require.NoError(t, err)
}
