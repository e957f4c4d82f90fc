package charging

// EntryKind says what a journal entry records. Stored: never renumber.
type EntryKind uint8

const (
	EntryProvision    EntryKind = 1
	EntryTopUp        EntryKind = 2
	EntryCharge       EntryKind = 3
	EntrySessionDebit EntryKind = 4
	EntryRefund       EntryKind = 5
	EntryAdjustment   EntryKind = 6
	EntryTransferOut  EntryKind = 7
	EntryTransferIn   EntryKind = 8
	// EntryFixedPayment is a *101# payment of a fixed-service package from
	// mobile credit (price + fee); Ref is the payment ID.
	EntryFixedPayment EntryKind = 9
	entryKindCount              = 10
)

var entryKindNames = [entryKindCount]string{"invalid", "provision", "topup", "charge", "session_debit",
	"refund", "adjustment", "transfer_out", "transfer_in", "package_payment"}

// String returns the kind's stable name.
func (k EntryKind) String() string {
	if int(k) >= entryKindCount {
		return "invalid"
	}
	return entryKindNames[k]
}

// Entry is one balance change in an account's journal: the history users
// see and the audit trail. Amount is signed: credits positive.
type Entry struct {
	Seq             uint64
	Time            int64 // Unix nanoseconds
	Kind            EntryKind
	Channel         Channel
	Bank            uint8 // the bank of a ChannelBank top-up, else 0
	RatingGroup     RatingGroup
	Units           uint64
	Amount          Amount
	BalanceAfter    Amount
	ValidUntilAfter int64  // Unix seconds
	Ref             uint64 // refund: the refunded Seq; session debit: the session
	Key             string // the request key that made it
}
