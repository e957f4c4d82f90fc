package actors

import "github.com/ocs-engine/ocs/charging"

// Pending is an applied batch whose fsync may be in flight.
type Pending interface {
	// Wait blocks until the batch is durable; call it exactly once.
	Wait() error
}

// Store is the durable state the engine needs. *storage.Store implements
// it; cmd/ocs wires the two together so that neither package imports the
// other. Every method is safe for concurrent use.
type Store interface {
	// LoadAccount returns the account of id; found is false if there is none.
	LoadAccount(id charging.SubscriberID) (a charging.Account, found bool, err error)
	// LookupRequest returns the idempotency record of (id, key).
	LookupRequest(id charging.SubscriberID, key string) (r charging.RequestRecord, found bool, err error)
	// LookupEntry returns journal entry seq of id, and whether a refund of
	// it has been recorded.
	LookupEntry(id charging.SubscriberID, seq uint64) (e charging.Entry, refunded bool, found bool, err error)
	// Apply writes every change in one batch, all or nothing, and returns
	// once it is applied (visible, in the write-ahead log) and before its
	// fsync; Pending.Wait returns once it is durable. Batches become durable
	// in Apply order. A nil Pending with a nil error means there was nothing
	// to write. An error leaves the store unusable: the engine stops, so
	// that what was acknowledged is always a prefix of what is on disk.
	Apply(changes []charging.Change) (Pending, error)
	// History returns up to limit entries of id with Seq < beforeSeq
	// (0: from the newest), newest first.
	History(id charging.SubscriberID, beforeSeq uint64, limit int) ([]charging.Entry, error)
	// Totals returns the ledger totals as of the last commit.
	Totals() charging.Totals
}
