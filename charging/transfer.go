package charging

import (
	"strconv"
	"time"
)

// Credit transfer between two mobile subscribers (seed 002 lists it, gives no
// details; DOMAIN.md: limits and fee are configuration, money is never created
// or lost). The debit on the sender and the credit on the receiver happen on
// two actors; storage/transfer.go keeps the durable record that ties them and
// documents the protocol. This file holds the rules and the record's states.

// TransferRules configures credit transfers.
type TransferRules struct {
	Min Amount // smallest amount the receiver may be sent
	Max Amount // largest amount the receiver may be sent
	Fee Amount // kept by the operator, debited from the sender on top
}

// DemoTransferRules are invented for the demo (the seed gives none): at
// least 0.50 EUR, at most 20.00 EUR, a fee of 0.10 EUR. They agree with
// DemoConfig's ChannelTransfer policy (Min 0.50, Max 20.00, no validity).
func DemoTransferRules() TransferRules {
	return TransferRules{Min: 50 * AmountPerCent, Max: Euros(20), Fee: 10 * AmountPerCent}
}

// ChannelPolicy returns the ChannelTransfer policy that matches r: the
// receiver's credit is a ChannelTransfer top-up, which must accept exactly
// the amounts r accepts and never extend validity (or validity could be
// bought with small transfers).
func (r *TransferRules) ChannelPolicy() ChannelPolicy {
	return ChannelPolicy{Enabled: true, Min: r.Min, Max: r.Max}
}

// TransferResult is the outcome of validating a transfer request, before
// any account is touched.
type TransferResult uint8

const (
	TransferOK                TransferResult = 1
	TransferToSelf            TransferResult = 2
	TransferAmountNotPositive TransferResult = 3
	TransferBelowMinimum      TransferResult = 4
	TransferAboveMaximum      TransferResult = 5
	transferResultCount                      = 6
)

var transferResultNames = [transferResultCount]string{"invalid", "ok", "transfer_to_self",
	"amount_must_be_positive", "amount_below_minimum", "amount_above_maximum"}

// String returns the stable snake_case code.
func (r TransferResult) String() string {
	if int(r) >= len(transferResultNames) {
		return "invalid"
	}
	return transferResultNames[r]
}

// Validate checks a request to send amount from one subscriber to another.
// Checks, in order (tested): not to oneself, amount positive, minimum,
// maximum. The sender's balance and lifecycle are checked by DebitFor on
// the sender's actor; the receiver's existence by the engine before the
// transfer record is written.
func (r *TransferRules) Validate(from, to SubscriberID, amount Amount) TransferResult {
	switch {
	case from == to:
		return TransferToSelf
	case amount <= 0:
		return TransferAmountNotPositive
	case amount < r.Min:
		return TransferBelowMinimum
	case amount > r.Max:
		return TransferAboveMaximum
	}
	return TransferOK
}

// Debit returns what the sender pays for sending amount: amount + fee.
// Validate bounds amount by Max, so the sum cannot overflow.
func (r *TransferRules) Debit(amount Amount) Amount { return amount + r.Fee }

// TransferState is a transfer record's state. Stored: never renumber.
type TransferState uint8

const (
	// TransferPending: the record is written, the sender's debit may or
	// may not have happened. Recovery re-drives the debit (idempotent).
	TransferPending TransferState = 1
	// TransferDebited: the sender paid amount + fee; the receiver's credit
	// may or may not have happened. Recovery re-drives the credit.
	TransferDebited TransferState = 2
	// TransferCredited: the receiver has the amount. Final.
	TransferCredited TransferState = 3
	// TransferReversed: the credit was refused (the receiver vanished or
	// hit the balance limit) and the sender got amount + fee back. Final.
	TransferReversed TransferState = 4
	// TransferRefused: the sender's debit was refused; nothing moved. Final.
	TransferRefused TransferState = 5
	// TransferReversing: the receiver's credit was refused (a verdict: it
	// was not made), so the sender is owed amount + fee; the reversal may
	// or may not have happened. Written before the reversal runs, so that
	// recovery re-drives only the reversal. Re-driving the credit instead,
	// as a record left debited would, could pay the receiver after the
	// sender was paid back (the receiver may take the credit by then, and
	// a refused credit leaves no idempotency record to stop it): the
	// amount would be created.
	TransferReversing  TransferState = 6
	transferStateCount               = 7
)

var transferStateNames = [transferStateCount]string{"invalid", "pending", "debited", "credited", "reversed", "refused", "reversing"}

// String returns the state's stable name.
func (s TransferState) String() string {
	if int(s) >= len(transferStateNames) {
		return "invalid"
	}
	return transferStateNames[s]
}

// Valid reports whether s is a defined state.
func (s TransferState) Valid() bool { return s != 0 && s < transferStateCount }

// Final reports whether no further step is due.
func (s TransferState) Final() bool {
	return s == TransferCredited || s == TransferReversed || s == TransferRefused
}

// Transfer is the durable record of one credit transfer.
type Transfer struct {
	ID      uint64
	From    SubscriberID
	To      SubscriberID
	Amount  Amount // credited to To
	Fee     Amount // kept by the operator
	State   TransferState
	Created int64 // Unix seconds
}

// Advance moves t to next if the protocol allows it, and reports whether it
// did: pending → debited | refused, debited → credited | reversing,
// reversing → reversed. Moving to
// the state t is already in is allowed (a re-driven step after a crash), so
// recovery can repeat any step.
func (t *Transfer) Advance(next TransferState) bool {
	ok := next == t.State ||
		(t.State == TransferPending && (next == TransferDebited || next == TransferRefused)) ||
		(t.State == TransferDebited && (next == TransferCredited || next == TransferReversing)) ||
		(t.State == TransferReversing && next == TransferReversed)
	if ok {
		t.State = next
	}
	return ok
}

// Request keys of the three legs, derived from the transfer ID so that a
// re-driven leg is a retry the actor answers from its idempotency record.
// "T/" cannot collide with client keys that are UUIDs.

// DebitKey is the request key of the sender's debit.
func (t *Transfer) DebitKey() string { return t.key('d') }

// CreditKey is the request key of the receiver's credit.
func (t *Transfer) CreditKey() string { return t.key('c') }

// ReverseKey is the request key of the sender's refund when the credit fails.
func (t *Transfer) ReverseKey() string { return t.key('r') }

func (t *Transfer) key(leg byte) string {
	b := make([]byte, 0, 24)
	b = append(b, 'T', '/')
	b = strconv.AppendUint(b, t.ID, 10)
	return string(append(b, '/', leg))
}

// DebitCommand is the sender's debit of amount + fee.
func (t *Transfer) DebitCommand() Command {
	return Command{Kind: KindTransferOut, Channel: ChannelTransfer, Key: t.DebitKey(),
		Subscriber: t.From, Amount: t.Amount + t.Fee, Ref: t.ID}
}

// CreditCommand is the receiver's credit: a ChannelTransfer top-up, which
// journals EntryTransferIn and, by the channel's policy, does not extend
// validity.
func (t *Transfer) CreditCommand() Command {
	return Command{Kind: KindTopUp, Channel: ChannelTransfer, Key: t.CreditKey(), Subscriber: t.To, Amount: t.Amount}
}

// ReverseCommand gives the sender amount + fee back after the receiver
// refused the credit.
func (t *Transfer) ReverseCommand() Command {
	return Command{Kind: KindTransferReverse, Channel: ChannelTransfer, Key: t.ReverseKey(),
		Subscriber: t.From, Amount: t.Amount + t.Fee, Ref: t.ID}
}

// DebitFor debits amount from a for a purchase made outside the account's
// own tariff (a transfer's amount + fee, a *101# package payment) and sets
// eff's journal entry of kind, with ref (the transfer or payment ID).
// Checks, in order: amount positive, lifecycle (suspended, then grace:
// these are outgoing services), available balance.
//
// It is meant to be called from Apply for a new command kind (the lead adds
// KindTransferOut and KindPackagePayment: see the report), which then sets
// Seq, Time, Key and BalanceAfter as for every entry.
func (a *Account) DebitFor(cfg *Config, amount Amount, kind EntryKind, ref uint64, now time.Time, eff *Effect) Result {
	unix := now.Unix()
	switch {
	case amount <= 0:
		return ResultAmountMustBePositive
	case a.state(cfg, unix) == StateSuspended:
		return ResultSuspended
	case a.state(cfg, unix) == StateGrace:
		return ResultGraceOutgoingBarred
	case amount > a.Available():
		return ResultInsufficientBalance
	}
	a.Balance -= amount
	a.countSpent(unix, amount)
	eff.Entry = Entry{Kind: kind, Amount: -amount, Ref: ref}
	return ResultOK
}

// CreditBack returns amount to a after a leg it paid for failed (a transfer
// whose receiver refused the credit). Unlike a top-up it ignores channel
// limits and validity: it only undoes DebitFor. Checks: amount positive,
// balance limit.
func (a *Account) CreditBack(amount Amount, kind EntryKind, ref uint64, now time.Time, eff *Effect) Result {
	switch {
	case amount <= 0:
		return ResultAmountMustBePositive
	case amount > BalanceMax-a.Balance:
		return ResultBalanceLimit
	}
	a.Balance += amount
	a.rollMonth(now.Unix())
	// The debit is nearly always of this month (the reversal follows it
	// within the same request), and then this is exact. One made in an
	// earlier month (a transfer across midnight at a month's end) counted
	// there: subtracting it here would make this month's spending negative,
	// so this month's counter gives back at most what it holds.
	a.Month.Spent -= min(amount, a.Month.Spent)
	eff.Entry = Entry{Kind: kind, Amount: amount, Ref: ref}
	return ResultOK
}
