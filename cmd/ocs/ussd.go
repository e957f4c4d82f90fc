package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/flows"
	"github.com/ocs-engine/ocs/protocols/httpapi"
	"github.com/ocs-engine/ocs/protocols/ussd"
	"github.com/ocs-engine/ocs/storage"
)

// Adapters of issue 3: storage's voucher and fixed stores to the small
// interfaces flows and httpapi declare, and flows to ussd.Engine. They live
// here because only cmd may import storage, flows and protocols together;
// storage.Transfers already has flows.Transfers' method set.

// flowVouchers adapts *storage.Vouchers to flows.Vouchers.
type flowVouchers struct{ v *storage.Vouchers }

func redemptionOf(r *storage.Redemption) flows.Redemption {
	return flows.Redemption{Result: r.Result, Hash: r.Hash, Value: r.Value, Beneficiary: r.Beneficiary,
		BarredUntil: r.BarredUntil, Credit: r.Command(), UsedBy: r.UsedBy, UsedAt: r.UsedAt, CreditSeq: r.CreditSeq}
}

func (a flowVouchers) Redeem(code charging.VoucherCode, caller, to charging.SubscriberID, now time.Time) (flows.Redemption, error) {
	r, err := a.v.Redeem(code, caller, to, now)
	out := redemptionOf(&r)
	out.Release = r.Releaser()
	return out, err
}

func (a flowVouchers) Complete(h [32]byte, seq uint64) error { return a.v.Complete(h, seq) }

func (a flowVouchers) Revert(h [32]byte) error { return a.v.Revert(h) }

func (a flowVouchers) Pending(after *[32]byte, limit int) ([]flows.Redemption, error) {
	list, err := a.v.Pending((*storage.VoucherHash)(after), limit)
	out := make([]flows.Redemption, len(list))
	for i := range list {
		out[i] = redemptionOf(&list[i])
	}
	return out, err
}

// flowFixed adapts *storage.Fixed to flows.Fixed and flows.MonthPayments;
// s reads the debit's request record for MonthPayment.
type flowFixed struct {
	f *storage.Fixed
	s *storage.Store
}

func paymentOf(p *storage.FixedPayment) flows.Payment {
	return flows.Payment{ID: p.ID, Caller: p.Caller, Account: p.Account, Package: p.Package, Price: p.Price, Fee: p.Fee,
		Key: p.DebitKey(), Pending: p.State == storage.PaymentPending,
		Applied: p.State == storage.PaymentApplied, Created: p.Created, PaidUntil: p.PaidUntil}
}

// MonthPayment returns the payment caller's month marker names, with its
// debit's journal Seq (flows.MonthPayments: a retry told the truth).
func (a flowFixed) MonthPayment(caller charging.SubscriberID) (flows.Payment, bool, error) {
	p, found, err := a.f.MonthPayment(caller)
	if err != nil || !found {
		return flows.Payment{}, found, err
	}
	out := paymentOf(&p)
	rec, ok, err := a.s.LookupRequest(caller, p.DebitKey())
	if err != nil {
		return out, true, err
	}
	if ok && rec.Outcome.Result == charging.ResultOK {
		out.DebitSeq = rec.Outcome.Seq
	}
	return out, true, nil
}

func (a flowFixed) BeginPayment(caller charging.SubscriberID, account string, pkg charging.PackageID, cat *charging.Catalogue,
	fee charging.Amount, now time.Time) (flows.Payment, charging.FixedResult, error) {
	p, r, err := a.f.BeginPayment(caller, account, pkg, cat, fee, now)
	return paymentOf(&p), r, err
}

func (a flowFixed) ApplyPayment(id uint64, cat *charging.Catalogue, now time.Time) (flows.Payment, charging.FixedAccount, error) {
	p, acc, err := a.f.ApplyPayment(id, cat, now)
	return paymentOf(&p), acc, err
}

func (a flowFixed) CancelPayment(id uint64) error { return a.f.CancelPayment(id) }

func (a flowFixed) PendingPayments(after uint64, limit int) ([]flows.Payment, error) {
	list, err := a.f.PendingPayments(after, limit)
	out := make([]flows.Payment, len(list))
	for i := range list {
		out[i] = paymentOf(&list[i])
	}
	return out, err
}

// opsStores adapts storage's voucher and fixed stores to httpapi's
// Vouchers and FixedAccounts.
type opsStores struct {
	v *storage.Vouchers
	f *storage.Fixed
}

func notFound(err error) error {
	if errors.Is(err, storage.ErrVoucherNotFound) || errors.Is(err, storage.ErrFixedNotFound) {
		return httpapi.ErrNotFound
	}
	return err
}

func (o opsStores) Voucher(serial uint64) (charging.Voucher, error) {
	_, rec, err := o.v.BySerial(serial)
	return rec, notFound(err)
}

func (o opsStores) BlockVoucher(serial uint64) (charging.Voucher, error) {
	if _, err := o.v.Block(serial); err != nil {
		return charging.Voucher{}, notFound(err)
	}
	return o.Voucher(serial)
}

func (o opsStores) BlockBatch(batch uint32) error { return notFound(o.v.BlockBatch(batch)) }

func (o opsStores) BarredCallers(now time.Time, limit int) ([]httpapi.BarredCaller, error) {
	list, err := o.v.BarredCallers(now, limit)
	out := make([]httpapi.BarredCaller, len(list))
	for i, g := range list {
		out[i] = httpapi.BarredCaller{Caller: g.Caller, Guard: g.Guard}
	}
	return out, err
}

func (o opsStores) Guard(caller charging.SubscriberID) (charging.RedeemGuard, error) {
	return o.v.Guard(caller)
}

func (o opsStores) FixedAccount(id string) (charging.FixedAccount, bool, error) { return o.f.Get(id) }

func (o opsStores) PutFixedAccount(a *charging.FixedAccount) error { return o.f.Put(a) }

// ussdEngine adapts *flows.Flows to ussd.Engine.
type ussdEngine struct{ f *flows.Flows }

func (u ussdEngine) Redeem(caller, to charging.SubscriberID, code charging.VoucherCode) (ussd.Reply, error) {
	res, err := u.f.Redeem(caller, to, code)
	return replyOf(&res), inProgress(err)
}

func (u ussdEngine) PayPackage(caller charging.SubscriberID, pkg charging.PackageID, account string) (ussd.Reply, error) {
	res, err := u.f.PayPackage(caller, pkg, account)
	return replyOf(&res), inProgress(err)
}

func (u ussdEngine) Inquire(caller charging.SubscriberID) (ussd.Reply, error) {
	res, err := u.f.Inquire(caller)
	return replyOf(&res), err
}

func (u ussdEngine) Transfer(key string, caller, to charging.SubscriberID, amount charging.Amount) (ussd.Reply, error) {
	res, err := u.f.Transfer(key, caller, to, amount)
	return replyOf(&res), inProgress(err)
}

// inProgress tells the USSD handler that a flow failed after its record was
// written (flows.ErrInProgress): the subscriber is told the operation is
// being processed, not that it failed.
func inProgress(err error) error {
	if errors.Is(err, flows.ErrInProgress) {
		return fmt.Errorf("%w: %w", ussd.ErrInProgress, err)
	}
	return err
}

// replyOf maps a flow's Result to the subscriber's reason: the first
// refusing verdict in the order the flow reached them.
func replyOf(res *flows.Result) ussd.Reply {
	r := ussd.Reply{Balance: res.Outcome.Balance, ValidUntil: res.Outcome.ValidUntil, State: res.Outcome.State,
		Amount: res.Amount, PaidUntil: res.PaidUntil, BarredUntil: res.BarredUntil}
	switch {
	case res.Voucher != 0 && res.Voucher != charging.VoucherOK:
		r.Reason = ussd.ReasonForVoucher(res.Voucher)
	case res.Transfer != 0 && res.Transfer != charging.TransferOK:
		r.Reason = ussd.ReasonForTransfer(res.Transfer)
	case res.Fixed != 0 && res.Fixed != charging.FixedOK:
		r.Reason = ussd.ReasonForFixed(res.Fixed)
	case res.Account == charging.ResultUnknownSubscriber && !res.ByReceiver:
		r.Reason = ussd.ReasonUnknownSubscriber
	default:
		r.Reason = ussd.ReasonForResult(res.Account)
	}
	if r.Reason == ussd.ReasonOK && res.Outcome.Seq != 0 {
		b := res.Subscriber.AppendText(make([]byte, 0, ussd.TxnIDBytesMax))
		r.TxnID = string(strconv.AppendUint(append(b, '-'), res.Outcome.Seq, 10))
	}
	return r
}
