package actors

import (
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func startEngine(t testing.TB, store Store, mutate ...func(*Config)) (*Engine, *manualClock) {
	t.Helper()
	clock := &manualClock{now: t0}
	cc := charging.DemoConfig()
	cfg := Config{Store: store, Clock: clock, Charging: &cc, Registerer: prometheus.NewRegistry()}
	for _, m := range mutate {
		m(&cfg)
	}
	e, err := Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Stop() })
	return e, clock
}

func exec(t testing.TB, e *Engine, cmd charging.Command) charging.Outcome {
	t.Helper()
	out, err := e.Execute(&cmd)
	require.NoError(t, err)
	return out
}

func provision(t testing.TB, e *Engine, id charging.SubscriberID, balance charging.Amount) {
	t.Helper()
	out := exec(t, e, charging.Command{Kind: charging.KindProvision, Subscriber: id, Amount: balance,
		Channel: charging.ChannelOps, Key: "provision"})
	require.Equal(t, charging.ResultOK, out.Result, out.Result.String())
}

func sms(id charging.SubscriberID, key string) charging.Command {
	return charging.Command{Kind: charging.KindCharge, Subscriber: id, Key: key, Channel: charging.ChannelNetwork,
		RatingGroup: charging.RatingGroupSMS, Units: 1}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProvisionTopUpChargeIsDurable(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349123456)

	out := exec(t, e, sms(id, "k0"))
	require.Equal(t, charging.ResultUnknownSubscriber, out.Result)

	provision(t, e, id, 0)
	out = exec(t, e, charging.Command{Kind: charging.KindProvision, Subscriber: id, Key: "provision"})
	require.Equal(t, charging.ResultSubscriberExists, out.Result)

	out = exec(t, e, charging.Command{Kind: charging.KindTopUp, Subscriber: id, Key: "t1",
		Channel: charging.ChannelElectronic, Amount: charging.Euros(5)})
	require.Equal(t, charging.ResultOK, out.Result)
	require.Equal(t, charging.Euros(5), out.Balance)
	require.Equal(t, t0.Add(charging.Days(60)).Unix(), out.ValidUntil)

	out = exec(t, e, sms(id, "c1"))
	require.Equal(t, charging.ResultOK, out.Result)
	require.Equal(t, charging.Euros(5)-5*charging.AmountPerCent, out.Balance)

	// What was acknowledged is in the store already.
	a, found, err := store.LoadAccount(id)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, out.Balance, a.Balance)
	require.Equal(t, uint64(2), a.Seq)
	require.Equal(t, out.Balance, store.Totals().Owed)
	h, err := e.History(id, 0, 10)
	require.NoError(t, err)
	require.Len(t, h, 2)
	require.Equal(t, charging.EntryCharge, h[0].Kind)
}

func TestRetryNeverChargesTwice(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349000001)
	provision(t, e, id, charging.Euros(1))

	first := exec(t, e, sms(id, "once"))
	require.Equal(t, charging.ResultOK, first.Result)
	again := exec(t, e, sms(id, "once"))
	require.Equal(t, charging.ResultOK, again.Result)
	require.True(t, again.Replayed)
	require.Equal(t, first.Seq, again.Seq)
	require.Equal(t, first.Balance, again.Balance)

	other := sms(id, "once")
	other.Units = 2
	require.Equal(t, charging.ResultRequestKeyReused, exec(t, e, other).Result)

	a, _, _ := store.LoadAccount(id)
	require.Equal(t, charging.Euros(1)-5*charging.AmountPerCent, a.Balance)
}

// A retry that arrives while its original is still on its way to the disk
// must find it in the actor's pending records, and must not be answered
// before the original is durable.
func TestRetryWhileOriginalInFlight(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349000002)
	provision(t, e, id, charging.Euros(1))

	store.gate = make(chan struct{})
	results := make(chan charging.Outcome, 2)
	for i := 0; i < 2; i++ {
		go func() {
			out, err := e.Execute(ptr(sms(id, "same")))
			if err != nil {
				out.Result = 0
			}
			results <- out
		}()
	}
	select {
	case <-results:
		t.Fatal("answered before the commit was durable")
	case <-time.After(50 * time.Millisecond):
	}
	close(store.gate)
	a, b := <-results, <-results
	require.Equal(t, charging.ResultOK, a.Result)
	require.Equal(t, charging.ResultOK, b.Result)
	require.True(t, a.Replayed != b.Replayed, "exactly one of the two is the original")
	acct, _, _ := store.LoadAccount(id)
	require.Equal(t, charging.Euros(1)-5*charging.AmountPerCent, acct.Balance)
}

func ptr[T any](v T) *T { return &v }

func TestConcurrentChargesConserveMoney(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const subscribers, callers, perCaller = 200, 32, 300
	for i := 0; i < subscribers; i++ {
		provision(t, e, charging.SubscriberID(38349100000+i), charging.Euros(2))
	}
	start := store.Totals().Owed
	var acked atomic.Int64
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(c)))
			for i := 0; i < perCaller; i++ {
				id := charging.SubscriberID(38349100000 + rng.Intn(subscribers))
				out, err := e.Execute(ptr(sms(id, fmt.Sprintf("c%d-%d", c, i))))
				if err == nil && out.Result == charging.ResultOK {
					acked.Add(int64(-out.Amount))
				}
			}
		}(c)
	}
	wg.Wait()
	sum, _ := store.balances()
	require.Equal(t, start-charging.Amount(acked.Load()), sum)
	require.Equal(t, sum, store.Totals().Owed)
	require.Positive(t, acked.Load())
}

func TestOverloadAnswersAtOnceAndLosesNothing(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store, func(c *Config) { c.InflightMax = 8 })
	const id = charging.SubscriberID(38349000003)
	provision(t, e, id, charging.Euros(10))
	store.delay = 20 * time.Millisecond

	var ok, overloaded atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := e.Execute(ptr(sms(id, fmt.Sprintf("o%d", i))))
			require.NoError(t, err)
			switch out.Result {
			case charging.ResultOK:
				ok.Add(1)
			case charging.ResultOverloaded:
				overloaded.Add(1)
			}
		}(i)
	}
	wg.Wait()
	require.Positive(t, overloaded.Load(), "a bound of 8 in flight must refuse some of 64 at once")
	require.Equal(t, int64(64), ok.Load()+overloaded.Load())
	a, _, _ := store.LoadAccount(id)
	require.Equal(t, charging.Euros(10)-charging.Amount(ok.Load())*5*charging.AmountPerCent, a.Balance)
}

func TestCommitErrorStopsTheEngine(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349000004)
	provision(t, e, id, charging.Euros(1))
	store.mu.Lock()
	store.failWith = errors.New("disk on fire")
	store.mu.Unlock()

	_, err := e.Execute(ptr(sms(id, "x")))
	require.ErrorIs(t, err, ErrStopped)
	<-e.Failed()
	require.False(t, e.Ready())
	require.ErrorContains(t, e.Err(), "disk on fire")
	_, err = e.Execute(ptr(sms(id, "y")))
	require.Error(t, err)
}

func TestPassivationReloadsFromStore(t *testing.T) {
	store := newMemStore()
	e, clock := startEngine(t, store, func(c *Config) { c.IdleAfter = time.Minute })
	const id = charging.SubscriberID(38349000005)
	provision(t, e, id, charging.Euros(3))
	exec(t, e, sms(id, "p1"))
	require.Equal(t, int64(1), e.ActiveActors())

	clock.Advance(2 * time.Minute)
	e.sweepOnce()
	require.Equal(t, int64(0), e.ActiveActors())

	out := exec(t, e, charging.Command{Kind: charging.KindInquire, Subscriber: id})
	require.Equal(t, charging.Euros(3)-5*charging.AmountPerCent, out.Balance)
	// The key survives passivation: the record comes from the store now.
	again := exec(t, e, sms(id, "p1"))
	require.True(t, again.Replayed)
	require.Equal(t, out.Balance, again.Balance)
}

func TestSweeperExpiresLapsedReservations(t *testing.T) {
	store := newMemStore()
	e, clock := startEngine(t, store)
	const id = charging.SubscriberID(38349000006)
	provision(t, e, id, charging.Euros(1))
	out := exec(t, e, charging.Command{Kind: charging.KindReserve, Subscriber: id, Key: "s1",
		Channel: charging.ChannelNetwork, RatingGroup: charging.RatingGroupVoice, Units: 600})
	require.Equal(t, charging.ResultOK, out.Result)
	a, _, _ := store.LoadAccount(id)
	require.NotZero(t, a.Reserved())

	clock.Advance(charging.DemoConfig().QuotaValidity + charging.DemoConfig().ReservationSlack)
	e.sweepOnce()
	a, _, _ = store.LoadAccount(id)
	require.Zero(t, a.Reserved(), "the lapsed reservation is released and that is durable")
	require.Equal(t, charging.Euros(1), a.Balance, "unreported usage is not charged")
}

func TestRefundOnce(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349000007)
	provision(t, e, id, charging.Euros(1))
	c := exec(t, e, sms(id, "c"))
	refund := charging.Command{Kind: charging.KindRefund, Subscriber: id, Key: "r1", Ref: c.Seq, Channel: charging.ChannelOps}
	out := exec(t, e, refund)
	require.Equal(t, charging.ResultOK, out.Result)
	require.Equal(t, charging.Euros(1), out.Balance)
	refund.Key = "r2"
	require.Equal(t, charging.ResultAlreadyRefunded, exec(t, e, refund).Result)
}

func TestStopAnswersEverythingInFlight(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349000008)
	provision(t, e, id, charging.Euros(10))
	store.delay = 5 * time.Millisecond
	var answered, acked atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := e.Execute(ptr(sms(id, fmt.Sprintf("s%d", i))))
			answered.Add(1)
			if err == nil && out.Result == charging.ResultOK {
				acked.Add(1)
			}
		}(i)
	}
	time.Sleep(2 * time.Millisecond)
	require.NoError(t, e.Stop())
	wg.Wait()
	require.Equal(t, int64(16), answered.Load())
	a, _, _ := store.LoadAccount(id)
	require.Equal(t, charging.Euros(10)-charging.Amount(acked.Load())*5*charging.AmountPerCent, a.Balance)
}

func TestProvisionedActorsLeaveAtTheNextSweep(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	for i := 0; i < 50; i++ {
		provision(t, e, charging.SubscriberID(38349300000+i), charging.Euros(1))
	}
	exec(t, e, sms(38349300000, "busy")) // used after provisioning: stays
	require.Equal(t, int64(50), e.ActiveActors())
	e.sweepOnce()
	require.Equal(t, int64(1), e.ActiveActors(), "bulk provisioning must not keep actors for IdleAfter")
}

func TestActorsOverTheBoundArePassivatedWhenIdle(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store, func(c *Config) { c.ActorsMax = 10 })
	for i := 0; i < 30; i++ {
		id := charging.SubscriberID(38349400000 + i)
		store.accounts[id] = charging.Account{ID: id, Balance: charging.Euros(1), ValidUntil: t0.Unix() + 86400}
		exec(t, e, charging.Command{Kind: charging.KindInquire, Subscriber: id})
	}
	require.Equal(t, int64(30), e.ActiveActors())
	e.sweepOnce()
	require.Equal(t, int64(0), e.ActiveActors(), "over ActorsMax every idle actor goes")
	out := exec(t, e, charging.Command{Kind: charging.KindInquire, Subscriber: 38349400007})
	require.Equal(t, charging.Euros(1), out.Balance)
}

// TestJournalOnlyChanges: SMS charges and top-ups write no account record
// (the journal entry folds to the account), except at least every
// recordEvery+1 changes and first after each activation; the account
// reloaded after passivation, with its journal folded in, is the one the
// actor had. A session's changes always write the record.
func TestJournalOnlyChanges(t *testing.T) {
	store := newMemStore()
	e, clock := startEngine(t, store, func(c *Config) { c.IdleAfter = time.Minute })
	const id = charging.SubscriberID(38349000007)
	provision(t, e, id, charging.Euros(50))
	var last charging.Outcome
	for i := range 150 {
		cmd := sms(id, fmt.Sprintf("j%d", i))
		if i%10 == 9 {
			cmd = charging.Command{Kind: charging.KindTopUp, Subscriber: id, Key: fmt.Sprintf("j%d", i),
				Channel: charging.ChannelElectronic, Amount: charging.Euros(1)}
		}
		last = exec(t, e, cmd)
		require.Equal(t, charging.ResultOK, last.Result, last.Result.String())
		if i%45 == 44 { // passivate now and then: the next command reloads
			clock.Advance(2 * time.Minute)
			e.sweepOnce()
			require.Equal(t, int64(0), e.ActiveActors())
		}
	}
	store.mu.Lock()
	record, journal, journalOnly := store.accounts[id], len(store.journal[id]), store.journalOnly
	store.mu.Unlock()
	require.Greater(t, journalOnly, 120, "SMS and top-ups must not rewrite the account record")
	require.LessOrEqual(t, uint64(journal)-record.Seq, uint64(recordEvery), "entries after the record are bounded")

	clock.Advance(2 * time.Minute)
	e.sweepOnce()
	a, found, err := store.LoadAccount(id)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, last.Balance, a.Balance)
	require.Equal(t, last.Seq, a.Seq)
	out := exec(t, e, charging.Command{Kind: charging.KindInquire, Subscriber: id})
	require.Equal(t, last.Balance, out.Balance)

	// A session: reserve, then an SMS while it is open: both write the record.
	before := journalOnly
	exec(t, e, charging.Command{Kind: charging.KindReserve, Subscriber: id, Key: "s1",
		Channel: charging.ChannelNetwork, RatingGroup: charging.RatingGroupVoice, Units: 60})
	exec(t, e, sms(id, "s2"))
	store.mu.Lock()
	require.Equal(t, before, store.journalOnly, "changes of an account holding a reservation write its record")
	store.mu.Unlock()
}

// A voucher credit carries its card: the card is written with the credit's
// journal Seq in the credit's own change, and only when the credit is made
// (a refusal writes no card).
func TestCardRidesWithItsCredit(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349000007)
	provision(t, e, id, charging.Euros(1))
	card := func(n byte, value charging.Amount, to charging.SubscriberID) *charging.CardUse {
		return &charging.CardUse{Hash: [32]byte{n}, Card: charging.Voucher{Serial: uint64(n), Value: value,
			State: charging.VoucherUsed, UsedBy: to, UsedAt: t0.Unix()}}
	}
	credit := func(key string, c *charging.CardUse, to charging.SubscriberID) charging.Command {
		return charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: key,
			Subscriber: to, Amount: c.Card.Value, Card: c}
	}

	c1 := card(1, charging.Euros(5), id)
	out := exec(t, e, credit("V/1", c1, id))
	require.Equal(t, charging.ResultOK, out.Result)
	require.Zero(t, c1.Card.CreditSeq, "the caller's card is not written to")
	store.mu.Lock()
	got, ok := store.cards[c1.Hash]
	store.mu.Unlock()
	require.True(t, ok)
	require.Equal(t, out.Seq, got.CreditSeq)
	require.Equal(t, id, got.UsedBy)

	// The card is the credit's idempotency record: no request record is
	// written, and the journal entry keeps the key as its reference.
	_, found, _ := store.LookupRequest(id, "V/1")
	require.False(t, found)
	h, err := e.History(id, 0, 1)
	require.NoError(t, err)
	require.Equal(t, "V/1", h[0].Key)

	// A refused credit (no such subscriber, balance limit) writes no card.
	c2 := card(2, charging.Euros(5), 38349000008)
	require.Equal(t, charging.ResultUnknownSubscriber, exec(t, e, credit("V/2", c2, 38349000008)).Result)
	const full = charging.SubscriberID(38349000009)
	provision(t, e, full, charging.BalanceMax)
	c3 := card(3, charging.Euros(5), full)
	require.Equal(t, charging.ResultBalanceLimit, exec(t, e, credit("V/3", c3, full)).Result)
	store.mu.Lock()
	defer store.mu.Unlock()
	require.Len(t, store.cards, 1)
}

// A card's credit is waited for until it is answered, past the request
// timeout that bounds every other command: its caller holds the card until
// the outcome is known, and a timeout while the credit may still be made
// would free the card for a second credit.
func TestCardCreditOutwaitsTheRequestTimeout(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store, func(c *Config) { c.RequestTimeout = 20 * time.Millisecond })
	const id = charging.SubscriberID(38349000011)
	provision(t, e, id, charging.Euros(1))
	store.mu.Lock()
	store.gate = make(chan struct{})
	store.mu.Unlock()

	_, err := e.Execute(&charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelElectronic, Key: "t",
		Subscriber: id, Amount: charging.Euros(5)})
	require.ErrorIs(t, err, ErrTimeout, "a plain command gives up at the timeout")

	card := &charging.CardUse{Hash: [32]byte{9}, Card: charging.Voucher{Value: charging.Euros(5), State: charging.VoucherUsed,
		UsedBy: id, UsedAt: t0.Unix()}}
	type answer struct {
		out charging.Outcome
		err error
	}
	done := make(chan answer, 1)
	go func() {
		out, err := e.Execute(&charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelVoucher, Key: "V/9",
			Subscriber: id, Amount: charging.Euros(5), Card: card})
		done <- answer{out, err}
	}()
	select {
	case a := <-done:
		close(store.gate)
		t.Fatalf("the card's credit was answered while its commit is held: %+v, %v", a.out, a.err)
	case <-time.After(10 * e.cfg.RequestTimeout):
	}
	close(store.gate) // the disk comes back: both commits complete
	a := <-done
	require.NoError(t, a.err)
	out := a.out
	require.Equal(t, charging.ResultOK, out.Result)
	store.mu.Lock()
	defer store.mu.Unlock()
	require.Equal(t, out.Seq, store.cards[card.Hash].CreditSeq)
}

// A sweep stops its idle actors a chunk at a time (passivateChunk, then a
// pause), every one of them; an engine stopping meanwhile ends the pauses
// and still stops the rest.
func TestPassivationsArePacedAndComplete(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const n = 3*passivateChunk + 5
	for i := 0; i < n; i++ {
		provision(t, e, charging.SubscriberID(38349400000+i), charging.Euros(1))
	}
	var pids []*actor.PID
	for i := range e.dir.shards {
		for _, en := range e.dir.shards[i].entries {
			pids = append(pids, en.pid)
		}
	}
	require.Len(t, pids, n)
	start := time.Now()
	e.sweepOnce()
	require.GreaterOrEqual(t, time.Since(start), 3*passivatePause, "three pauses between four chunks")
	require.Zero(t, e.ActiveActors())
	stopped := func(pids []*actor.PID) bool {
		for _, pid := range pids {
			if _, ok := e.system.ProcessRegistry.Get(pid); ok {
				return false
			}
		}
		return true
	}
	require.Eventually(t, func() bool { return stopped(pids) }, 10*time.Second, 5*time.Millisecond)

	// Stopping: no pause, and every actor is stopped all the same.
	for i := 0; i < n; i++ {
		provision(t, e, charging.SubscriberID(38349500000+i), charging.Euros(1))
	}
	pids = pids[:0]
	for i := range e.dir.shards {
		s := &e.dir.shards[i]
		s.mu.Lock()
		for id, en := range s.entries {
			pids = append(pids, en.pid)
			delete(s.entries, id) // as sweepOnce does before stopping
		}
		s.mu.Unlock()
	}
	e.dir.active.Add(-int64(len(pids)))
	quit := make(chan struct{})
	close(quit)
	done := make(chan struct{})
	go func() {
		e.stopPaced(pids, quit, time.Hour) // a pause would be an hour
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("stopPaced paused although quit was closed")
	}
	require.Eventually(t, func() bool { return stopped(pids) }, 10*time.Second, 5*time.Millisecond)
}
