// Package charging implements the prepaid account as a pure, deterministic
// state machine: balances, validity and lifecycle, reservations, rating and
// the commands that move them.
//
// Nothing here does I/O, reads the clock, starts goroutines or draws random
// numbers: the caller passes now and the configuration, and gets back a
// Result (a business outcome, never an error) and, for an accepted command,
// the journal Entry that must be made durable before anyone is told.
//
// Invariants, checked after every accepted command:
//   - 0 <= Reserved() <= Balance <= BalanceMax;
//   - a journal entry's BalanceAfter equals the account's Balance;
//   - Seq grows by exactly one for every journal entry.
//
// Amounts are int64 counts of 1/10,000 EUR (AmountPerEuro), fine enough to
// rate a second of a call exactly and far from overflow: BalanceMax is one
// million euros.
package charging
