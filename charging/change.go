package charging

// RequestRecord is what the engine remembers of a request key: enough to
// tell a retry (same Fingerprint: answer Outcome again) from a reused key
// (another Fingerprint: ResultRequestKeyReused). Every command that changed
// the account is recorded, whatever its Result: an update that debits usage
// and then refuses more quota changed the balance, and its retry must not
// debit again. A refusal that changed nothing is not recorded: its retry is
// simply evaluated again.
//
// Records are kept for a retention window, not forever (storage prunes
// older ones): a retry that arrives after its record was pruned is
// evaluated as a new command. Time is what the window is measured from.
type RequestRecord struct {
	Fingerprint uint64
	Kind        Kind
	Outcome     Outcome
	// Time is when the command was applied, Unix nanoseconds from the
	// engine's clock (as Entry.Time). Zero means "not set": storage
	// stamps the record with its own clock at commit.
	Time int64
}

// Change is the unit of durability: everything one accepted command must
// make durable, atomically, before its caller is told. The actor that
// applied the command builds it; the storage layer writes it; nobody else
// holds it, so it is plain data with no locks.
type Change struct {
	// Account is a copy of the account after the command (with its own
	// Reservations backing array: the actor keeps mutating the original).
	Account Account
	// Entry is the journal entry to append; Entry.Seq == 0 means none.
	Entry Entry
	// Key and Request form the idempotency record; Key == "" means none.
	Key     string
	Request RequestRecord
	// RefundOf, when non-zero, is the Seq of a charge this change refunds:
	// storage marks it so it is never refunded twice.
	RefundOf uint64
	// Created: this change creates the account (an accepted provision), so
	// the ledger's account count grows by one.
	Created bool
	// JournalOnly: the account record is not rewritten, because the stored
	// account with this change's journal entry folded in (Account.Fold) is
	// exactly Account. The engine sets it only where Account.FoldsTo says
	// so; storage folds the journal after the record when it loads.
	JournalOnly bool
	// Card is the scratch card that pays for this change's credit,
	// written in the same batch (its CreditSeq is Entry.Seq); nil for
	// every change but a redemption's credit.
	Card *CardUse
}

// CloneAccount returns a copy of a that shares no memory with it.
func CloneAccount(a *Account) Account {
	c := *a
	if a.Reservations != nil {
		c.Reservations = append([]Reservation(nil), a.Reservations...)
	}
	return c
}

// Totals are ledger-wide sums the storage layer keeps incrementally in the
// same batches as the changes, so they are exact at every commit and need no
// scan: what the operator owes its subscribers, and how many accounts exist.
type Totals struct {
	Owed     Amount
	Accounts uint64
}
