package flows

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
)

// Executor runs one command on its subscriber's account and returns once the
// outcome is durable. *actors.Engine implements it.
type Executor interface {
	// Execute must not keep cmd once it returns (flows pool them).
	Execute(cmd *charging.Command) (charging.Outcome, error)
}

// Redemption is a voucher store's answer to Redeem (storage.Redemption,
// copied by the adapter in cmd/ocs).
type Redemption struct {
	Result      charging.VoucherResult
	Hash        [32]byte
	Value       charging.Amount
	Beneficiary charging.SubscriberID
	BarredUntil int64 // Unix seconds, with VoucherBarred
	// UsedBy, UsedAt (Unix seconds) and CreditSeq are a used card's use,
	// set with VoucherAlreadyUsed (storage's Redemption fields of the same
	// names; CreditSeq 0: a pending marker of an older build). Redeem
	// answers a retry of a redemption that succeeded from them
	// (RetryAnswerMax); zero, the retry is told "card used".
	UsedBy    charging.SubscriberID
	UsedAt    int64
	CreditSeq uint64
	// Credit is the top-up that credits the card (storage's
	// Redemption.Command(): key "V/<hash>"). A live redemption's carries
	// the card (Command.Card), which becomes used in the credit's batch.
	Credit charging.Command
	// Release unlocks the card of a VoucherOK Redeem once its credit is
	// answered (nil for a pending marker).
	Release func()
}

// Vouchers is the durable half of redemption (storage.Vouchers).
type Vouchers interface {
	// Redeem decides on code for caller and beneficiary. On VoucherOK it
	// writes nothing and holds the card until Release: the card becomes
	// used in the batch of its credit (Credit).
	Redeem(code charging.VoucherCode, caller, beneficiary charging.SubscriberID, now time.Time) (Redemption, error)
	// Pending lists up to limit pending markers left by builds before the
	// one-batch protocol, in hash order, starting after the hash after
	// (nil: from the first); Complete and Revert finish one.
	Pending(after *[32]byte, limit int) ([]Redemption, error)
	Complete(hash [32]byte, seq uint64) error
	Revert(hash [32]byte) error
}

// Transfers is the transfer record store (storage.Transfers).
type Transfers interface {
	// Begin starts a transfer, or returns the one the same sender's request
	// key began before (existed true).
	Begin(key string, from, to charging.SubscriberID, amount, fee charging.Amount, now time.Time) (tr charging.Transfer, existed bool, err error)
	Advance(id uint64, next charging.TransferState) (charging.Transfer, error)
	// ReversalRecorded reports whether tr's reversal was made (its request
	// record on the sender's account exists).
	ReversalRecorded(tr *charging.Transfer) (bool, error)
	// Open lists up to limit open transfers whose ID is above after (0:
	// from the first), by ID.
	Open(after uint64, limit int) ([]charging.Transfer, error)
}

// Payment is one *101# payment record (storage.FixedPayment).
type Payment struct {
	ID      uint64
	Caller  charging.SubscriberID
	Account string
	Package charging.PackageID
	Price   charging.Amount
	Fee     charging.Amount
	Key     string // the request key of the caller's debit ("P/<id>")
	Pending bool   // neither applied nor cancelled
	// Set by MonthPayments.MonthPayment (the others may leave them zero):
	// Applied says the fixed account was extended, Created (Unix seconds)
	// is when the payment began, PaidUntil is the account's paid-until
	// right after it was applied (storage.FixedPayment's fields), and
	// DebitSeq is the journal Seq of the caller's debit (its request
	// record under Key; 0 if unknown).
	Applied   bool
	Created   int64
	PaidUntil int64
	DebitSeq  uint64
}

// Fixed is the fixed-account store (storage.Fixed).
type Fixed interface {
	BeginPayment(caller charging.SubscriberID, account string, pkg charging.PackageID, cat *charging.Catalogue,
		fee charging.Amount, now time.Time) (Payment, charging.FixedResult, error)
	ApplyPayment(id uint64, cat *charging.Catalogue, now time.Time) (Payment, charging.FixedAccount, error)
	CancelPayment(id uint64) error
	// PendingPayments lists up to limit pending payments whose ID is
	// above after (0: from the first), by ID.
	PendingPayments(after uint64, limit int) ([]Payment, error)
}

// MonthPayments is what PayPackage needs, beyond Fixed, to answer a retry
// of a payment that succeeded as that success rather than "already paid
// this month": the payment a caller's month marker names
// (storage.Fixed.MonthPayment, with DebitSeq from the caller's request
// record under the payment's Key: storage.Store.LookupRequest; found
// false without a marker). A Fixed that does not implement it keeps the
// refusal. Kept apart from Fixed so that a Fixed without it still wires.
type MonthPayments interface {
	MonthPayment(caller charging.SubscriberID) (p Payment, found bool, err error)
}

// Failpoint names, for Config.Failpoint: tests crash the process there.
const (
	FailTransferAfterDebit = "transfer-after-debit"
	FailPaymentAfterDebit  = "payment-after-debit"
)

// Config wires Flows.
type Config struct {
	Engine    Executor
	Vouchers  Vouchers  // nil: Redeem answers an error
	Transfers Transfers // nil: Transfer answers an error
	Fixed     Fixed     // nil: PayPackage answers an error
	Rules     charging.TransferRules
	Catalogue charging.Catalogue
	// PaymentFee is the *101# fee on top of the package price.
	PaymentFee charging.Amount
	Now        func() time.Time // nil: time.Now
	Logger     *slog.Logger     // nil: discard
	Registerer prometheus.Registerer
	// Failpoint, when set, is called at each named point of a flow right
	// after a durable step (see the Fail… constants). Test-only: cmd/ocs
	// sets it from OCS_FAILPOINT to kill the process there.
	Failpoint func(name string)
}

// Flows runs the multi-step operations. Safe for concurrent use.
type Flows struct {
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics
	records records // who drives which record now; the re-driver's view
	// pageMax is the page size of every listing Recover and Redrive read:
	// listPageMax, smaller in tests so that a few records span pages.
	pageMax int
	// redriving serialises Redrive calls: one round at a time. It guards
	// passes, where each kind's re-drive pass stands between rounds.
	redriving sync.Mutex
	passes    [kindCount]redrivePass
}

// ErrNotConfigured is returned by a flow whose store was not wired.
var ErrNotConfigured = errors.New("flows: store not configured")

// ErrUnsettled is returned when a re-driven leg gets an answer that is no
// verdict on the leg: overloaded (which is also what the actor answers when
// it cannot read the request record of an earlier run, so the leg may well
// have happened) or request key reused. The record stays open for the next
// re-drive; reverting a card or reversing a transfer on such an answer could
// give the money twice.
var ErrUnsettled = errors.New("flows: re-driven leg got no verdict; the record stays open")

// ErrDrivenElsewhere is returned by a live flow that found the re-driver
// driving its record: the re-driver finishes it, this request must not.
var ErrDrivenElsewhere = errors.New("flows: the record is being finished by the re-driver")

// ErrInProgress wraps the error of a flow that failed after its durable
// record was written: the record is open (or, for a transfer retry, already
// final) and is finished without another request, by the re-driver within
// about its minimum age plus an interval, or by Recover at the next start.
// The subscriber must be told the operation is being processed, not that it
// failed: repeating it would start another operation. A refusal is a
// Result, never this error. An error without it left nothing half-way:
// nothing durable, or (a redemption's credit cut off by an engine failure)
// a card used together with its credit, which a repeat finds used.
var ErrInProgress = errors.New("flows: the operation is recorded and will be finished")

// inProgress marks err, if any, as ErrInProgress.
func inProgress(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInProgress, err)
}

// drive says whether a record's legs run for the first time (live: the
// request that created the record) or again (a retry, Recover, Redrive).
type drive uint8

const (
	driveLive drive = iota
	driveAgain
)

// unsettled returns ErrUnsettled for an answer that decides nothing on a
// re-drive. On a live first run, overloaded is a real refusal: the leg
// never ran (no earlier run exists whose record the actor could have
// failed to read).
func (d drive) unsettled(out *charging.Outcome) error {
	if d == driveAgain && (out.Result == charging.ResultOverloaded || out.Result == charging.ResultRequestKeyReused) {
		return fmt.Errorf("%w: %v", ErrUnsettled, out.Result)
	}
	return nil
}

// Limits of the flows.
const (
	// legRetriesMax bounds retries of a leg answered "overloaded" after an
	// earlier leg is durable: the money is half-way and the record would
	// otherwise stay open until the next start. 5 × legRetryWait is well
	// within a USSD gateway's 10 s.
	legRetriesMax = 5
	legRetryWait  = 20 * time.Millisecond
	// RetryAnswerMax is how recent a card's use or a *101# payment must
	// be for a repeat of the same request to be told the success it was,
	// instead of "card used" or "already paid this month". Neither request
	// carries a key: the USSD handler answers a gateway retry from its
	// session table, which forgets a session idle for SessionIdleMax
	// (3 min), evicts under load (100,000 sessions) and starts empty after
	// a restart. 10 min covers that idle time, an engine restart (Recover)
	// and a gateway's or a subscriber's repeat after a lost answer, with
	// room. Longer, a new dial of an old card by the subscriber it
	// credited would be told a top-up happened now, which it did not: past
	// the window, a repeat is a new attempt and "card used" is the truth.
	// Measured with Config.Now on both sides (a card's UsedAt and a
	// payment's Created are the flows' clock at the first request); a
	// clock stepped back counts the same distance.
	RetryAnswerMax = 10 * time.Minute
	// listPageMax is the page size of the listings of open records
	// (Recover, Redrive): one page is read into memory at once, and the
	// stores cap a page at 10,000.
	listPageMax = 1000
)

// New returns Flows wired by cfg. It panics without an Engine: a wiring bug.
func New(cfg Config) *Flows {
	if cfg.Engine == nil {
		panic("flows: Config.Engine is required")
	}
	f := &Flows{cfg: cfg, now: cfg.Now, log: cfg.Logger, metrics: newMetrics(cfg.Registerer), pageMax: listPageMax}
	f.records.init()
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f
}

// Rules returns the transfer rules.
func (f *Flows) Rules() charging.TransferRules { return f.cfg.Rules }

// Result is the outcome of a flow, as precise as the subscriber must be
// told it. The first non-OK verdict in field order decides: Voucher,
// Transfer, Fixed, then Account.
type Result struct {
	Voucher  charging.VoucherResult // redemption: the card's verdict (0: not reached)
	Transfer charging.TransferResult
	Fixed    charging.FixedResult
	// Account is the verdict of the account leg that decided (0: none
	// ran). ByReceiver says it came from the beneficiary's or receiver's
	// account rather than the caller's.
	Account    charging.Result
	ByReceiver bool
	// Outcome is the account outcome the subscriber is shown: the caller's
	// (debit, reversal, inquiry) or, for a card credited to another
	// subscriber, the beneficiary's. Subscriber names whose it is.
	Outcome    charging.Outcome
	Subscriber charging.SubscriberID
	Amount     charging.Amount // credited (card), sent (transfer), price (payment)
	PaidUntil  int64           // payment: the fixed account's paid-until, 0 for a credit package
	// BarredUntil (Unix seconds) explains VoucherBarred.
	BarredUntil int64
	Ref         uint64 // transfer or payment ID
}

// OK reports whether every verdict is OK.
func (r *Result) OK() bool {
	return (r.Voucher == 0 || r.Voucher == charging.VoucherOK) &&
		(r.Transfer == 0 || r.Transfer == charging.TransferOK) &&
		(r.Fixed == 0 || r.Fixed == charging.FixedOK) &&
		r.Account == charging.ResultOK
}

func (f *Flows) failpoint(name string) {
	if f.cfg.Failpoint != nil {
		f.cfg.Failpoint(name)
	}
}

// commands pools the Command that Executor.Execute takes by pointer:
// through an interface the pointer escapes, so without the pool every
// command a flow runs (and the value holding it: a redemption's, a
// transfer's) would be allocated on the heap, on every request.
var commands = sync.Pool{New: func() any { return new(charging.Command) }}

// execute runs a copy of cmd on the engine; cmd stays the caller's.
func (f *Flows) execute(cmd *charging.Command) (charging.Outcome, error) {
	c := commands.Get().(*charging.Command)
	*c = *cmd
	out, err := f.cfg.Engine.Execute(c)
	*c = charging.Command{}
	commands.Put(c)
	return out, err
}

// leg executes cmd, retrying a bounded number of times while the engine
// answers overloaded: used for legs after a durable step.
func (f *Flows) leg(cmd *charging.Command) (charging.Outcome, error) {
	for i := 0; ; i++ {
		out, err := f.execute(cmd)
		if err != nil || out.Result != charging.ResultOverloaded || i == legRetriesMax {
			return out, err
		}
		time.Sleep(legRetryWait)
	}
}

// receiverExists asks whether a transfer's receiver id has an account; res
// records a refusal.
func (f *Flows) receiverExists(id charging.SubscriberID, res *Result) (bool, error) {
	out, err := f.execute(&charging.Command{Kind: charging.KindInquire, Subscriber: id})
	if err != nil {
		return false, err
	}
	if out.Result != charging.ResultOK {
		res.Account, res.ByReceiver, res.Outcome = out.Result, true, out
		return false, nil
	}
	return true, nil
}

// Inquire returns id's balance, validity and state.
func (f *Flows) Inquire(id charging.SubscriberID) (Result, error) {
	out, err := f.execute(&charging.Command{Kind: charging.KindInquire, Subscriber: id})
	return Result{Account: out.Result, Outcome: out, Subscriber: id}, err
}

// Redeem redeems code dialled by caller for beneficiary. One durable batch
// both credits the beneficiary and uses the card (storage's "Redemption
// protocol"), so there is no half-way state: a refused credit (no such
// beneficiary, balance limit, overload) leaves the card active, and an
// engine error leaves the card used with its credit or neither, so
// repeating the redemption is always safe. A repeat after a success is
// told that success (answerRedeemed) when it names the beneficiary the
// card credited within RetryAnswerMax; otherwise "card used".
func (f *Flows) Redeem(caller, beneficiary charging.SubscriberID, code charging.VoucherCode) (Result, error) {
	res := Result{Subscriber: beneficiary}
	if f.cfg.Vouchers == nil {
		return res, ErrNotConfigured
	}
	r, err := f.cfg.Vouchers.Redeem(code, caller, beneficiary, f.now())
	if err != nil {
		f.metrics.redeemed(&res, err)
		return res, fmt.Errorf("flows: redeem: %w", err)
	}
	res.Voucher, res.BarredUntil, res.Amount = r.Result, r.BarredUntil, r.Value
	if r.Result != charging.VoucherOK {
		// Counted as the store decided (voucher_used for a retry told its
		// success below): "ok" counts credits made, each once.
		f.metrics.redeemed(&res, nil)
		if r.Result == charging.VoucherAlreadyUsed && r.UsedBy == beneficiary && r.CreditSeq != 0 && recent(r.UsedAt, f.now()) {
			if err := f.answerRedeemed(&r, caller, &res); err != nil {
				return res, fmt.Errorf("flows: redeem: %w", err)
			}
		}
		return res, nil
	}
	if r.Release != nil {
		defer r.Release()
	}
	out, err := f.execute(&r.Credit)
	if err != nil {
		f.metrics.redeemed(&res, err)
		return res, fmt.Errorf("flows: credit voucher: %w", err)
	}
	res.Account, res.Outcome, res.ByReceiver = out.Result, out, beneficiary != caller
	f.metrics.redeemed(&res, nil)
	return res, nil
}

// recent reports whether unix (seconds, the flows' clock at an earlier
// request) is within RetryAnswerMax of now, either way.
func recent(unix int64, now time.Time) bool {
	d := now.Sub(time.Unix(unix, 0))
	return d <= RetryAnswerMax && d >= -RetryAnswerMax
}

// answerRedeemed answers a dial of a card that this very beneficiary's
// credit used within RetryAnswerMax: a retry of a redemption that
// succeeded (its answer lost, its USSD session forgotten), told the
// success it was, with the credit's transaction ID (the journal Seq the
// card records). Nothing runs but an inquiry: no write, no guard failure.
// The balance and validity shown are the beneficiary's now, not right
// after the credit (the credit's outcome is not kept with the card);
// minutes later they differ only by what was spent meanwhile. If the
// beneficiary has no account any more, res stays "card used".
func (f *Flows) answerRedeemed(r *Redemption, caller charging.SubscriberID, res *Result) error {
	out, ok, err := f.replayOutcome(r.Beneficiary, r.CreditSeq)
	if !ok {
		return err
	}
	res.Voucher, res.Account, res.Outcome, res.ByReceiver = charging.VoucherOK, charging.ResultOK, out, r.Beneficiary != caller
	return nil
}

// finishMarker finishes a pending marker of an older build (Recover, the
// re-driver): the card's credit again, answered from its record if it was
// made before, then Complete, or Revert if the credit was refused. It
// reports whether the card was credited.
func (f *Flows) finishMarker(r *Redemption) (credited bool, err error) {
	out, err := f.leg(&r.Credit)
	if err != nil {
		return false, fmt.Errorf("flows: credit voucher: %w", err)
	}
	if err := driveAgain.unsettled(&out); err != nil {
		return false, fmt.Errorf("flows: credit voucher: %w", err)
	}
	if out.Result != charging.ResultOK {
		// Nothing was credited: the card becomes active again.
		if err := f.cfg.Vouchers.Revert(r.Hash); err != nil {
			return false, fmt.Errorf("flows: revert voucher: %w", err)
		}
		return false, nil
	}
	if err := f.cfg.Vouchers.Complete(r.Hash, out.Seq); err != nil {
		return true, fmt.Errorf("flows: complete voucher: %w", err)
	}
	return true, nil
}

// Transfer sends amount from caller to to; the fee is debited on top. key is
// the caller's request key: a retry finds the transfer the first attempt
// began and re-drives it (every leg is idempotent by its own key), so money
// moves once however often the request comes.
func (f *Flows) Transfer(key string, from, to charging.SubscriberID, amount charging.Amount) (Result, error) {
	res := Result{Subscriber: from, Amount: amount}
	if f.cfg.Transfers == nil {
		return res, ErrNotConfigured
	}
	if res.Transfer = f.cfg.Rules.Validate(from, to, amount); res.Transfer != charging.TransferOK {
		f.metrics.transferred(&res, nil)
		return res, nil
	}
	ok, err := f.receiverExists(to, &res)
	if err != nil || !ok {
		f.metrics.transferred(&res, err)
		return res, err
	}
	tr, existed, err := f.cfg.Transfers.Begin(key, from, to, amount, f.cfg.Rules.Fee, f.now())
	if err != nil {
		f.metrics.transferred(&res, err)
		return res, fmt.Errorf("flows: begin transfer: %w", err)
	}
	res.Ref = tr.ID
	k := transferKey(tr.ID)
	waited := f.records.claim(k)
	defer f.records.release(k, true)
	// Read the record again now that this request holds it: another
	// driver (the re-driver, a concurrent retry) may have moved it after
	// Begin read it, and a stale state would run a leg whose refusal was
	// already acted on. Begin with the same key only reads.
	fresh := !existed && !waited
	if tr, _, err = f.cfg.Transfers.Begin(key, from, to, amount, f.cfg.Rules.Fee, f.now()); err != nil {
		f.metrics.transferred(&res, err)
		return res, inProgress(fmt.Errorf("flows: read transfer: %w", err))
	}
	if tr.State.Final() {
		err = f.answerFinished(tr, &res)
		return res, inProgress(err)
	}
	// A retry re-drives: its legs may have run before. (A record this
	// request created and found pending is driven live; another driver
	// could have run a leg only by beginning, driving and releasing it
	// within the microseconds between this Begin and this claim.)
	d := driveAgain
	if fresh && tr.State == charging.TransferPending {
		d = driveLive
	}
	err = f.driveTransfer(tr, &res, d)
	f.metrics.transferred(&res, err)
	return res, inProgress(err)
}

// answerFinished answers a retry of a transfer that already ended, from its
// record and the sender's account now. No leg runs again: a refused debit was
// not recorded under its key, so running it again would be a new debit. The
// record keeps the outcome, not the reason of a refusal, which is told as the
// sender's account explains it now.
func (f *Flows) answerFinished(tr charging.Transfer, res *Result) error {
	out, err := f.execute(&charging.Command{Kind: charging.KindInquire, Subscriber: tr.From})
	if err != nil {
		return err
	}
	res.Outcome = out
	switch tr.State {
	case charging.TransferCredited:
		res.Account = charging.ResultOK
	case charging.TransferReversed:
		res.Account, res.ByReceiver = charging.ResultUnknownSubscriber, true
	default: // refused
		switch out.State {
		case charging.StateGrace:
			res.Account = charging.ResultGraceOutgoingBarred
		case charging.StateSuspended:
			res.Account = charging.ResultSuspended
		default:
			res.Account = charging.ResultInsufficientBalance
		}
	}
	return nil
}

// driveTransfer runs the transfer protocol from tr's state to a final one
// (storage/transfer.go steps 2–4); recovery calls it too.
func (f *Flows) driveTransfer(tr charging.Transfer, res *Result, d drive) error {
	if tr.State == charging.TransferPending {
		debit := tr.DebitCommand()
		out, err := f.execute(&debit)
		if err != nil {
			return fmt.Errorf("flows: transfer debit: %w", err)
		}
		if err := d.unsettled(&out); err != nil {
			return fmt.Errorf("flows: transfer debit: %w", err)
		}
		res.Outcome = out
		if out.Result != charging.ResultOK {
			res.Account = out.Result
			if _, err := f.cfg.Transfers.Advance(tr.ID, charging.TransferRefused); err != nil {
				return fmt.Errorf("flows: transfer refused: %w", err)
			}
			return nil
		}
		f.failpoint(FailTransferAfterDebit)
		if tr, err = f.cfg.Transfers.Advance(tr.ID, charging.TransferDebited); err != nil {
			return fmt.Errorf("flows: transfer debited: %w", err)
		}
	}
	if tr.State == charging.TransferDebited && d == driveAgain {
		// A build without the reversing state ran the reversal straight
		// from debited: if it was made, the credit was refused, and running
		// the credit again could pay the receiver too.
		reversed, err := f.cfg.Transfers.ReversalRecorded(&tr)
		if err != nil {
			return fmt.Errorf("flows: transfer reversal: %w", err)
		}
		if reversed {
			if tr, err = f.cfg.Transfers.Advance(tr.ID, charging.TransferReversing); err != nil {
				return fmt.Errorf("flows: transfer reversing: %w", err)
			}
		}
	}
	if tr.State == charging.TransferDebited {
		credit := tr.CreditCommand()
		out, err := f.leg(&credit)
		if err != nil {
			return fmt.Errorf("flows: transfer credit: %w", err)
		}
		if err := d.unsettled(&out); err != nil {
			return fmt.Errorf("flows: transfer credit: %w", err)
		}
		if out.Result == charging.ResultOK {
			res.Account = charging.ResultOK
			if _, err := f.cfg.Transfers.Advance(tr.ID, charging.TransferCredited); err != nil {
				return fmt.Errorf("flows: transfer credited: %w", err)
			}
			return nil
		}
		res.Account, res.ByReceiver = out.Result, true
		// Durable before the reversal runs: from here on only the reversal
		// is re-driven (storage/transfer.go, step 5).
		if tr, err = f.cfg.Transfers.Advance(tr.ID, charging.TransferReversing); err != nil {
			return fmt.Errorf("flows: transfer reversing: %w", err)
		}
	}
	if tr.State != charging.TransferReversing {
		return nil // final already
	}
	if res.Account == 0 {
		// Re-driven from reversing: the credit's verdict is not kept, as
		// for a reversed transfer (answerFinished).
		res.Account, res.ByReceiver = charging.ResultUnknownSubscriber, true
	}
	rev := tr.ReverseCommand()
	back, err := f.leg(&rev)
	if err != nil {
		return fmt.Errorf("flows: transfer reversal: %w", err)
	}
	if err := d.unsettled(&back); err != nil {
		return fmt.Errorf("flows: transfer reversal: %w", err)
	}
	if back.Result != charging.ResultOK {
		// Only the balance limit can refuse it, and the sender just paid
		// this amount: the record stays reversing, re-driven until the
		// sender's balance leaves room (ops see it in the open transfers).
		return fmt.Errorf("flows: transfer %d reversal refused: %v", tr.ID, back.Result)
	}
	res.Outcome = back
	if _, err := f.cfg.Transfers.Advance(tr.ID, charging.TransferReversed); err != nil {
		return fmt.Errorf("flows: transfer reversed: %w", err)
	}
	return nil
}

// PayPackage pays package pkg of fixed account from caller's mobile credit:
// price + fee, at most once per calendar month per caller. A repeat of a
// payment that succeeded within RetryAnswerMax, for the same account and
// package, is told that success (answerPaid), not "already paid".
func (f *Flows) PayPackage(caller charging.SubscriberID, pkg charging.PackageID, account string) (Result, error) {
	res := Result{Subscriber: caller}
	if f.cfg.Fixed == nil {
		return res, ErrNotConfigured
	}
	p, fr, err := f.cfg.Fixed.BeginPayment(caller, account, pkg, &f.cfg.Catalogue, f.cfg.PaymentFee, f.now())
	res.Fixed = fr
	if err != nil || fr != charging.FixedOK {
		// Counted as the store decided (already_paid_this_month for a retry
		// told its success below): "ok" counts payments made, each once.
		f.metrics.paid(&res, err)
		if err == nil && fr == charging.FixedAlreadyPaidMonth {
			if err := f.answerPaid(caller, pkg, account, &res); err != nil {
				return res, fmt.Errorf("flows: pay package: %w", err)
			}
		}
		return res, err
	}
	k := paymentKey(p.ID)
	if f.records.claim(k) {
		f.records.release(k, true)
		f.metrics.paid(&res, ErrDrivenElsewhere)
		return res, inProgress(ErrDrivenElsewhere)
	}
	err = f.drivePayment(p, &res, driveLive)
	f.records.release(k, true)
	f.metrics.paid(&res, err)
	return res, inProgress(err)
}

// answerPaid answers a *101# payment refused "already paid this month"
// whose month marker names an applied payment of the same caller, fixed
// account and package begun within RetryAnswerMax: a retry of a payment
// that succeeded, told the success it was, with its debit's transaction
// ID and the account's paid-until as that payment left it. The window
// runs from the payment's start (the record keeps no time of applying it;
// a live payment is applied within a second, and one the re-driver
// finished later gets a shorter window, falling back to the refusal).
// Nothing runs but an inquiry; the balance shown is the caller's now, not
// right after the debit. Anything else keeps the refusal in res.
func (f *Flows) answerPaid(caller charging.SubscriberID, pkg charging.PackageID, account string, res *Result) error {
	mp, ok := f.cfg.Fixed.(MonthPayments)
	if !ok {
		return nil
	}
	p, found, err := mp.MonthPayment(caller)
	if err != nil {
		return err
	}
	if !found || !p.Applied || p.DebitSeq == 0 || p.Caller != caller || p.Account != account || p.Package != pkg ||
		!recent(p.Created, f.now()) {
		return nil
	}
	out, ok, err := f.replayOutcome(caller, p.DebitSeq)
	if !ok {
		return err
	}
	res.Fixed, res.Account, res.Outcome, res.Ref, res.Amount = charging.FixedOK, charging.ResultOK, out, p.ID, p.Price
	if pk, ok := f.cfg.Catalogue.Lookup(p.Package); ok && !pk.Credit {
		res.PaidUntil = p.PaidUntil
	}
	return nil
}

// replayOutcome is the outcome told to a retry of a request that
// succeeded (answerRedeemed, answerPaid): id's account as an inquiry reads
// it now, marked replayed, with the original's journal Seq as its
// transaction ID. ok is false, and the refusal stands, on an error or if
// id has no account any more.
func (f *Flows) replayOutcome(id charging.SubscriberID, seq uint64) (out charging.Outcome, ok bool, err error) {
	out, err = f.execute(&charging.Command{Kind: charging.KindInquire, Subscriber: id})
	if err != nil || out.Result != charging.ResultOK {
		return out, false, err
	}
	out.Seq, out.Replayed = seq, true
	return out, true, nil
}

// drivePayment is steps 2–3 of the *101# protocol; recovery calls it too.
func (f *Flows) drivePayment(p Payment, res *Result, d drive) error {
	res.Ref, res.Amount = p.ID, p.Price
	debit := charging.Command{Kind: charging.KindPackagePayment, Channel: charging.ChannelUSSD, Key: p.Key,
		Subscriber: p.Caller, Amount: p.Price + p.Fee, Ref: p.ID}
	out, err := f.execute(&debit)
	if err != nil {
		return fmt.Errorf("flows: payment debit: %w", err)
	}
	if err := d.unsettled(&out); err != nil {
		return fmt.Errorf("flows: payment debit: %w", err)
	}
	res.Account, res.Outcome = out.Result, out
	if out.Result != charging.ResultOK {
		if err := f.cfg.Fixed.CancelPayment(p.ID); err != nil {
			return fmt.Errorf("flows: cancel payment: %w", err)
		}
		return nil
	}
	f.failpoint(FailPaymentAfterDebit)
	_, a, err := f.cfg.Fixed.ApplyPayment(p.ID, &f.cfg.Catalogue, f.now())
	if err != nil {
		return fmt.Errorf("flows: apply payment: %w", err)
	}
	if pk, ok := f.cfg.Catalogue.Lookup(p.Package); ok && !pk.Credit {
		res.PaidUntil = a.PaidUntil
	}
	return nil
}

// Recovered counts what Recover finished.
type Recovered struct {
	Redemptions, Transfers, Payments int
}

// Recover finishes every redemption, transfer and payment a crash left
// half-way, each from its record's state with the same request keys
// (idempotent). Run it after the engine starts and before serving.
func (f *Flows) Recover() (Recovered, error) {
	var n Recovered
	var err error
	if f.cfg.Vouchers != nil {
		if n.Redemptions, err = f.recoverRedemptions(); err != nil {
			return n, err
		}
	}
	if f.cfg.Transfers != nil {
		if n.Transfers, err = f.recoverTransfers(); err != nil {
			return n, err
		}
	}
	if f.cfg.Fixed != nil {
		n.Payments, err = f.recoverPayments()
	}
	return n, err
}

// recoverKind drives every record of one kind's listing, page after page,
// each page starting after the last record of the one before, until a short
// page. Records it finishes leave the listing, but the position does not
// depend on that: it ends after one pass over the listing, and an error
// stops it.
func recoverKind[T any](f *Flows, list func(after *recordKey, limit int) ([]T, error), ident func(*T) (recordKey, string),
	drive func(*T) error) (int, error) {
	n := 0
	var after *recordKey
	for {
		page, err := list(after, f.pageMax)
		if err != nil {
			return n, err
		}
		for i := range page {
			if err := drive(&page[i]); err != nil {
				return n, err
			}
			n++
			k, _ := ident(&page[i])
			after = &k
		}
		if len(page) < f.pageMax {
			return n, nil
		}
	}
}

// Listings of each kind from a position: the last record listed, or nil
// for the first. A redemption's position is its hash, the others' their ID.

func (f *Flows) listRedemptions(after *recordKey, limit int) ([]Redemption, error) {
	var h *[32]byte
	if after != nil {
		h = &after.hash
	}
	list, err := f.cfg.Vouchers.Pending(h, limit)
	if err != nil {
		return list, fmt.Errorf("flows: list pending vouchers: %w", err)
	}
	return list, nil
}

func (f *Flows) listTransfers(after *recordKey, limit int) ([]charging.Transfer, error) {
	var id uint64
	if after != nil {
		id = after.id
	}
	list, err := f.cfg.Transfers.Open(id, limit)
	if err != nil {
		return list, fmt.Errorf("flows: list open transfers: %w", err)
	}
	return list, nil
}

func (f *Flows) listPayments(after *recordKey, limit int) ([]Payment, error) {
	var id uint64
	if after != nil {
		id = after.id
	}
	list, err := f.cfg.Fixed.PendingPayments(id, limit)
	if err != nil {
		return list, fmt.Errorf("flows: list pending payments: %w", err)
	}
	return list, nil
}

func (f *Flows) recoverRedemptions() (int, error) {
	return recoverKind(f, f.listRedemptions, redemptionID, func(r *Redemption) error {
		_, err := f.finishMarker(r)
		return err
	})
}

func (f *Flows) recoverTransfers() (int, error) {
	return recoverKind(f, f.listTransfers, transferID, func(tr *charging.Transfer) error {
		var res Result
		return f.driveTransfer(*tr, &res, driveAgain)
	})
}

func (f *Flows) recoverPayments() (int, error) {
	return recoverKind(f, f.listPayments, paymentID, func(p *Payment) error {
		var res Result
		return f.drivePayment(*p, &res, driveAgain)
	})
}
