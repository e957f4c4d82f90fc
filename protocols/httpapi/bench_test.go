package httpapi

import (
	"strconv"
	"testing"

	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// okEngine answers every command with success and allocates nothing, so
// a benchmark measures the HTTP layer alone.
type okEngine struct{ keyBytes int }

func (e *okEngine) Execute(cmd *charging.Command) (charging.Outcome, error) {
	e.keyBytes += len(cmd.Key)
	return charging.Outcome{Result: charging.ResultOK, Seq: 7, Balance: charging.Euros(3), State: charging.StateActive,
		Session: 1, Granted: cmd.Units, QuotaValidity: 600}, nil
}
func (e *okEngine) History(charging.SubscriberID, uint64, int) ([]charging.Entry, error) {
	return nil, nil
}
func (e *okEngine) Totals() charging.Totals { return charging.Totals{} }
func (e *okEngine) Ready() bool             { return true }

// benchRequest runs the handler on one reused RequestCtx, as fasthttp does
// per connection. The ISN changes every iteration so that each request has
// its own key, as under real load.
func benchRequest(b *testing.B, reg prometheus.Registerer, method, path, token string, body func(i int) []byte, headers ...string) {
	srv := New(Config{Engine: &okEngine{}, Keys: newFakeKeys(), Registerer: reg})
	h := srv.Handler()
	var ctx fasthttp.RequestCtx
	auth := "Bearer " + token
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(path)
		ctx.Request.Header.Set("Authorization", auth)
		for j := 0; j+1 < len(headers); j += 2 {
			ctx.Request.Header.Set(headers[j], headers[j+1])
		}
		ctx.Request.SetBody(body(i))
		h(&ctx)
		if sc := ctx.Response.StatusCode(); sc >= 300 {
			b.Fatalf("status %d: %s", sc, ctx.Response.Body())
		}
	}
}

// smsBodyBytes returns a one-SMS event charge with invocationSequenceNumber
// isn, rewritten in place in buf.
func smsBodyBytes() func(i int) []byte {
	prefix := []byte(`{"subscriberIdentifier":"msisdn-38349123456","nfConsumerIdentification":{"nodeFunctionality":"SMSF","nFName":"smsf-1"},"invocationTimeStamp":"2026-03-01T12:00:00.000Z","oneTimeEvent":true,"oneTimeEventType":"IEC","multipleUnitUsage":[{"ratingGroup":2,"requestedUnit":{"serviceSpecificUnits":1}}],"invocationSequenceNumber":`)
	buf := make([]byte, 0, len(prefix)+24)
	return func(i int) []byte {
		buf = strconv.AppendInt(append(buf[:0], prefix...), int64(i), 10)
		return append(buf, '}')
	}
}

// BenchmarkSMSEventCharge is the hot path: one SMS charged by an SMSF.
// Target: at most 3 allocations (the request key string is one).
func BenchmarkSMSEventCharge(b *testing.B) {
	b.Run("metrics=off", func(b *testing.B) {
		benchRequest(b, nil, "POST", nchfBase, keyNetwork, smsBodyBytes())
	})
	b.Run("metrics=on", func(b *testing.B) {
		benchRequest(b, prometheus.NewRegistry(), "POST", nchfBase, keyNetwork, smsBodyBytes())
	})
}

// BenchmarkTopUp is an electronic top-up through TMF654.
func BenchmarkTopUp(b *testing.B) {
	body := []byte(topupBody("049123456", `"5.00"`))
	benchRequest(b, nil, "POST", topupPath, keyChannel, func(int) []byte { return body }, "Idempotency-Key", "bench-key")
}
