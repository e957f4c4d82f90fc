package actors

import (
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// memStore is an in-memory Store with the real one's contract, plus faults:
// a commit delay, a gate that holds commits, and a commit error.
type memStore struct {
	mu       sync.Mutex
	accounts map[charging.SubscriberID]charging.Account
	journal  map[charging.SubscriberID][]charging.Entry
	requests map[string]charging.RequestRecord
	refunded map[[2]uint64]bool
	totals   charging.Totals
	commits  int
	delay    time.Duration
	gate     chan struct{} // when non-nil, each Commit waits for a token
	failWith error
	// journalOnly counts changes committed without their account record.
	journalOnly int
	// cards holds the cards written with their credits (Change.Card).
	cards map[[32]byte]charging.Voucher
}

func newMemStore() *memStore {
	return &memStore{
		accounts: map[charging.SubscriberID]charging.Account{},
		journal:  map[charging.SubscriberID][]charging.Entry{},
		requests: map[string]charging.RequestRecord{},
		refunded: map[[2]uint64]bool{},
		cards:    map[[32]byte]charging.Voucher{},
	}
}

func reqKey(id charging.SubscriberID, key string) string { return id.String() + "/" + key }

func (m *memStore) LoadAccount(id charging.SubscriberID) (charging.Account, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.accounts[id]
	a = charging.CloneAccount(&a)
	m.fold(&a)
	return a, ok, nil
}

// fold folds into a the journal entries after its record, as storage does.
func (m *memStore) fold(a *charging.Account) {
	for _, e := range m.journal[a.ID] {
		if e.Seq > a.Seq {
			a.Fold(&e)
		}
	}
}

func (m *memStore) LookupRequest(id charging.SubscriberID, key string) (charging.RequestRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.requests[reqKey(id, key)]
	return r, ok, nil
}

func (m *memStore) LookupEntry(id charging.SubscriberID, seq uint64) (charging.Entry, bool, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.journal[id] {
		if e.Seq == seq {
			return e, m.refunded[[2]uint64{uint64(id), seq}], true, nil
		}
	}
	return charging.Entry{}, false, false, nil
}

func (m *memStore) Commit(changes []charging.Change) error {
	if m.gate != nil {
		<-m.gate
	}
	if m.delay > 0 {
		time.Sleep(m.delay)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failWith != nil {
		return m.failWith
	}
	m.commits++
	for _, c := range changes {
		id := c.Account.ID
		if _, ok := m.accounts[id]; !ok {
			m.totals.Accounts++
		}
		if c.JournalOnly {
			// As storage: the record stays as it was, and loads fold the
			// journal written after it.
			m.journalOnly++
		} else {
			m.accounts[id] = charging.CloneAccount(&c.Account)
		}
		if c.Entry.Seq != 0 {
			if n := len(m.journal[id]); n > 0 && m.journal[id][n-1].Seq+1 != c.Entry.Seq {
				return errors.New("memstore: journal gap")
			}
			m.journal[id] = append(m.journal[id], c.Entry)
			m.totals.Owed += c.Entry.Amount
		}
		if c.Key != "" {
			m.requests[reqKey(id, c.Key)] = c.Request
		}
		if c.RefundOf != 0 {
			m.refunded[[2]uint64{uint64(id), c.RefundOf}] = true
		}
		if c.Card != nil {
			if !c.Card.Fits(id, &c.Entry) || c.Card.Card.CreditSeq != c.Entry.Seq {
				return errors.New("memstore: card does not pay for its entry")
			}
			m.cards[c.Card.Hash] = c.Card.Card
		}
	}
	return nil
}

// Apply commits at once: the pipeline's ordering holds trivially.
func (m *memStore) Apply(changes []charging.Change) (Pending, error) {
	if err := m.Commit(changes); err != nil {
		return nil, err
	}
	return donePending{}, nil
}

type donePending struct{}

func (donePending) Wait() error { return nil }

func (m *memStore) History(id charging.SubscriberID, beforeSeq uint64, limit int) ([]charging.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []charging.Entry
	j := m.journal[id]
	for i := len(j) - 1; i >= 0 && len(out) < limit; i-- {
		if beforeSeq == 0 || j[i].Seq < beforeSeq {
			out = append(out, j[i])
		}
	}
	return out, nil
}

func (m *memStore) Totals() charging.Totals {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.totals
}

func (m *memStore) balances() (sum charging.Amount, ids []charging.SubscriberID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, a := range m.accounts {
		m.fold(&a)
		sum += a.Balance
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return sum, ids
}

// manualClock is a Clock tests move by hand.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
