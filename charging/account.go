package charging

import (
	"time"

	"github.com/ocs-engine/ocs/internal/invariant"
)

// State is a mobile account's lifecycle state. It is derived from the
// validity end and now, never stored, so it can never disagree with them.
type State uint8

const (
	StateActive    State = 1 // every service
	StateGrace     State = 2 // incoming (zero-rated) services only
	StateSuspended State = 3 // nothing until a top-up
)

var stateNames = [4]string{"invalid", "active", "grace", "suspended"}

// String returns the state's stable name.
func (s State) String() string {
	if int(s) >= len(stateNames) {
		return "invalid"
	}
	return stateNames[s]
}

// Reservation holds money for one open charging session.
type Reservation struct {
	Session     uint32
	RatingGroup RatingGroup
	Granted     uint64 // units granted and not yet reported
	Used        uint64 // units reported over the session, for increments
	Reserved    Amount // money held for Granted
	Charged     Amount // money debited over the session
	ExpiresAt   int64  // Unix seconds; the reservation lapses after
	Final       bool   // the last grant was the final one
}

// MonthCounters sum one calendar month (UTC) of an account's activity.
type MonthCounters struct {
	Month    uint32 // yyyymm; counters reset when the month changes
	Spent    Amount // debited by charges and sessions, less refunds
	ToppedUp Amount // credited by top-ups
	Charges  uint32 // accepted charges and session debits
	TopUps   uint32 // accepted top-ups
}

// Account is one mobile prepaid subscriber.
type Account struct {
	ID      SubscriberID
	Balance Amount
	// ValidUntil is the validity end, Unix seconds.
	ValidUntil int64
	// Seq is the sequence number of the last journal entry: the next one
	// is Seq+1. With ID it forms the transaction ID users quote.
	Seq          uint64
	NextSession  uint32
	Created      int64 // Unix seconds
	Month        MonthCounters
	Reservations []Reservation
}

// StateAt returns the lifecycle state at now under cfg's grace period:
// active before the validity end, in grace for GracePeriod from it
// (inclusive of the end instant), suspended after.
func (a *Account) StateAt(cfg *Config, now time.Time) State {
	return a.state(cfg, now.Unix())
}

func (a *Account) state(cfg *Config, now int64) State {
	switch {
	case now < a.ValidUntil:
		return StateActive
	case now < a.ValidUntil+int64(cfg.GracePeriod/time.Second):
		return StateGrace
	default:
		return StateSuspended
	}
}

// Fold applies journal entry e to a: the balance, validity and sequence
// number e records, and the month counters of a plain charge or top-up,
// counted in the month of e's time as the command counted them. Storage
// rebuilds an account whose record was not rewritten (Change.JournalOnly)
// by folding its newer entries into the record, so Fold must stay
// deterministic: FoldsTo, not Fold, decides where it is exact.
func (a *Account) Fold(e *Entry) {
	a.Balance = e.BalanceAfter
	a.ValidUntil = e.ValidUntilAfter
	a.Seq = e.Seq
	switch e.Kind {
	case EntryCharge:
		a.countSpent(e.Time/int64(time.Second), -e.Amount)
	case EntryTopUp, EntryTransferIn:
		a.countToppedUp(e.Time/int64(time.Second), e.Amount)
	}
}

// FoldsTo reports whether folding e into a, the account before a command,
// gives next, the account after it, exactly: then e alone records the
// change and the account record need not be written (Change.JournalOnly).
// It compares every field, so a command Fold does not know (a refund, a
// session debit, a transfer reversal) simply does not qualify. Accounts
// with reservations never do: their record is always written, and a's
// reservations may share memory with next's.
func (a *Account) FoldsTo(e *Entry, next *Account) bool {
	if e.Seq == 0 || len(a.Reservations) != 0 || len(next.Reservations) != 0 {
		return false
	}
	f := *a
	f.Fold(e)
	return f.ID == next.ID && f.Balance == next.Balance && f.ValidUntil == next.ValidUntil &&
		f.Seq == next.Seq && f.NextSession == next.NextSession && f.Created == next.Created &&
		f.Month == next.Month
}

// Reserved returns the money held by open reservations.
func (a *Account) Reserved() Amount {
	var sum Amount
	for i := range a.Reservations {
		sum += a.Reservations[i].Reserved
	}
	return sum
}

// Available returns the balance that new charges may use.
func (a *Account) Available() Amount { return a.Balance - a.Reserved() }

// reservation returns the open reservation of session, or nil.
func (a *Account) reservation(session uint32) *Reservation {
	for i := range a.Reservations {
		if a.Reservations[i].Session == session {
			return &a.Reservations[i]
		}
	}
	return nil
}

func (a *Account) removeReservation(session uint32) {
	for i := range a.Reservations {
		if a.Reservations[i].Session == session {
			last := len(a.Reservations) - 1
			a.Reservations[i] = a.Reservations[last]
			a.Reservations = a.Reservations[:last]
			if len(a.Reservations) == 0 {
				a.Reservations = nil
			}
			return
		}
	}
}

// CheckInvariants panics if a broke an invariant. It runs after every
// accepted command: a handful of compares.
func (a *Account) CheckInvariants() {
	reserved := a.Reserved()
	invariant.Check(reserved >= 0, "reserved >= 0")
	invariant.Check(reserved <= a.Balance, "reserved <= balance")
	invariant.Check(a.Balance <= BalanceMax, "balance <= max")
	invariant.Check(len(a.Reservations) <= SessionsMax, "sessions <= max")
}

// monthOf returns yyyymm of a Unix time in UTC.
func monthOf(unix int64) uint32 {
	y, m, _ := time.Unix(unix, 0).UTC().Date()
	return uint32(y*100 + int(m))
}

func (a *Account) rollMonth(now int64) {
	if m := monthOf(now); m != a.Month.Month {
		a.Month = MonthCounters{Month: m}
	}
}
