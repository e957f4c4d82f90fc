package storage

// Fixed-service accounts (internet, TV, DUO TV, fixed telephony) and the
// *101# payments that pay them from mobile credit.
//
// # *101# payment protocol
//
// A payment debits the caller's mobile account (an actor) and extends a
// fixed account (here), at most once per calendar month per caller:
//
//  1. BeginPayment(caller, account, pkg, …): under the caller's lock,
//     refuse if the caller already paid this month (charging.MayPayByUSSD
//     on the month marker), if the account does not exist or the package is
//     not its own (a trial charging.FixedAccount.PayPackage); otherwise
//     write, in one synced batch, the payment record (pending) and the
//     caller's month marker. The marker is the once-a-month claim: a second
//     concurrent *101# of the same caller sees it and is refused.
//  2. The engine debits price + fee from the caller with key p.DebitKey()
//     ("P/<id>"): a new command kind (see the report).
//  3. Debit OK: ApplyPayment(id, now) extends the fixed account and marks
//     the payment applied, in one synced batch; idempotent. Debit refused
//     (insufficient credit, grace…): CancelPayment(id) marks it cancelled
//     and releases the month marker, so the subscriber may try again.
//  4. Recovery: PendingPayments() lists pending records; run step 2 again
//     with the same key (replayed if it happened) and then step 3.

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ocs-engine/ocs/charging"
)

const (
	tagFixed         byte = 0x15 // | id bytes → FixedAccount
	tagFixedPayment  byte = 0x16 // | id:8     → FixedPayment
	tagFixedMonth    byte = 0x17 // | sub:8    → month marker {month, payment id}
	tagFixedPayOpen  byte = 0x18 // | id:8     → (empty) index of pending payments
	fixedV1          byte = 1
	fixedPaymentV1   byte = 1
	fixedMonthV1     byte = 1
	fixedHeadLen          = 1 + 1 + 1 + 8 + 1 + 8 + 8 + 1
	fixedPaymentHead      = 1 + 8 + 8 + 1 + 8 + 8 + 4 + 1 + 8 + 8 + 1
	fixedMonthLen         = 1 + 4 + 8
)

// PaymentState is a *101# payment's state. Stored: never renumber.
type PaymentState uint8

const (
	PaymentPending   PaymentState = 1
	PaymentApplied   PaymentState = 2
	PaymentCancelled PaymentState = 3
)

// FixedPayment is the durable record of one *101# payment.
type FixedPayment struct {
	ID        uint64
	Caller    charging.SubscriberID
	Account   string
	Package   charging.PackageID
	Price     charging.Amount
	Fee       charging.Amount
	Month     uint32 // yyyymm the once-a-month rule counts it in
	State     PaymentState
	Created   int64 // Unix seconds
	PaidUntil int64 // the account's paid-until after it was applied
}

// DebitKey is the request key of the caller's debit.
func (p *FixedPayment) DebitKey() string { return "P/" + strconv.FormatUint(p.ID, 10) }

// Debit is what the caller pays: price + fee.
func (p *FixedPayment) Debit() charging.Amount { return p.Price + p.Fee }

// Errors of the fixed store.
var (
	ErrFixedNotFound   = errors.New("storage: no fixed account has this identifier")
	ErrPaymentNotFound = errors.New("storage: no payment has this id")
	ErrPaymentState    = errors.New("storage: payment is not pending")
)

// Fixed is the fixed-account store. Safe for concurrent use.
type Fixed struct {
	db    *pebble.DB
	locks [256]sync.Mutex // by caller, account or payment: never two at once
	mu    struct {
		sync.Mutex
		next uint64
	}
}

// NewFixed returns the fixed-account store of s.
func NewFixed(s *Store) (*Fixed, error) { return newFixed(s.db) }

func newFixed(db *pebble.DB) (*Fixed, error) {
	f := &Fixed{db: db}
	last, err := lastID(db, tagFixedPayment)
	f.mu.next = last + 1
	return f, err
}

func (f *Fixed) lock(s string) *sync.Mutex {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return &f.locks[h%uint32(len(f.locks))]
}

func fixedKey(id string) []byte { return append(appendTable(nil, tagFixed), id...) }

// Get returns the account with identifier id (normalised by ParseFixedID).
func (f *Fixed) Get(id string) (charging.FixedAccount, bool, error) {
	v, found, err := getCopy(f.db, fixedKey(id))
	if err != nil || !found {
		return charging.FixedAccount{}, false, err
	}
	a, err := decodeFixed(v)
	if err == nil && a.ID != id {
		err = fmt.Errorf("%w: fixed account %q stored under %q", ErrCorrupt, a.ID, id)
	}
	return a, err == nil, err
}

// Put provisions or replaces an account (operations), synced.
func (f *Fixed) Put(a *charging.FixedAccount) error {
	if err := validateFixed(a); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	mu := f.lock(a.ID)
	mu.Lock()
	defer mu.Unlock()
	if err := f.db.Set(fixedKey(a.ID), appendFixed(nil, a), pebble.Sync); err != nil {
		return fmt.Errorf("storage: put fixed account: %w", err)
	}
	return nil
}

// TopUp credits a fixed-telephony balance (a bank's FIX top-up).
func (f *Fixed) TopUp(id string, amount charging.Amount) (charging.FixedAccount, charging.FixedResult, error) {
	mu := f.lock(id)
	mu.Lock()
	defer mu.Unlock()
	a, found, err := f.Get(id)
	if err != nil || !found {
		return a, charging.FixedUnknownAccount, err
	}
	if r := a.TopUp(amount); r != charging.FixedOK {
		return a, r, nil
	}
	if err := f.db.Set(fixedKey(id), appendFixed(nil, &a), pebble.Sync); err != nil {
		return a, 0, fmt.Errorf("storage: top up fixed account: %w", err)
	}
	return a, charging.FixedOK, nil
}

func monthKey(id charging.SubscriberID) []byte { return idKey(tagFixedMonth, uint64(id)) }

// BeginPayment is step 1 of the *101# protocol.
func (f *Fixed) BeginPayment(caller charging.SubscriberID, account string, pkg charging.PackageID, cat *charging.Catalogue,
	fee charging.Amount, now time.Time) (FixedPayment, charging.FixedResult, error) {
	mu := f.lock(caller.String())
	mu.Lock()
	defer mu.Unlock()
	var p FixedPayment
	v, found, err := getCopy(f.db, monthKey(caller))
	if err != nil {
		return p, 0, fmt.Errorf("storage: read payment month: %w", err)
	}
	if found {
		month, _, err := decodeFixedMonth(v)
		if err != nil {
			return p, 0, err
		}
		if !charging.MayPayByUSSD(month, now) {
			return p, charging.FixedAlreadyPaidMonth, nil
		}
	}
	a, found, err := f.Get(account)
	if err != nil || !found {
		return p, charging.FixedUnknownAccount, err
	}
	if r := a.PayPackage(cat, pkg, now); r != charging.FixedOK {
		return p, r, nil
	}
	f.mu.Lock()
	p = FixedPayment{ID: f.mu.next, Caller: caller, Account: account, Package: pkg, Price: cat[pkg].Price, Fee: fee,
		Month: charging.MonthOf(now), State: PaymentPending, Created: now.Unix()}
	f.mu.next++
	f.mu.Unlock()
	b := f.db.NewBatch()
	defer b.Close()
	_ = b.Set(idKey(tagFixedPayment, p.ID), appendFixedPayment(nil, &p), nil)
	_ = b.Set(idKey(tagFixedPayOpen, p.ID), nil, nil)
	_ = b.Set(monthKey(caller), appendFixedMonth(nil, p.Month, p.ID), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return p, 0, fmt.Errorf("storage: begin payment: %w", err)
	}
	return p, charging.FixedOK, nil
}

// MonthPayment returns the payment caller's month marker names: the
// caller's last *101# payment that was begun and not cancelled (found is
// false without a marker). Read-only, without the caller's lock: it is one
// read of the marker and one of the payment, for flows to recognise a
// retry of a payment that succeeded (the marker then refuses it as
// "already paid this month"). The debit's journal Seq is not in the
// payment record: it is the caller's request record under DebitKey()
// (Store.LookupRequest), kept far longer than a retry takes.
func (f *Fixed) MonthPayment(caller charging.SubscriberID) (FixedPayment, bool, error) {
	v, found, err := getCopy(f.db, monthKey(caller))
	if err != nil {
		return FixedPayment{}, false, fmt.Errorf("storage: read payment month: %w", err)
	}
	if !found {
		return FixedPayment{}, false, nil
	}
	_, id, err := decodeFixedMonth(v)
	if err != nil {
		return FixedPayment{}, false, err
	}
	p, err := f.Payment(id)
	if errors.Is(err, ErrPaymentNotFound) {
		return p, false, fmt.Errorf("%w: month marker of %d names payment %d, which does not exist", ErrCorrupt, caller, id)
	}
	return p, err == nil, err
}

// Payment returns payment id.
func (f *Fixed) Payment(id uint64) (FixedPayment, error) {
	v, found, err := getCopy(f.db, idKey(tagFixedPayment, id))
	switch {
	case err != nil:
		return FixedPayment{}, fmt.Errorf("storage: read payment: %w", err)
	case !found:
		return FixedPayment{}, ErrPaymentNotFound
	}
	return decodeFixedPayment(v)
}

// ApplyPayment is step 3 after a successful debit: the fixed account moves
// (charging.FixedAccount.PayPackage) and the payment is applied, in one
// synced batch. Applying an applied payment returns it unchanged.
func (f *Fixed) ApplyPayment(id uint64, cat *charging.Catalogue, now time.Time) (FixedPayment, charging.FixedAccount, error) {
	p, err := f.Payment(id)
	if err != nil {
		return p, charging.FixedAccount{}, err
	}
	mu := f.lock(p.Account)
	mu.Lock()
	defer mu.Unlock()
	if p, err = f.Payment(id); err != nil {
		return p, charging.FixedAccount{}, err
	}
	a, found, err := f.Get(p.Account)
	switch {
	case err != nil:
		return p, a, err
	case p.State == PaymentApplied:
		return p, a, nil
	case p.State != PaymentPending:
		return p, a, ErrPaymentState
	case !found:
		// Deleted between begin and apply: the money was taken, the
		// account is gone. Operations must refund; never silently drop.
		return p, a, ErrFixedNotFound
	}
	if r := a.PayPackage(cat, p.Package, now); r != charging.FixedOK {
		return p, a, fmt.Errorf("storage: apply payment %d: %v", id, r)
	}
	p.State, p.PaidUntil = PaymentApplied, a.PaidUntil
	b := f.db.NewBatch()
	defer b.Close()
	_ = b.Set(fixedKey(a.ID), appendFixed(nil, &a), nil)
	_ = b.Set(idKey(tagFixedPayment, id), appendFixedPayment(nil, &p), nil)
	_ = b.Delete(idKey(tagFixedPayOpen, id), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return p, a, fmt.Errorf("storage: apply payment: %w", err)
	}
	return p, a, nil
}

// CancelPayment is step 3 after a refused debit: the payment is cancelled
// and the caller's month marker released if it is this payment's.
func (f *Fixed) CancelPayment(id uint64) error {
	p, err := f.Payment(id)
	if err != nil {
		return err
	}
	mu := f.lock(p.Caller.String())
	mu.Lock()
	defer mu.Unlock()
	if p, err = f.Payment(id); err != nil || p.State == PaymentCancelled {
		return err
	}
	if p.State != PaymentPending {
		return ErrPaymentState
	}
	p.State = PaymentCancelled
	b := f.db.NewBatch()
	defer b.Close()
	_ = b.Set(idKey(tagFixedPayment, id), appendFixedPayment(nil, &p), nil)
	_ = b.Delete(idKey(tagFixedPayOpen, id), nil)
	if v, found, err := getCopy(f.db, monthKey(p.Caller)); err == nil && found {
		if _, pid, err := decodeFixedMonth(v); err == nil && pid == id {
			_ = b.Delete(monthKey(p.Caller), nil)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("storage: cancel payment: %w", err)
	}
	return nil
}

// PaymentListMax bounds one PendingPayments call.
const PaymentListMax = 10_000

// PendingPayments lists up to limit pending payments whose ID is above
// after (0: from the first; IDs start at 1), oldest first. A caller pages
// with the last ID of a page as the next after.
func (f *Fixed) PendingPayments(after uint64, limit int) ([]FixedPayment, error) {
	ids, err := openIDs(f.db, tagFixedPayOpen, after, min(max(limit, 0), PaymentListMax), "pending payments")
	var out []FixedPayment
	for _, id := range ids {
		p, perr := f.Payment(id)
		if perr != nil {
			return out, perr
		}
		out = append(out, p)
	}
	return out, err
}

func validateFixed(a *charging.FixedAccount) error {
	id, err := charging.ParseFixedID(a.ID)
	switch {
	case err != nil || id != a.ID:
		return fmt.Errorf("fixed id %q", a.ID)
	case a.Kind.String() == "invalid":
		return fmt.Errorf("fixed kind %d", a.Kind)
	case a.AnchorDay > 31:
		return fmt.Errorf("anchor day %d", a.AnchorDay)
	case !balanceOK(a.Balance):
		return fmt.Errorf("fixed balance %d", a.Balance)
	}
	return nil
}

func appendFixed(b []byte, a *charging.FixedAccount) []byte {
	b = append(b, fixedV1, byte(a.Kind), byte(a.Package))
	b = appendI64(b, a.PaidUntil)
	b = append(b, a.AnchorDay)
	b = appendI64(b, int64(a.Balance))
	b = appendU64(b, a.Seq)
	b = append(b, byte(len(a.ID)))
	return append(b, a.ID...)
}

func decodeFixed(v []byte) (charging.FixedAccount, error) {
	var a charging.FixedAccount
	if len(v) < fixedHeadLen || v[0] != fixedV1 {
		return a, fmt.Errorf("%w: fixed account of %d bytes", ErrCorrupt, len(v))
	}
	r := reader{b: v[1:]}
	a.Kind = charging.FixedKind(r.u8())
	a.Package = charging.PackageID(r.u8())
	a.PaidUntil = r.i64()
	a.AnchorDay = r.u8()
	a.Balance = charging.Amount(r.i64())
	a.Seq = r.u64()
	a.ID = string(r.bytes(int(r.u8())))
	if err := r.done("fixed account"); err != nil {
		return a, err
	}
	if err := validateFixed(&a); err != nil {
		return a, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return a, nil
}

func appendFixedPayment(b []byte, p *FixedPayment) []byte {
	b = append(b, fixedPaymentV1)
	b = appendU64(b, p.ID)
	b = appendU64(b, uint64(p.Caller))
	b = append(b, byte(p.Package))
	b = appendI64(b, int64(p.Price))
	b = appendI64(b, int64(p.Fee))
	b = appendU32(b, p.Month)
	b = append(b, byte(p.State))
	b = appendI64(b, p.Created)
	b = appendI64(b, p.PaidUntil)
	b = append(b, byte(len(p.Account)))
	return append(b, p.Account...)
}

func decodeFixedPayment(v []byte) (FixedPayment, error) {
	var p FixedPayment
	if len(v) < fixedPaymentHead || v[0] != fixedPaymentV1 {
		return p, fmt.Errorf("%w: payment of %d bytes", ErrCorrupt, len(v))
	}
	r := reader{b: v[1:]}
	p.ID = r.u64()
	p.Caller = charging.SubscriberID(r.u64())
	p.Package = charging.PackageID(r.u8())
	p.Price = charging.Amount(r.i64())
	p.Fee = charging.Amount(r.i64())
	p.Month = r.u32()
	p.State = PaymentState(r.u8())
	p.Created = r.i64()
	p.PaidUntil = r.i64()
	p.Account = string(r.bytes(int(r.u8())))
	if err := r.done("payment"); err != nil {
		return p, err
	}
	if p.ID == 0 || p.Caller == 0 || p.State < PaymentPending || p.State > PaymentCancelled ||
		!balanceOK(p.Price) || !balanceOK(p.Fee) || len(p.Account) > charging.FixedIDBytesMax {
		return p, fmt.Errorf("%w: payment %d", ErrCorrupt, p.ID)
	}
	return p, nil
}

func appendFixedMonth(b []byte, month uint32, payment uint64) []byte {
	b = append(b, fixedMonthV1)
	b = appendU32(b, month)
	return appendU64(b, payment)
}

func decodeFixedMonth(v []byte) (uint32, uint64, error) {
	if len(v) != fixedMonthLen || v[0] != fixedMonthV1 {
		return 0, 0, fmt.Errorf("%w: payment month of %d bytes", ErrCorrupt, len(v))
	}
	r := reader{b: v[1:]}
	return r.u32(), r.u64(), r.done("payment month")
}
