package bench

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ocs-engine/ocs/charging"
)

// auditConcurrency is the number of parallel reads the audit makes.
const auditConcurrency = 32

// historyPageMax is the page size asked of the history endpoint.
const historyPageMax = 100

// AuditReport says whether the server's books agree with what it
// acknowledged. Every figure is exact (charging.Amount).
type AuditReport struct {
	OK       bool
	Problems []string // one sentence per discrepancy, capped

	OwedBefore, OwedAfter charging.Amount
	ToppedUp              charging.Amount // acknowledged top-ups
	Charged               charging.Amount // acknowledged event charges
	SessionDebited        charging.Amount // acknowledged session usage, priced by the tariff
	VoucherCredited       charging.Amount // values of acknowledged card redemptions
	Uncertain             int64           // requests whose outcome is unknown

	SubscribersChecked int // balances compared one by one
	SubscribersSkipped int // skipped: an unknown outcome touched them
	TopUpsChecked      int // acknowledged top-ups (card credits included) looked up in histories
	VouchersChecked    int // of which card credits (kind topup, channel voucher)
	TopUpsWithoutID    int64
}

// problemsMax caps the sentences kept: one is enough to fail, ten to see a
// pattern.
const problemsMax = 10

func (a *AuditReport) problem(format string, args ...any) {
	a.OK = false
	if len(a.Problems) < problemsMax {
		a.Problems = append(a.Problems, fmt.Sprintf(format, args...))
	}
}

// ledgerAudit holds the expected balance change of every subscriber.
type ledgerAudit struct {
	deltas    []atomic.Int64
	uncertain []atomic.Bool
	noID      atomic.Int64
	owed      charging.Amount
	sample    []uint32
	balances  []charging.Amount
}

func newLedgerAudit(subscribers int) *ledgerAudit {
	return &ledgerAudit{deltas: make([]atomic.Int64, subscribers), uncertain: make([]atomic.Bool, subscribers)}
}

func (a *ledgerAudit) add(sub uint32, amount charging.Amount) { a.deltas[sub].Add(int64(amount)) }
func (a *ledgerAudit) markUncertain(sub uint32)               { a.uncertain[sub].Store(true) }
func (a *ledgerAudit) missingID()                             { a.noID.Add(1) }

// sampleOf spreads up to n subscribers evenly over the range.
func sampleOf(subscribers, n int) []uint32 {
	if n > subscribers {
		n = subscribers
	}
	s := make([]uint32, n)
	for i := range s {
		s[i] = uint32(int64(i) * int64(subscribers) / int64(n))
	}
	return s
}

// before reads the ledger total and the sampled balances.
func (a *ledgerAudit) before(c *Client, sampleMax int) error {
	t, err := c.Ledger()
	if err != nil {
		return err
	}
	a.owed = t.Owed
	a.sample = sampleOf(len(a.deltas), sampleMax)
	a.balances = make([]charging.Amount, len(a.sample))
	return forEach(c, len(a.sample), func(k *conn, i int) error {
		b, found, err := k.balance(FirstMSISDN + uint64(a.sample[i]))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("bench: subscriber %d does not exist: provision first", FirstMSISDN+uint64(a.sample[i]))
		}
		a.balances[i] = b
		return nil
	})
}

// after compares the server's books with t, what was acknowledged.
func (a *ledgerAudit) after(c *Client, t tally, topUpsMax int) AuditReport {
	rep := AuditReport{OK: true, OwedBefore: a.owed, ToppedUp: t.toppedUp, Charged: t.charged,
		SessionDebited: t.sessionDebited, VoucherCredited: t.voucherCredited, Uncertain: t.uncertain, TopUpsWithoutID: a.noID.Load()}
	if rep.TopUpsWithoutID > 0 {
		rep.problem("%d acknowledged top-ups or card credits carried no transaction ID naming their subscriber", rep.TopUpsWithoutID)
	}
	totals, err := c.Ledger()
	if err != nil {
		rep.problem("ledger after the run could not be read: %v", err)
		return rep
	}
	rep.OwedAfter = totals.Owed
	want := a.owed + t.toppedUp + t.voucherCredited - t.charged - t.sessionDebited
	switch {
	case t.uncertain > 0:
		rep.problem("%d requests had an unknown outcome (timeouts or errors): the ledger total cannot be checked to the unit (owed %s, expected %s if none applied)",
			t.uncertain, totals.Owed, want)
	case totals.Owed != want:
		rep.problem("ledger owed %s, expected %s (before %s + top-ups %s + card credits %s - charges %s - session debits %s): off by %s",
			totals.Owed, want, a.owed, t.toppedUp, t.voucherCredited, t.charged, t.sessionDebited, totals.Owed-want)
	}
	a.checkBalances(c, &rep)
	checkHistories(c, t.topUpIDs, topUpsMax, &rep)
	return rep
}

func (a *ledgerAudit) checkBalances(c *Client, rep *AuditReport) {
	var mu sync.Mutex
	err := forEach(c, len(a.sample), func(k *conn, i int) error {
		sub := a.sample[i]
		if a.uncertain[sub].Load() {
			mu.Lock()
			rep.SubscribersSkipped++
			mu.Unlock()
			return nil
		}
		got, found, err := k.balance(FirstMSISDN + uint64(sub))
		if err != nil {
			return err
		}
		want := a.balances[i] + charging.Amount(a.deltas[sub].Load())
		mu.Lock()
		defer mu.Unlock()
		rep.SubscribersChecked++
		if !found {
			rep.problem("subscriber %d vanished", FirstMSISDN+uint64(sub))
		} else if got != want {
			rep.problem("subscriber %d: balance %s, expected %s (before %s, acknowledged change %s)",
				FirstMSISDN+uint64(sub), got, want, a.balances[i], charging.Amount(a.deltas[sub].Load()))
		}
		return nil
	})
	if err != nil {
		rep.problem("balances could not be read: %v", err)
	}
}

// checkHistories looks up to max acknowledged top-ups up in the histories
// of their subscribers: each must be there, as a top-up of its amount, and
// a card's credit on the voucher channel.
func checkHistories(c *Client, ids []topUpID, max int, rep *AuditReport) {
	if len(ids) > max {
		// A deterministic spread, not the first ones: early and late
		// top-ups are both checked.
		picked := make([]topUpID, max)
		for i := range picked {
			picked[i] = ids[int64(i)*int64(len(ids))/int64(max)]
		}
		ids = picked
	}
	bySub := map[uint32][]topUpID{}
	for _, id := range ids {
		bySub[id.sub] = append(bySub[id.sub], id)
	}
	subs := make([]uint32, 0, len(bySub))
	for s := range bySub {
		subs = append(subs, s)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i] < subs[j] })
	var mu sync.Mutex
	err := forEach(c, len(subs), func(k *conn, i int) error {
		want := bySub[subs[i]]
		missing, err := findInHistory(k, FirstMSISDN+uint64(subs[i]), want)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		rep.TopUpsChecked += len(want)
		for _, w := range want {
			if w.voucher {
				rep.VouchersChecked++
			}
		}
		for _, m := range missing {
			what := "top-up"
			if m.voucher {
				what = "card credit (channel voucher)"
			}
			rep.problem("acknowledged %s %d-%d of %s is missing from the history", what, FirstMSISDN+uint64(m.sub), m.seq, m.amount)
		}
		return nil
	})
	if err != nil {
		rep.problem("histories could not be read: %v", err)
	}
}

// findInHistory pages back through msisdn's history until every wanted
// sequence is found or passed, and returns the ones not found as top-ups of
// their amount.
func findInHistory(k *conn, msisdn uint64, want []topUpID) ([]topUpID, error) {
	pending := map[uint64]topUpID{}
	lowest := want[0].seq
	for _, w := range want {
		pending[w.seq] = w
		lowest = min(lowest, w.seq)
	}
	before := uint64(0)
	for pages := 0; len(pending) > 0; pages++ {
		entries, next, err := k.history(msisdn, before, historyPageMax)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if w, ok := pending[e.Seq]; ok && e.Kind == "topup" && e.Amount == w.amount && (!w.voucher || e.Channel == "voucher") {
				delete(pending, e.Seq)
			}
		}
		if next == 0 || next <= lowest || len(entries) == 0 || pages > 100_000 {
			break
		}
		before = next
	}
	var missing []topUpID
	for _, w := range pending {
		missing = append(missing, w)
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].seq < missing[j].seq })
	return missing, nil
}

// forEach runs f for 0…n-1 on auditConcurrency conns and returns the first
// error.
func forEach(c *Client, n int, f func(k *conn, i int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range min(auditConcurrency, max(n, 1)) {
		wg.Go(func() {
			k := c.conn()
			defer k.release()
			for first.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(k, i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}
