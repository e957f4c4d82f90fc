package charging

import "time"

// Kind names a command. Stored in idempotency records: never renumber.
type Kind uint8

const (
	KindProvision Kind = 1 // create the account (NewAccount, not Apply)
	KindTopUp     Kind = 2
	KindCharge    Kind = 3 // one-time event: debit at once or refuse
	KindReserve   Kind = 4 // open a session and reserve units
	KindUpdate    Kind = 5 // report used units and reserve more
	KindTerminate Kind = 6 // report used units and close the session
	KindExpire    Kind = 7 // release lapsed reservations; carries no key
	KindRefund    Kind = 8
	KindAdjust    Kind = 9
	KindInquire   Kind = 10 // read balance and state; changes nothing
	// KindTransferOut debits a transfer's amount + fee from its sender
	// (DebitFor; Ref: the transfer ID).
	KindTransferOut Kind = 11
	// KindTransferReverse returns a transfer's amount + fee to its sender
	// when the receiver's credit was refused (CreditBack; Ref: the
	// transfer ID).
	KindTransferReverse Kind = 12
	// KindPackagePayment debits a *101# payment, package price + fee
	// (DebitFor; Ref: the payment ID).
	KindPackagePayment Kind = 13
	kindCount               = 14
)

var kindNames = [kindCount]string{"invalid", "provision", "topup", "charge", "reserve", "update",
	"terminate", "expire", "refund", "adjust", "inquire", "transfer_out", "transfer_reverse", "package_payment"}

// String returns the kind's stable name, used as a metric label.
func (k Kind) String() string {
	if int(k) >= kindCount {
		return "invalid"
	}
	return kindNames[k]
}

// Kinds lists every defined Kind, for pre-creating metric labels.
func Kinds() []Kind {
	ks := make([]Kind, 0, kindCount-1)
	for k := Kind(1); k < kindCount; k++ {
		ks = append(ks, k)
	}
	return ks
}

// Mutates reports whether commands of kind k may change the account, and so
// must carry a request key.
func (k Kind) Mutates() bool { return k != KindInquire && k != KindExpire }

// RequestKeyBytesMax bounds a client's request key: a UUID (36) or a
// Nchf reference plus sequence number fits with room; more is abuse.
const RequestKeyBytesMax = 64

// Command is one request to an account. One flat struct for every kind, so
// that it travels to the actor, into the idempotency record and through the
// model test without interfaces or allocation.
type Command struct {
	Kind    Kind
	Channel Channel
	Bank    uint8
	// Key is the client's request key: a retry with the same key gets the
	// original Outcome and changes nothing.
	Key         string
	Subscriber  SubscriberID
	Amount      Amount // top-up, adjustment (signed), refund (0: all), provision
	RatingGroup RatingGroup
	Units       uint64 // charge: units; reserve/update: units requested
	Used        uint64 // update/terminate: units used since the last report
	Session     uint32 // update/terminate: the session
	Ref         uint64 // refund: the Seq of the charge refunded; transfer legs, package payment: the record's ID
	ValidUntil  int64  // provision: validity end, Unix seconds (0: default)
	Reason      string // adjustment: why, for the audit
	// Original and OriginalRefunded are filled by the actor for a refund:
	// the journal entry named by Ref (zero if none) and whether it was
	// refunded already. charging cannot read storage itself.
	Original         Entry
	OriginalRefunded bool
	// Card, on a voucher top-up, is the card this credit uses up: the
	// engine writes it with the credit (Change.Card). Nil otherwise.
	Card *CardUse
}

// Fingerprint hashes the fields that make a request what it is, so that a
// reused key with a different payload is told apart from a retry. FNV-1a,
// no allocation.
func (c *Command) Fingerprint() uint64 {
	h := uint64(14695981039346656037)
	mix := func(v uint64) {
		for i := 0; i < 8; i++ {
			h ^= v & 0xff
			h *= 1099511628211
			v >>= 8
		}
	}
	mix(uint64(c.Kind) | uint64(c.Channel)<<8 | uint64(c.Bank)<<16)
	mix(uint64(c.Subscriber))
	mix(uint64(c.Amount))
	mix(uint64(c.RatingGroup))
	mix(c.Units)
	mix(c.Used)
	mix(uint64(c.Session))
	mix(c.Ref)
	return h
}

// Outcome is what a command's caller is told. It is also what an
// idempotency record keeps, so that a retry is told the same.
type Outcome struct {
	Result     Result
	Seq        uint64 // the journal entry written, 0 if none
	Amount     Amount // money moved by this command (signed, credits positive)
	Balance    Amount // balance after
	ValidUntil int64  // validity end after, Unix seconds
	State      State
	Session    uint32
	Granted    uint64 // units granted by a reserve or update
	// FinalUnit: the grant is the last one; the network element ends the
	// service when it is used.
	FinalUnit     bool
	QuotaValidity uint32 // seconds the grant is valid
	Replayed      bool   // answered from the idempotency record
}

// Effect is what the caller must make durable for an accepted command.
type Effect struct {
	// Dirty: the account record changed and must be written.
	Dirty bool
	// Entry is the journal entry to append; Entry.Seq == 0 means none.
	Entry Entry
	// Created: the command created the account (NewAccount).
	Created bool
}

// Apply executes cmd against a at now and returns its Outcome and the Effect
// to persist. A refusal changes nothing. KindProvision goes to NewAccount.
func (a *Account) Apply(cfg *Config, cmd *Command, now time.Time) (Outcome, Effect) {
	unix := now.Unix()
	var out Outcome
	var eff Effect
	switch cmd.Kind {
	case KindTopUp:
		out.Result = a.topUp(cfg, cmd, now, &eff)
	case KindCharge:
		out.Result = a.charge(cfg, cmd, unix, &eff)
	case KindReserve:
		out.Result = a.reserve(cfg, cmd, unix, &out, &eff)
	case KindUpdate:
		out.Result = a.update(cfg, cmd, unix, &out, &eff)
	case KindTerminate:
		out.Result = a.terminate(cfg, cmd, unix, &out, &eff)
	case KindExpire:
		out.Result = a.expire(unix, &eff)
	case KindRefund:
		out.Result = a.refund(cmd, unix, &eff)
	case KindAdjust:
		out.Result = a.adjust(cmd, &eff)
	case KindInquire:
		out.Result = ResultOK
	case KindTransferOut:
		out.Result = a.DebitFor(cfg, cmd.Amount, EntryTransferOut, cmd.Ref, now, &eff)
	case KindTransferReverse:
		out.Result = a.CreditBack(cmd.Amount, EntryTransferIn, cmd.Ref, now, &eff)
	case KindPackagePayment:
		out.Result = a.DebitFor(cfg, cmd.Amount, EntryFixedPayment, cmd.Ref, now, &eff)
	default:
		panic("charging: unknown command kind")
	}
	if eff.Entry.Kind != 0 {
		a.Seq++
		eff.Entry.Seq = a.Seq
		eff.Entry.Time = now.UnixNano()
		eff.Entry.Channel = cmd.Channel
		eff.Entry.Bank = cmd.Bank
		eff.Entry.Key = cmd.Key
		eff.Entry.BalanceAfter = a.Balance
		eff.Entry.ValidUntilAfter = a.ValidUntil
		eff.Dirty = true
		out.Seq = a.Seq
		out.Amount = eff.Entry.Amount
	}
	if eff.Dirty {
		a.CheckInvariants()
	}
	out.Balance = a.Balance
	out.ValidUntil = a.ValidUntil
	out.State = a.state(cfg, unix)
	return out, eff
}

// NewAccount provisions subscriber cmd.Subscriber with an opening balance
// cmd.Amount (>= 0) and validity end cmd.ValidUntil (0: InitialValidity from
// now). An opening balance is journalled so that the ledger adds up.
func NewAccount(cfg *Config, cmd *Command, now time.Time) (Account, Outcome, Effect) {
	a := Account{ID: cmd.Subscriber, Created: now.Unix(), ValidUntil: cmd.ValidUntil}
	var out Outcome
	var eff Effect
	switch {
	case cmd.Amount < 0:
		out.Result = ResultAmountMustBePositive
		return a, out, eff
	case cmd.Amount > BalanceMax:
		out.Result = ResultBalanceLimit
		return a, out, eff
	}
	if a.ValidUntil == 0 {
		a.ValidUntil = now.Add(cfg.InitialValidity).Unix()
	}
	a.rollMonth(now.Unix())
	a.Balance = cmd.Amount
	eff.Dirty = true
	eff.Created = true
	if cmd.Amount > 0 {
		a.Seq = 1
		eff.Entry = Entry{Seq: 1, Time: now.UnixNano(), Kind: EntryProvision, Channel: cmd.Channel,
			Amount: cmd.Amount, BalanceAfter: a.Balance, ValidUntilAfter: a.ValidUntil, Key: cmd.Key}
		out.Seq = 1
		out.Amount = cmd.Amount
	}
	out.Result = ResultOK
	out.Balance = a.Balance
	out.ValidUntil = a.ValidUntil
	out.State = a.state(cfg, now.Unix())
	return a, out, eff
}

// topUp credits cmd.Amount through cmd.Channel. Checks, in order: channel
// enabled, amount positive, channel minimum, channel maximum, balance limit.
// Validity becomes max(current end, now + tier), so a top-up never shortens
// it and reconnects a subscriber in grace or suspension at once.
func (a *Account) topUp(cfg *Config, cmd *Command, now time.Time, eff *Effect) Result {
	if int(cmd.Channel) >= channelCount || !cfg.Channels[cmd.Channel].Enabled {
		return ResultUnknownChannel
	}
	policy := &cfg.Channels[cmd.Channel]
	switch {
	case cmd.Amount <= 0:
		return ResultAmountMustBePositive
	case cmd.Amount < policy.Min:
		return ResultAmountBelowMinimum
	case cmd.Amount > policy.Max:
		return ResultAmountAboveMaximum
	case cmd.Amount > BalanceMax-a.Balance:
		return ResultBalanceLimit
	}
	a.Balance += cmd.Amount
	// A top-up below the first tier buys no validity: without the
	// tier > 0 test it would set the end to now and move a suspended
	// subscriber back into grace.
	if tier := cfg.ValidityFor(cmd.Amount); policy.ExtendsValidity && tier > 0 {
		if end := now.Add(tier).Unix(); end > a.ValidUntil {
			a.ValidUntil = end
		}
	}
	a.countToppedUp(now.Unix(), cmd.Amount)
	kind := EntryTopUp
	if cmd.Channel == ChannelTransfer {
		kind = EntryTransferIn
	}
	eff.Entry = Entry{Kind: kind, Amount: cmd.Amount}
	return ResultOK
}

// admit checks whether the account may use tariff t at now: suspended
// refuses everything, grace refuses all but incoming services.
func (a *Account) admit(cfg *Config, t *Tariff, now int64) Result {
	switch a.state(cfg, now) {
	case StateSuspended:
		return ResultSuspended
	case StateGrace:
		if !t.Incoming {
			return ResultGraceOutgoingBarred
		}
	}
	return ResultOK
}

// charge debits a one-time event. Checks, in order: rating group known,
// units positive, units bounded, lifecycle, available balance. A free
// (incoming) event is accepted without a journal entry: nothing changed.
func (a *Account) charge(cfg *Config, cmd *Command, now int64, eff *Effect) Result {
	t, ok := cfg.Tariffs[cmd.RatingGroup]
	switch {
	case !ok:
		return ResultUnknownRatingGroup
	case cmd.Units == 0:
		return ResultUnitsMustBePositive
	case cmd.Units > UnitsMax:
		return ResultUnitsAboveMaximum
	}
	if r := a.admit(cfg, &t, now); r != ResultOK {
		return r
	}
	cost := t.Cost(cmd.Units)
	if cost > a.Available() {
		return ResultInsufficientBalance
	}
	if cost == 0 {
		return ResultOK
	}
	a.Balance -= cost
	a.countSpent(now, cost)
	eff.Entry = Entry{Kind: EntryCharge, RatingGroup: cmd.RatingGroup, Units: cmd.Units, Amount: -cost}
	return ResultOK
}

func (a *Account) countSpent(now int64, cost Amount) {
	a.rollMonth(now)
	a.Month.Spent += cost
	a.Month.Charges++
}

func (a *Account) countToppedUp(now int64, amount Amount) {
	a.rollMonth(now)
	a.Month.ToppedUp += amount
	a.Month.TopUps++
}

// reserve opens a session and grants units. Checks, in order: rating group,
// units bounded, sessions bounded, lifecycle, something affordable.
func (a *Account) reserve(cfg *Config, cmd *Command, now int64, out *Outcome, eff *Effect) Result {
	t, ok := cfg.Tariffs[cmd.RatingGroup]
	switch {
	case !ok:
		return ResultUnknownRatingGroup
	case cmd.Units > UnitsMax:
		return ResultUnitsAboveMaximum
	case len(a.Reservations) >= SessionsMax:
		return ResultTooManySessions
	}
	if r := a.admit(cfg, &t, now); r != ResultOK {
		return r
	}
	r := Reservation{Session: a.NextSession + 1, RatingGroup: cmd.RatingGroup}
	if res := a.grant(cfg, &t, &r, cmd.Units, now); res != ResultOK {
		return res
	}
	a.NextSession++
	a.Reservations = append(a.Reservations, r)
	eff.Dirty = true
	out.Session = r.Session
	out.Granted = r.Granted
	out.FinalUnit = r.Final
	out.QuotaValidity = uint32(cfg.QuotaValidity / time.Second)
	return ResultOK
}

// grant sets r's grant for requested units (0: the tariff's default) from
// the available balance; when only part is affordable it grants that part
// as the final unit; when nothing is, it refuses.
func (a *Account) grant(cfg *Config, t *Tariff, r *Reservation, requested uint64, now int64) Result {
	if requested == 0 {
		requested = t.DefaultGrant
	}
	// Update and terminate refuse a report that takes the session past
	// UnitsMax, so units granted beyond it could be used and never charged:
	// the grant stops there, and the one that reaches it is the last.
	room := UnitsMax - r.Used
	if room == 0 {
		return ResultUnitsAboveMaximum
	}
	final := false
	if requested >= room {
		requested, final = room, true
	}
	available := a.Available()
	cost := t.Cost(r.Used+requested) - t.Cost(r.Used)
	granted := requested
	if cost > available {
		granted = t.Affordable(r.Used, available)
		if granted == 0 {
			return ResultInsufficientBalance
		}
		cost = t.Cost(r.Used+granted) - t.Cost(r.Used)
		final = true
	}
	r.Granted = granted
	r.Reserved = cost
	r.Final = final
	r.ExpiresAt = now + int64((cfg.QuotaValidity+cfg.ReservationSlack)/time.Second)
	return ResultOK
}

// debitUsed charges used units of session r and releases its reservation.
// Usage beyond the grant is charged as far as the balance goes: the network
// overran, and the balance never goes negative.
func (a *Account) debitUsed(t *Tariff, r *Reservation, used uint64, now int64, eff *Effect) {
	cost := t.Cost(r.Used+used) - t.Cost(r.Used)
	r.Reserved = 0
	r.Granted = 0
	r.Used += used
	if cost > a.Balance-a.Reserved() {
		cost = a.Balance - a.Reserved()
	}
	eff.Dirty = true
	if cost <= 0 {
		return
	}
	a.Balance -= cost
	r.Charged += cost
	a.countSpent(now, cost)
	eff.Entry = Entry{Kind: EntrySessionDebit, RatingGroup: r.RatingGroup, Units: used, Amount: -cost, Ref: uint64(r.Session)}
}

// update debits the used units of an open session and grants more. If the
// subscriber may no longer use the service (validity ended mid-session) the
// usage is still debited, nothing more is granted and the lifecycle Result
// tells why.
func (a *Account) update(cfg *Config, cmd *Command, now int64, out *Outcome, eff *Effect) Result {
	r := a.reservation(cmd.Session)
	switch {
	case r == nil:
		return ResultUnknownSession
	case cmd.Used > UnitsMax || cmd.Units > UnitsMax || r.Used+cmd.Used > UnitsMax:
		return ResultUnitsAboveMaximum
	}
	t := cfg.Tariffs[r.RatingGroup]
	a.debitUsed(&t, r, cmd.Used, now, eff)
	out.Session = r.Session
	if res := a.admit(cfg, &t, now); res != ResultOK {
		r.ExpiresAt = now
		return res
	}
	if res := a.grant(cfg, &t, r, cmd.Units, now); res != ResultOK {
		r.ExpiresAt = now
		return res
	}
	out.Granted = r.Granted
	out.FinalUnit = r.Final
	out.QuotaValidity = uint32(cfg.QuotaValidity / time.Second)
	return ResultOK
}

// terminate debits the used units and closes the session.
func (a *Account) terminate(cfg *Config, cmd *Command, now int64, out *Outcome, eff *Effect) Result {
	r := a.reservation(cmd.Session)
	switch {
	case r == nil:
		return ResultUnknownSession
	case cmd.Used > UnitsMax || r.Used+cmd.Used > UnitsMax:
		return ResultUnitsAboveMaximum
	}
	t := cfg.Tariffs[r.RatingGroup]
	a.debitUsed(&t, r, cmd.Used, now, eff)
	out.Session = r.Session
	a.removeReservation(cmd.Session)
	return ResultOK
}

// expire closes every session whose reservation lapsed at now: its money
// returns to the balance and the unreported usage is not charged.
func (a *Account) expire(now int64, eff *Effect) Result {
	for i := 0; i < len(a.Reservations); {
		if a.Reservations[i].ExpiresAt <= now {
			a.removeReservation(a.Reservations[i].Session)
			eff.Dirty = true
			continue
		}
		i++
	}
	return ResultOK
}

// NextExpiry returns the earliest reservation expiry (Unix seconds), or 0.
func (a *Account) NextExpiry() int64 {
	var next int64
	for i := range a.Reservations {
		if e := a.Reservations[i].ExpiresAt; next == 0 || e < next {
			next = e
		}
	}
	return next
}

// refund credits back a charge made in error. Checks, in order: the charge
// exists, it is a charge or session debit, not refunded before, the amount
// (0: all of it) does not exceed it, the balance limit.
func (a *Account) refund(cmd *Command, now int64, eff *Effect) Result {
	o := &cmd.Original
	switch {
	case o.Seq == 0 || o.Seq != cmd.Ref:
		return ResultUnknownTransaction
	case o.Kind != EntryCharge && o.Kind != EntrySessionDebit:
		return ResultNotRefundable
	case cmd.OriginalRefunded:
		return ResultAlreadyRefunded
	case cmd.Amount < 0:
		return ResultAmountMustBePositive
	case cmd.Amount > -o.Amount:
		return ResultRefundExceedsCharge
	}
	amount := cmd.Amount
	if amount == 0 {
		amount = -o.Amount
	}
	if amount > BalanceMax-a.Balance {
		return ResultBalanceLimit
	}
	a.Balance += amount
	a.rollMonth(now)
	// Only a charge of this month counts against this month's spending: a
	// refund of last month's charge would otherwise make Spent negative.
	if monthOf(o.Time/int64(time.Second)) == a.Month.Month {
		a.Month.Spent -= amount
	}
	eff.Entry = Entry{Kind: EntryRefund, RatingGroup: o.RatingGroup, Amount: amount, Ref: o.Seq}
	return ResultOK
}

// adjust is an operator's correction, signed. Checks, in order: a reason,
// a non-zero amount, the balance limit, money held by reservations.
func (a *Account) adjust(cmd *Command, eff *Effect) Result {
	switch {
	case cmd.Reason == "":
		return ResultAdjustmentNeedsReason
	case cmd.Amount == 0:
		return ResultAmountMustBePositive
	case cmd.Amount > 0 && cmd.Amount > BalanceMax-a.Balance:
		return ResultBalanceLimit
	case cmd.Amount < 0 && -cmd.Amount > a.Available():
		return ResultInsufficientBalance
	}
	a.Balance += cmd.Amount
	eff.Entry = Entry{Kind: EntryAdjustment, Amount: cmd.Amount}
	return ResultOK
}
