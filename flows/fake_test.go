package flows

import (
	"bytes"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// engine is an in-memory Executor: charging.Apply on plain accounts, with
// the actor's idempotency (a recorded outcome per (subscriber, key)).
type engine struct {
	mu       sync.Mutex
	cfg      charging.Config
	now      time.Time
	accounts map[charging.SubscriberID]*charging.Account
	records  map[string]charging.Outcome
	journal  map[charging.SubscriberID][]charging.Entry
	calls    int
	// intercept, when set, answers cmd instead of the accounts (an engine
	// error, overloaded) if it returns true. Called under mu.
	intercept func(cmd *charging.Command) (charging.Outcome, error, bool)
	// yield lets another goroutine run before each command: races meet.
	yield bool
	// cardUsed receives the card a credit carries, as the actor puts it in
	// the credit's batch (Change.Card).
	cardUsed func(*charging.CardUse)
}

func newEngine(now time.Time) *engine {
	return &engine{cfg: charging.DemoConfig(), now: now, accounts: map[charging.SubscriberID]*charging.Account{},
		records: map[string]charging.Outcome{}, journal: map[charging.SubscriberID][]charging.Entry{}}
}

func (e *engine) provision(id charging.SubscriberID, balance charging.Amount) {
	a, _, _ := charging.NewAccount(&e.cfg, &charging.Command{Kind: charging.KindProvision, Subscriber: id, Amount: balance}, e.now)
	e.accounts[id] = &a
}

func (e *engine) Execute(cmd *charging.Command) (charging.Outcome, error) {
	if e.yield {
		runtime.Gosched()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	if e.intercept != nil {
		if out, err, ok := e.intercept(cmd); ok {
			return out, err
		}
	}
	a, ok := e.accounts[cmd.Subscriber]
	if !ok {
		return charging.Outcome{Result: charging.ResultUnknownSubscriber}, nil
	}
	rk := cmd.Subscriber.String() + "|" + cmd.Key
	if cmd.Kind.Mutates() {
		if out, done := e.records[rk]; done {
			out.Replayed = true
			return out, nil
		}
	}
	out, eff := a.Apply(&e.cfg, cmd, e.now)
	if eff.Dirty && cmd.Kind.Mutates() {
		e.records[rk] = out
	}
	if cmd.Card != nil && eff.Entry.Seq != 0 && e.cardUsed != nil {
		u := *cmd.Card
		u.Card.CreditSeq = eff.Entry.Seq
		e.cardUsed(&u)
	}
	if eff.Entry.Seq != 0 {
		e.journal[cmd.Subscriber] = append(e.journal[cmd.Subscriber], eff.Entry)
	}
	return out, nil
}

// failKey makes every command with key fail with errEngine while *on.
func (e *engine) failKey(key string, on *atomic.Bool) {
	e.intercept = func(cmd *charging.Command) (charging.Outcome, error, bool) {
		if cmd.Key == key && on.Load() {
			return charging.Outcome{}, errEngine, true
		}
		return charging.Outcome{}, nil, false
	}
}

var errEngine = errors.New("fake engine: request timed out")

func (e *engine) setBalance(id charging.SubscriberID, b charging.Amount) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.accounts[id].Balance = b
}

func (e *engine) callCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

func (e *engine) balance(id charging.SubscriberID) charging.Amount {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accounts[id].Balance
}

// transfers is an in-memory Transfers, with the real one's key index.
type transfers struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]charging.Transfer
	keys map[string]uint64
	// afterRead, when set, runs after Begin read an existing transfer and
	// before it returns it: a test holds a stale read there.
	afterRead func()
	// engine answers ReversalRecorded from its idempotency records, as
	// storage reads the sender's request record.
	engine *engine
}

func newTransfers() *transfers {
	return &transfers{m: map[uint64]charging.Transfer{}, keys: map[string]uint64{}}
}

func (t *transfers) Begin(key string, from, to charging.SubscriberID, amount, fee charging.Amount, now time.Time) (charging.Transfer, bool, error) {
	t.mu.Lock()
	k := from.String() + "/" + key
	if id, ok := t.keys[k]; ok {
		tr := t.m[id]
		t.mu.Unlock()
		if t.afterRead != nil {
			t.afterRead()
		}
		return tr, true, nil
	}
	defer t.mu.Unlock()
	t.next++
	tr := charging.Transfer{ID: t.next, From: from, To: to, Amount: amount, Fee: fee, State: charging.TransferPending, Created: now.Unix()}
	t.m[tr.ID] = tr
	t.keys[k] = tr.ID
	return tr, false, nil
}

func (t *transfers) Advance(id uint64, next charging.TransferState) (charging.Transfer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.m[id]
	if !tr.Advance(next) {
		// As storage answers (ErrTransferStep): a test sees it as an error.
		return tr, errors.New("fake transfers: step not allowed: " + tr.State.String() + " to " + next.String())
	}
	t.m[id] = tr
	return tr, nil
}

func (t *transfers) ReversalRecorded(tr *charging.Transfer) (bool, error) {
	t.engine.mu.Lock()
	defer t.engine.mu.Unlock()
	_, ok := t.engine.records[tr.From.String()+"|"+tr.ReverseKey()]
	return ok, nil
}

func (t *transfers) Open(after uint64, limit int) ([]charging.Transfer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []charging.Transfer
	for id := after + 1; id <= t.next && len(out) < limit; id++ {
		if tr := t.m[id]; !tr.State.Final() {
			out = append(out, tr)
		}
	}
	return out, nil
}

// vouchers is an in-memory Vouchers without a guard.
type vouchers struct {
	mu    sync.Mutex
	cards map[charging.VoucherCode]*card
}

type card struct {
	lock    *sync.Mutex // held from a VoucherOK Redeem to its Release
	rec     charging.Voucher
	hash    [32]byte
	pending bool // a marker of an older build (markPending)
}

func newVouchers() *vouchers { return &vouchers{cards: map[charging.VoucherCode]*card{}} }

func (v *vouchers) add(code string, value charging.Amount, expiry time.Time) {
	c, _ := charging.ParseVoucherCode(code)
	// Hashes in another order than the cards are added (97 is prime to
	// 251), as real ones are: listings go by hash.
	h := [32]byte{byte((len(v.cards)*97 + 1) % 251)}
	v.cards[c] = &card{lock: new(sync.Mutex), rec: charging.Voucher{Value: value, State: charging.VoucherActive, Expiry: expiry.Unix()}, hash: h}
}

func (v *vouchers) byHash(h [32]byte) *card {
	for _, c := range v.cards {
		if c.hash == h {
			return c
		}
	}
	return nil
}

// Redeem decides as storage does: under the card's lock, which a VoucherOK
// answer keeps until Release; the card is marked only by its credit
// (engine.cardUsed).
func (v *vouchers) Redeem(code charging.VoucherCode, caller, to charging.SubscriberID, now time.Time) (Redemption, error) {
	v.mu.Lock()
	c := v.cards[code]
	v.mu.Unlock()
	r := Redemption{Beneficiary: to}
	if c == nil {
		r.Result = charging.RedeemVoucher(nil, false, to, now)
		return r, nil
	}
	c.lock.Lock()
	v.mu.Lock()
	rec := c.rec
	v.mu.Unlock()
	r.Hash, r.Value = c.hash, rec.Value
	if r.Result = charging.RedeemVoucher(&rec, false, to, now); r.Result != charging.VoucherOK {
		c.lock.Unlock()
		if r.Result == charging.VoucherAlreadyUsed {
			r.UsedBy, r.UsedAt, r.CreditSeq = rec.UsedBy, rec.UsedAt, rec.CreditSeq
		}
		return r, nil
	}
	r.Credit = charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: "V/" + string(rune('a'+c.hash[0])),
		Subscriber: to, Amount: rec.Value, Card: &charging.CardUse{Hash: c.hash, Card: rec}}
	r.Release = c.lock.Unlock
	return r, nil
}

// use records a card as its credit's batch writes it.
func (v *vouchers) use(u *charging.CardUse) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.byHash(u.Hash).rec = u.Card
}

// markPending leaves code as a build before the one-batch protocol did
// when it crashed between marking a card and crediting it: used by to,
// with a pending marker.
func (v *vouchers) markPending(code charging.VoucherCode, to charging.SubscriberID, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.cards[code]
	if charging.RedeemVoucher(&c.rec, false, to, now) != charging.VoucherOK {
		panic("fake vouchers: markPending of a card that is not active")
	}
	c.pending = true
}

func (v *vouchers) Complete(h [32]byte, seq uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.byHash(h)
	c.pending, c.rec.CreditSeq = false, seq
	return nil
}

func (v *vouchers) Revert(h [32]byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.byHash(h)
	c.pending, c.rec.State, c.rec.UsedBy = false, charging.VoucherActive, 0
	return nil
}

// Pending lists as storage does: in hash order, after after, at most limit.
func (v *vouchers) Pending(after *[32]byte, limit int) ([]Redemption, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Redemption
	for _, c := range v.cards {
		if c.pending && (after == nil || bytes.Compare(c.hash[:], after[:]) > 0) {
			out = append(out, Redemption{Result: charging.VoucherOK, Hash: c.hash, Value: c.rec.Value, Beneficiary: c.rec.UsedBy,
				Credit: charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: "V/" + string(rune('a'+c.hash[0])),
					Subscriber: c.rec.UsedBy, Amount: c.rec.Value}})
		}
	}
	slices.SortFunc(out, func(a, b Redemption) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	return out[:min(len(out), limit)], nil
}

// ID returns the transfer ID in a leg's request key "T/<id>/…", 0 if none.
func (t *transfers) ID(key string) uint64 {
	rest, ok := strings.CutPrefix(key, "T/")
	id, _, _ := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(id, 10, 64)
	if !ok || err != nil {
		return 0
	}
	return n
}

func (t *transfers) get(id uint64) charging.Transfer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

func (v *vouchers) card(code charging.VoucherCode) card {
	v.mu.Lock()
	defer v.mu.Unlock()
	return *v.cards[code]
}

// fixed is an in-memory Fixed: payments only, no accounts (every account
// exists and takes every package), and the month rule only when monthly.
type fixed struct {
	mu      sync.Mutex
	next    uint64
	m       map[uint64]*Payment
	applied map[uint64]int // ApplyPayment calls that moved the account
	// monthly enforces the once-a-month rule with a month marker per
	// caller, as storage does: months names the caller's last payment not
	// cancelled.
	monthly bool
	months  map[charging.SubscriberID]uint64
	// engine answers DebitSeq in MonthPayment from its idempotency
	// records, as cmd/ocs reads the caller's request record.
	engine *engine
}

func newFixed() *fixed {
	return &fixed{m: map[uint64]*Payment{}, applied: map[uint64]int{}, months: map[charging.SubscriberID]uint64{}}
}

func (x *fixed) BeginPayment(caller charging.SubscriberID, account string, pkg charging.PackageID, cat *charging.Catalogue,
	fee charging.Amount, now time.Time) (Payment, charging.FixedResult, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if id, ok := x.months[caller]; x.monthly && ok && !charging.MayPayByUSSD(charging.MonthOf(time.Unix(x.m[id].Created, 0)), now) {
		return Payment{}, charging.FixedAlreadyPaidMonth, nil
	}
	x.next++
	p := &Payment{ID: x.next, Caller: caller, Account: account, Package: pkg, Price: cat[pkg].Price, Fee: fee,
		Key: "P/" + strconv.FormatUint(x.next, 10), Pending: true, Created: now.Unix()}
	x.m[p.ID] = p
	x.months[caller] = p.ID
	return *p, charging.FixedOK, nil
}

// MonthPayment implements MonthPayments as storage and cmd/ocs do: the
// payment the caller's marker names, with its debit's Seq from the
// caller's request record.
func (x *fixed) MonthPayment(caller charging.SubscriberID) (Payment, bool, error) {
	x.mu.Lock()
	id, ok := x.months[caller]
	var p Payment
	if ok {
		p = *x.m[id]
	}
	x.mu.Unlock()
	if !ok {
		return p, false, nil
	}
	x.engine.mu.Lock()
	defer x.engine.mu.Unlock()
	if out, done := x.engine.records[caller.String()+"|"+p.Key]; done {
		p.DebitSeq = out.Seq
	}
	return p, true, nil
}

var errPaymentState = errors.New("fake fixed: payment is not pending")

func (x *fixed) ApplyPayment(id uint64, cat *charging.Catalogue, now time.Time) (Payment, charging.FixedAccount, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.m[id]
	switch {
	case x.applied[id] > 0:
		return *p, charging.FixedAccount{}, nil
	case !p.Pending:
		return *p, charging.FixedAccount{}, errPaymentState
	}
	p.Pending, p.Applied, p.PaidUntil = false, true, now.AddDate(0, 1, 0).Unix()
	x.applied[id]++
	return *p, charging.FixedAccount{PaidUntil: p.PaidUntil}, nil
}

func (x *fixed) CancelPayment(id uint64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.m[id]
	if x.applied[id] > 0 {
		return errPaymentState
	}
	p.Pending = false
	if x.months[p.Caller] == id {
		delete(x.months, p.Caller)
	}
	return nil
}

func (x *fixed) PendingPayments(after uint64, limit int) ([]Payment, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []Payment
	for id := after + 1; id <= x.next && len(out) < limit; id++ {
		if p := x.m[id]; p.Pending {
			out = append(out, *p)
		}
	}
	return out, nil
}

func (x *fixed) state(id uint64) (pending bool, applied int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.m[id].Pending, x.applied[id]
}
