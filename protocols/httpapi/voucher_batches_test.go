package httpapi

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/charging"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"
)

// GenerateBatch writes rows the way storage.Vouchers.Generate does (its
// expiry column is the date of the refusing instant), with
// codes derived from the serial so the test can recognise them.
func (f *fakeIssue3) GenerateBatch(b VoucherBatch, now time.Time, w io.Writer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.batches[b.ID]; ok {
		return ErrExists
	}
	if _, err := io.WriteString(w, "serial,code,value,batch,expiry\n"); err != nil {
		return err
	}
	for i := range b.Count {
		serial := uint64(b.ID)*10_000_000 + uint64(i) + 1
		if _, err := fmt.Fprintf(w, "%d,%016d,%s,%d,%s\n", serial, serial*7, b.Value, b.ID, b.Expiry.Format(time.DateOnly)); err != nil {
			return err
		}
		if f.failNext {
			f.failNext = false
			return errors.New("disk full")
		}
	}
	f.batches[b.ID] = false
	f.generated = append(f.generated, b)
	return nil
}

func TestVoucherBatchGenerate(t *testing.T) {
	h, f := newIssue3Harness(t, true)
	r := h.do("POST", "/v1/voucher-batches", keyOps, `{"batch":42,"count":3,"value":"10.00","expiry":"2026-12-31"}`)
	require.Equal(t, 201, r.status, r.body)
	rows, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"serial", "code", "value", "batch", "expiry"}, rows[0])
	require.Len(t, rows, 4, "a header and one row per card")
	require.Equal(t, []string{"420000001", "0000002940000007", "10.00", "42", "2027-01-01"}, rows[1])
	require.Len(t, f.generated, 1)
	g := f.generated[0]
	require.Equal(t, VoucherBatch{ID: 42, Count: 3, Value: charging.Euros(10), Expiry: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}, g,
		"expiry is the end of the named day, as the CLI's --expiry")

	r = h.do("POST", "/v1/voucher-batches", keyOps, `{"batch":42,"count":1,"value":5,"expiry":"2026-12-31"}`)
	require.Equal(t, 409, r.status)
	require.Equal(t, "batch_exists", r.code(t))
	require.Equal(t, 409, h.do("POST", "/v1/voucher-batches", keyOps, `{"batch":7,"count":1,"value":5,"expiry":"2026-12-31"}`).status,
		"a batch generated offline is taken too")

	f.failNext = true
	r = h.do("POST", "/v1/voucher-batches", keyOps, `{"batch":43,"count":2,"value":"5","expiry":"2026-12-31"}`)
	require.Equal(t, 503, r.status)
	require.NotContains(t, r.body, "430000001", "no code of a failed batch is handed out")
	require.Contains(t, r.body, "block this batch")

	for body, code := range map[string]string{
		`{"batch":0,"count":1,"value":"5","expiry":"2026-12-31"}`:            "invalid_batch",
		`{"batch":4294967296,"count":1,"value":"5","expiry":"2026-12-31"}`:   "invalid_batch",
		`{"batch":"44","count":1,"value":"5","expiry":"2026-12-31"}`:         "invalid_batch",
		`{"count":1,"value":"5","expiry":"2026-12-31"}`:                      "invalid_batch",
		`{"batch":44,"count":0,"value":"5","expiry":"2026-12-31"}`:           "invalid_count",
		`{"batch":44,"count":100001,"value":"5","expiry":"2026-12-31"}`:      "invalid_count",
		`{"batch":44,"count":-1,"value":"5","expiry":"2026-12-31"}`:          "invalid_count",
		`{"batch":44,"count":1,"value":"7.00","expiry":"2026-12-31"}`:        "invalid_value",
		`{"batch":44,"count":1,"expiry":"2026-12-31"}`:                       "missing_amount",
		`{"batch":44,"count":1,"value":"5","expiry":"2026-02-28"}`:           "invalid_expiry",
		`{"batch":44,"count":1,"value":"5","expiry":"2040-01-01"}`:           "invalid_expiry",
		`{"batch":44,"count":1,"value":"5","expiry":"31.12.2026"}`:           "invalid_expiry",
		`{"batch":44,"count":1,"value":"5"}`:                                 "invalid_expiry",
		`{"batch":44,"count":1,"value":"5","expiry":"2026-12-31","print":1}`: "unknown_field",
		`[1]`: "malformed_json",
	} {
		r = h.do("POST", "/v1/voucher-batches", keyOps, body)
		require.Equal(t, 400, r.status, body)
		require.Equal(t, code, r.code(t), body)
	}
	require.Len(t, f.generated, 1, "a refused request generates nothing")
	require.NotContains(t, f.batches, uint32(44))

	// The last day may be today: the cards are redeemable until its end.
	require.Equal(t, 201, h.do("POST", "/v1/voucher-batches", keyOps, `{"batch":45,"count":1,"value":"20.00","expiry":"2026-03-01"}`).status)
	require.Equal(t, 403, h.do("POST", "/v1/voucher-batches", keyNetwork, `{"batch":46,"count":1,"value":"5","expiry":"2026-12-31"}`).status)
	require.Equal(t, 401, h.do("POST", "/v1/voucher-batches", "", `{"batch":46,"count":1,"value":"5","expiry":"2026-12-31"}`).status)

	bare, _ := newIssue3Harness(t, false)
	require.Equal(t, 501, bare.do("POST", "/v1/voucher-batches", keyOps, `{"batch":46,"count":1,"value":"5","expiry":"2026-12-31"}`).status)
}

func FuzzVoucherBatch(f *testing.F) {
	f.Add([]byte(`{"batch":42,"count":3,"value":"10.00","expiry":"2026-12-31"}`), uint(5))
	f.Add([]byte(`{"batch":4294967295,"count":100000,"value":20,"expiry":"2036-02-28"}`), uint(0))
	f.Add([]byte(`{"batch":1e3,"count":1.5,"value":"5.0000","expiry":"2026-02-30","@type":"x"}`), uint(9))
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		var fresh, reused fastjson.Parser
		b, p := decodeVoucherBatch(&fresh, data, testNow)
		want := snapshot(b, p)
		checkProblem(t, p)
		if p.ok() {
			switch {
			case b.ID == 0:
				t.Fatal("accepted batch 0")
			case b.Count < 1 || b.Count > VoucherBatchCountMax:
				t.Fatalf("accepted count %d", b.Count)
			case !charging.ValidVoucherValue(b.Value):
				t.Fatalf("accepted value %v", b.Value)
			case !b.Expiry.After(testNow) || b.Expiry.Sub(testNow) > voucherExpiryMax:
				t.Fatalf("accepted expiry %v", b.Expiry)
			case b.Expiry.Hour() != 0 || b.Expiry.Minute() != 0 || b.Expiry.Second() != 0 || b.Expiry.Location() != time.UTC:
				t.Fatalf("expiry %v is not the end of a UTC day", b.Expiry)
			}
		}
		decodeVoucherBatch(&reused, fuzzSplit(data, split), testNow)
		if got := snapshot(decodeVoucherBatch(&reused, data, testNow)); got != want {
			t.Fatalf("reused parser: %s, fresh: %s", got, want)
		}
	})
}
