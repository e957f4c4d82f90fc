package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ocs-engine/ocs/charging"
)

// Record versions: the first byte of every value. A new layout gets a new
// version and a decoder beside the old one; old records are never rewritten
// in place, so decoders of every version ever written stay.
const (
	accountV1  byte = 1
	entryV1    byte = 1
	requestV1  byte = 1 // no time: see decodeRequest
	requestV2  byte = 2 // v1 + the time the record was written
	totalsV1   byte = 1
	refundedV1 byte = 1
	apiKeyV1   byte = 1
	schemaV1   byte = 1
	// schemaV2: an account record may be followed by journal entries to
	// fold in (charging.Change.JournalOnly) and request records carry
	// their time. A build that reads only schema 1 would take a stale
	// record for the balance, so it must refuse the database: Open writes
	// 2 over 1 (every schema-1 database is a valid schema-2 one).
	schemaV2 byte = 2
)

// Encoded sizes, fixed parts (values are little-endian, fixed width: the
// fastest to write and to bound; Pebble's block compression removes the
// zero bytes that a varint would have saved).
const (
	accountHeadLen     = 1 + 8 + 8 + 8 + 8 + 4 + 8 + (4 + 8 + 8 + 4 + 4) + 1
	reservationLen     = 4 + 4 + 8 + 8 + 8 + 8 + 8 + 1
	accountLenMax      = accountHeadLen + charging.SessionsMax*reservationLen
	entryHeadLen       = 1 + 8 + 8 + 1 + 1 + 1 + 4 + 8 + 8 + 8 + 8 + 8 + 1
	entryLenMax        = entryHeadLen + charging.RequestKeyBytesMax
	requestV1Len       = 1 + 8 + 1 + 1 + 8 + 8 + 8 + 8 + 1 + 4 + 8 + 1 + 4
	requestLen         = requestV1Len + 8
	totalsLen          = 1 + 8 + 8
	refundedLen        = 1 + 8
	apiKeyLen          = 1 + 1
	outcomeFinalUnit   = 1 << 0
	outcomeReplayed    = 1 << 1
	outcomeFlagsKnown  = outcomeFinalUnit | outcomeReplayed
	reservationFinalOn = 1
)

// ErrCorrupt is wrapped by every error about a stored record that does not
// decode or breaks an invariant: the store must not be trusted past it.
var ErrCorrupt = errors.New("storage: corrupt record")

// ErrInvalid is wrapped by every error about a value refused before it is
// written: a programming error upstream, caught before it becomes durable.
var ErrInvalid = errors.New("storage: invalid value")

var le = binary.LittleEndian

// reader consumes a value front to back; a read past the end sets short and
// returns zero, so that decoders check once at the end and never panic.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) u8() byte {
	if len(r.b) < 1 {
		r.short = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.short = true
		return 0
	}
	v := le.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.short = true
		return 0
	}
	v := le.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) i64() int64 { return int64(r.u64()) }

// bytes returns the next n bytes without copying.
func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.short = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// done reports an error unless the value was read exactly to its end.
func (r *reader) done(what string) error {
	switch {
	case r.short:
		return fmt.Errorf("%w: %s truncated", ErrCorrupt, what)
	case len(r.b) != 0:
		return fmt.Errorf("%w: %s has %d trailing bytes", ErrCorrupt, what, len(r.b))
	}
	return nil
}

func appendU32(b []byte, v uint32) []byte { return le.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return le.AppendUint64(b, v) }
func appendI64(b []byte, v int64) []byte  { return le.AppendUint64(b, uint64(v)) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// validName reports whether a stored enum is one charging defines: its
// String is "invalid" for zero and for anything past the last name, and a
// name appended to charging later is accepted here without a change.
func validName(s string) bool { return s != "invalid" && s != "invalid_result" }

func amountOK(a charging.Amount) bool { return a >= -charging.BalanceMax && a <= charging.BalanceMax }

func balanceOK(a charging.Amount) bool { return a >= 0 && a <= charging.BalanceMax }

// validateAccount checks what a stored account must satisfy: the invariants
// of charging.Account.CheckInvariants, as an error instead of a panic.
func validateAccount(a *charging.Account) error {
	switch {
	case a.ID == 0:
		return errors.New("account id is zero")
	case !balanceOK(a.Balance):
		return fmt.Errorf("account %d: balance %d outside 0..BalanceMax", a.ID, a.Balance)
	case len(a.Reservations) > charging.SessionsMax:
		return fmt.Errorf("account %d: %d reservations above SessionsMax", a.ID, len(a.Reservations))
	}
	var reserved charging.Amount
	for i := range a.Reservations {
		r := &a.Reservations[i]
		if !balanceOK(r.Reserved) || !balanceOK(r.Charged) {
			return fmt.Errorf("account %d: reservation %d amounts outside 0..BalanceMax", a.ID, r.Session)
		}
		reserved += r.Reserved
	}
	if reserved > a.Balance {
		return fmt.Errorf("account %d: reserved %d above balance %d", a.ID, reserved, a.Balance)
	}
	return nil
}

// appendAccount appends the v1 encoding of a, which must be valid.
func appendAccount(b []byte, a *charging.Account) []byte {
	b = append(b, accountV1)
	b = appendU64(b, uint64(a.ID))
	b = appendI64(b, int64(a.Balance))
	b = appendI64(b, a.ValidUntil)
	b = appendU64(b, a.Seq)
	b = appendU32(b, a.NextSession)
	b = appendI64(b, a.Created)
	b = appendU32(b, a.Month.Month)
	b = appendI64(b, int64(a.Month.Spent))
	b = appendI64(b, int64(a.Month.ToppedUp))
	b = appendU32(b, a.Month.Charges)
	b = appendU32(b, a.Month.TopUps)
	b = append(b, byte(len(a.Reservations)))
	for i := range a.Reservations {
		r := &a.Reservations[i]
		b = appendU32(b, r.Session)
		b = appendU32(b, uint32(r.RatingGroup))
		b = appendU64(b, r.Granted)
		b = appendU64(b, r.Used)
		b = appendI64(b, int64(r.Reserved))
		b = appendI64(b, int64(r.Charged))
		b = appendI64(b, r.ExpiresAt)
		b = appendBool(b, r.Final)
	}
	return b
}

// decodeAccount decodes and validates an account record. Reservations get
// their own backing array (nil when there are none, as charging keeps it).
func decodeAccount(v []byte) (charging.Account, error) {
	var a charging.Account
	if len(v) < accountHeadLen {
		return a, fmt.Errorf("%w: account record of %d bytes", ErrCorrupt, len(v))
	}
	if v[0] != accountV1 {
		return a, fmt.Errorf("%w: account record version %d", ErrCorrupt, v[0])
	}
	r := reader{b: v[1:]}
	a.ID = charging.SubscriberID(r.u64())
	a.Balance = charging.Amount(r.i64())
	a.ValidUntil = r.i64()
	a.Seq = r.u64()
	a.NextSession = r.u32()
	a.Created = r.i64()
	a.Month.Month = r.u32()
	a.Month.Spent = charging.Amount(r.i64())
	a.Month.ToppedUp = charging.Amount(r.i64())
	a.Month.Charges = r.u32()
	a.Month.TopUps = r.u32()
	n := int(r.u8())
	if n > charging.SessionsMax || len(r.b) != n*reservationLen {
		return charging.Account{}, fmt.Errorf("%w: account record with %d reservations in %d bytes", ErrCorrupt, n, len(r.b))
	}
	if n > 0 {
		a.Reservations = make([]charging.Reservation, n)
	}
	for i := range a.Reservations {
		res := &a.Reservations[i]
		res.Session = r.u32()
		res.RatingGroup = charging.RatingGroup(r.u32())
		res.Granted = r.u64()
		res.Used = r.u64()
		res.Reserved = charging.Amount(r.i64())
		res.Charged = charging.Amount(r.i64())
		res.ExpiresAt = r.i64()
		final := r.u8()
		if final > 1 {
			return charging.Account{}, fmt.Errorf("%w: account reservation flag %d", ErrCorrupt, final)
		}
		res.Final = final == reservationFinalOn
	}
	if err := r.done("account record"); err != nil {
		return charging.Account{}, err
	}
	if err := validateAccount(&a); err != nil {
		return charging.Account{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return a, nil
}

func validateEntry(e *charging.Entry) error {
	switch {
	case e.Seq == 0:
		return errors.New("entry seq is zero")
	case !validName(e.Kind.String()):
		return fmt.Errorf("entry %d: kind %d unknown", e.Seq, e.Kind)
	case e.Channel != 0 && !validName(e.Channel.String()):
		return fmt.Errorf("entry %d: channel %d unknown", e.Seq, e.Channel)
	case !amountOK(e.Amount):
		return fmt.Errorf("entry %d: amount %d outside ±BalanceMax", e.Seq, e.Amount)
	case !balanceOK(e.BalanceAfter):
		return fmt.Errorf("entry %d: balance after %d outside 0..BalanceMax", e.Seq, e.BalanceAfter)
	case len(e.Key) > charging.RequestKeyBytesMax:
		return fmt.Errorf("entry %d: key of %d bytes above RequestKeyBytesMax", e.Seq, len(e.Key))
	}
	return nil
}

// appendEntry appends the v1 encoding of e, which must be valid.
func appendEntry(b []byte, e *charging.Entry) []byte {
	b = append(b, entryV1)
	b = appendU64(b, e.Seq)
	b = appendI64(b, e.Time)
	b = append(b, byte(e.Kind), byte(e.Channel), e.Bank)
	b = appendU32(b, uint32(e.RatingGroup))
	b = appendU64(b, e.Units)
	b = appendI64(b, int64(e.Amount))
	b = appendI64(b, int64(e.BalanceAfter))
	b = appendI64(b, e.ValidUntilAfter)
	b = appendU64(b, e.Ref)
	b = append(b, byte(len(e.Key)))
	return append(b, e.Key...)
}

// decodeEntry decodes and validates a journal entry. Its Key is the one
// allocation.
func decodeEntry(v []byte) (charging.Entry, error) {
	var e charging.Entry
	if len(v) < entryHeadLen || len(v) > entryLenMax {
		return e, fmt.Errorf("%w: journal entry of %d bytes", ErrCorrupt, len(v))
	}
	if v[0] != entryV1 {
		return e, fmt.Errorf("%w: journal entry version %d", ErrCorrupt, v[0])
	}
	r := reader{b: v[1:]}
	e.Seq = r.u64()
	e.Time = r.i64()
	e.Kind = charging.EntryKind(r.u8())
	e.Channel = charging.Channel(r.u8())
	e.Bank = r.u8()
	e.RatingGroup = charging.RatingGroup(r.u32())
	e.Units = r.u64()
	e.Amount = charging.Amount(r.i64())
	e.BalanceAfter = charging.Amount(r.i64())
	e.ValidUntilAfter = r.i64()
	e.Ref = r.u64()
	n := int(r.u8())
	key := r.bytes(n)
	if err := r.done("journal entry"); err != nil {
		return charging.Entry{}, err
	}
	if n > 0 {
		e.Key = string(key)
	}
	if err := validateEntry(&e); err != nil {
		return charging.Entry{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return e, nil
}

func validateRequest(q *charging.RequestRecord) error {
	o := &q.Outcome
	switch {
	case !validName(q.Kind.String()):
		return fmt.Errorf("request kind %d unknown", q.Kind)
	case !o.Result.Valid():
		return fmt.Errorf("request result %d unknown", o.Result)
	case o.State != 0 && !validName(o.State.String()):
		return fmt.Errorf("request state %d unknown", o.State)
	case !amountOK(o.Amount):
		return fmt.Errorf("request amount %d outside ±BalanceMax", o.Amount)
	case !balanceOK(o.Balance):
		return fmt.Errorf("request balance %d outside 0..BalanceMax", o.Balance)
	case q.Time < 0:
		return fmt.Errorf("request time %d negative", q.Time)
	}
	return nil
}

// appendRequest appends the v2 encoding of q, which must be valid. Its
// Time is written as it is: Commit stamps a zero one before encoding.
func appendRequest(b []byte, q *charging.RequestRecord) []byte {
	o := &q.Outcome
	b = append(b, requestV2)
	b = appendU64(b, q.Fingerprint)
	b = append(b, byte(q.Kind), byte(o.Result))
	b = appendU64(b, o.Seq)
	b = appendI64(b, int64(o.Amount))
	b = appendI64(b, int64(o.Balance))
	b = appendI64(b, o.ValidUntil)
	b = append(b, byte(o.State))
	b = appendU32(b, o.Session)
	b = appendU64(b, o.Granted)
	var flags byte
	if o.FinalUnit {
		flags |= outcomeFinalUnit
	}
	if o.Replayed {
		flags |= outcomeReplayed
	}
	b = append(b, flags)
	b = appendU32(b, o.QuotaValidity)
	return appendI64(b, q.Time)
}

// decodeRequest decodes and validates an idempotency record. It does not
// allocate. A v1 record (written before records had a time) decodes with
// Time 0; the pruner treats it as written at its epoch (pruner.go). A v2
// record always has a positive Time: Commit stamps every record it writes.
func decodeRequest(v []byte) (charging.RequestRecord, error) {
	var q charging.RequestRecord
	if len(v) == 0 {
		return q, fmt.Errorf("%w: empty request record", ErrCorrupt)
	}
	switch {
	case v[0] == requestV1 && len(v) == requestV1Len:
	case v[0] == requestV2 && len(v) == requestLen:
	case v[0] == requestV1 || v[0] == requestV2:
		return q, fmt.Errorf("%w: request record v%d of %d bytes", ErrCorrupt, v[0], len(v))
	default:
		return q, fmt.Errorf("%w: request record version %d", ErrCorrupt, v[0])
	}
	r := reader{b: v[1:]}
	o := &q.Outcome
	q.Fingerprint = r.u64()
	q.Kind = charging.Kind(r.u8())
	o.Result = charging.Result(r.u8())
	o.Seq = r.u64()
	o.Amount = charging.Amount(r.i64())
	o.Balance = charging.Amount(r.i64())
	o.ValidUntil = r.i64()
	o.State = charging.State(r.u8())
	o.Session = r.u32()
	o.Granted = r.u64()
	flags := r.u8()
	o.QuotaValidity = r.u32()
	if v[0] == requestV2 {
		q.Time = r.i64()
		if q.Time <= 0 {
			return charging.RequestRecord{}, fmt.Errorf("%w: request record v2 time %d not positive", ErrCorrupt, q.Time)
		}
	}
	if err := r.done("request record"); err != nil {
		return charging.RequestRecord{}, err
	}
	if flags&^outcomeFlagsKnown != 0 {
		return charging.RequestRecord{}, fmt.Errorf("%w: request record flags %#x", ErrCorrupt, flags)
	}
	o.FinalUnit = flags&outcomeFinalUnit != 0
	o.Replayed = flags&outcomeReplayed != 0
	if err := validateRequest(&q); err != nil {
		return charging.RequestRecord{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return q, nil
}

func appendTotals(b []byte, t charging.Totals) []byte {
	b = append(b, totalsV1)
	b = appendI64(b, int64(t.Owed))
	return appendU64(b, t.Accounts)
}

func decodeTotals(v []byte) (charging.Totals, error) {
	var t charging.Totals
	if len(v) != totalsLen || v[0] != totalsV1 {
		return t, fmt.Errorf("%w: totals record of %d bytes", ErrCorrupt, len(v))
	}
	r := reader{b: v[1:]}
	t.Owed = charging.Amount(r.i64())
	t.Accounts = r.u64()
	if t.Owed < 0 {
		return charging.Totals{}, fmt.Errorf("%w: totals owed %d negative", ErrCorrupt, t.Owed)
	}
	return t, r.done("totals record")
}

// appendRefunded encodes the marker of a refunded charge: the Seq of the
// refund entry that refunded it, for the audit trail.
func appendRefunded(b []byte, refundSeq uint64) []byte {
	return appendU64(append(b, refundedV1), refundSeq)
}

func decodeRefunded(v []byte) (refundSeq uint64, err error) {
	if len(v) != refundedLen || v[0] != refundedV1 {
		return 0, fmt.Errorf("%w: refunded marker of %d bytes", ErrCorrupt, len(v))
	}
	return le.Uint64(v[1:]), nil
}
