package main

import (
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ocs-engine/ocs/actors"
	"github.com/ocs-engine/ocs/bench"
	"github.com/ocs-engine/ocs/charging"
	"github.com/ocs-engine/ocs/storage"
)

// benchCallers is issue 2's number of concurrent callers in process.
// RunParallel starts parallelism × GOMAXPROCS goroutines.
const benchCallers = 64

// BenchmarkDurableEventCharges is issue 2's in-process target: 10k
// subscribers, 64 concurrent callers, every charge synced to Pebble before it
// is answered. Reports charges/s; the target on 2 cores is 150,000. Read it
// against BenchmarkDurableEventChargesCeiling, run minutes apart.
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
	runCharges(b, subscribers, func(w int64) func(sub, i int) error {
		prefix := "w" + strconv.FormatInt(w, 10) + "-"
		cmd := charging.Command{Kind: charging.KindCharge, Channel: charging.ChannelNetwork,
			RatingGroup: charging.RatingGroupSMS, Units: 1}
		return func(sub, i int) error {
			cmd.Subscriber = charging.SubscriberID(38349000000 + sub)
			cmd.Key = prefix + strconv.Itoa(i)
			out, err := engine.Execute(&cmd)
			if err != nil || (out.Result != charging.ResultOK && out.Result != charging.ResultOverloaded) {
				return fmt.Errorf("%v: %v", out.Result, err)
			}
			return nil
		}
	})
}

// runCharges makes b.N event charges from benchCallers goroutines, worker
// w's i-th on subscriber index sub, and reports charges/s and the process's
// CPU-µs a charge. The engine and its ceiling share it, so that the fraction
// compares the same callers spread the same way over the subscribers.
func runCharges(b *testing.B, subscribers int, newWorker func(w int64) func(sub, i int) error) {
	var worker atomic.Int64
	b.SetParallelism(benchCallers / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		charge := newWorker(w)
		for i := 0; pb.Next(); i++ {
			if err := charge((int(w)*7919+i)%subscribers, i); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "charges/s")
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/charge")
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

// BenchmarkDurableEventChargesCeiling is the in-process ceiling of
// BenchmarkDurableEventCharges on the same machine: the same 10k subscribers
// and 64 callers, each charge an in-memory debit under a shard lock and the
// same three keys (account, journal entry, request key) group-committed by
// one committer in a synced Pebble batch, answered after the fsync. No
// actors, no idempotency look-up, no lifecycle, no metrics: the minimal
// durable charge, which the engine's figure is divided by (bench.Limit,
// the HTTP ceiling's core, called without HTTP).
func BenchmarkDurableEventChargesCeiling(b *testing.B) {
	const subscribers = 10_000
	l, err := bench.StartLimit(bench.LimitConfig{Listen: "127.0.0.1:0", Dir: b.TempDir(), BootstrapKey: "ceiling-bench-key-0123"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < subscribers; i++ {
		if _, err := l.Provision(uint64(38349000000+i), charging.Euros(1_000)); err != nil {
			b.Fatal(err)
		}
	}
	runCharges(b, subscribers, func(w int64) func(sub, i int) error {
		key := make([]byte, 0, 32)
		return func(sub, i int) error {
			key = strconv.AppendInt(append(strconv.AppendInt(append(key[:0], 'w'), w, 10), '-'), int64(i), 10)
			return l.ChargeEvent(uint64(38349000000+sub), 1, key)
		}
	})
}

// processCPU is the CPU time (user and system) this process has used. Per
// charge it is a steadier figure than charges/s on a shared machine, where
// the disk's fsync latency moves the closed-loop throughput from run to run;
// it includes Pebble's background flushes and compactions, and the kernel
// time of fdatasync (which on this VM spins for about half of its wall time).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
