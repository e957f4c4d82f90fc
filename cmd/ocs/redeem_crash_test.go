package main

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/storage"
)

// The one-batch redemption protocol under SIGKILL, end to end: scratch
// cards made by `ocs vouchers generate`, redeemed over POST /ussd on the
// real `ocs serve` while it is killed and restarted on the same data
// directory. A card must be used if and only if its credit is in its
// beneficiary's journal, whatever moment the kill hit, and no card may pay
// twice, not even when two callers dial it at the same instant.

// Bounds of the redemption crash test: 300 cards and at most 16 requests
// in flight keep it to a few seconds on two cores.
const (
	redeemCrashSubs     = 10
	redeemCrashWorkers  = 8 // each runs one task at a time; a raced task is two requests
	redeemCrashKills    = 3 // SIGKILLs under load, each followed by a restart
	redeemCrashRaceOne  = 6 // 1 task in 6 dials its card from two callers at once
	redeemCrashOtherOne = 4 // 1 attempt in 4 tops up another subscriber
	redeemCrashWaitMax  = 10 * time.Second
	redeemCrashFinalMax = 4 // workers of the final redemption pass
	redeemUSSDTimeout   = 5 * time.Second
)

// redeemBatches: the cards, by batch, count and value in euros.
var redeemBatches = []struct{ batch, count, value int }{{21, 120, 5}, {22, 100, 10}, {23, 80, 20}}

const (
	ansUsed       = "END Kjo kartelë është përdorur më parë."
	ansSelfPrefix = "END Mbushja u krye: +"
	ansTxIDMarker = "ID e transaksionit: "
)

// redeemAttempt is one dialled redemption and what came back.
type redeemAttempt struct {
	caller, beneficiary int // subscriber indexes
	answered            bool
	answer              string
	acked               bool   // a success text
	txID                string // of an acknowledged credit
	final               bool   // dialled in the pass after the last restart
}

// redeemTask is one card of the load: one attempt, or two at once.
type redeemTask struct {
	card     int
	attempts []redeemAttempt
}

type redeemSub struct {
	local, e164 string
	opening     charging.Amount
}

type redeemCard struct {
	card
	value charging.Amount
}

// redeemRig holds what the checks compare against.
type redeemRig struct {
	t       *testing.T
	dir     string
	secret  string
	subs    []redeemSub
	cards   []redeemCard
	tasks   []redeemTask
	opening charging.Amount
	// ussd has its own connections: they are dropped at every kill.
	transport *http.Transport
	ussd      *http.Client
}

func TestRedeemCrashUsedIffCredited(t *testing.T) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("OCS_CRASH_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "OCS_CRASH_SEED")
	}
	t.Logf("seed=%d (replay with OCS_CRASH_SEED)", seed)
	rng := rand.New(rand.NewSource(seed))

	r := &redeemRig{t: t, dir: t.TempDir(), secret: writeSecret(t)}
	r.transport = &http.Transport{MaxIdleConnsPerHost: 2 * redeemCrashWorkers}
	r.ussd = &http.Client{Timeout: redeemUSSDTimeout, Transport: r.transport}
	defer r.transport.CloseIdleConnections()
	for _, b := range redeemBatches {
		for _, c := range generate(t, r.dir, r.secret, b.batch, b.count, b.value) {
			r.cards = append(r.cards, redeemCard{card: c, value: charging.Euros(int64(b.value))})
		}
	}
	s := r.start()
	net := s.issueKey("network")
	for i := range redeemCrashSubs {
		sub := redeemSub{local: fmt.Sprintf("0446%05d", i+1), opening: charging.Euros(int64(1+i)) + charging.Amount(i*37)*charging.AmountPerCent}
		id, err := charging.ParseMSISDN(sub.local)
		require.NoError(t, err)
		sub.e164 = id.String()
		s.provisionSub(sub.local, sub.opening.String())
		r.subs = append(r.subs, sub)
		r.opening += sub.opening
	}
	r.plan(rng)

	// Kill under load: each round runs until a random number of further
	// attempts were answered, then waits 0–2 ms more and kills, so the
	// kill lands while the workers have requests in flight.
	var next, answered atomic.Int64
	// Each round answers at most a share of all attempts, so that every
	// kill lands under load and a share is left for the last server.
	attempts := 0
	for _, task := range r.tasks {
		attempts += len(task.attempts)
	}
	share := attempts / (redeemCrashKills + 1)
	for round := range redeemCrashKills {
		target := answered.Load() + int64(share/2+rng.Intn(share/2))
		finished := r.load(s, net, &next, &answered)
		deadline := time.Now().Add(redeemCrashWaitMax)
	wait:
		for answered.Load() < target && time.Now().Before(deadline) {
			select {
			case <-finished:
				break wait
			case <-time.After(500 * time.Microsecond):
			}
		}
		time.Sleep(time.Duration(rng.Intn(2000)) * time.Microsecond)
		s.kill()
		<-finished
		r.transport.CloseIdleConnections()
		t.Logf("round %d: killed after %d answered attempts, %d of %d tasks taken", round+1, answered.Load(), min(next.Load(), int64(len(r.tasks))), len(r.tasks))
		s = r.start()
	}
	// The rest of the load on the last server, which is not killed: every
	// attempt must get an answer.
	taken := min(next.Load(), int64(len(r.tasks)))
	before := answered.Load()
	<-r.load(s, net, &next, &answered)
	for i := taken; i < int64(len(r.tasks)); i++ {
		for _, a := range r.tasks[i].attempts {
			require.True(t, a.answered, "card %s: no answer from a server that was not killed", r.cards[r.tasks[i].card].serial)
		}
	}
	t.Logf("after the last restart: %d more attempts answered", answered.Load()-before)
	r.logCounts()
	r.check(s, "after the load")

	// Every card whose redemption was never acknowledged: an active one is
	// redeemed now and must pay once; a used one (its credit was made
	// before a kill took the answer) must be refused as used.
	r.finalPass(s, net)
	require.Equal(t, len(r.cards), r.check(s, "after the final pass"), "every card is used after the final pass")
	s.stopWait()
	r.checkKeys()
}

func (r *redeemRig) start() *server {
	return startServerWith(r.t, r.dir, nil, "--voucher-secret", r.secret)
}

// plan shuffles the cards into tasks: most dialled by one caller, for
// itself or for another subscriber, some by two callers at once.
func (r *redeemRig) plan(rng *rand.Rand) {
	n := len(r.subs)
	attempt := func() redeemAttempt {
		a := redeemAttempt{caller: rng.Intn(n)}
		a.beneficiary = a.caller
		if rng.Intn(redeemCrashOtherOne) == 0 {
			a.beneficiary = (a.caller + 1 + rng.Intn(n-1)) % n
		}
		return a
	}
	for _, i := range rng.Perm(len(r.cards)) {
		task := redeemTask{card: i, attempts: []redeemAttempt{attempt()}}
		if rng.Intn(redeemCrashRaceOne) == 0 {
			second := attempt()
			for second.caller == task.attempts[0].caller {
				second = attempt()
			}
			task.attempts = append(task.attempts, second)
		}
		r.tasks = append(r.tasks, task)
	}
}

// load starts the workers on the tasks from next on; the returned channel
// closes when all have stopped: out of tasks, or at their first
// unanswered request (the server is gone).
func (r *redeemRig) load(s *server, key string, next, answered *atomic.Int64) <-chan struct{} {
	var wg sync.WaitGroup
	for range redeemCrashWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(r.tasks)) {
					return
				}
				task := &r.tasks[i]
				var tw sync.WaitGroup
				start := make(chan struct{})
				for a := range task.attempts {
					tw.Add(1)
					go func() {
						defer tw.Done()
						<-start
						r.dialRedeem(s, key, task.card, &task.attempts[a])
					}()
				}
				close(start)
				tw.Wait()
				for _, a := range task.attempts {
					if !a.answered {
						return
					}
					answered.Add(1)
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	return finished
}

// dialRedeem dials card's redemption for a.caller (for a.beneficiary) and
// records the answer; no answer (the server was killed) leaves it
// unanswered. It runs on worker goroutines: it records, and the checks on
// the test goroutine judge.
func (r *redeemRig) dialRedeem(s *server, key string, card int, a *redeemAttempt) {
	code := r.cards[card].code
	dialled := "*123*" + code + "#"
	if a.beneficiary != a.caller {
		dialled = "*123*" + code + "*" + r.subs[a.beneficiary].local + "#"
	}
	form := url.Values{"sessionId": {fmt.Sprintf("rc-%d", sessionSeq.Add(1))}, "serviceCode": {dialled},
		"phoneNumber": {r.subs[a.caller].local}, "networkCode": {"29341"}, "text": {""}}
	req, err := http.NewRequest("POST", s.base+"/ussd", strings.NewReader(form.Encode()))
	if err != nil {
		a.answer = "request: " + err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := r.ussd.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return // cut off mid-answer: nothing was told
	}
	a.answered, a.answer = true, fmt.Sprintf("%d %s", resp.StatusCode, body)
	if resp.StatusCode != http.StatusOK {
		return
	}
	a.answer = string(body)
	value := r.cards[card].value.String()
	var success string
	if a.beneficiary == a.caller {
		success = ansSelfPrefix + value + " EUR. "
	} else {
		success = "END Mbushja e numrit " + r.subs[a.beneficiary].e164 + " me " + value + " EUR u krye. "
	}
	if strings.HasPrefix(a.answer, success) {
		if _, id, ok := strings.Cut(a.answer, ansTxIDMarker); ok {
			a.acked, a.txID = true, strings.TrimSpace(id)
		}
	}
}

// finalPass redeems, on the restarted server, every card never
// acknowledged: a still active one must pay (the caller for itself); a
// used one (credited before a kill, its answer lost) must be refused as
// used, or, dialled by the very subscriber it credited, be told that
// credit (flows.RetryAnswerMax), never a new one.
func (r *redeemRig) finalPass(s *server, key string) {
	t := r.t
	var todo []int
	for i := range r.cards {
		if !r.cardAcked(i) {
			todo = append(todo, i)
		}
	}
	views := make([]redeemVoucherView, len(todo))
	for j, i := range todo {
		code, err := s.call("GET", "/v1/vouchers/"+r.cards[i].serial, testOpsKey, "", nil, &views[j])
		require.NoError(t, err)
		require.Equal(t, 200, code)
		require.Contains(t, []string{"active", "used"}, views[j].State, "card %s", r.cards[i].serial)
	}
	final := make([]redeemAttempt, len(todo))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range redeemCrashFinalMax {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := next.Add(1) - 1; j < int64(len(todo)); j = next.Add(1) - 1 {
				sub := (todo[j] + int(j)) % len(r.subs)
				final[j] = redeemAttempt{caller: sub, beneficiary: sub, final: true}
				r.dialRedeem(s, key, todo[j], &final[j])
			}
		}()
	}
	wg.Wait()
	redeemed, refused := 0, 0
	for j, i := range todo {
		a := final[j]
		require.True(t, a.answered, "card %s: no answer from a server under no load", r.cards[i].serial)
		switch v := views[j]; {
		case v.State == "active":
			require.True(t, a.acked, "card %s was active after the kills: its redemption must pay, got %q", r.cards[i].serial, a.answer)
			redeemed++
		case v.UsedBy == r.subs[a.beneficiary].e164:
			require.True(t, a.acked, "card %s credited %s before a kill: its own dial is told that credit, got %q", r.cards[i].serial, v.UsedBy, a.answer)
			require.Equal(t, v.TransactionID, a.txID, "card %s: the credit it made, not a new one", r.cards[i].serial)
			refused++
		default:
			require.Equal(t, ansUsed, a.answer, "card %s was used (credited unacknowledged before a kill): a second redemption must be refused", r.cards[i].serial)
			refused++
		}
		r.tasks = append(r.tasks, redeemTask{card: i, attempts: []redeemAttempt{a}})
	}
	t.Logf("final pass: %d active cards redeemed, %d used ones refused or told their credit", redeemed, refused)
}

func (r *redeemRig) cardAcked(card int) bool {
	for _, task := range r.tasks {
		if task.card != card {
			continue
		}
		for _, a := range task.attempts {
			if a.acked {
				return true
			}
		}
	}
	return false
}

func (r *redeemRig) logCounts() {
	var attempts, answered, acked, raced int
	for _, task := range r.tasks {
		if len(task.attempts) > 1 {
			raced++
		}
		for _, a := range task.attempts {
			attempts++
			if a.answered {
				answered++
			}
			if a.acked {
				acked++
			}
		}
	}
	r.t.Logf("%d cards, %d raced; %d attempts dialled, %d answered, %d acknowledged", len(r.cards), raced, attempts, answered, acked)
	require.Positive(r.t, acked, "the load acknowledged nothing before the kills")
}

type redeemVoucherView struct {
	State         string `json:"state"`
	Value         string `json:"value"`
	UsedBy        string `json:"usedBy"`
	TransactionID string `json:"transactionId"`
}

type redeemEntryView struct {
	ID      string `json:"id"`
	Seq     uint64 `json:"seq"`
	Kind    string `json:"kind"`
	Channel string `json:"channel"`
	Amount  string `json:"amount"`
}

// check compares every card's state with every journal over the ops API,
// and every answer given with the cards. It returns how many cards are
// used.
func (r *redeemRig) check(s *server, when string) int {
	t := r.t
	// Every journal: a provision, then voucher credits only.
	credits := map[string]redeemEntryView{} // by transaction ID
	creditOf := map[string]string{}         // transaction ID → beneficiary
	for _, sub := range r.subs {
		var h struct {
			Transactions []redeemEntryView `json:"transactions"`
		}
		code, err := s.call("GET", "/v1/subscribers/"+sub.e164+"/transactions?limit=1000", testOpsKey, "", nil, &h)
		require.NoError(t, err)
		require.Equal(t, 200, code)
		require.Less(t, len(h.Transactions), 1000, "%s: history beyond one page", sub.e164)
		balance := sub.opening
		for _, e := range h.Transactions {
			if e.Kind == "provision" {
				continue
			}
			require.Equal(t, "topup", e.Kind, "%s %s: %s, only voucher credits are made", when, sub.e164, e.ID)
			require.Equal(t, "voucher", e.Channel, "%s %s: %s", when, sub.e164, e.ID)
			credits[e.ID], creditOf[e.ID] = e, sub.e164
			balance += mustAmount(t, e.Amount)
		}
		require.Equal(t, balance.String(), s.subscriber(sub.e164).Balance, "%s: balance of %s is its opening plus its credits", when, sub.e164)
	}
	// Every card: used iff exactly one credit of its value, on the account
	// it names.
	claimed := map[string]string{} // transaction ID → serial
	usedBy := make([]redeemVoucherView, len(r.cards))
	owedWant := r.opening
	used := 0
	for i, c := range r.cards {
		var v redeemVoucherView
		code, err := s.call("GET", "/v1/vouchers/"+c.serial, testOpsKey, "", nil, &v)
		require.NoError(t, err)
		require.Equal(t, 200, code)
		usedBy[i] = v
		require.Equal(t, c.value.String(), v.Value, "card %s", c.serial)
		switch v.State {
		case "active":
			require.Empty(t, v.UsedBy, "%s: active card %s names a beneficiary", when, c.serial)
		case "used":
			used++
			owedWant += c.value
			require.NotEmpty(t, v.TransactionID, "%s: used card %s names no credit", when, c.serial)
			e, ok := credits[v.TransactionID]
			require.True(t, ok, "%s: card %s is used by %s but its credit %s is in no journal", when, c.serial, v.UsedBy, v.TransactionID)
			require.Equal(t, v.UsedBy, creditOf[v.TransactionID], "%s: card %s: usedBy and the journal holding its credit", when, c.serial)
			require.Equal(t, c.value.String(), e.Amount, "%s: card %s: credit %s", when, c.serial, e.ID)
			other, twice := claimed[v.TransactionID]
			require.False(t, twice, "%s: cards %s and %s name the same credit %s", when, other, c.serial, v.TransactionID)
			claimed[v.TransactionID] = c.serial
		default:
			t.Fatalf("%s: card %s is %q", when, c.serial, v.State)
		}
	}
	// No credit without its used card: an active card credited, or a card
	// credited twice, leaves a credit no card names.
	for id := range credits {
		_, ok := claimed[id]
		require.True(t, ok, "%s: voucher credit %s on %s is named by no used card", when, id, creditOf[id])
	}
	r.checkAnswers(when, usedBy)
	owed, accounts := s.ledger()
	require.Equal(t, owedWant.String(), mustAmount(t, owed).String(), "%s: ledger = opening balances + values of the %d used cards", when, used)
	require.Equal(t, uint64(len(r.subs)), accounts)
	t.Logf("%s: %d of %d cards used, each with its one credit; ledger %s", when, used, len(r.cards), owed)
	return used
}

// checkAnswers: every acknowledged redemption's card is used by its
// beneficiary with the credit the subscriber was told of, no card is
// acknowledged with two credits, a card refused as used is used, and
// nothing else was ever answered. A card may be acknowledged more than
// once, always with its one credit: a repeat by the beneficiary it
// credited, within flows.RetryAnswerMax, is told that success again (the
// retry of an attempt a kill left unanswered, say).
func (r *redeemRig) checkAnswers(when string, cards []redeemVoucherView) {
	t := r.t
	acks := make([]map[string]bool, len(r.cards)) // transaction IDs told, by card
	for _, task := range r.tasks {
		c, v := r.cards[task.card], cards[task.card]
		for _, a := range task.attempts {
			switch {
			case !a.answered:
			case a.acked:
				if acks[task.card] == nil {
					acks[task.card] = map[string]bool{}
				}
				acks[task.card][a.txID] = true
				require.Equal(t, "used", v.State, "%s: card %s was acknowledged (%q) but is %s", when, c.serial, a.answer, v.State)
				require.Equal(t, r.subs[a.beneficiary].e164, v.UsedBy, "%s: card %s acknowledged for %s", when, c.serial, r.subs[a.beneficiary].e164)
				require.Equal(t, a.txID, v.TransactionID, "%s: card %s: the transaction ID told", when, c.serial)
			case a.answer == ansUsed:
				require.Equal(t, "used", v.State, "%s: card %s was refused as used but is %s", when, c.serial, v.State)
			default:
				t.Fatalf("%s: card %s, caller %s for %s: unexpected answer %q", when, c.serial, r.subs[a.caller].e164, r.subs[a.beneficiary].e164, a.answer)
			}
		}
	}
	for i, ids := range acks {
		require.LessOrEqual(t, len(ids), 1, "%s: card %s acknowledged with %d credits: %v", when, r.cards[i].serial, len(ids), ids)
	}
}

// checkKeys opens the stopped server's store in process: each voucher
// credit in a journal carries the request key of exactly one card
// (storage.RedemptionKey of its code's hash), and that card is used by
// this account with this credit's Seq.
func (r *redeemRig) checkKeys() {
	t := r.t
	secret, err := readSecret(r.secret)
	require.NoError(t, err)
	store, err := storage.Open(r.dir, storage.Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, store.Close()) }()
	require.NoError(t, store.Check(context.Background()), "journals, totals and every card against its credit")
	v, err := storage.NewVouchers(store, [][]byte{secret}, charging.DefaultGuardPolicy())
	require.NoError(t, err)
	byKey := map[string]int{}
	recs := make([]charging.Voucher, len(r.cards))
	used := 0
	for i, c := range r.cards {
		code, err := charging.ParseVoucherCode(c.code)
		require.NoError(t, err)
		serial, err := strconv.ParseUint(c.serial, 10, 64)
		require.NoError(t, err)
		h, rec, err := v.BySerial(serial)
		require.NoError(t, err)
		require.Equal(t, v.Hash(code, 0), h, "card %s: the serial index names the code's hash", c.serial)
		byKey[storage.RedemptionKey(h)], recs[i] = i, rec
		if rec.State == charging.VoucherUsed {
			used++
		}
	}
	seen := map[int]bool{}
	for _, sub := range r.subs {
		id, err := charging.ParseMSISDN(sub.e164)
		require.NoError(t, err)
		entries, err := store.History(id, 0, storage.HistoryLimitMax)
		require.NoError(t, err)
		require.Less(t, len(entries), storage.HistoryLimitMax)
		for _, e := range entries {
			if e.Channel != charging.ChannelVoucher {
				continue
			}
			i, ok := byKey[e.Key]
			require.True(t, ok, "%s: voucher credit %d has key %q, no card's", sub.e164, e.Seq, e.Key)
			require.False(t, seen[i], "card %s credited twice (again on %s, seq %d)", r.cards[i].serial, sub.e164, e.Seq)
			seen[i] = true
			rec := recs[i]
			require.Equal(t, charging.VoucherUsed, rec.State, "card %s: credited on %s but %v", r.cards[i].serial, sub.e164, rec.State)
			require.Equal(t, id, rec.UsedBy, "card %s", r.cards[i].serial)
			require.Equal(t, e.Seq, rec.CreditSeq, "card %s", r.cards[i].serial)
			require.Equal(t, rec.Value, e.Amount, "card %s", r.cards[i].serial)
		}
	}
	require.Len(t, seen, used, "every used card has its credit, found by its key")
}
