package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ocs-engine/ocs/charging"
)

// sweepIntervalMax bounds how late a lapsed reservation is released and an
// idle actor passivated.
const sweepIntervalMax = 10 * time.Second

// expireBatchMax bounds the expirations one sweep drives, so that a sweep
// after a long outage cannot crowd out live traffic.
const expireBatchMax = 1024

// sweep passivates idle actors and releases lapsed reservations. Proto.Actor's
// ReceiveTimeout would do the first, but it has an open data race at the
// served version (DESIGN.md).
func (e *Engine) sweep() {
	defer close(e.sweepDone)
	interval := e.cfg.IdleAfter / 4
	if interval > sweepIntervalMax {
		interval = sweepIntervalMax
	}
	if interval < 10*time.Millisecond {
		interval = 10 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-e.sweepStop:
			return
		case <-t.C:
			e.sweepOnce()
		}
	}
}

// sweepOnce removes idle actors with nothing in flight and no reservation
// from the directory under their shard lock (so no send can race the stop),
// then stops them; and asks actors with a lapsed reservation to expire it.
func (e *Engine) sweepOnce() {
	now := e.clock.Now().Unix()
	idleBefore := now - int64(e.cfg.IdleAfter/time.Second)
	if e.dir.active.Load() > int64(e.cfg.ActorsMax) {
		// Over the bound: every idle actor goes, however recently used.
		idleBefore = now
	}
	var stop []*actor.PID
	var expire []charging.SubscriberID
	for i := range e.dir.shards {
		s := &e.dir.shards[i]
		s.mu.Lock()
		for id, en := range s.entries {
			if next := en.nextExpiry.Load(); next != 0 {
				if next <= now && len(expire) < expireBatchMax {
					expire = append(expire, id)
				}
				continue
			}
			if en.inflight.Load() == 0 && en.lastUsed.Load() <= idleBefore {
				delete(s.entries, id)
				stop = append(stop, en.pid)
			}
		}
		s.mu.Unlock()
	}
	for _, pid := range stop {
		e.system.Root.Stop(pid)
	}
	e.dir.active.Add(-int64(len(stop)))
	e.metrics.passivations.Add(float64(len(stop)))
	for _, id := range expire {
		cmd := charging.Command{Kind: charging.KindExpire, Subscriber: id}
		if _, err := e.Execute(&cmd); err != nil {
			return
		}
	}
}
