// Package storage keeps the engine's durable state in one Pebble database:
// accounts, their journals, idempotency records, refund markers, ledger
// totals and API keys. *Store implements actors.Store; cmd/ocs wires it.
//
// # Key layout
//
// Every key is a one-byte table tag followed by big-endian fields, so keys
// of one subscriber sort together and a journal sorts by seq. All keys are
// built in keys.go, so that a 2-byte partition prefix can later be put in
// front of the tag in one place (keyPrefixLen).
//
//	0x01 | sub:8                account        → Account record
//	0x02 | sub:8 | seq:8        journal entry  → Entry record
//	0x03 | sub:8 | key bytes    request key    → RequestRecord (idempotency)
//	0x04 | sub:8 | seq:8        refunded       → Seq of the refund entry
//	0x05 | name                 meta           → "totals", "schema",
//	                                             "apikey/" + SHA-256(token)
//	0x10..0x1F                  reserved: vouchers, fixed accounts, transfers
//
// An account is its record with the journal entries written after it folded
// in (charging.Account.Fold): a change marked JournalOnly, one whose entry
// alone reproduces the account (an SMS, a top-up), writes no record. The
// engine rewrites the record at least every 32 changes, so LoadAccount reads
// a few entries after it at most; Check folds them the same way. The meta
// "schema" is 2 since then: Open upgrades a schema-1 database (no record
// there is followed by entries to fold), and a build that knows only
// schema 1 refuses the database instead of reading a stale balance.
//
// # Encoding
//
// Values are hand-written, fixed-width little-endian fields after a version
// byte (version 1, request records version 2): append-based, no
// reflection, no allocation beyond the output buffer. Decoders check the version, the exact length
// and every invariant (a balance within 0..BalanceMax, reserved money
// within the balance, known enum values) and return an error wrapping
// ErrCorrupt, never panic; encoders' inputs are validated first, and an
// invalid change is refused with ErrInvalid before anything is written.
// A new layout gets a new version byte and a decoder beside the old.
//
//	Account v1   ver id balance validUntil seq nextSession created
//	             month{month spent toppedUp charges topUps} n n×reservation
//	Entry v1     ver seq time kind channel bank ratingGroup units amount
//	             balanceAfter validUntilAfter ref keyLen key
//	Request v2   ver fingerprint kind result seq amount balance validUntil
//	             state session granted flags quotaValidity time
//	Request v1   the same without time (still decoded, never written)
//	Totals v1    ver owed accounts
//
// # Retention of idempotency records
//
// Request records are not kept forever: the Pruner (pruner.go) deletes those
// older than a retention window (default 7 days, at least 1 day; cmd/ocs
// --request-retention). This is the contract of the window: a retry that
// arrives after its record was pruned is evaluated as a new command, and a
// charge is charged again. Records a voucher, transfer or *101# payment may
// still re-drive are kept while that flow is open. Every record carries the
// time it was written (v2; the engine's clock, or the store's at commit if
// the engine left it zero); v1 records count from the pruner's first pass.
// Journal entries keep their request key forever: the key in the history is
// the transaction reference, not an idempotency claim, and Check does not
// require a request record behind it.
//
// # Concurrency
//
// Reads are safe from any goroutine. Commit and Apply are called by one
// committer goroutine at a time: they reuse pooled batches and encoding
// buffers and keep running totals without locks. Totals and API key roles
// are served from memory.
//
// # Tuning
//
// Pebble is set up for many small synced writes and point reads that
// mostly miss (store.go says why for each number): 64 MiB memtables,
// shallow L0, 10-bit bloom filters on every level, and idempotency lookups
// done as prefix seeks so that the last level's filters are used too (a
// plain Get skips them). A look-up also skips the memtables when its key
// cannot be in them: the store remembers a hash of every request key it
// wrote since the last flush it forced, and reads any other key from the
// flushed tables only (recent.go states the invariant and why it holds);
// that took the look-up from ≈ 8.8 to 2.7 µs a charge. Memtables are
// charged to the block cache by Pebble, so the cache is sized CacheBytes
// plus the memtables' maximum.
//
// # Crash guarantees
//
// A Commit writes all its changes and the updated totals in one Pebble
// batch with pebble.Sync: after a crash at any instant, reopening finds
// every batch whose Commit returned nil, whole, and any other batch either
// whole or absent, in commit order (the write-ahead log is one ordered
// stream). The totals record travels in the same batch, so it always
// equals the sum over the journal. Check verifies all of this on a live
// or reopened store. A failed commit makes the store refuse further
// commits (ErrFailed): the engine must stop rather than acknowledge work
// on top of an unknown state.
package storage
