package actors

// Regression tests from the money-path audit: idempotency of the actor
// under timeouts and concurrent requests.

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
)

// Refund requests for one charge under different request keys, all in
// flight while the first refund's commit is held: exactly one refunds, the
// others are told already_refunded, and the balance moves once. The actor
// sees the in-flight refund in its pending list before the store has it.
func TestAuditConcurrentRefundsWithDifferentKeysRefundOnce(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349000101)
	provision(t, e, id, charging.Euros(1))
	c := exec(t, e, sms(id, "c"))
	require.Equal(t, charging.ResultOK, c.Result)

	store.gate = make(chan struct{})
	const n = 8
	results := make(chan charging.Result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			out, err := e.Execute(&charging.Command{Kind: charging.KindRefund, Subscriber: id, Ref: c.Seq,
				Channel: charging.ChannelOps, Key: "refund-" + string(rune('a'+i))})
			if err != nil {
				results <- 0
				return
			}
			results <- out.Result
		}(i)
	}
	time.Sleep(20 * time.Millisecond)
	close(store.gate)
	wg.Wait()
	close(results)
	ok := 0
	for r := range results {
		switch r {
		case charging.ResultOK:
			ok++
		case charging.ResultAlreadyRefunded:
		default:
			t.Fatalf("refund answered %v", r)
		}
	}
	require.Equal(t, 1, ok, "one refund among concurrent requests with different keys")
	acct, _, _ := store.LoadAccount(id)
	require.Equal(t, charging.Euros(1), acct.Balance, "refunded once")
}

// A charge whose Execute timed out (its commit held) may still commit; a
// retry with the same key, sent while the original is still in flight, is
// answered the original's outcome once it is durable, and the account is
// charged once.
func TestAuditTimedOutChargeRetriedChargesOnce(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store, func(c *Config) { c.RequestTimeout = 30 * time.Millisecond })
	const id = charging.SubscriberID(38349000102)
	provision(t, e, id, charging.Euros(1))

	store.gate = make(chan struct{})
	_, err := e.Execute(ptr(sms(id, "k")))
	require.True(t, errors.Is(err, ErrTimeout), "held commit: %v", err)
	retry := make(chan charging.Outcome, 1)
	go func() {
		// The retry's own wait must outlast the held commit: retry until
		// it gets an answer, as a client does.
		for i := 0; i < 50; i++ {
			out, err := e.Execute(ptr(sms(id, "k")))
			if err == nil {
				retry <- out
				return
			}
		}
	}()
	time.Sleep(10 * time.Millisecond)
	close(store.gate)
	var out charging.Outcome
	select {
	case out = <-retry:
	case <-time.After(2 * time.Second):
		t.Fatal("retry never answered")
	}
	require.Equal(t, charging.ResultOK, out.Result)
	require.True(t, out.Replayed, "the retry is answered from the original's record")
	acct, _, _ := store.LoadAccount(id)
	require.Equal(t, charging.Euros(1)-5*charging.AmountPerCent, acct.Balance, "charged once")
}

// A derived leg's key already holding a client's record of another kind is
// answered request_key_reused and changes nothing: the actor never replays
// a top-up's outcome as a transfer reversal (flows then keeps the record
// open; see the audit report on client keys in the derived namespace).
func TestAuditDerivedKeyHeldByAnotherKindIsNotReplayed(t *testing.T) {
	store := newMemStore()
	e, _ := startEngine(t, store)
	const id = charging.SubscriberID(38349000103)
	provision(t, e, id, charging.Euros(1))
	out := exec(t, e, charging.Command{Kind: charging.KindTopUp, Channel: charging.ChannelElectronic, Subscriber: id,
		Key: "T/1/r", Amount: charging.Euros(2)})
	require.Equal(t, charging.ResultOK, out.Result)
	out = exec(t, e, charging.Command{Kind: charging.KindTransferReverse, Channel: charging.ChannelTransfer, Subscriber: id,
		Key: "T/1/r", Amount: charging.Euros(2), Ref: 1})
	require.Equal(t, charging.ResultRequestKeyReused, out.Result)
	acct, _, _ := store.LoadAccount(id)
	require.Equal(t, charging.Euros(3), acct.Balance)
}
