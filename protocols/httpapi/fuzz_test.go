package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// Every decoder of outside input is fuzzed. Besides "never panics", each
// checks the decoded values against their limits and that a pooled parser
// carries nothing from one request to the next: the input is first decoded
// split (a prefix), then whole, and must equal a fresh decode (the nats
// parser fuzz splits its input the same way to catch carried state).

func fuzzSplit(data []byte, split uint) []byte {
	if len(data) == 0 {
		return data
	}
	return data[:int(split%uint(len(data)+1))]
}

// snapshot renders a decode result to a string so that it can be compared
// after the parser's memory has been reused.
func snapshot(v any, p problem) string {
	return fmt.Sprintf("%+v|%s|%s|%d", v, p.code, p.detail, p.status)
}

func checkProblem(t *testing.T, p problem) {
	if p.ok() {
		return
	}
	if p.status < 400 || p.status > 599 || p.detail == "" || strings.ContainsAny(p.code, " \"") {
		t.Fatalf("bad problem %+v", p)
	}
}

func FuzzChargingDataRequest(f *testing.F) {
	f.Add([]byte(smsBody(1, msisdn)), uint(10), true)
	f.Add([]byte(sessionBody(2, 1, `"time":300`, `"time":60,"totalVolume":5`)), uint(0), false)
	f.Add([]byte(`{"multipleUnitUsage":[{"ratingGroup":1,"usedUnitContainer":[{"uplinkVolume":18446744073709551615,"downlinkVolume":1}]}]}`), uint(3), false)
	f.Add([]byte(`{"subscriberIdentifier":"msisdn-+383 49 123 456","invocationSequenceNumber":4294967296}`), uint(7), true)
	f.Fuzz(func(t *testing.T, data []byte, split uint, create bool) {
		var fresh, reused fastjson.Parser
		d, p := decodeChargingData(&fresh, data, create)
		want := snapshot(d, p)
		checkProblem(t, p)
		if p.ok() {
			if create && d.subscriber == 0 {
				t.Fatal("create accepted without a subscriber")
			}
			if d.requested > charging.UnitsMax+1 || d.used > charging.UnitsMax+1 {
				t.Fatalf("units beyond saturation: %+v", d)
			}
			// E.164 digits with a plus are unambiguous (without it a
			// foreign number would read as a Kosovo national one).
			if back, err := charging.ParseMSISDN("+" + d.subscriber.String()); create && (err != nil || back != d.subscriber) {
				t.Fatalf("subscriber %d does not round-trip", d.subscriber)
			}
		}
		decodeChargingData(&reused, fuzzSplit(data, split), create)
		if got := snapshot(decodeChargingData(&reused, data, create)); got != want {
			t.Fatalf("reused parser: %s, fresh: %s", got, want)
		}
	})
}

func FuzzTopupBalance(f *testing.F) {
	f.Add([]byte(topupBody(msisdn, "5.005")), uint(4))
	f.Add([]byte(topupBody("049123456", `"1e1"`)), uint(40))
	f.Add([]byte(`{"partyAccount":{"id":"+38349123456"},"amount":{"amount":-0.0001},"channel":{"name":"bank"},"@x":1}`), uint(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		fuzzBalanceChange(t, decodeTopUp, data, split)
	})
}

func FuzzAdjustBalance(f *testing.F) {
	f.Add([]byte(`{"partyAccount":{"id":"38349123456"},"amount":{"amount":"-0.5","units":"EUR"},"reason":"ticket 7"}`), uint(9))
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		fuzzBalanceChange(t, decodeAdjust, data, split)
	})
}

func fuzzBalanceChange(t *testing.T, decode func(*fastjson.Parser, []byte) (balanceChange, problem), data []byte, split uint) {
	var fresh, reused fastjson.Parser
	c, p := decode(&fresh, data)
	want := snapshot(c, p)
	checkProblem(t, p)
	if p.ok() {
		if c.amount > charging.BalanceMax || c.amount < -charging.BalanceMax || c.subscriber == 0 || c.channel == 0 {
			t.Fatalf("accepted out of range: %+v", c)
		}
		// The amount printed back parses to the same value: exact.
		if back, err := charging.ParseAmount(c.amount.String()); err != nil || back != c.amount {
			t.Fatalf("amount %d prints as %s", c.amount, c.amount)
		}
	}
	decode(&reused, fuzzSplit(data, split))
	if got := snapshot(decode(&reused, data)); got != want {
		t.Fatalf("reused parser: %s, fresh: %s", got, want)
	}
}

func FuzzProvision(f *testing.F) {
	f.Add([]byte(`{"balance":"5.00","validUntil":"2026-12-31T23:59:59Z"}`), uint(3))
	f.Add([]byte(``), uint(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		var fresh, reused fastjson.Parser
		pv, p := decodeProvision(&fresh, data)
		want := snapshot(pv, p)
		checkProblem(t, p)
		if p.ok() && (pv.balance > charging.BalanceMax || pv.balance < -charging.BalanceMax || pv.validUntil < 0) {
			t.Fatalf("accepted out of range: %+v", pv)
		}
		decodeProvision(&reused, fuzzSplit(data, split))
		if got := snapshot(decodeProvision(&reused, data)); got != want {
			t.Fatalf("reused parser: %s, fresh: %s", got, want)
		}
	})
}

func FuzzRefund(f *testing.F) {
	f.Add([]byte(`{"transactionId":"38349123456-7","amount":"0.05"}`), uint(5))
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		var fresh, reused fastjson.Parser
		r, p := decodeRefund(&fresh, data, 38349123456)
		want := snapshot(r, p)
		checkProblem(t, p)
		if p.ok() && (r.seq == 0 || r.amount < 0 || r.amount > charging.BalanceMax) {
			t.Fatalf("accepted out of range: %+v", r)
		}
		decodeRefund(&reused, fuzzSplit(data, split), 38349123456)
		if got := snapshot(decodeRefund(&reused, data, 38349123456)); got != want {
			t.Fatalf("reused parser: %s, fresh: %s", got, want)
		}
	})
}

// FuzzParseRef: an accepted reference is canonical, the very text
// appendRef writes, so one session has one reference and one key space.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"38349123456-1", "38349123456-4294967295", "038349123456-1", "1-1", "38349123456-01"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		id, s, ok := parseRef(data)
		if ok && !bytes.Equal(appendRef(nil, id, s), data) {
			t.Fatalf("%q accepted as %d-%d", data, id, s)
		}
	})
}

func FuzzParseTxID(f *testing.F) {
	for _, s := range []string{"38349123456-7", "38349123456-18446744073709551615", "38349123456-0", "x-1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		id, seq, ok := parseTxID(data)
		if ok && !bytes.Equal(appendTxID(nil, id, seq), data) {
			t.Fatalf("%q accepted as %d-%d", data, id, seq)
		}
	})
}

// FuzzHandler drives the whole handler: any method, path, query, key and
// body is answered with JSON: a success or a problem document whose status
// is the response's.
func FuzzHandler(f *testing.F) {
	f.Add("POST", nchfBase, keyNetwork, smsBody(1, msisdn))
	f.Add("POST", nchfBase+"/38349123456-1/update", keyNetwork, sessionBody(1, 1, `"time":1`, `"time":1`))
	f.Add("POST", topupPath, keyChannel, topupBody(msisdn, "5"))
	f.Add("PUT", "/v1/subscribers/049123456", keyOps, `{"balance":"1"}`)
	f.Add("GET", "/v1/subscribers/049123456/transactions?before=3&limit=2", keyOps, ``)
	f.Add("POST", "/v1/subscribers/049123456/refunds", keyOps, `{"transactionId":"38349123456-1"}`)
	f.Add("GET", tmfBase+"/bucket?partyAccount.id=049123456", keyChannel, ``)
	eng := newFakeEngine()
	srv := New(Config{Engine: eng, Keys: newFakeKeys(), Tariffs: charging.DemoTariffs()})
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, method, uri, token, body string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(uri)
		ctx.Request.Header.Set("Authorization", "Bearer "+token)
		ctx.Request.Header.Set("Idempotency-Key", "fuzz")
		ctx.Request.SetBodyString(body)
		h(&ctx)
		sc := ctx.Response.StatusCode()
		out := ctx.Response.Body()
		if sc == 204 {
			return
		}
		v, err := fastjson.ParseBytes(out)
		if err != nil {
			t.Fatalf("%d %s: not JSON: %q", sc, uri, out)
		}
		if sc >= 400 && (v.GetInt("status") != sc || len(v.GetStringBytes("code")) == 0) {
			t.Fatalf("%d: bad problem %s", sc, out)
		}
	})
}

// FuzzAppendString: whatever bytes a client sent (a request key, a reason),
// the string written back is valid JSON and reads back as the same text,
// each byte that is not UTF-8 as U+FFFD.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "r-1", `a"b\c`, "\x00\x1f\x7f", "ë€𝄞", "\xff\xfe", "a\xc3", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendString(nil, s)
		require.True(t, json.Valid(out), "%q → %s", s, out)
		var back string
		require.NoError(t, json.Unmarshal(out, &back))
		var want strings.Builder
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				want.WriteRune(utf8.RuneError)
			} else {
				want.WriteString(s[i : i+n])
			}
			i += n
		}
		require.Equal(t, want.String(), back)
	})
}

// FuzzIdempotencyKey: whatever the header holds, the key is taken exactly
// when it is 1 to 64 bytes of printable ASCII, and otherwise refused with
// the specific problem (or absent when the header is).
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{"", "r-1", `q"\ ~`, "k\xff", "ë", "tab\tkey", strings.Repeat("k", 65), "T/1/r", "a|b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.Set("Idempotency-Key", header)
		sent := string(ctx.Request.Header.Peek("Idempotency-Key")) // as fasthttp hands it over
		key, p := idempotencyKey(&ctx)
		printable := strings.IndexFunc(sent, func(r rune) bool { return r < ' ' || r > '~' }) < 0
		switch {
		case sent == "":
			require.True(t, p.ok())
			require.Empty(t, key)
		case len(sent) > charging.RequestKeyBytesMax:
			require.Equal(t, "request_key_too_long", p.code)
		case printable && strings.ContainsAny(sent, "/|"):
			require.Equal(t, "reserved_idempotency_key", p.code, "%q", sent)
			require.Empty(t, key)
		case printable:
			require.True(t, p.ok(), "%q", sent)
			require.Equal(t, sent, key)
		default:
			require.Equal(t, "invalid_idempotency_key", p.code, "%q", sent)
			require.Empty(t, key)
		}
	})
}
