package main

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
)

func TestRestartKeepsEverythingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	channel, network := s.issueKey("channel"), s.issueKey("network")
	msisdns := []string{"38349000101", "38349000102"}
	for _, m := range msisdns {
		code, err := s.call("PUT", "/v1/subscribers/"+m, testOpsKey, "", map[string]string{"balance": "2.00"}, nil)
		require.NoError(t, err)
		require.Equal(t, 201, code)
	}
	var topup map[string]any
	code, err := s.call("POST", "/tmf-api/prepayBalanceManagement/v4/topupBalance", channel, "t-1", topUpBody(msisdns[0], "5.00"), &topup)
	require.NoError(t, err)
	require.Equal(t, 201, code)
	var sms nchfAnswer
	code, err = s.call("POST", "/nchf-convergedcharging/v3/chargingdata", network, "c-1", smsBody(msisdns[1]), &sms)
	require.NoError(t, err)
	require.Equal(t, 201, code)
	require.Equal(t, "SUCCESS", sms.MultipleUnitInformation[0].ResultCode)

	before := map[string]subscriberView{}
	histories := map[string]history{}
	for _, m := range msisdns {
		before[m], histories[m] = s.subscriber(m), s.history(m)
	}
	owed, accounts := s.ledger()
	s.stop()

	s = startServer(t, dir)
	for _, m := range msisdns {
		require.Equal(t, before[m], s.subscriber(m))
		require.Equal(t, histories[m], s.history(m))
	}
	owed2, accounts2 := s.ledger()
	require.Equal(t, owed, owed2)
	require.Equal(t, accounts, accounts2)
	require.Equal(t, uint64(2), accounts2)

	// Keys were issued before the restart and still work; a retried top-up
	// is answered from its idempotency record, not applied again.
	var again map[string]any
	code, err = s.call("POST", "/tmf-api/prepayBalanceManagement/v4/topupBalance", channel, "t-1", topUpBody(msisdns[0], "5.00"), &again)
	require.NoError(t, err)
	require.Equal(t, 201, code)
	require.Equal(t, topup["transactionId"], again["transactionId"])
	require.Equal(t, before[msisdns[0]], s.subscriber(msisdns[0]))
	s.stop()
}

// op is one request of the crash test's load, retried with its key until
// some answer is acknowledged.
type op struct {
	topUp  bool
	msisdn string
	key    string
	acked  bool
}

// TestCrashUnderLoadLosesNothingAcknowledged kills `ocs serve` with SIGKILL
// at random moments under concurrent load, restarts it, and finally retries
// every unacknowledged request with its original key. Then every request
// must be in the journal exactly once and the money must add up to the unit:
// an acknowledged request that was lost, or a retry applied twice, shows.
func TestCrashUnderLoadLosesNothingAcknowledged(t *testing.T) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("OCS_CRASH_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("seed=%d (replay with OCS_CRASH_SEED)", seed)
	rng := rand.New(rand.NewSource(seed))

	const (
		subscribers = 40
		workers     = 16
		opsPerWork  = 300
		rounds      = 3
		opening     = "100.00"
	)
	dir := t.TempDir()
	s := startServer(t, dir)
	channel, network := s.issueKey("channel"), s.issueKey("network")
	msisdn := func(i int) string { return strconv.Itoa(38349200000 + i) }
	for i := 0; i < subscribers; i++ {
		code, err := s.call("PUT", "/v1/subscribers/"+msisdn(i), testOpsKey, "", map[string]string{"balance": opening}, nil)
		require.NoError(t, err)
		require.Equal(t, 201, code)
	}
	plan := make([][]op, workers)
	for w := range plan {
		for i := 0; i < opsPerWork; i++ {
			plan[w] = append(plan[w], op{topUp: rng.Intn(4) == 0, msisdn: msisdn(rng.Intn(subscribers)), key: fmt.Sprintf("w%d-%d", w, i)})
		}
	}
	send := func(s *server, o *op) bool {
		if o.topUp {
			var out map[string]any
			code, err := s.call("POST", "/tmf-api/prepayBalanceManagement/v4/topupBalance", channel, o.key, topUpBody(o.msisdn, "1.00"), &out)
			return err == nil && code == 201
		}
		var out nchfAnswer
		code, err := s.call("POST", "/nchf-convergedcharging/v3/chargingdata", network, o.key, smsBody(o.msisdn), &out)
		return err == nil && code == 201 && len(out.MultipleUnitInformation) == 1 && out.MultipleUnitInformation[0].ResultCode == "SUCCESS"
	}
	next := make([]int, workers)
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for next[w] < len(plan[w]) {
					o := &plan[w][next[w]]
					next[w]++
					if o.acked = send(s, o); !o.acked {
						return // the server is gone: this op stays unacknowledged
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(200+rng.Intn(600)) * time.Millisecond)
		s.kill()
		wg.Wait()
		s = startServer(t, dir)
	}

	// Retry everything not acknowledged, with its original key.
	topUps, charges := map[string]int{}, map[string]int{}
	acked := 0
	for w := range plan {
		for i := range plan[w] {
			o := &plan[w][i]
			if o.acked {
				acked++
			} else {
				require.True(t, send(s, o), "retry of %s", o.key)
			}
			if o.topUp {
				topUps[o.msisdn]++
			} else {
				charges[o.msisdn]++
			}
		}
	}
	require.Positive(t, acked, "the load acknowledged nothing before the kills")
	t.Logf("%d of %d requests acknowledged before a kill", acked, workers*opsPerWork)

	var sum charging.Amount
	for i := 0; i < subscribers; i++ {
		m := msisdn(i)
		want, _ := charging.ParseAmount(opening)
		want += charging.Amount(topUps[m])*charging.Euros(1) - charging.Amount(charges[m])*5*charging.AmountPerCent
		got, err := charging.ParseAmount(s.subscriber(m).Balance)
		require.NoError(t, err)
		require.Equal(t, want, got, "balance of %s", m)
		sum += got
		h := s.history(m)
		require.Len(t, h.Transactions, 1+topUps[m]+charges[m], "journal of %s: each request exactly once", m)
	}
	owed, accounts := s.ledger()
	require.Equal(t, sum.String(), mustAmount(t, owed).String(), "ledger total equals the sum of balances")
	require.Equal(t, uint64(subscribers), accounts)
	s.stop()
	var out strings.Builder
	require.NoError(t, check([]string{"--data", dir}, &out), "ocs check after the kills")
	require.Contains(t, out.String(), "consistent:")
}

func mustAmount(t *testing.T, s string) charging.Amount {
	a, err := charging.ParseAmount(s)
	require.NoError(t, err)
	return a
}
