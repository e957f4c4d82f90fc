package storage

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ocs-engine/ocs/charging"
)

// model drives charging's real state machine with random commands and
// keeps what the store must hold afterwards: accounts, journals, request
// records, refund markers. Its changes are the ones an actor would commit.
type model struct {
	cfg      charging.Config
	rng      *rand.Rand
	now      time.Time
	accounts map[charging.SubscriberID]*charging.Account
	ids      []charging.SubscriberID
	journal  map[charging.SubscriberID][]charging.Entry // index seq-1
	requests map[string]charging.RequestRecord          // by sub/key
	refunded map[[2]uint64]bool
	keys     int
}

func newModel(seed uint64) *model {
	return &model{
		cfg:      charging.DemoConfig(),
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now:      time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		accounts: map[charging.SubscriberID]*charging.Account{},
		journal:  map[charging.SubscriberID][]charging.Entry{},
		requests: map[string]charging.RequestRecord{},
		refunded: map[[2]uint64]bool{},
	}
}

func requestID(id charging.SubscriberID, key string) string { return fmt.Sprintf("%d/%s", id, key) }

// next returns the change of one accepted random command.
func (m *model) next() charging.Change {
	for {
		m.now = m.now.Add(time.Duration(m.rng.IntN(120)) * time.Second)
		if c, ok := m.try(); ok {
			return c
		}
	}
}

func (m *model) try() (charging.Change, bool) {
	m.keys++
	cmd := charging.Command{Key: fmt.Sprintf("k%07d", m.keys), Channel: charging.ChannelNetwork}
	if len(m.ids) == 0 || m.rng.IntN(10) == 0 {
		return m.provision(&cmd)
	}
	id := m.ids[m.rng.IntN(len(m.ids))]
	a := m.accounts[id]
	cmd.Subscriber = id
	switch m.rng.IntN(8) {
	case 0:
		cmd.Kind, cmd.Channel = charging.KindTopUp, charging.ChannelElectronic
		cmd.Amount = charging.Euros(1) + charging.Amount(m.rng.IntN(49))*charging.AmountPerEuro
	case 1, 2:
		cmd.Kind, cmd.RatingGroup, cmd.Units = charging.KindCharge, charging.RatingGroupSMS, 1+uint64(m.rng.IntN(3))
	case 3:
		cmd.Kind, cmd.RatingGroup, cmd.Units = charging.KindReserve, charging.RatingGroupVoice, 120
	case 4:
		if len(a.Reservations) == 0 {
			return charging.Change{}, false
		}
		cmd.Kind, cmd.Session, cmd.Used = charging.KindTerminate, a.Reservations[0].Session, uint64(m.rng.IntN(200))
	case 5:
		j := m.journal[id]
		if len(j) == 0 {
			return charging.Change{}, false
		}
		e := j[m.rng.IntN(len(j))]
		cmd.Kind, cmd.Channel, cmd.Ref, cmd.Original = charging.KindRefund, charging.ChannelOps, e.Seq, e
		cmd.OriginalRefunded = m.refunded[[2]uint64{uint64(id), e.Seq}]
	case 6:
		cmd.Kind, cmd.Channel, cmd.Reason = charging.KindAdjust, charging.ChannelOps, "test"
		cmd.Amount = charging.Amount(m.rng.IntN(20001) - 10000)
	default:
		cmd.Kind, cmd.Key = charging.KindExpire, ""
		m.now = m.now.Add(15 * time.Minute)
	}
	prev := *a
	out, eff := a.Apply(&m.cfg, &cmd, m.now)
	if !eff.Dirty {
		return charging.Change{}, false
	}
	c := m.record(a, &cmd, out, eff)
	// As the engine does: no account record where the entry folds to the
	// account, except now and then (the engine's checkpoints), so that
	// loads fold tails of every length.
	c.JournalOnly = prev.FoldsTo(&eff.Entry, a) && m.rng.IntN(8) > 0
	return c, true
}

func (m *model) provision(cmd *charging.Command) (charging.Change, bool) {
	id := charging.SubscriberID(38349000000 + m.rng.IntN(1_000_000))
	if _, ok := m.accounts[id]; ok {
		return charging.Change{}, false
	}
	cmd.Kind, cmd.Subscriber, cmd.Channel = charging.KindProvision, id, charging.ChannelOps
	if m.rng.IntN(3) > 0 {
		cmd.Amount = charging.Amount(m.rng.IntN(200_000))
	}
	a, out, eff := charging.NewAccount(&m.cfg, cmd, m.now)
	if out.Result != charging.ResultOK {
		return charging.Change{}, false
	}
	m.accounts[id] = &a
	m.ids = append(m.ids, id)
	return m.record(&a, cmd, out, eff), true
}

func (m *model) record(a *charging.Account, cmd *charging.Command, out charging.Outcome, eff charging.Effect) charging.Change {
	c := charging.Change{Account: charging.CloneAccount(a), Entry: eff.Entry, Created: eff.Created}
	if cmd.Key != "" {
		c.Key = cmd.Key
		c.Request = charging.RequestRecord{Fingerprint: cmd.Fingerprint(), Kind: cmd.Kind, Outcome: out, Time: m.now.UnixNano()}
		m.requests[requestID(a.ID, cmd.Key)] = c.Request
	}
	if eff.Entry.Seq != 0 {
		m.journal[a.ID] = append(m.journal[a.ID], eff.Entry)
	}
	if cmd.Kind == charging.KindRefund {
		c.RefundOf = cmd.Ref
		m.refunded[[2]uint64{uint64(a.ID), cmd.Ref}] = true
	}
	return c
}

// batch returns n changes.
func (m *model) batch(n int) []charging.Change {
	cs := make([]charging.Change, n)
	for i := range cs {
		cs[i] = m.next()
	}
	return cs
}

func (m *model) totals() charging.Totals {
	var t charging.Totals
	for _, a := range m.accounts {
		t.Owed += a.Balance
		t.Accounts++
	}
	return t
}

func (m *model) sortedIDs() []charging.SubscriberID {
	ids := slices.Clone(m.ids)
	slices.Sort(ids)
	return ids
}
