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

// Passivations are paced: stopping an actor costs the dispatcher a few
// microseconds, and the first sweep after a bulk provisioning stops tens of
// thousands. Stopped in one burst they held the requests behind them for
// tens of milliseconds (the mixed scenario's p99 reached 55 ms for two
// seconds after provisioning 50,000 subscribers). passivateChunk stops,
// then passivatePause: at most a fraction of one core, and 50,000 stops
// take under 1.5 s of a 10 s sweep interval.
const (
	passivateChunk = 128
	passivatePause = 2 * time.Millisecond
)

// stopPaced stops the actors of pids, passivateChunk at a time with pause
// between chunks. Their directory entries are gone already, so a new
// request for one of them spawns a new actor, which loads what the old one
// made durable: the old one has nothing in flight and nothing pending, and
// only its stop waits. Once quit is closed (the engine is stopping), the
// rest are stopped without pause.
func (e *Engine) stopPaced(pids []*actor.PID, quit <-chan struct{}, pause time.Duration) {
	t := time.NewTimer(0)
	<-t.C
	defer t.Stop()
	for i, pid := range pids {
		e.system.Root.Stop(pid)
		if (i+1)%passivateChunk != 0 || i+1 == len(pids) {
			continue
		}
		t.Reset(pause)
		select {
		case <-t.C:
		case <-quit:
			for _, rest := range pids[i+1:] {
				e.system.Root.Stop(rest)
			}
			return
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
	e.dir.active.Add(-int64(len(stop)))
	e.metrics.passivations.Add(float64(len(stop)))
	e.stopPaced(stop, e.sweepStop, passivatePause)
	for _, id := range expire {
		cmd := charging.Command{Kind: charging.KindExpire, Subscriber: id}
		if _, err := e.Execute(&cmd); err != nil {
			return
		}
	}
}
