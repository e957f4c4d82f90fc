// Package flows runs the operations of issue 3 that involve more than one
// store: credit transfer (sender's debit, then receiver's credit, or the
// sender's reversal) and the *101# package payment (payment record, then
// the caller's debit, then the fixed account), which span durable steps,
// plus the recovery that finishes each after a crash or a failed leg; and
// scratch-card redemption, which is one durable step (the card is used in
// its credit's own batch: storage/voucher.go), so only pending markers
// left by builds before that protocol are recovered.
//
// # Contracts
//
// Every step is idempotent: each account leg carries a request key derived
// from the durable record it belongs to ("V/<hash>", "T/<id>/d|c|r",
// "P/<id>"), so re-driving a leg after a crash is a retry that the
// subscriber's actor answers from its idempotency record. A live card
// credit is the exception: the card, held under its lock until the credit
// is durable, is its own idempotency record. The records'
// protocols are documented in storage/voucher.go, storage/transfer.go and
// storage/fixed.go; this package only sequences them.
//
// Money: a transfer's fee is debited from the sender with the amount and is
// never credited to anyone: it is the operator's revenue, so the ledger
// total (what the operator owes its subscribers) drops by the fee. A *101#
// payment's price and fee leave the ledger the same way: the package is
// paid to the operator.
//
// # Layering
//
// flows imports neither storage nor actors nor protocols: it declares the
// small interfaces it needs (Executor, Vouchers, Transfers, Fixed) and
// cmd/ocs wires the concrete types through adapters. Safe for concurrent
// use; concurrency control of one card, transfer or payment is the
// stores' (storage's per-record locks).
//
// # Gaps, on purpose
//
// A leg that fails with an operating error (engine timeout, overloaded
// after the leg's retries, a storage error) leaves its record open. Recover
// finishes such records at start; while serving, the re-driver (Redrive,
// RunRedriver: redrive.go) finishes each once it has been open, with no
// request driving it, for a minimum age (30 s by default), a bounded
// number of records a round, each round going on where the last stopped
// (redrive.go, "Paging"). Live flows and the re-driver never drive one
// record at once (redrive.go says why that matters and how). A transfer is
// keyed by its record, not by the client's
// request: a USSD gateway retry after the handler's session cache forgot
// the session would start a second transfer.
package flows
