package actors

import (
	"runtime"
	"testing"

	"github.com/ocs-engine/ocs/charging"
)

// BenchmarkActiveActorMemory measures what one active subscriber actor costs
// in heap: the Proto.Actor process and mailbox, our subscriber struct with
// its account, and the directory entry. Issue 2's target: under 1 KiB.
// The accounts are put in the store first, so only activation is measured.
func BenchmarkActiveActorMemory(b *testing.B) {
	const actors = 20_000
	for b.Loop() {
		store := newMemStore()
		for i := 0; i < actors; i++ {
			id := charging.SubscriberID(38349000000 + i)
			store.accounts[id] = charging.Account{ID: id, Balance: charging.Euros(5), ValidUntil: t0.Unix() + 86400, Seq: 1}
		}
		e, _ := startEngine(b, store)
		before := heapInUse()
		for i := 0; i < actors; i++ {
			exec(b, e, charging.Command{Kind: charging.KindInquire, Subscriber: charging.SubscriberID(38349000000 + i)})
		}
		after := heapInUse()
		if e.ActiveActors() != actors {
			b.Fatalf("%d actors active, want %d", e.ActiveActors(), actors)
		}
		b.ReportMetric(float64(after-before)/actors, "B/actor")
		_ = e.Stop()
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
