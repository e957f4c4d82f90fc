package storage

// Scratch-card vouchers: the durable half of redemption.
//
// # Key handling
//
// A card's 16-digit code is never stored. Its record is keyed by
// HMAC-SHA256(operator secret, code): without the secret, a copy of the
// database (a backup, a stolen disk) yields no code, and codes cannot be
// recovered by hashing all 10^16 candidates, as a plain SHA-256 would allow.
// The secret is at least VoucherSecretBytesMin random bytes that cmd/ocs
// reads from a file readable by the engine's user only (never from a flag,
// which shows in ps, and never stored in Pebble). Losing it makes every
// unredeemed card unredeemable, so it is backed up apart from the database.
// Rotation: NewVouchers takes a list of secrets, the first for new batches,
// all of them for lookups, so old batches stay redeemable until they expire
// and an old secret can then be dropped.
//
// # Redemption protocol
//
// "Two subscribers redeeming one code at the same instant get exactly one
// credit between them", and a crash at any point neither loses nor doubles
// the credit:
//
//  1. Redeem(code, caller, beneficiary, now): refused at once if the caller
//     is barred (brute-force guard). Then, under the card's lock stripe,
//     read the record and run charging.RedeemVoucher. A code that matches
//     no card counts a failure on the caller's guard. On VoucherOK nothing
//     is written: the stripe stays locked, and the answer carries the card
//     as used (charging.CardUse).
//  2. The engine credits the beneficiary with Redemption.Command(): a
//     ChannelVoucher top-up that carries the card, with a request key
//     derived from the hash ("V/" + 32 hex digits). The actor gives the
//     card the credit's journal Seq and puts it in the change, and
//     Store.Apply writes it in the credit's own synced batch. The card is
//     used if and only if its credit is durable: a crash before leaves the
//     card active and nobody credited, and a refusal (no such beneficiary,
//     balance limit, overload) writes nothing and leaves the card active.
//  3. Release, once the engine has answered. The stripe is held until the
//     credit is durable and visible, so the next redeemer of the card reads
//     it used: exactly one VoucherOK per card. "Answered" means the outcome
//     is known: the engine never times out a card's credit (a timeout that
//     freed the card while its credit could still be made would let a
//     second redemption credit it too); it answers, or fails and applies
//     nothing more.
//
// Holding a stripe across a durable write (about a millisecond) delays only
// redemptions of cards on the same stripe, 1 in voucherLockStripes.
//
// # Pending markers of older builds
//
// Builds before the one-batch protocol marked the card used (without fsync)
// together with a pending marker 0x12|hash, credited it, and then completed
// (recording the credit's Seq) or reverted the card. A crash in between
// left the marker: Pending, Complete and Revert remain so that Recover and
// the re-driver finish such markers with the same credit key, which the
// idempotency record answers if the credit was made. Nothing writes new
// markers. Complete writes without fsync: if it is lost in a crash, the
// next recovery re-drives a credit that the idempotency record answers,
// which is harmless. That relies on request records living at least as
// long as pending markers: the pruner keeps a "V/" record while its pending
// marker exists (pruner.go).

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ocs-engine/ocs/charging"
)

// Table tags of vouchers, within the range 0x10–0x1F reserved for vouchers,
// fixed accounts and transfers. Stored: never renumber.
const (
	tagVoucher        byte = 0x10 // | hash:32     → Voucher
	tagVoucherBatch   byte = 0x11 // | batch:4     → VoucherBatch
	tagVoucherPending byte = 0x12 // | hash:32     → pending credit (beneficiary, value)
	tagRedeemGuard    byte = 0x13 // | sub:8       → RedeemGuard
	tagVoucherSerial  byte = 0x14 // | serial:8    → hash:32
)

// Record versions.
const (
	voucherV1        byte = 1
	voucherBatchV1   byte = 1
	voucherPendingV1 byte = 1
	redeemGuardV1    byte = 1
)

const (
	voucherLen        = 1 + 1 + 4 + 8 + 8 + 8 + 8 + 8 + 8
	voucherBatchLen   = 1 + 4 + 8 + 8 + 4 + 8 + 1 + 1
	voucherPendingLen = 1 + 8 + 8 + 8
	redeemGuardLen    = 1 + 8 + 4 + 8
	voucherKeyLen     = 1 + sha256.Size
)

// VoucherSecretBytesMin is the shortest operator secret accepted: 256 bits,
// the HMAC-SHA256 block's security level.
const VoucherSecretBytesMin = 32

// voucherLockStripes: a redemption holds its card's stripe across the
// credit's durable write, so redemptions of different cards should almost
// never share one: with 64 in flight, a redemption finds its stripe taken
// by another card 1.5% of the time at 4096 stripes (6% at 1024). Contention
// is then between callers of the same card, exactly the race the lock
// exists for. 4096 mutexes are 32 KiB.
const voucherLockStripes = 4096

// VoucherListMax bounds one Pending or BarredCallers call.
const VoucherListMax = 10_000

// Errors of the voucher store.
var (
	ErrVoucherSecret = errors.New("storage: voucher secret must be at least 32 bytes")
	// ErrVoucherSecretUnknown is returned by NewVouchers when the database
	// records the secrets its cards were generated under and none of the
	// given ones is among them: a wrong file, under which no card could be
	// found, every redemption answered "wrong code".
	ErrVoucherSecretUnknown = errors.New("storage: the voucher secret is none of those this database's cards were generated under")
	ErrVoucherBatchExists   = errors.New("storage: voucher batch already exists")
	ErrVoucherNotFound      = errors.New("storage: no voucher has this serial or hash")
	ErrVoucherNotPending    = errors.New("storage: voucher has no pending credit")
)

// VoucherHash is the keyed hash of a code: the voucher's identity in storage.
type VoucherHash [sha256.Size]byte

// VoucherBatch is one generated batch.
type VoucherBatch struct {
	ID      uint32
	Value   charging.Amount
	Expiry  int64  // Unix seconds
	Created int64  // Unix seconds
	Count   uint32 // codes written
	Blocked bool   // operations blocked every card of the batch
	KeyID   uint8  // index of the secret the batch was hashed with
}

// Redemption is the answer of Redeem.
type Redemption struct {
	Result      charging.VoucherResult
	Hash        VoucherHash
	Value       charging.Amount
	Beneficiary charging.SubscriberID
	// BarredUntil is set with VoucherBarred (Unix seconds), and when this
	// very failure barred the caller.
	BarredUntil int64
	// UsedBy, UsedAt (Unix seconds) and CreditSeq are the card's use as
	// its record holds it, set with VoucherAlreadyUsed only (CreditSeq 0:
	// a pending marker of an older build). Read-only: they let flows tell
	// a retry of a redemption that succeeded (same beneficiary, moments
	// ago) from a second use of the card, and answer it with the credit's
	// transaction ID.
	UsedBy    charging.SubscriberID
	UsedAt    int64
	CreditSeq uint64
	// card is the card as its credit leaves it, and lock is its stripe,
	// held until Release: set by a VoucherOK Redeem, nil on a pending
	// marker's Redemption (Pending), whose card is already marked.
	card *charging.CardUse
	lock *sync.Mutex
}

// RedemptionKey returns the request key of the top-up that credits the
// voucher with hash h: "V/" + the first 16 bytes in hex. Deterministic, so a
// re-driven credit is a retry; 34 bytes, within RequestKeyBytesMax. It is
// also the transaction reference a subscriber may quote.
func RedemptionKey(h VoucherHash) string {
	var b [2 + 32]byte
	b[0], b[1] = 'V', '/'
	hex.Encode(b[2:], h[:16])
	return string(b[:])
}

// Key returns the request key of r's credit.
func (r *Redemption) Key() string { return RedemptionKey(r.Hash) }

// Command returns the top-up that credits r to its beneficiary, carrying
// the card (step 2 of the protocol) unless r is a pending marker's.
func (r *Redemption) Command() charging.Command {
	return charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: r.Key(),
		Subscriber: r.Beneficiary, Amount: r.Value, Card: r.card}
}

// Release is step 3: it unlocks the card of a VoucherOK redemption once the
// engine has answered its credit, whatever the answer. It does nothing on
// any other Redemption, and nothing the second time.
func (r *Redemption) Release() {
	if r.lock != nil {
		r.lock.Unlock()
		r.lock = nil
	}
}

// Releaser returns Release's unlock as a function of its own, or nil when
// Release would do nothing: for a caller that hands the release on without
// keeping r (a closure over r would take r to the heap on every
// redemption). It must be called exactly once.
func (r *Redemption) Releaser() func() {
	if r.lock == nil {
		return nil
	}
	return r.lock.Unlock
}

// Vouchers is the voucher store on the engine's Pebble database. Safe for
// concurrent use.
type Vouchers struct {
	db      *pebble.DB
	secrets [][]byte
	macs    []sync.Pool // one pool of HMAC states per secret
	guard   charging.GuardPolicy
	locks   [voucherLockStripes]sync.Mutex
	// guardLocks serialise read-modify-write of one caller's guard. Never
	// held together with locks (no lock order to respect).
	guardLocks [voucherLockStripes]sync.Mutex
	// guardSeen has a bit set for every caller that may have a guard
	// record: set before a guard is written, and at open for each stored
	// one. A redemption by a caller whose bit is clear skips reading the
	// guard, nearly always absent: an absent key costs a seek through every
	// memtable and a filter probe per level, a sixth of a redemption's
	// storage time in the voucher benchmark's profile. A bit set by
	// another caller (1 in 2^20 per guard) only costs that read again.
	guardSeen  [guardSeenBits / 64]atomic.Uint64
	generating sync.Mutex // one Generate at a time
	batches    struct {
		sync.RWMutex
		m map[uint32]VoucherBatch
	}
}

// NewVouchers returns the voucher store of s. secrets[0] hashes new
// batches; every secret is tried on lookup (rotation). guard configures the
// brute-force bar. Use exactly one per Store: the card locks that make a
// redemption exactly-once, the cache of batch records and the set of
// callers with guards live in it, and a second one on the same Store would
// not see the first's.
func NewVouchers(s *Store, secrets [][]byte, guard charging.GuardPolicy) (*Vouchers, error) {
	v, err := newVouchers(s.db, secrets, guard)
	if err == nil {
		err = v.checkSecrets()
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// NewVoucherBlocker returns a voucher store for Block and BlockBatch only,
// which read no code and so need no secret: `ocs vouchers block` offline.
// It finds no card by its code.
func NewVoucherBlocker(s *Store) (*Vouchers, error) {
	return newVouchers(s.db, [][]byte{make([]byte, VoucherSecretBytesMin)}, charging.DefaultGuardPolicy())
}

func newVouchers(db *pebble.DB, secrets [][]byte, guard charging.GuardPolicy) (*Vouchers, error) {
	if len(secrets) == 0 || len(secrets) > 255 {
		return nil, ErrVoucherSecret
	}
	v := &Vouchers{db: db, guard: guard, macs: make([]sync.Pool, len(secrets))}
	for i, s := range secrets {
		if len(s) < VoucherSecretBytesMin {
			return nil, ErrVoucherSecret
		}
		key := append([]byte(nil), s...)
		v.secrets = append(v.secrets, key)
		v.macs[i].New = func() any { return hmac.New(sha256.New, key) }
	}
	v.batches.m = make(map[uint32]VoucherBatch)
	if err := v.loadGuardSeen(); err != nil {
		return nil, err
	}
	return v, nil
}

// Secret fingerprints. Generate records the fingerprint of the secret it
// hashes a batch under (meta "voucherSecret/" + 8 bytes), so that a wrong
// secret file is refused at start instead of making every card a "wrong
// code". The fingerprint is an HMAC under the secret of a fixed text: it
// tells whether a candidate secret is the one, never what it is (a secret
// is 32 random bytes or more, beyond any search). Databases whose cards
// were generated before fingerprints have none, and are not checked until
// their next batch.
const metaVoucherSecret = "voucherSecret/"

func secretFingerprint(secret []byte) [8]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("ocs voucher secret fingerprint v1"))
	var f [8]byte
	copy(f[:], m.Sum(nil))
	return f
}

func voucherSecretKey(secret []byte) []byte {
	f := secretFingerprint(secret)
	return append(appendMetaKey(nil, metaVoucherSecret), f[:]...)
}

// checkSecrets refuses secrets of which none generated a recorded batch.
// A recorded secret missing from the list is allowed: rotation drops an
// old secret once its batches have expired.
func (v *Vouchers) checkSecrets() error {
	for _, secret := range v.secrets {
		known, err := has(v.db, voucherSecretKey(secret))
		if err != nil {
			return fmt.Errorf("storage: read voucher secret fingerprints: %w", err)
		}
		if known {
			return nil
		}
	}
	// None is recorded: refused only if some other secret is.
	prefix := appendMetaKey(nil, metaVoucherSecret)
	upper := append(appendMetaKey(nil, "voucherSecret"), '/'+1) // just past the prefix
	recorded, err := anyIn(v.db, prefix, upper)
	if err != nil {
		return fmt.Errorf("storage: read voucher secret fingerprints: %w", err)
	}
	if recorded {
		return ErrVoucherSecretUnknown
	}
	return nil
}

// Hash returns the keyed hash of code under secret i (0: the current one).
func (v *Vouchers) Hash(code charging.VoucherCode, i int) VoucherHash {
	m := v.macs[i].Get().(hash.Hash)
	m.Reset()
	m.Write(code[:])
	var h VoucherHash
	m.Sum(h[:0])
	v.macs[i].Put(m)
	return h
}

func voucherKey(dst []byte, h *VoucherHash) []byte {
	return append(appendTable(dst, tagVoucher), h[:]...)
}

func voucherPendingKey(dst []byte, h *VoucherHash) []byte {
	return append(appendTable(dst, tagVoucherPending), h[:]...)
}

func voucherBatchKey(dst []byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(appendTable(dst, tagVoucherBatch), id)
}

func voucherSerialKey(dst []byte, serial uint64) []byte {
	return binary.BigEndian.AppendUint64(appendTable(dst, tagVoucherSerial), serial)
}

func redeemGuardKey(dst []byte, id charging.SubscriberID) []byte {
	return binary.BigEndian.AppendUint64(appendTable(dst, tagRedeemGuard), uint64(id))
}

func (v *Vouchers) lock(h *VoucherHash) *sync.Mutex {
	return &v.locks[binary.BigEndian.Uint16(h[:2])%voucherLockStripes]
}

func (v *Vouchers) guardLock(id charging.SubscriberID) *sync.Mutex {
	return &v.guardLocks[guardStripe(id)]
}

// guardSeenBits: 2^20 bits are 128 KiB, and keep false positives rare for
// tens of thousands of guards.
const guardSeenBits = 1 << 20

// guardBit returns the word and mask of id's bit in guardSeen (Fibonacci
// hashing: consecutive MSISDNs spread over the whole set).
func (v *Vouchers) guardBit(id charging.SubscriberID) (*atomic.Uint64, uint64) {
	i := (uint64(id) * 0x9E3779B97F4A7C15) >> (64 - 20)
	return &v.guardSeen[i/64], 1 << (i % 64)
}

// markGuard records that id may have a guard record, before it is written.
func (v *Vouchers) markGuard(id charging.SubscriberID) {
	w, m := v.guardBit(id)
	w.Or(m)
}

// mayHaveGuard reports whether id may have a guard record.
func (v *Vouchers) mayHaveGuard(id charging.SubscriberID) bool {
	w, m := v.guardBit(id)
	return w.Load()&m != 0
}

// loadGuardSeen marks every caller with a stored guard.
func (v *Vouchers) loadGuardSeen() error {
	it, err := v.db.NewIter(&pebble.IterOptions{LowerBound: tableStart(tagRedeemGuard), UpperBound: tableStart(tagRedeemGuard + 1)})
	if err != nil {
		return fmt.Errorf("storage: list guards: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			_ = it.Close()
			return fmt.Errorf("%w: guard key of %d bytes", ErrCorrupt, len(k))
		}
		v.markGuard(charging.SubscriberID(binary.BigEndian.Uint64(k[1:])))
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return fmt.Errorf("storage: list guards: %w", err)
	}
	return it.Close()
}

// pointReadOpts makes a prefix seek stop at the bloom filter of every level
// for a key that is absent (see Store.LookupRequest): the default comparer's
// prefix is the whole key, so the filters answer exact-key questions.
var pointReadOpts = pebble.IterOptions{UseL6Filters: true}

// pointRead reads k through a prefix seek, which a miss answers from the
// bloom filters; DB.Get skips the last level's filters and searches a data
// block for every miss. It is for keys that are nearly always absent (a
// caller's guard). A key that is nearly always there (a card) is cheaper
// through DB.Get, which builds no merging iterator: 3.1–3.8 µs against
// 4.5–4.8 µs a read of 200,000 compacted cards.
func pointRead(db *pebble.DB, k []byte) ([]byte, bool, error) {
	it, err := db.NewIter(&pointReadOpts)
	if err != nil {
		return nil, false, err
	}
	var out []byte
	found := it.SeekPrefixGE(k) && bytes.Equal(it.Key(), k)
	if found {
		out = append([]byte(nil), it.Value()...)
	}
	if err := it.Close(); err != nil {
		return nil, false, err
	}
	return out, found, nil
}

// findLocked returns the record of code under any secret, read while
// holding the card's lock stripe; when found, that stripe (lock) stays
// locked. One read, under the lock, is both the search and the
// read a redemption decides on.
func (v *Vouchers) findLocked(code charging.VoucherCode) (h VoucherHash, rec charging.Voucher, found bool, lock *sync.Mutex, err error) {
	var kb [voucherKeyLen]byte
	for i := range v.secrets {
		h = v.Hash(code, i)
		mu := v.lock(&h)
		mu.Lock()
		val, ok, err := getCopy(v.db, voucherKey(kb[:0], &h))
		if err != nil {
			mu.Unlock()
			return h, charging.Voucher{}, false, nil, fmt.Errorf("storage: read voucher: %w", err)
		}
		if !ok {
			mu.Unlock()
			continue
		}
		if rec, err = decodeVoucher(val); err != nil {
			mu.Unlock()
			return h, charging.Voucher{}, false, nil, err
		}
		return h, rec, true, mu, nil
	}
	return VoucherHash{}, charging.Voucher{}, false, nil, nil
}

// Redeem runs step 1 of the redemption protocol (see the file comment):
// the caller dialled code for beneficiary (the caller himself, or another
// subscriber) at now. A VoucherOK answer writes nothing and keeps the card
// locked: the caller must run r.Command() through the engine and then call
// r.Release.
func (v *Vouchers) Redeem(code charging.VoucherCode, caller, beneficiary charging.SubscriberID, now time.Time) (Redemption, error) {
	r := Redemption{Beneficiary: beneficiary}
	g, err := v.Guard(caller)
	if err != nil {
		return r, err
	}
	if g.Barred(now) {
		r.Result, r.BarredUntil = charging.VoucherBarred, g.BarredUntil
		return r, nil
	}
	h, rec, found, lock, err := v.findLocked(code)
	if err != nil {
		return r, err
	}
	if !found {
		r.Result = charging.VoucherUnknown
		r.BarredUntil, err = v.fail(caller, now)
		return r, err
	}
	r.Hash = h
	r.Value = rec.Value
	blocked, err := v.batchBlocked(rec.Batch)
	if err != nil {
		lock.Unlock()
		return r, err
	}
	if r.Result = charging.RedeemVoucher(&rec, blocked, beneficiary, now); r.Result != charging.VoucherOK {
		lock.Unlock()
		if r.Result == charging.VoucherAlreadyUsed {
			// A refusal leaves rec as read: its use, for the caller to
			// recognise a retry. Still no guard failure: a used card is
			// a real card, not a guess.
			r.UsedBy, r.UsedAt, r.CreditSeq = rec.UsedBy, rec.UsedAt, rec.CreditSeq
		}
		return r, nil
	}
	r.card, r.lock = &charging.CardUse{Hash: h, Card: rec}, lock
	return r, nil
}

// fail counts a wrong code on caller's guard and returns the bar's end if
// this failure barred the caller. Written without fsync: a count lost in a
// crash gives a guesser one or two more tries out of 10^16, and a synced
// write per wrong guess would let guessing load the disk.
func (v *Vouchers) fail(caller charging.SubscriberID, now time.Time) (int64, error) {
	mu := v.guardLock(caller)
	mu.Lock()
	defer mu.Unlock()
	g, err := v.Guard(caller)
	if err != nil {
		return 0, err
	}
	var until int64
	if g.Fail(&v.guard, now) {
		until = g.BarredUntil
	}
	v.markGuard(caller)
	if err := v.db.Set(redeemGuardKey(nil, caller), appendRedeemGuard(nil, &g), pebble.NoSync); err != nil {
		return 0, fmt.Errorf("storage: write redeem guard: %w", err)
	}
	return until, nil
}

// Guard returns caller's brute-force counters (zero if none): the ops view.
func (v *Vouchers) Guard(caller charging.SubscriberID) (charging.RedeemGuard, error) {
	if !v.mayHaveGuard(caller) {
		return charging.RedeemGuard{}, nil
	}
	var kb [16]byte
	val, found, err := pointRead(v.db, redeemGuardKey(kb[:0], caller))
	if err != nil || !found {
		return charging.RedeemGuard{}, err
	}
	return decodeRedeemGuard(val)
}

// GuardEntry is one caller's counters, for operations.
type GuardEntry struct {
	Caller charging.SubscriberID
	Guard  charging.RedeemGuard
}

// BarredCallers lists up to limit (≤ VoucherListMax) callers barred at now,
// in MSISDN order: the ops view of the brute-force bar.
func (v *Vouchers) BarredCallers(now time.Time, limit int) ([]GuardEntry, error) {
	limit = min(max(limit, 0), VoucherListMax)
	it, err := v.db.NewIter(&pebble.IterOptions{LowerBound: tableStart(tagRedeemGuard), UpperBound: tableStart(tagRedeemGuard + 1)})
	if err != nil {
		return nil, fmt.Errorf("storage: list guards: %w", err)
	}
	defer it.Close()
	var out []GuardEntry
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			return out, fmt.Errorf("%w: guard key of %d bytes", ErrCorrupt, len(k))
		}
		g, err := decodeRedeemGuard(it.Value())
		if err != nil {
			return out, err
		}
		if g.Barred(now) {
			out = append(out, GuardEntry{Caller: charging.SubscriberID(binary.BigEndian.Uint64(k[1:])), Guard: g})
		}
	}
	return out, it.Error()
}

// Complete finishes a pending marker of an older build (see the file
// comment): the credit of the voucher with hash h is journalled as seq on
// its beneficiary. Idempotent: completing a completed voucher
// changes nothing.
func (v *Vouchers) Complete(h VoucherHash, seq uint64) error {
	mu := v.lock(&h)
	mu.Lock()
	defer mu.Unlock()
	rec, err := v.get(&h)
	if err != nil {
		return err
	}
	if rec.State != charging.VoucherUsed {
		return fmt.Errorf("%w: voucher is %v", ErrVoucherNotPending, rec.State)
	}
	rec.CreditSeq = seq
	b := v.db.NewBatch()
	defer b.Close()
	_ = b.Set(voucherKey(nil, &h), appendVoucher(nil, &rec), nil)
	_ = b.Delete(voucherPendingKey(nil, &h), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("storage: complete voucher: %w", err)
	}
	return nil
}

// Revert finishes a pending marker of an older build whose credit was
// refused: the card becomes active again (synced), so it is not burned. Only a card with a pending credit can
// be reverted: a completed one has been credited.
func (v *Vouchers) Revert(h VoucherHash) error {
	mu := v.lock(&h)
	mu.Lock()
	defer mu.Unlock()
	pending, err := has(v.db, voucherPendingKey(nil, &h))
	if err != nil {
		return fmt.Errorf("storage: revert voucher: %w", err)
	}
	if !pending {
		return ErrVoucherNotPending
	}
	rec, err := v.get(&h)
	if err != nil {
		return err
	}
	rec.State, rec.UsedBy, rec.UsedAt, rec.CreditSeq = charging.VoucherActive, 0, 0, 0
	b := v.db.NewBatch()
	defer b.Close()
	_ = b.Set(voucherKey(nil, &h), appendVoucher(nil, &rec), nil)
	_ = b.Delete(voucherPendingKey(nil, &h), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("storage: revert voucher: %w", err)
	}
	return nil
}

// Pending lists up to limit (≤ VoucherListMax) pending markers of older
// builds (see the file comment), in hash order, starting after the hash
// after (nil: from the first): recovery re-drives each with Command(). A
// caller pages with the last hash of a page as the next after; a marker
// written behind that point meanwhile shows on the next pass.
func (v *Vouchers) Pending(after *VoucherHash, limit int) ([]Redemption, error) {
	limit = min(max(limit, 0), VoucherListMax)
	lower := tableStart(tagVoucherPending)
	if after != nil {
		// The smallest key above after's marker: after itself is excluded.
		lower = append(voucherPendingKey(nil, after), 0)
	}
	it, err := v.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: tableStart(tagVoucherPending + 1)})
	if err != nil {
		return nil, fmt.Errorf("storage: list pending vouchers: %w", err)
	}
	defer it.Close()
	var out []Redemption
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != voucherKeyLen {
			return out, fmt.Errorf("%w: pending voucher key of %d bytes", ErrCorrupt, len(k))
		}
		r := Redemption{Result: charging.VoucherOK}
		copy(r.Hash[:], k[1:])
		r.Beneficiary, r.Value, _, err = decodeVoucherPending(it.Value())
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, it.Error()
}

// get reads the record of h; the caller holds h's lock when it writes.
func (v *Vouchers) get(h *VoucherHash) (charging.Voucher, error) {
	val, found, err := getCopy(v.db, voucherKey(nil, h))
	switch {
	case err != nil:
		return charging.Voucher{}, fmt.Errorf("storage: read voucher: %w", err)
	case !found:
		return charging.Voucher{}, ErrVoucherNotFound
	}
	return decodeVoucher(val)
}

// BySerial returns the record of the card with the serial printed on it,
// and its hash: how operations find a card they hold.
func (v *Vouchers) BySerial(serial uint64) (VoucherHash, charging.Voucher, error) {
	var h VoucherHash
	val, found, err := getCopy(v.db, voucherSerialKey(nil, serial))
	switch {
	case err != nil:
		return h, charging.Voucher{}, fmt.Errorf("storage: read voucher serial: %w", err)
	case !found:
		return h, charging.Voucher{}, ErrVoucherNotFound
	case len(val) != len(h):
		return h, charging.Voucher{}, fmt.Errorf("%w: serial index of %d bytes", ErrCorrupt, len(val))
	}
	copy(h[:], val)
	rec, err := v.get(&h)
	return h, rec, err
}

// Block blocks the card with serial. Only an active card changes; the
// returned state is the card's state after the call (a used card stays
// used: its credit was given).
func (v *Vouchers) Block(serial uint64) (charging.VoucherState, error) {
	h, _, err := v.BySerial(serial)
	if err != nil {
		return 0, err
	}
	mu := v.lock(&h)
	mu.Lock()
	defer mu.Unlock()
	rec, err := v.get(&h)
	if err != nil || rec.State != charging.VoucherActive {
		return rec.State, err
	}
	rec.State = charging.VoucherBlocked
	if err := v.db.Set(voucherKey(nil, &h), appendVoucher(nil, &rec), pebble.Sync); err != nil {
		return 0, fmt.Errorf("storage: block voucher: %w", err)
	}
	return rec.State, nil
}

// BlockBatch blocks every card of batch id at once, in one synced write of
// the batch record (cards are not rewritten: Redeem reads the flag). A
// redemption that held its card's lock before this returns may still
// complete; every one after it is refused.
func (v *Vouchers) BlockBatch(id uint32) error {
	v.batches.Lock()
	defer v.batches.Unlock()
	b, found, err := v.Batch(id)
	if err != nil {
		return err
	}
	if !found {
		return ErrVoucherNotFound
	}
	b.Blocked = true
	if err := v.db.Set(voucherBatchKey(nil, id), appendVoucherBatch(nil, &b), pebble.Sync); err != nil {
		return fmt.Errorf("storage: block batch: %w", err)
	}
	v.batches.m[id] = b
	return nil
}

// Batch returns the record of batch id.
func (v *Vouchers) Batch(id uint32) (VoucherBatch, bool, error) {
	val, found, err := getCopy(v.db, voucherBatchKey(nil, id))
	if err != nil || !found {
		return VoucherBatch{}, false, err
	}
	b, err := decodeVoucherBatch(val)
	return b, err == nil, err
}

// batchBlocked reads the batch's flag through a cache: batches are few and
// a redemption should not pay a second disk read.
func (v *Vouchers) batchBlocked(id uint32) (bool, error) {
	v.batches.RLock()
	b, ok := v.batches.m[id]
	v.batches.RUnlock()
	if ok {
		return b.Blocked, nil
	}
	v.batches.Lock()
	defer v.batches.Unlock()
	b, found, err := v.Batch(id)
	if err != nil {
		return false, err
	}
	if found {
		v.batches.m[id] = b
	}
	return b.Blocked, nil
}

func validateVoucher(r *charging.Voucher) error {
	switch {
	case !r.State.Valid():
		return fmt.Errorf("voucher state %d", r.State)
	case r.Value <= 0 || r.Value > charging.BalanceMax:
		return fmt.Errorf("voucher value %d", r.Value)
	case r.State == charging.VoucherUsed && r.UsedBy == 0:
		return errors.New("used voucher without beneficiary")
	}
	return nil
}

func appendVoucher(b []byte, r *charging.Voucher) []byte {
	b = append(b, voucherV1, byte(r.State))
	b = appendU32(b, r.Batch)
	b = appendU64(b, r.Serial)
	b = appendI64(b, int64(r.Value))
	b = appendI64(b, r.Expiry)
	b = appendU64(b, uint64(r.UsedBy))
	b = appendI64(b, r.UsedAt)
	return appendU64(b, r.CreditSeq)
}

func decodeVoucher(v []byte) (charging.Voucher, error) {
	var r charging.Voucher
	if len(v) != voucherLen || v[0] != voucherV1 {
		return r, fmt.Errorf("%w: voucher of %d bytes", ErrCorrupt, len(v))
	}
	rd := reader{b: v[1:]}
	r.State = charging.VoucherState(rd.u8())
	r.Batch = rd.u32()
	r.Serial = rd.u64()
	r.Value = charging.Amount(rd.i64())
	r.Expiry = rd.i64()
	r.UsedBy = charging.SubscriberID(rd.u64())
	r.UsedAt = rd.i64()
	r.CreditSeq = rd.u64()
	if err := rd.done("voucher"); err != nil {
		return r, err
	}
	if err := validateVoucher(&r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return r, nil
}

func appendVoucherBatch(b []byte, r *VoucherBatch) []byte {
	b = append(b, voucherBatchV1)
	b = appendU32(b, r.ID)
	b = appendI64(b, int64(r.Value))
	b = appendI64(b, r.Expiry)
	b = appendU32(b, r.Count)
	b = appendI64(b, r.Created)
	b = appendBool(b, r.Blocked)
	return append(b, r.KeyID)
}

func decodeVoucherBatch(v []byte) (VoucherBatch, error) {
	var r VoucherBatch
	if len(v) != voucherBatchLen || v[0] != voucherBatchV1 {
		return r, fmt.Errorf("%w: voucher batch of %d bytes", ErrCorrupt, len(v))
	}
	rd := reader{b: v[1:]}
	r.ID = rd.u32()
	r.Value = charging.Amount(rd.i64())
	r.Expiry = rd.i64()
	r.Count = rd.u32()
	r.Created = rd.i64()
	blocked := rd.u8()
	r.KeyID = rd.u8()
	if err := rd.done("voucher batch"); err != nil {
		return r, err
	}
	if blocked > 1 || r.Value <= 0 || r.Value > charging.BalanceMax {
		return r, fmt.Errorf("%w: voucher batch %d", ErrCorrupt, r.ID)
	}
	r.Blocked = blocked == 1
	return r, nil
}

func appendVoucherPending(b []byte, to charging.SubscriberID, value charging.Amount, at int64) []byte {
	b = append(b, voucherPendingV1)
	b = appendU64(b, uint64(to))
	b = appendI64(b, int64(value))
	return appendI64(b, at)
}

func decodeVoucherPending(v []byte) (charging.SubscriberID, charging.Amount, int64, error) {
	if len(v) != voucherPendingLen || v[0] != voucherPendingV1 {
		return 0, 0, 0, fmt.Errorf("%w: pending voucher of %d bytes", ErrCorrupt, len(v))
	}
	rd := reader{b: v[1:]}
	to, value, at := charging.SubscriberID(rd.u64()), charging.Amount(rd.i64()), rd.i64()
	if to == 0 || value <= 0 || value > charging.BalanceMax {
		return 0, 0, 0, fmt.Errorf("%w: pending voucher", ErrCorrupt)
	}
	return to, value, at, rd.done("pending voucher")
}

func appendRedeemGuard(b []byte, g *charging.RedeemGuard) []byte {
	b = append(b, redeemGuardV1)
	b = appendI64(b, g.WindowStart)
	b = appendU32(b, g.Failures)
	return appendI64(b, g.BarredUntil)
}

func decodeRedeemGuard(v []byte) (charging.RedeemGuard, error) {
	var g charging.RedeemGuard
	if len(v) != redeemGuardLen || v[0] != redeemGuardV1 {
		return g, fmt.Errorf("%w: redeem guard of %d bytes", ErrCorrupt, len(v))
	}
	rd := reader{b: v[1:]}
	g.WindowStart, g.Failures, g.BarredUntil = rd.i64(), rd.u32(), rd.i64()
	return g, rd.done("redeem guard")
}

// HoldsVouchers reports whether the store holds any scratch card or batch
// record: whether card codes were hashed under a secret, which then must
// never be replaced by a new one (every unused card would become
// unredeemable). Cards count without a batch record too, since a
// generation that crashed leaves cards before its batch record.
func (s *Store) HoldsVouchers() (bool, error) {
	found, err := anyIn(s.db, tableStart(tagVoucher), tableStart(tagVoucherBatch+1))
	if err != nil {
		return false, fmt.Errorf("storage: look for vouchers: %w", err)
	}
	return found, nil
}
