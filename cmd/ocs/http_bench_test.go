package main

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/ocs-engine/ocs/actors"
	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/protocols/httpapi"
	"github.com/ocs-engine/ocs/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// BenchmarkHTTPChargeMetrics is issue 4's cost target: the whole SMS charge
// path (fasthttp, Nchf decoding, actor, synced Pebble commit) with every
// metric registered, against the same path with none, in one run. Target:
// instrumentation costs under 5% of throughput. In-memory connections keep
// the kernel's socket cost, which is the same either way, out of the ratio.
func BenchmarkHTTPChargeMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics=off"
		if on {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) { benchHTTPCharge(b, on) })
	}
}

func benchHTTPCharge(b *testing.B, metrics bool) {
	const subscribers = 10_000
	var reg *prometheus.Registry
	var storeReg, engineReg, apiReg prometheus.Registerer
	if metrics {
		reg = prometheus.NewRegistry()
		storeReg, engineReg, apiReg = reg, reg, reg
	}
	store, err := storage.Open(b.TempDir(), storage.Options{Registerer: storeReg})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if metrics {
		reg.MustRegister(storage.NewCollector(store))
	}
	cfg := charging.DemoConfig()
	engine, err := actors.Start(actors.Config{Store: engineStore{store}, Charging: &cfg, Registerer: engineReg})
	if err != nil {
		b.Fatal(err)
	}
	defer engine.Stop()
	provisionBench(b, engine, subscribers)
	token, err := store.IssueKey(uint8(httpapi.RoleNetwork))
	if err != nil {
		b.Fatal(err)
	}
	api := httpapi.New(httpapi.Config{Engine: engine, Keys: keys{store}, Registerer: apiReg, Tariffs: cfg.Tariffs})
	ln := fasthttputil.NewInmemoryListener()
	go func() { _ = api.Serve(ln) }()
	defer api.Shutdown()
	client := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConnsPerHost: 512}

	var worker atomic.Int64
	b.SetParallelism(32) // × GOMAXPROCS 2 = 64 callers
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://ocs/nchf-convergedcharging/v3/chargingdata")
		req.Header.SetMethod("POST")
		req.Header.Set("Authorization", "Bearer "+token)
		var body []byte
		for i := 0; pb.Next(); i++ {
			id := 38349000000 + (int(w)*7919+i)%subscribers
			req.Header.Set("Idempotency-Key", "w"+strconv.FormatInt(w, 10)+"-"+strconv.Itoa(i))
			body = append(body[:0], `{"subscriberIdentifier":"msisdn-`...)
			body = strconv.AppendInt(body, int64(id), 10)
			body = append(body, `","nfConsumerIdentification":{"nFName":"bench"},"invocationTimeStamp":"2026-11-21T10:00:00Z","invocationSequenceNumber":0,"oneTimeEvent":true,"multipleUnitUsage":[{"ratingGroup":2,"requestedUnit":{"serviceSpecificUnits":1}}]}`...)
			req.SetBodyRaw(body)
			if err := client.Do(req, resp); err != nil {
				b.Fatal(err)
			}
			if resp.StatusCode() != fasthttp.StatusCreated && resp.StatusCode() != fasthttp.StatusServiceUnavailable {
				b.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "charges/s")
}
