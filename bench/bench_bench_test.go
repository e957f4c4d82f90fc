package bench

import (
	"testing"
	"time"
)

// BenchmarkWorkerSMS measures the generator's own cost of one SMS charge
// against the limit server: the generator must stay lean (no allocation per
// request) because it shares the 2 cores with the server it measures.
func BenchmarkWorkerSMS(b *testing.B) {
	l, err := StartLimit(LimitConfig{Listen: "127.0.0.1:0", Dir: b.TempDir(), BootstrapKey: testOpsKey})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	cfg := Config{Target: l.URL(), OpsKey: testOpsKey, Subscribers: 100, Concurrency: 1, Duration: time.Second,
		Balance: 1_000_000 * 10_000}
	if _, err := Provision(cfg, nil); err != nil {
		b.Fatal(err)
	}
	cfg.Defaults()
	r, err := newRunner(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	w := r.workers[0]
	w.rec = newRecorder(time.Now()).worker()
	b.ReportAllocs()
	for b.Loop() {
		if o := w.sms(7); o != OutcomeOK {
			b.Fatalf("outcome %d: %s", o, w.err)
		}
	}
}
