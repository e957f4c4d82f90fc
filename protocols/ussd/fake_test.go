package ussd

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// fakeEngine implements Engine with the real pure rules of charging on
// in-memory maps: what the lead's engine does, minus actors and storage.
type fakeEngine struct {
	mu        sync.Mutex
	cfg       charging.Config
	cat       charging.Catalogue
	rules     charging.TransferRules
	policy    charging.GuardPolicy
	now       func() time.Time
	accounts  map[charging.SubscriberID]*charging.Account
	vouchers  map[charging.VoucherCode]*charging.Voucher
	guards    map[charging.SubscriberID]*charging.RedeemGuard
	fixed     map[string]*charging.FixedAccount
	paidMonth map[charging.SubscriberID]uint32
	done      map[string]Reply // request key → reply: idempotency
	calls     int
	down      bool // answer with an error, as a stopping engine does
	// inProgress: answer ErrInProgress, as the engine does when a leg
	// failed after the operation's record was written.
	inProgress bool
}

func newFakeEngine(now func() time.Time) *fakeEngine {
	return &fakeEngine{cfg: charging.DemoConfig(), cat: charging.DemoCatalogue(), rules: charging.DemoTransferRules(),
		policy: charging.DefaultGuardPolicy(), now: now,
		accounts: map[charging.SubscriberID]*charging.Account{}, vouchers: map[charging.VoucherCode]*charging.Voucher{},
		guards: map[charging.SubscriberID]*charging.RedeemGuard{}, fixed: map[string]*charging.FixedAccount{},
		paidMonth: map[charging.SubscriberID]uint32{}, done: map[string]Reply{}}
}

var errDown = errors.New("engine stopping")

func (f *fakeEngine) txn(a *charging.Account) string { return fmt.Sprintf("%d-%d", a.ID, a.Seq) }

// once runs fn unless key was run before.
func (f *fakeEngine) once(key string, fn func() Reply) (Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return Reply{}, errDown
	}
	if f.inProgress {
		return Reply{}, fmt.Errorf("%w: credit: %w", ErrInProgress, errDown)
	}
	if r, ok := f.done[key]; ok && key != "" {
		return r, nil
	}
	r := fn()
	if key != "" {
		f.done[key] = r
	}
	return r, nil
}

func (f *fakeEngine) Redeem(caller, to charging.SubscriberID, code charging.VoucherCode) (Reply, error) {
	return f.once("", func() Reply {
		now := f.now()
		g := f.guards[caller]
		if g == nil {
			g = &charging.RedeemGuard{}
			f.guards[caller] = g
		}
		if g.Barred(now) {
			return Reply{Reason: ReasonBarred, BarredUntil: g.BarredUntil}
		}
		v := f.vouchers[code]
		before := charging.Voucher{}
		if v != nil {
			before = *v
		}
		res := charging.RedeemVoucher(v, false, to, now)
		if res == charging.VoucherUnknown {
			g.Fail(&f.policy, now)
		}
		if res != charging.VoucherOK {
			return Reply{Reason: ReasonForVoucher(res)}
		}
		a := f.accounts[to]
		if a == nil {
			*v = before // revert: the card is not burned
			return Reply{Reason: ReasonUnknownRecipient}
		}
		cmd := charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Subscriber: to, Amount: v.Value}
		out, _ := a.Apply(&f.cfg, &cmd, now)
		if out.Result != charging.ResultOK {
			*v = before
			return Reply{Reason: ReasonForResult(out.Result)}
		}
		return Reply{Reason: ReasonOK, TxnID: f.txn(a), Amount: v.Value, Balance: a.Balance, ValidUntil: a.ValidUntil}
	})
}

func (f *fakeEngine) PayPackage(caller charging.SubscriberID, pkg charging.PackageID, account string) (Reply, error) {
	return f.once("", func() Reply {
		now := f.now()
		a := f.accounts[caller]
		if a == nil {
			return Reply{Reason: ReasonUnknownSubscriber}
		}
		fa := f.fixed[account]
		if fa == nil {
			return Reply{Reason: ReasonUnknownAccount}
		}
		if !charging.MayPayByUSSD(f.paidMonth[caller], now) {
			return Reply{Reason: ReasonAlreadyPaidMonth}
		}
		trial := *fa
		if r := trial.PayPackage(&f.cat, pkg, now); r != charging.FixedOK {
			return Reply{Reason: ReasonForFixed(r)}
		}
		p, _ := f.cat.Lookup(pkg)
		var eff charging.Effect
		if r := a.DebitFor(&f.cfg, p.Price+charging.USSDPaymentFee, charging.EntryCharge, 1, now, &eff); r != charging.ResultOK {
			return Reply{Reason: ReasonForResult(r), Balance: a.Balance}
		}
		a.Seq++
		*fa = trial
		f.paidMonth[caller] = charging.MonthOf(now)
		paid := fa.PaidUntil
		if p.Credit {
			paid = 0
		}
		return Reply{Reason: ReasonOK, TxnID: f.txn(a), Amount: p.Price, Balance: a.Balance, PaidUntil: paid}
	})
}

func (f *fakeEngine) Inquire(caller charging.SubscriberID) (Reply, error) {
	return f.once("", func() Reply {
		a := f.accounts[caller]
		if a == nil {
			return Reply{Reason: ReasonUnknownSubscriber}
		}
		return Reply{Reason: ReasonOK, Balance: a.Balance, ValidUntil: a.ValidUntil, State: a.StateAt(&f.cfg, f.now())}
	})
}

func (f *fakeEngine) Transfer(key string, caller, to charging.SubscriberID, amount charging.Amount) (Reply, error) {
	return f.once(key, func() Reply {
		now := f.now()
		if r := f.rules.Validate(caller, to, amount); r != charging.TransferOK {
			return Reply{Reason: ReasonForTransfer(r)}
		}
		from, dst := f.accounts[caller], f.accounts[to]
		if from == nil {
			return Reply{Reason: ReasonUnknownSubscriber}
		}
		if dst == nil {
			return Reply{Reason: ReasonUnknownRecipient}
		}
		var eff charging.Effect
		if r := from.DebitFor(&f.cfg, f.rules.Debit(amount), charging.EntryTransferOut, 1, now, &eff); r != charging.ResultOK {
			return Reply{Reason: ReasonForResult(r), Balance: from.Balance}
		}
		from.Seq++
		t := charging.Transfer{ID: 1, To: to, Amount: amount}
		cmd := t.CreditCommand()
		if out, _ := dst.Apply(&f.cfg, &cmd, now); out.Result != charging.ResultOK {
			var back charging.Effect
			from.CreditBack(f.rules.Debit(amount), charging.EntryTransferIn, 1, now, &back)
			return Reply{Reason: ReasonForResult(out.Result)}
		}
		return Reply{Reason: ReasonOK, TxnID: f.txn(from), Balance: from.Balance, ValidUntil: from.ValidUntil}
	})
}
