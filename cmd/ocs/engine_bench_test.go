package main

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/ocs-engine/ocs/actors"
	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/storage"
)

// BenchmarkDurableEventCharges is issue 2's in-process target: 10k
// subscribers, 64 concurrent callers, every charge synced to Pebble before it
// is answered. Reports charges/s; the target on 2 cores is 150,000.
func BenchmarkDurableEventCharges(b *testing.B) {
	const subscribers = 10_000
	store, err := storage.Open(b.TempDir(), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	cfg := charging.DemoConfig()
	engine, err := actors.Start(actors.Config{Store: engineStore{store}, Charging: &cfg})
	if err != nil {
		b.Fatal(err)
	}
	defer engine.Stop()
	provisionBench(b, engine, subscribers)
	var worker atomic.Int64
	b.SetParallelism(32) // × GOMAXPROCS 2 = 64 callers
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		prefix := "w" + strconv.FormatInt(w, 10) + "-"
		cmd := charging.Command{Kind: charging.KindCharge, Channel: charging.ChannelNetwork,
			RatingGroup: charging.RatingGroupSMS, Units: 1}
		for i := 0; pb.Next(); i++ {
			cmd.Subscriber = charging.SubscriberID(38349000000 + (int(w)*7919+i)%subscribers)
			cmd.Key = prefix + strconv.Itoa(i)
			out, err := engine.Execute(&cmd)
			if err != nil || (out.Result != charging.ResultOK && out.Result != charging.ResultOverloaded) {
				b.Fatal(out.Result, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "charges/s")
}

// provisionBench provisions subscribers 38349000000… with 1,000 € each, so
// that no benchmark charge is refused.
func provisionBench(b *testing.B, engine *actors.Engine, subscribers int) {
	b.Helper()
	for i := 0; i < subscribers; i++ {
		cmd := charging.Command{Kind: charging.KindProvision, Subscriber: charging.SubscriberID(38349000000 + i),
			Amount: charging.Euros(1_000), Channel: charging.ChannelOps, Key: "provision"}
		if out, err := engine.Execute(&cmd); err != nil || out.Result != charging.ResultOK {
			b.Fatal(out.Result, err)
		}
	}
}
