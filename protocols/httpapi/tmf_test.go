package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
)

const topupPath = tmfBase + "/topupBalance"

func topupBody(sub, amount string) string {
	return `{"partyAccount":{"id":"` + sub + `"},"amount":{"amount":` + amount + `,"units":"EUR"},"channel":{"name":"electronic"},"@type":"TopupBalance"}`
}

func TestTopUp(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "0")

	// Any local form of the number; a 4-decimal amount is exact.
	r := h.do("POST", topupPath, keyChannel, topupBody("049123456", "5.005"), "Idempotency-Key", "t-1")
	require.Equal(t, 201, r.status, r.body)
	v := r.json(t)
	require.Equal(t, msisdn+"-1", string(v.GetStringBytes("id")), "a zero opening balance writes no journal entry")
	require.Equal(t, msisdn+"-1", string(v.GetStringBytes("transactionId")))
	require.Equal(t, "completed", string(v.GetStringBytes("status")))
	require.Equal(t, msisdn, string(v.GetStringBytes("partyAccount", "id")))
	require.Equal(t, "electronic", string(v.GetStringBytes("channel", "name")))
	require.Contains(t, r.body, `"amount":{"amount":5.005,"units":"EUR"}`)
	require.Contains(t, r.body, `"balance":{"amount":5.005,"units":"EUR"}`)
	// 5.005 € buys 60 days from now (seed 002), more than the initial 30.
	require.Equal(t, testNow.Add(charging.Days(60)).Format(time.RFC3339), string(v.GetStringBytes("validUntil")))
	want := charging.Euros(5) + 50
	require.Equal(t, want, h.engine.balance(t, id))

	// Replay: same answer, credited once.
	again := h.do("POST", topupPath, keyChannel, topupBody("049123456", "5.005"), "Idempotency-Key", "t-1")
	require.Equal(t, r.body, again.body)
	require.Equal(t, want, h.engine.balance(t, id))
	// Same key, another amount: 409, nothing credited.
	r = h.do("POST", topupPath, keyChannel, topupBody("049123456", `"6"`), "Idempotency-Key", "t-1")
	require.Equal(t, 409, r.status, r.body)
	require.Equal(t, "request_key_reused", r.code(t))
	require.Equal(t, want, h.engine.balance(t, id))
	// A string amount is the same as a number.
	r = h.do("POST", topupPath, keyChannel, topupBody("+38349123456", `"1.00"`), "Idempotency-Key", "t-2")
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, want+charging.Euros(1), h.engine.balance(t, id))
}

func TestTopUpRefusals(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "1")
	before := h.engine.count()
	for _, tc := range []struct {
		name, body, code string
		status           int
	}{
		{"exponent", topupBody(msisdn, "1e1"), "invalid_amount", 400},
		{"exponent string", topupBody(msisdn, `"1e1"`), "invalid_amount", 400},
		{"5 decimals", topupBody(msisdn, "5.00001"), "invalid_amount", 400},
		{"huge", topupBody(msisdn, "1000000000"), "amount_out_of_range", 400},
		{"bool amount", topupBody(msisdn, "true"), "invalid_amount", 400},
		{"dollars", strings.Replace(topupBody(msisdn, "5"), "EUR", "USD", 1), "invalid_currency", 400},
		{"bad msisdn", topupBody("12ab", "5"), "invalid_msisdn", 400},
		{"no party", `{"amount":{"amount":5,"units":"EUR"}}`, "missing_party_account", 400},
		{"no amount", `{"partyAccount":{"id":"` + msisdn + `"}}`, "missing_amount", 400},
		{"unknown field", strings.Replace(topupBody(msisdn, "5"), `"@type"`, `"isAutoTopup":true,"@type"`, 1), "unknown_field", 400},
		{"typo", strings.Replace(topupBody(msisdn, "5"), `"amount":{`, `"ammount":{`, 1), "unknown_field", 400},
		{"channel", strings.Replace(topupBody(msisdn, "5"), "electronic", "ops", 1), "invalid_channel", 400},
		{"malformed", `{"partyAccount":`, "malformed_json", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", topupPath, keyChannel, tc.body, "Idempotency-Key", "k-"+tc.name)
			require.Equal(t, tc.status, r.status, r.body)
			require.Equal(t, tc.code, r.code(t))
			require.Nil(t, r.json(t).Get("cause"), "cause is for Nchf only")
		})
	}
	require.Equal(t, before, h.engine.count(), "decoder refusals must not reach the engine")

	// Business refusals come from the engine's rules, change nothing.
	for _, tc := range []struct{ amount, code string }{
		{"-5", "amount_must_be_positive"}, {"0", "amount_must_be_positive"},
		{"0.99", "amount_below_minimum"}, {"50.01", "amount_above_maximum"},
	} {
		r := h.do("POST", topupPath, keyChannel, topupBody(msisdn, tc.amount), "Idempotency-Key", "b-"+tc.amount)
		require.Equal(t, 422, r.status, r.body)
		require.Equal(t, tc.code, r.code(t))
	}
	require.Equal(t, charging.Euros(1), h.engine.balance(t, id))

	r := h.do("POST", topupPath, keyChannel, topupBody(msisdn, "5"))
	require.Equal(t, 400, r.status)
	require.Equal(t, "missing_idempotency_key", r.code(t))
	r = h.do("POST", topupPath, keyChannel, topupBody("38344999999", "5"), "Idempotency-Key", "u")
	require.Equal(t, 404, r.status)
	require.Equal(t, "unknown_subscriber", r.code(t))
}

func TestAdjustAndBucket(t *testing.T) {
	h := newHarness(t)
	id := h.provision(msisdn, "2")
	adj := `{"partyAccount":{"id":"` + msisdn + `"},"amount":{"amount":"-0.5","units":"EUR"},"reason":"double charge ticket 7"}`
	r := h.do("POST", tmfBase+"/adjustBalance", keyOps, adj, "Idempotency-Key", "a-1")
	require.Equal(t, 201, r.status, r.body)
	require.Equal(t, "double charge ticket 7", r.str(t, "reason"))
	require.Contains(t, r.body, `"amount":{"amount":-0.50,"units":"EUR"}`)
	require.Equal(t, charging.Euros(2)-50*charging.AmountPerCent, h.engine.balance(t, id))

	r = h.do("POST", tmfBase+"/adjustBalance", keyOps, strings.Replace(adj, `,"reason":"double charge ticket 7"`, "", 1), "Idempotency-Key", "a-2")
	require.Equal(t, 422, r.status, r.body)
	require.Equal(t, "adjustment_needs_reason", r.code(t))
	r = h.do("POST", tmfBase+"/adjustBalance", keyOps, strings.Replace(adj, "-0.5", "-100", 1), "Idempotency-Key", "a-3")
	require.Equal(t, 403, r.status, r.body)
	require.Equal(t, "insufficient_balance", r.code(t))

	for _, key := range []string{keyChannel, keyOps} {
		r = h.do("GET", tmfBase+"/bucket?partyAccount.id=049123456", key, "")
		require.Equal(t, 200, r.status, r.body)
		b := r.json(t).GetArray()
		require.Len(t, b, 1)
		require.Equal(t, "main", string(b[0].GetStringBytes("name")))
		require.Equal(t, "active", string(b[0].GetStringBytes("status")))
		require.Equal(t, msisdn, string(b[0].GetStringBytes("partyAccount", "id")))
		require.Contains(t, r.body, `"remainingValue":{"amount":1.50,"units":"EUR"}`)
		require.NotEmpty(t, b[0].GetStringBytes("validFor", "endDateTime"))
	}
	r = h.do("GET", tmfBase+"/bucket", keyChannel, "")
	require.Equal(t, 400, r.status)
	r = h.do("GET", tmfBase+"/bucket?partyAccount.id=38344999999", keyChannel, "")
	require.Equal(t, 404, r.status)
}
