package storage

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
)

// legEngine stands in for the actors as flows drives them: each command is
// applied to its subscriber's stored account and committed with its journal
// entry and its request record, and a command whose key has a record is
// answered from it (a re-driven leg moves no money twice). A refusal writes
// nothing, as the actor's.
type legEngine struct {
	t   testing.TB
	s   *Store
	cfg charging.Config
	now time.Time
}

func (e *legEngine) provision(id charging.SubscriberID, balance charging.Amount) {
	a, out, eff := charging.NewAccount(&e.cfg, &charging.Command{Kind: charging.KindProvision, Subscriber: id, Amount: balance}, e.now)
	require.Equal(e.t, charging.ResultOK, out.Result)
	require.NoError(e.t, e.s.Commit([]charging.Change{{Account: a, Entry: eff.Entry, Created: true}}))
}

func (e *legEngine) exec(cmd charging.Command) charging.Outcome {
	rec, found, err := e.s.LookupRequest(cmd.Subscriber, cmd.Key)
	require.NoError(e.t, err)
	if found {
		return rec.Outcome
	}
	return e.force(cmd)
}

// force applies cmd even if its key was used: what a lost idempotency
// record would let through.
func (e *legEngine) force(cmd charging.Command) charging.Outcome { return e.apply(cmd, true) }

// apply applies cmd and commits its entry, with its request record if
// record.
func (e *legEngine) apply(cmd charging.Command, record bool) charging.Outcome {
	a, found, err := e.s.LoadAccount(cmd.Subscriber)
	require.NoError(e.t, err)
	if !found {
		return charging.Outcome{Result: charging.ResultUnknownSubscriber}
	}
	out, eff := a.Apply(&e.cfg, &cmd, e.now)
	if eff.Dirty {
		c := charging.Change{Account: a, Entry: eff.Entry}
		if record {
			c.Key, c.Request = cmd.Key, charging.RequestRecord{Fingerprint: cmd.Fingerprint(), Kind: cmd.Kind, Outcome: out}
		}
		require.NoError(e.t, e.s.Commit([]charging.Change{c}))
	}
	return out
}

// landLegs commits the journal legs tr's state requires, as the engine
// would have made them, for tests that move transfers by Begin and Advance
// alone (Check holds every transfer to its legs): its debit once past
// pending, then its credit (credited) or its reversal (reversed; a
// reversing transfer may have it or not, and gets none). Parties
// are provisioned or topped up as needed, at tr's creation time; a leg
// already in its journal is not made again, so a test may call it after
// each Advance. No request record is written: a pruner's counts of them
// stay what they were.
func landLegs(t testing.TB, s *Store, tr charging.Transfer) {
	t.Helper()
	e := &legEngine{t: t, s: s, cfg: charging.DemoConfig(), now: time.Unix(tr.Created, 0)}
	debit, credit, reverse := tr.DebitCommand(), tr.CreditCommand(), tr.ReverseCommand()
	var legs []*charging.Command
	switch tr.State {
	case charging.TransferDebited, charging.TransferReversing:
		legs = []*charging.Command{&debit}
	case charging.TransferCredited:
		legs = []*charging.Command{&debit, &credit}
	case charging.TransferReversed:
		legs = []*charging.Command{&debit, &reverse}
	}
	for _, cmd := range legs {
		a, found, err := s.LoadAccount(cmd.Subscriber)
		require.NoError(t, err)
		if !found {
			e.provision(cmd.Subscriber, 0)
		}
		h, err := s.History(cmd.Subscriber, 0, HistoryLimitMax)
		require.NoError(t, err)
		if slices.ContainsFunc(h, func(x charging.Entry) bool { return x.Key == cmd.Key }) {
			continue
		}
		if cmd == &debit && (a.Balance < cmd.Amount || a.ValidUntil <= e.now.Unix()) {
			fund := charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelElectronic, Key: "fund " + cmd.Key,
				Subscriber: cmd.Subscriber, Amount: charging.Euros(50)}
			require.Equal(t, charging.ResultOK, e.apply(fund, false).Result)
		}
		require.Equal(t, charging.ResultOK, e.apply(*cmd, false).Result, cmd.Key)
	}
}

// The payment's debit as flows.Flows builds it (drivePayment); a
// transfer's legs are charging.Transfer's DebitCommand, CreditCommand and
// ReverseCommand, which flows runs.

func paymentDebit(p *FixedPayment) charging.Command {
	return charging.Command{Kind: charging.KindPackagePayment, Channel: charging.ChannelUSSD, Key: p.DebitKey(),
		Subscriber: p.Caller, Amount: p.Debit(), Ref: p.ID}
}

// flowStage is where a fixture's transfer stops: a final state, or the
// crash point of a half-way one.
type flowStage int

const (
	stageBegun         flowStage = iota // pending, no leg
	stageDebitLeg                       // pending, its debit landed
	stageDebited                        // debited, no other leg
	stageCreditLeg                      // debited, its credit landed
	stageReversing                      // reversing, its reversal not made yet
	stageReverseLeg                     // reversing, its reversal landed
	stageOldReverseLeg                  // debited, its reversal landed: a build without the reversing state
	stageFinal                          // credited, reversed or refused, as the legs decide
)

// driveTo runs the transfer protocol (storage/transfer.go) on tr up to
// stage, as flows.driveTransfer does, and returns the transfer's record.
func (e *legEngine) driveTo(ts *Transfers, tr charging.Transfer, stage flowStage) charging.Transfer {
	advance := func(next charging.TransferState) {
		var err error
		tr, err = ts.Advance(tr.ID, next)
		require.NoError(e.t, err)
	}
	if stage == stageBegun {
		return tr
	}
	if tr.State == charging.TransferPending {
		if out := e.exec(tr.DebitCommand()); out.Result != charging.ResultOK {
			advance(charging.TransferRefused)
			return tr
		}
		if stage == stageDebitLeg {
			return tr
		}
		advance(charging.TransferDebited)
	}
	if stage == stageDebited {
		return tr
	}
	if tr.State == charging.TransferDebited && stage == stageFinal {
		// As flows.driveTransfer re-drives a debited record: a reversal
		// made by a build without the reversing state means the credit
		// was refused and must not run again.
		reversed, err := ts.ReversalRecorded(&tr)
		require.NoError(e.t, err)
		if reversed {
			advance(charging.TransferReversing)
		}
	}
	if tr.State == charging.TransferDebited {
		if out := e.exec(tr.CreditCommand()); out.Result == charging.ResultOK {
			if stage != stageCreditLeg {
				advance(charging.TransferCredited)
			}
			return tr
		}
		if stage != stageOldReverseLeg {
			advance(charging.TransferReversing)
		}
	}
	if stage == stageReversing {
		return tr
	}
	require.Equal(e.t, charging.ResultOK, e.exec(tr.ReverseCommand()).Result)
	if stage == stageFinal {
		advance(charging.TransferReversed)
	}
	return tr
}

// flowFixture is a store with transfers and payments in every state the
// protocols can leave, final and half-way.
type flowFixture struct {
	s  *Store
	ts *Transfers
	f  *Fixed
	e  *legEngine
	// Transfers by what they are.
	credited, reversed, refused, begun, debitLanded, debited, creditLanded, reversing, reversalLanded, oldReversal charging.Transfer
	// Payments by what they are.
	applied, cancelled, pending, pendingDebited, nextMonth FixedPayment
}

const (
	fxA       charging.SubscriberID = 38344100001 // sends; pays
	fxB       charging.SubscriberID = 38344100002 // receives
	fxFull    charging.SubscriberID = 38344100003 // at the balance limit: refuses credits
	fxPoor    charging.SubscriberID = 38344100004 // cannot pay
	fxPayer3  charging.SubscriberID = 38344100005
	fxPayer4  charging.SubscriberID = 38344100006
	fxAccount                       = "arber"
)

var fxFee = 10 * charging.AmountPerCent

func newFlowFixture(t *testing.T, fs vfs.FS, now func() time.Time) *flowFixture {
	t.Helper()
	s, err := Open("", Options{FS: fs, CacheBytes: 8 << 20, Now: now})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	x := &flowFixture{s: s, e: &legEngine{t: t, s: s, cfg: charging.DemoConfig(), now: vchNow}}
	x.ts, err = NewTransfers(s)
	require.NoError(t, err)
	x.f, err = NewFixed(s)
	require.NoError(t, err)
	e := x.e
	e.provision(fxA, charging.Euros(100))
	e.provision(fxB, charging.Euros(1))
	e.provision(fxFull, charging.BalanceMax)
	e.provision(fxPoor, 0)
	e.provision(fxPayer3, charging.Euros(50))
	e.provision(fxPayer4, charging.Euros(50))

	transfer := func(key string, from, to charging.SubscriberID, amount charging.Amount, stage flowStage) charging.Transfer {
		tr, existed, err := x.ts.Begin(key, from, to, amount, fxFee, vchNow)
		require.NoError(t, err)
		require.False(t, existed)
		return e.driveTo(x.ts, tr, stage)
	}
	x.credited = transfer("k1", fxA, fxB, charging.Euros(3), stageFinal)
	x.reversed = transfer("k2", fxA, fxFull, charging.Euros(3), stageFinal)
	x.refused = transfer("k3", fxPoor, fxB, charging.Euros(3), stageFinal)
	x.begun = transfer("k4", fxA, fxB, charging.Euros(4), stageBegun)
	x.debitLanded = transfer("k5", fxA, fxB, charging.Euros(5), stageDebitLeg)
	x.debited = transfer("k6", fxA, fxB, charging.Euros(6), stageDebited)
	x.creditLanded = transfer("k7", fxA, fxB, charging.Euros(7), stageCreditLeg)
	x.reversalLanded = transfer("k8", fxA, fxFull, charging.Euros(8), stageReverseLeg)
	x.reversing = transfer("k9", fxA, fxFull, charging.Euros(9), stageReversing)
	x.oldReversal = transfer("k10", fxA, fxFull, charging.Euros(10), stageOldReverseLeg)
	states := map[charging.TransferState]int{}
	for _, tr := range []charging.Transfer{x.credited, x.reversed, x.refused, x.begun, x.debitLanded, x.debited, x.creditLanded,
		x.reversalLanded, x.reversing, x.oldReversal} {
		states[tr.State]++
	}
	require.Equal(t, map[charging.TransferState]int{charging.TransferCredited: 1, charging.TransferReversed: 1,
		charging.TransferRefused: 1, charging.TransferPending: 2, charging.TransferDebited: 3, charging.TransferReversing: 2}, states)

	cat := charging.DemoCatalogue()
	require.NoError(t, x.f.Put(&charging.FixedAccount{ID: fxAccount, Kind: charging.FixedInternet, Package: charging.PackageInternetPako2}))
	begin := func(caller charging.SubscriberID, now time.Time) FixedPayment {
		p, r, err := x.f.BeginPayment(caller, fxAccount, charging.PackageInternetPako2, &cat, charging.USSDPaymentFee, now)
		require.NoError(t, err)
		require.Equal(t, charging.FixedOK, r)
		return p
	}
	payment := func(p FixedPayment) FixedPayment {
		got, err := x.f.Payment(p.ID)
		require.NoError(t, err)
		return got
	}
	x.applied = begin(fxA, vchNow)
	require.Equal(t, charging.ResultOK, e.exec(paymentDebit(&x.applied)).Result)
	_, _, err = x.f.ApplyPayment(x.applied.ID, &cat, vchNow)
	require.NoError(t, err)
	x.applied = payment(x.applied)
	x.cancelled = begin(fxPoor, vchNow)
	require.Equal(t, charging.ResultInsufficientBalance, e.exec(paymentDebit(&x.cancelled)).Result)
	require.NoError(t, x.f.CancelPayment(x.cancelled.ID))
	x.cancelled = payment(x.cancelled)
	x.pending = begin(fxPayer3, vchNow)
	x.pendingDebited = begin(fxPayer4, vchNow)
	require.Equal(t, charging.ResultOK, e.exec(paymentDebit(&x.pendingDebited)).Result)
	x.nextMonth = begin(fxA, vchNow.AddDate(0, 1, 0)) // fxA's second payment: its marker moves
	require.Equal(t, []PaymentState{PaymentApplied, PaymentCancelled, PaymentPending, PaymentPending, PaymentPending},
		[]PaymentState{x.applied.State, x.cancelled.State, x.pending.State, x.pendingDebited.State, x.nextMonth.State})
	return x
}

// recover finishes every open transfer and payment as flows.Recover does:
// each from its state, re-driving legs with their keys.
func (x *flowFixture) recover(t *testing.T) {
	open, err := x.ts.Open(0, TransferListMax)
	require.NoError(t, err)
	for _, tr := range open {
		x.e.driveTo(x.ts, tr, stageFinal)
	}
	pending, err := x.f.PendingPayments(0, PaymentListMax)
	require.NoError(t, err)
	cat := charging.DemoCatalogue()
	for _, p := range pending {
		if x.e.exec(paymentDebit(&p)).Result != charging.ResultOK {
			require.NoError(t, x.f.CancelPayment(p.ID))
			continue
		}
		_, _, err := x.f.ApplyPayment(p.ID, &cat, x.e.now)
		require.NoError(t, err)
	}
}

// Every state the protocols leave, final or half-way before recovery,
// passes Check; so does the store after recovery, and after the pruner
// took the request records and key-index entries of the closed flows.
func TestCheckAcceptsEveryStateOfTheFlows(t *testing.T) {
	clock := &manualClock{t: vchNow}
	x := newFlowFixture(t, vfs.NewMem(), clock.Now)
	require.NoError(t, x.s.Check(context.Background()), "before recovery")

	x.recover(t)
	open, err := x.ts.Open(0, TransferListMax)
	require.NoError(t, err)
	require.Empty(t, open)
	for tr, want := range map[*charging.Transfer]charging.TransferState{
		&x.begun: charging.TransferCredited, &x.debitLanded: charging.TransferCredited, &x.debited: charging.TransferCredited,
		&x.creditLanded: charging.TransferCredited, &x.reversalLanded: charging.TransferReversed,
		&x.reversing: charging.TransferReversed, &x.oldReversal: charging.TransferReversed,
	} {
		got, err := x.ts.Get(tr.ID)
		require.NoError(t, err)
		require.Equal(t, want, got.State, "transfer %d", tr.ID)
	}
	require.NoError(t, x.s.Check(context.Background()), "after recovery")

	clock.Add(8 * 24 * time.Hour)
	p := newTestPruner(t, x.s, clock, PrunerOptions{Retention: RequestRetentionMin})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(10), st.TransferKeysDeleted, "every transfer is final and old")
	require.NotZero(t, st.Deleted)
	require.NoError(t, x.s.Check(context.Background()), "after pruning")
}

// A transfer whose credit was refused and whose reversal may have landed
// is finished as reversed even when the receiver could take the credit by
// the time of recovery: a credit then would pay the receiver after the
// sender was paid back. Both a reversing record and one an older build
// left debited with its reversal made end reversed, never credited, and
// Check passes; forcing the credit onto such a transfer is what Check
// names.
func TestCheckRecoveryNeverCreditsAfterALandedReversal(t *testing.T) {
	x := newFlowFixture(t, vfs.NewMem(), nil)
	out := x.e.exec(charging.Command{Kind: charging.KindAdjust, Channel: charging.ChannelOps, Key: "ops-1",
		Subscriber: fxFull, Amount: -charging.Euros(100), Reason: "test"})
	require.Equal(t, charging.ResultOK, out.Result)
	x.recover(t)
	for _, tr := range []charging.Transfer{x.reversalLanded, x.reversing, x.oldReversal} {
		got, err := x.ts.Get(tr.ID)
		require.NoError(t, err)
		require.Equal(t, charging.TransferReversed, got.State, "transfer %d", tr.ID)
	}
	require.NoError(t, x.s.Check(context.Background()))

	require.Equal(t, charging.ResultOK, x.e.force(x.oldReversal.CreditCommand()).Result)
	err := x.s.Check(context.Background())
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, fmt.Sprintf("transfer %d is reversed but has its credit", x.oldReversal.ID))
}

func TestCheckAcceptsPrunedStoreWithOpenFlows(t *testing.T) {
	clock := &manualClock{t: vchNow}
	x := newFlowFixture(t, vfs.NewMem(), clock.Now)
	clock.Add(8 * 24 * time.Hour)
	p := newTestPruner(t, x.s, clock, PrunerOptions{Retention: RequestRetentionMin})
	st, err := p.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(3), st.TransferKeysDeleted, "the final transfers' entries go")
	require.Equal(t, uint64(7), st.TransferKeysKeptOpen, "the open ones' stay")
	require.NoError(t, x.s.Check(context.Background()))
}

// Each way a transfer or payment can disagree with its legs, its indexes
// or its marker fails Check with a sentence naming the record.
func TestCheckHoldsFlowsToTheirLegs(t *testing.T) {
	entryAt := func(t *testing.T, s *Store, sub charging.SubscriberID, key string) charging.Entry {
		h, err := s.History(sub, 0, HistoryLimitMax)
		require.NoError(t, err)
		for _, e := range h {
			if e.Key == key {
				return e
			}
		}
		t.Fatalf("no entry keyed %q on %d", key, sub)
		return charging.Entry{}
	}
	putEntry := func(t *testing.T, s *Store, sub charging.SubscriberID, e *charging.Entry) {
		require.NoError(t, s.db.Set(appendJournalKey(nil, sub, e.Seq), appendEntry(nil, e), pebble.Sync))
	}
	putTransfer := func(t *testing.T, s *Store, tr charging.Transfer) {
		require.NoError(t, s.db.Set(idKey(tagTransfer, tr.ID), appendTransfer(nil, &tr), pebble.Sync))
	}
	putPayment := func(t *testing.T, s *Store, p FixedPayment) {
		require.NoError(t, s.db.Set(idKey(tagFixedPayment, p.ID), appendFixedPayment(nil, &p), pebble.Sync))
	}
	set := func(t *testing.T, s *Store, k, v []byte) { require.NoError(t, s.db.Set(k, v, pebble.Sync)) }
	del := func(t *testing.T, s *Store, k []byte) { require.NoError(t, s.db.Delete(k, pebble.Sync)) }
	ok := func(t *testing.T, out charging.Outcome) { require.Equal(t, charging.ResultOK, out.Result) }
	id8 := func(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

	cases := []struct {
		name  string
		spoil func(t *testing.T, x *flowFixture)
		want  string
	}{
		// Legs of transfers.
		{"credited transfer lost its credit", func(t *testing.T, x *flowFixture) {
			e := entryAt(t, x.s, fxB, x.credited.CreditKey())
			e.Kind, e.Channel, e.Key = charging.EntryTopUp, charging.ChannelElectronic, "client-key"
			putEntry(t, x.s, fxB, &e)
		}, "transfer 1 is credited but 38344100002's journal has no credit of it"},
		{"credited transfer credited twice", func(t *testing.T, x *flowFixture) {
			ok(t, x.e.force(x.credited.CreditCommand()))
		}, "transfer 1 has its credit twice: entries 38344100002/2 and 38344100002/4"},
		{"reversed transfer credited too", func(t *testing.T, x *flowFixture) {
			cmd := x.reversed.CreditCommand()
			cmd.Subscriber = fxB // the full receiver would refuse it
			ok(t, x.e.force(cmd))
		}, "transfer 2: its credit is entry 38344100002/4 of +30000, want an entry of 38344100003 of +30000"},
		{"refused transfer with a debit", func(t *testing.T, x *flowFixture) {
			tr := x.credited
			tr.State = charging.TransferRefused
			putTransfer(t, x.s, tr)
		}, "transfer 1 is refused but has its debit: entry 38344100001/2"},
		{"credited transfer reversed too", func(t *testing.T, x *flowFixture) {
			ok(t, x.e.force(x.credited.ReverseCommand()))
		}, "transfer 1 is credited but has its reversal: entry 38344100001/"},
		{"pending transfer with its credit", func(t *testing.T, x *flowFixture) {
			ok(t, x.e.force(x.begun.CreditCommand()))
		}, "transfer 4 is pending but has its credit: entry 38344100002/"},
		{"pending transfer with its reversal", func(t *testing.T, x *flowFixture) {
			ok(t, x.e.force(x.debitLanded.ReverseCommand()))
		}, "transfer 5 is pending but has its reversal"},
		{"debited transfer without its debit", func(t *testing.T, x *flowFixture) {
			e := entryAt(t, x.s, fxA, x.debited.DebitKey())
			e.Kind, e.Channel, e.Key, e.Ref = charging.EntryCharge, charging.ChannelNetwork, "client-key", 0
			putEntry(t, x.s, fxA, &e)
		}, "transfer 6 is debited but 38344100001's journal has no debit of it"},
		{"debited transfer both credited and reversed", func(t *testing.T, x *flowFixture) {
			ok(t, x.e.force(x.creditLanded.ReverseCommand()))
		}, "transfer 7 is debited with both its credit (entry 38344100002/"},
		{"debit twice on an open transfer", func(t *testing.T, x *flowFixture) {
			ok(t, x.e.force(x.debitLanded.DebitCommand()))
		}, "transfer 5 has its debit twice"},
		{"transfer amount rewritten", func(t *testing.T, x *flowFixture) {
			tr := x.reversed
			tr.Amount++
			putTransfer(t, x.s, tr)
		}, "transfer 2: its debit is entry 38344100001/3 of -31000, want an entry of 38344100001 of -31001"},
		{"leg of no transfer", func(t *testing.T, x *flowFixture) {
			ghost := charging.Transfer{ID: 99, From: fxA, To: fxB, Amount: charging.Euros(2)}
			ok(t, x.e.force(ghost.CreditCommand()))
		}, "entry 38344100002/4 is a leg of transfer 99, which does not exist"},
		{"transfer_out keyed as no leg", func(t *testing.T, x *flowFixture) {
			cmd := x.credited.DebitCommand()
			cmd.Key = "T/1/x"
			ok(t, x.e.force(cmd))
		}, `is no leg of a transfer`},
		{"transfer_in of another channel", func(t *testing.T, x *flowFixture) {
			cmd := x.reversalLanded.ReverseCommand()
			cmd.Channel = charging.ChannelOps
			ok(t, x.e.force(cmd))
		}, `a ops transfer_in of +81000 keyed "T/8/r" with ref 8, is no leg of a transfer`},
		{"transfer channel top-up with a client key", func(t *testing.T, x *flowFixture) {
			cmd := x.credited.CreditCommand()
			cmd.Key = "T/01/c" // not the key transfer 1 derives
			ok(t, x.e.force(cmd))
		}, `a transfer transfer_in of +30000 keyed "T/01/c" with ref 0, is no leg of a transfer`},

		// Transfer records and their indexes.
		{"transfer under another ID", func(t *testing.T, x *flowFixture) {
			v, _, err := getCopy(x.s.db, idKey(tagTransfer, x.refused.ID))
			require.NoError(t, err)
			set(t, x.s, idKey(tagTransfer, 20), v)
		}, "transfer key 20 holds transfer 3"},
		{"transfer state out of range", func(t *testing.T, x *flowFixture) {
			tr := x.refused
			v := appendTransfer(nil, &tr)
			v[len(v)-9] = 9
			set(t, x.s, idKey(tagTransfer, tr.ID), v)
		}, "transfer 3: storage: corrupt record: transfer state"},
		{"open transfer dropped from the open index", func(t *testing.T, x *flowFixture) {
			del(t, x.s, idKey(tagTransferOpen, x.begun.ID))
		}, "transfer 4 is pending but not in the open index"},
		{"final transfer left in the open index", func(t *testing.T, x *flowFixture) {
			set(t, x.s, idKey(tagTransferOpen, x.refused.ID), nil)
		}, "transfer 3 is refused but still in the open index"},
		{"open index names no transfer", func(t *testing.T, x *flowFixture) {
			set(t, x.s, idKey(tagTransferOpen, 77), nil)
		}, "the open transfer index names transfer 77, which does not exist"},
		{"dangling key index entry", func(t *testing.T, x *flowFixture) {
			set(t, x.s, transferKeyIndexKey(fxA, "ghost"), id8(77))
		}, `transfer key index entry 38344100001/"ghost" names transfer 77, which does not exist`},
		{"key index entry of another sender", func(t *testing.T, x *flowFixture) {
			set(t, x.s, transferKeyIndexKey(fxB, "k1"), id8(x.credited.ID))
		}, `transfer key index entry 38344100002/"k1" names transfer 1, which 38344100001 sent`},
		{"open transfer lost its key index entry", func(t *testing.T, x *flowFixture) {
			del(t, x.s, transferKeyIndexKey(fxA, "k6"))
		}, "open transfer 6 has no key index entry"},
		{"open transfer with two key index entries", func(t *testing.T, x *flowFixture) {
			set(t, x.s, transferKeyIndexKey(fxA, "k6-again"), id8(x.debited.ID))
		}, `open transfer 6 has a second key index entry`},

		// Payments.
		{"applied payment without its debit", func(t *testing.T, x *flowFixture) {
			p := x.cancelled
			p.State = PaymentApplied
			putPayment(t, x.s, p)
		}, "payment 2 is applied but 38344100004's journal has no debit of it"},
		{"cancelled payment with its debit", func(t *testing.T, x *flowFixture) {
			p := x.pendingDebited
			p.State = PaymentCancelled
			putPayment(t, x.s, p)
			del(t, x.s, idKey(tagFixedPayOpen, p.ID))
		}, "payment 4 is cancelled but has its debit: entry 38344100006/2"},
		{"payment debited twice", func(t *testing.T, x *flowFixture) {
			ok(t, x.e.force(paymentDebit(&x.applied)))
		}, "payment 1 has its debit twice: entries 38344100001/"},
		{"payment debit of another amount", func(t *testing.T, x *flowFixture) {
			cmd := paymentDebit(&x.pending)
			cmd.Amount--
			ok(t, x.e.force(cmd))
		}, "payment 3: its debit is entry 38344100005/2 of -204999, want an entry of 38344100005 of -205000"},
		{"debit of no payment", func(t *testing.T, x *flowFixture) {
			ghost := FixedPayment{ID: 99, Caller: fxA, Price: charging.Euros(1)}
			ok(t, x.e.force(paymentDebit(&ghost)))
		}, "is a leg of payment 99, which does not exist"},
		{"package payment keyed as no payment", func(t *testing.T, x *flowFixture) {
			cmd := paymentDebit(&x.pending)
			cmd.Ref = 1
			ok(t, x.e.force(cmd))
		}, `a package_payment of -205000 keyed "P/3" with ref 1, is no payment's debit`},
		{"pending payment dropped from the open index", func(t *testing.T, x *flowFixture) {
			del(t, x.s, idKey(tagFixedPayOpen, x.pending.ID))
		}, "payment 3 is pending but not in the open index"},
		{"month marker names a cancelled payment", func(t *testing.T, x *flowFixture) {
			set(t, x.s, monthKey(fxPoor), appendFixedMonth(nil, x.cancelled.Month, x.cancelled.ID))
		}, "the month marker of 38344100004 for 202604 names payment 2, cancelled, of 38344100004 for 202604"},
		{"month marker names another caller's payment", func(t *testing.T, x *flowFixture) {
			set(t, x.s, monthKey(fxB), appendFixedMonth(nil, x.pending.Month, x.pending.ID))
		}, "the month marker of 38344100002 for 202604 names payment 3, pending, of 38344100005 for 202604"},
		{"month marker rolled back", func(t *testing.T, x *flowFixture) {
			set(t, x.s, monthKey(fxA), appendFixedMonth(nil, x.applied.Month, x.applied.ID))
		}, "the month marker of 38344100001 names payment 1, older than their payment 5"},
		{"month marker names no payment", func(t *testing.T, x *flowFixture) {
			set(t, x.s, monthKey(fxB), appendFixedMonth(nil, 202604, 77))
		}, "the month marker of 38344100002 names payment 77, which does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newFlowFixture(t, vfs.NewMem(), nil)
			require.NoError(t, x.s.Check(context.Background()))
			c.spoil(t, x)
			err := x.s.Check(context.Background())
			require.ErrorIs(t, err, ErrCorrupt)
			require.ErrorContains(t, err, c.want)
		})
	}
}

// BenchmarkCheckTransfers measures Check over n closed transfers, each with
// its debit and credit (2n legs in the journals): the legs are folded into
// fingerprints, so memory does not grow with them.
func BenchmarkCheckTransfers(b *testing.B) {
	const n = 2000
	s, err := Open("", Options{FS: vfs.NewMem(), CacheBytes: 8 << 20})
	require.NoError(b, err)
	defer s.Close()
	ts, err := NewTransfers(s)
	require.NoError(b, err)
	for i := range n {
		from := charging.SubscriberID(38344200000 + i%100)
		tr, _, err := ts.Begin(strconv.Itoa(i), from, from+1000, charging.Euros(1), fxFee, vchNow)
		require.NoError(b, err)
		for _, next := range []charging.TransferState{charging.TransferDebited, charging.TransferCredited} {
			tr, err = ts.Advance(tr.ID, next)
			require.NoError(b, err)
		}
		landLegs(b, s, tr)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Check(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
