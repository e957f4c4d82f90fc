package flows

import (
	"sync"
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
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
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
	if eff.Entry.Seq != 0 {
		e.journal[cmd.Subscriber] = append(e.journal[cmd.Subscriber], eff.Entry)
	}
	return out, nil
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
}

func newTransfers() *transfers {
	return &transfers{m: map[uint64]charging.Transfer{}, keys: map[string]uint64{}}
}

func (t *transfers) Begin(key string, from, to charging.SubscriberID, amount, fee charging.Amount, now time.Time) (charging.Transfer, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := from.String() + "/" + key
	if id, ok := t.keys[k]; ok {
		return t.m[id], true, nil
	}
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
		panic("flows test: transfer step not allowed: " + tr.State.String() + " to " + next.String())
	}
	t.m[id] = tr
	return tr, nil
}

func (t *transfers) Open(limit int) ([]charging.Transfer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []charging.Transfer
	for id := uint64(1); id <= t.next && len(out) < limit; id++ {
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
	rec     charging.Voucher
	hash    [32]byte
	pending bool
}

func newVouchers() *vouchers { return &vouchers{cards: map[charging.VoucherCode]*card{}} }

func (v *vouchers) add(code string, value charging.Amount, expiry time.Time) {
	c, _ := charging.ParseVoucherCode(code)
	h := [32]byte{byte(len(v.cards) + 1)}
	v.cards[c] = &card{rec: charging.Voucher{Value: value, State: charging.VoucherActive, Expiry: expiry.Unix()}, hash: h}
}

func (v *vouchers) byHash(h [32]byte) *card {
	for _, c := range v.cards {
		if c.hash == h {
			return c
		}
	}
	return nil
}

func (v *vouchers) Redeem(code charging.VoucherCode, caller, to charging.SubscriberID, now time.Time) (Redemption, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.cards[code]
	r := Redemption{Beneficiary: to}
	if c == nil {
		r.Result = charging.RedeemVoucher(nil, false, to, now)
		return r, nil
	}
	r.Hash, r.Value = c.hash, c.rec.Value
	if r.Result = charging.RedeemVoucher(&c.rec, false, to, now); r.Result == charging.VoucherOK {
		c.pending = true
	}
	r.Credit = charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: "V/" + string(rune('a'+c.hash[0])),
		Subscriber: to, Amount: c.rec.Value}
	return r, nil
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

func (v *vouchers) Pending(limit int) ([]Redemption, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []Redemption
	for _, c := range v.cards {
		if c.pending {
			out = append(out, Redemption{Result: charging.VoucherOK, Hash: c.hash, Value: c.rec.Value, Beneficiary: c.rec.UsedBy,
				Credit: charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: "V/" + string(rune('a'+c.hash[0])),
					Subscriber: c.rec.UsedBy, Amount: c.rec.Value}})
		}
	}
	return out, nil
}
