package storage

// Credit transfers: the durable record that ties the sender's debit and the
// receiver's credit, which run on two actors and two commits.
//
// # Protocol
//
//  1. The engine validates (charging.TransferRules.Validate) and checks that
//     the receiver exists, then Begin writes the record, state pending,
//     synced, and allocates its ID.
//  2. Debit the sender amount+fee with request key t.DebitKey() ("T/<id>/d").
//     Refused (insufficient credit, grace, suspended): Advance(refused);
//     the subscriber is told why; nothing moved.
//  3. Advance(debited).
//  4. Credit the receiver with t.CreditCommand() (key "T/<id>/c", a
//     ChannelTransfer top-up: no validity). OK: Advance(credited).
//     Refused (the receiver vanished, balance limit): Advance(reversing),
//     then credit amount+fee back to the sender with key t.ReverseKey()
//     ("T/<id>/r"), then Advance(reversed).
//  5. Recovery, at start before serving and by the re-driver while
//     serving: Open() lists every record not in a final state. Pending:
//     run step 2 again with the same key (the actor answers a debit made
//     before the crash from its idempotency record, and makes it now
//     otherwise), and go on. Debited: run step 4 again. Reversing: run
//     only the reversal again, never the credit: a refused credit leaves
//     no idempotency record, so a credit retried after the reversal landed
//     could be made (the receiver may take it by then), and the receiver
//     would be paid after the sender was paid back. A record that an
//     older build left debited after its reversal landed (it had no
//     reversing state) is recognised by the reversal's request record
//     (ReversalRecorded) and moved to reversing before anything runs.
//
// Every leg has a key derived from the transfer ID: a leg that was made is
// answered from its idempotency record when it is re-driven, and a leg
// that was refused recorded nothing and may run again only where running
// it cannot pay twice (hence the reversing state). Money is conserved to
// the unit at every crash point, and each leg is in its account's journal.
//
// Advance writes with fsync: a lost "credited" would only re-drive an
// idempotent credit, but the record is also what operations read, and
// transfers are rare enough that the fsync costs nothing that matters.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ocs-engine/ocs/charging"
)

// Tables. The transfer records (0x19) are the business history: kept
// forever, operators audit them. The key index (0x1B) is idempotency data,
// like request records: the Pruner (pruner.go) deletes an entry once its
// transfer is final (credited, reversed or refused) and was created more
// than the retention ago. A retried transfer request after that begins a
// new transfer: the same contract as a retried charge after its request
// record is pruned. An entry of an open transfer is kept whatever its age,
// so a retry always finds a transfer still being driven.
const (
	tagTransfer     byte = 0x19 // | id:8 → Transfer; never deleted
	tagTransferOpen byte = 0x1A // | id:8 → (empty) index of non-final transfers
	tagTransferKey  byte = 0x1B // | from:8 | request key → id:8, so a retried request finds its transfer; pruned
	transferV1      byte = 1
	transferLen          = 1 + 8 + 8 + 8 + 8 + 8 + 1 + 8
)

// transferKeyStripes is the number of locks over senders that order Begin's
// look-up-then-write of the key index against the pruner's
// check-then-delete of it. 64, so that the pruner names the stripes one
// delete batch needs in a uint64.
const transferKeyStripes = 64

// transferKeyLocks are the Store's (Store.transferKeyLocks), not a
// Transfers': the Pruner has no handle on the Transfers cmd/ocs opens
// beside it, and both must take the same lock for a sender. Lock order:
// the pruner takes several, in increasing index; Begin takes one and no
// other.
type transferKeyLocks [transferKeyStripes]sync.Mutex

func transferKeyStripe(from charging.SubscriberID) int { return int(uint64(from) % transferKeyStripes) }

// ErrTransferNotFound is returned for an unknown transfer ID.
var ErrTransferNotFound = errors.New("storage: no transfer has this id")

// ErrTransferStep is returned for a step the protocol does not allow.
var ErrTransferStep = errors.New("storage: transfer cannot move to this state")

// Transfers is the transfer record store. Safe for concurrent use.
type Transfers struct {
	// s is the store of the records, of the legs' request records
	// (ReversalRecorded) and of the key-index locks it shares with its
	// Pruner (transferKeyLocks).
	s     *Store
	locks [256]sync.Mutex
	mu    struct {
		sync.Mutex
		next uint64
	}
}

// NewTransfers returns the transfer store of s; IDs continue after the
// highest one stored.
func NewTransfers(s *Store) (*Transfers, error) {
	t := &Transfers{s: s}
	last, err := lastID(s.db, tagTransfer)
	t.mu.next = last + 1
	return t, err
}

// lastID returns the highest 8-byte ID of table tag, or 0.
func lastID(db *pebble.DB, tag byte) (uint64, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: tableStart(tag), UpperBound: tableStart(tag + 1)})
	if err != nil {
		return 0, fmt.Errorf("storage: scan ids: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	if k := it.Key(); len(k) == 9 {
		return binary.BigEndian.Uint64(k[1:]), nil
	}
	return 0, fmt.Errorf("%w: id key of %d bytes", ErrCorrupt, len(it.Key()))
}

func idKey(tag byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(appendTable(make([]byte, 0, 9), tag), id)
}

// openIDs lists, in order, up to limit IDs above after in the index table
// tag (tag | id:8 → nothing): the open transfers and the pending payments,
// which their listings then read one by one. what names the index in
// errors.
func openIDs(db *pebble.DB, tag byte, after uint64, limit int, what string) ([]uint64, error) {
	if after == math.MaxUint64 {
		return nil, nil
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: idKey(tag, after+1), UpperBound: tableStart(tag + 1)})
	if err != nil {
		return nil, fmt.Errorf("storage: list %s: %w", what, err)
	}
	defer it.Close()
	var ids []uint64
	for ok := it.First(); ok && len(ids) < limit; ok = it.Next() {
		if len(it.Key()) != 9 {
			return ids, fmt.Errorf("%w: %s index key of %d bytes", ErrCorrupt, what, len(it.Key()))
		}
		ids = append(ids, binary.BigEndian.Uint64(it.Key()[1:]))
	}
	return ids, it.Error()
}

// ErrTransferKeyReused is returned by Begin for a request key the sender
// already used for a transfer with another receiver or amount.
var ErrTransferKeyReused = errors.New("storage: this request key was already used for another transfer")

// Begin is step 1: it records a pending transfer and returns it. The
// sender's request key makes it idempotent: a retry of the same request
// (same key, receiver and amount) returns the transfer the first attempt
// began, with existed true, so that the caller re-drives it instead of
// starting a second one. The key index is written in the same synced batch
// as the record.
func (t *Transfers) Begin(key string, from, to charging.SubscriberID, amount, fee charging.Amount, now time.Time) (tr charging.Transfer, existed bool, err error) {
	if len(key) == 0 || len(key) > charging.RequestKeyBytesMax {
		return tr, false, fmt.Errorf("%w: transfer request key of %d bytes, want 1..%d", ErrInvalid, len(key), charging.RequestKeyBytesMax)
	}
	// One lock stripe per sender: two concurrent retries of one request
	// cannot both miss the index, and the pruner cannot delete the entry
	// between this look-up and its use (see Pruner.deleteTransferKeys for
	// why either order with a prune is safe).
	mu := &t.s.transferKeyLocks[transferKeyStripe(from)]
	mu.Lock()
	defer mu.Unlock()
	k := binary.BigEndian.AppendUint64(appendTable(make([]byte, 0, 9+len(key)), tagTransferKey), uint64(from))
	k = append(k, key...)
	v, closer, err := t.s.db.Get(k)
	switch {
	case err == nil:
		if len(v) != 8 {
			_ = closer.Close()
			return tr, false, fmt.Errorf("%w: transfer key index of %d bytes", ErrCorrupt, len(v))
		}
		id := binary.BigEndian.Uint64(v)
		_ = closer.Close()
		if tr, err = t.Get(id); err != nil {
			return tr, false, err
		}
		if tr.To != to || tr.Amount != amount {
			return tr, false, ErrTransferKeyReused
		}
		return tr, true, nil
	case !errors.Is(err, pebble.ErrNotFound):
		return tr, false, fmt.Errorf("storage: transfer key index: %w", err)
	}
	t.mu.Lock()
	id := t.mu.next
	t.mu.next++
	t.mu.Unlock()
	tr = charging.Transfer{ID: id, From: from, To: to, Amount: amount, Fee: fee, State: charging.TransferPending, Created: now.Unix()}
	if err := validateTransfer(&tr); err != nil {
		return tr, false, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	b := t.s.db.NewBatch()
	defer b.Close()
	_ = b.Set(idKey(tagTransfer, id), appendTransfer(nil, &tr), nil)
	_ = b.Set(idKey(tagTransferOpen, id), nil, nil)
	_ = b.Set(k, binary.BigEndian.AppendUint64(nil, id), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return tr, false, fmt.Errorf("storage: begin transfer: %w", err)
	}
	return tr, false, nil
}

// Get returns transfer id.
func (t *Transfers) Get(id uint64) (charging.Transfer, error) {
	v, found, err := getCopy(t.s.db, idKey(tagTransfer, id))
	switch {
	case err != nil:
		return charging.Transfer{}, fmt.Errorf("storage: read transfer: %w", err)
	case !found:
		return charging.Transfer{}, ErrTransferNotFound
	}
	return decodeTransfer(v)
}

// Advance moves transfer id to next (charging.Transfer.Advance decides what
// is allowed; repeating the current state is a no-op) and returns it.
func (t *Transfers) Advance(id uint64, next charging.TransferState) (charging.Transfer, error) {
	mu := &t.locks[id%uint64(len(t.locks))]
	mu.Lock()
	defer mu.Unlock()
	tr, err := t.Get(id)
	if err != nil {
		return tr, err
	}
	if tr.State == next {
		return tr, nil
	}
	if !tr.Advance(next) {
		return tr, fmt.Errorf("%w: %v to %v", ErrTransferStep, tr.State, next)
	}
	b := t.s.db.NewBatch()
	defer b.Close()
	_ = b.Set(idKey(tagTransfer, id), appendTransfer(nil, &tr), nil)
	if next.Final() {
		_ = b.Delete(idKey(tagTransferOpen, id), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return tr, fmt.Errorf("storage: advance transfer: %w", err)
	}
	return tr, nil
}

// ReversalRecorded reports whether tr's reversal is in the sender's
// journal: its request record exists. Request records of an open transfer's
// legs are kept whatever their age (pruner.go), so the answer is certain
// for the records recovery asks about.
func (t *Transfers) ReversalRecorded(tr *charging.Transfer) (bool, error) {
	_, found, err := t.s.LookupRequest(tr.From, tr.ReverseKey())
	if err != nil {
		return false, fmt.Errorf("storage: transfer %d reversal: %w", tr.ID, err)
	}
	return found, nil
}

// TransferListMax bounds one Open call.
const TransferListMax = 10_000

// Open lists up to limit transfers not in a final state whose ID is above
// after (0: from the first; IDs start at 1), oldest first: recovery
// re-drives each (step 5). A caller pages with the last ID of a page as the
// next after.
func (t *Transfers) Open(after uint64, limit int) ([]charging.Transfer, error) {
	ids, err := openIDs(t.s.db, tagTransferOpen, after, min(max(limit, 0), TransferListMax), "open transfers")
	var out []charging.Transfer
	for _, id := range ids {
		tr, gerr := t.Get(id)
		if gerr != nil {
			return out, gerr
		}
		out = append(out, tr)
	}
	return out, err
}

func validateTransfer(t *charging.Transfer) error {
	switch {
	case t.ID == 0:
		return errors.New("transfer id 0")
	case t.From == 0 || t.To == 0 || t.From == t.To:
		return errors.New("transfer parties")
	case t.Amount <= 0 || t.Amount > charging.BalanceMax || t.Fee < 0 || t.Fee > charging.BalanceMax:
		return errors.New("transfer amounts")
	case !t.State.Valid():
		return errors.New("transfer state")
	}
	return nil
}

func appendTransfer(b []byte, t *charging.Transfer) []byte {
	b = append(b, transferV1)
	b = appendU64(b, t.ID)
	b = appendU64(b, uint64(t.From))
	b = appendU64(b, uint64(t.To))
	b = appendI64(b, int64(t.Amount))
	b = appendI64(b, int64(t.Fee))
	b = append(b, byte(t.State))
	return appendI64(b, t.Created)
}

func decodeTransfer(v []byte) (charging.Transfer, error) {
	var t charging.Transfer
	if len(v) != transferLen || v[0] != transferV1 {
		return t, fmt.Errorf("%w: transfer of %d bytes", ErrCorrupt, len(v))
	}
	r := reader{b: v[1:]}
	t.ID = r.u64()
	t.From = charging.SubscriberID(r.u64())
	t.To = charging.SubscriberID(r.u64())
	t.Amount = charging.Amount(r.i64())
	t.Fee = charging.Amount(r.i64())
	t.State = charging.TransferState(r.u8())
	t.Created = r.i64()
	if err := r.done("transfer"); err != nil {
		return t, err
	}
	if err := validateTransfer(&t); err != nil {
		return t, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return t, nil
}
