package bench

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// provisionValidity is the validity of provisioned subscribers: a year, so
// that no run crosses a validity end.
const provisionValidity = 365 * 24 * time.Hour

// ProvisionResult tells what Provision did.
type ProvisionResult struct {
	Created, Existed int
	Elapsed          time.Duration
}

// Rate returns subscribers provisioned per second.
func (p ProvisionResult) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Created+p.Existed) / p.Elapsed.Seconds()
}

// Provision creates subscribers FirstMSISDN … FirstMSISDN+cfg.Subscribers-1
// with cfg.Balance, cfg.Concurrency at a time, drawing a progress bar on
// progress (nil: none). A subscriber that exists is left as it is.
func Provision(cfg Config, progress io.Writer) (ProvisionResult, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return ProvisionResult{}, err
	}
	client, err := NewClient(cfg.Target, cfg.OpsKey, cfg.Concurrency, cfg.Timeout)
	if err != nil {
		return ProvisionResult{}, err
	}
	defer client.Close()
	var bar *progressbar.ProgressBar
	if progress != nil {
		bar = progressbar.NewOptions64(int64(cfg.Subscribers), progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription("provisioning"), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }))
	}
	balance := cfg.Balance.AppendText(nil)
	validUntil := []byte(time.Now().Add(provisionValidity).UTC().Format(time.RFC3339))
	start := time.Now()
	var next, created, existed atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	stop := make(chan struct{})
	if bar != nil {
		// One goroutine draws the bar, so workers never contend on it.
		go func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					_ = bar.Set64(created.Load() + existed.Load())
				}
			}
		}()
	}
	for range cfg.Concurrency {
		wg.Go(func() {
			k := client.conn()
			defer k.release()
			for first.Load() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.Subscribers) {
					return
				}
				isNew, err := k.provision(FirstMSISDN+uint64(i), balance, validUntil)
				if err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
				if isNew {
					created.Add(1)
				} else {
					existed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	res := ProvisionResult{Created: int(created.Load()), Existed: int(existed.Load()), Elapsed: time.Since(start)}
	if bar != nil {
		_ = bar.Set64(int64(res.Created + res.Existed))
		_ = bar.Finish()
	}
	if p := first.Load(); p != nil {
		return res, *p
	}
	return res, nil
}
