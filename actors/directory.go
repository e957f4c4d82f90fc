package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ocs-engine/ocs/charging"
)

// directoryShards spreads subscribers over this many mutexes. Our own
// directory replaces Proto.Actor's get-or-spawn by name, which races
// (DESIGN.md: a process is registered before its mailbox is wired).
const directoryShards = 256

// entry is one active subscriber actor as the directory sees it.
type entry struct {
	pid     *actor.PID
	mailbox *mailbox // the actor's, for deliver to post to directly
	// inflight counts messages sent to the actor and not yet answered; the
	// sweeper passivates only at zero.
	inflight atomic.Int32
	// lastUsed is the Unix second of the last message sent.
	lastUsed atomic.Int64
	// nextExpiry is the earliest reservation expiry (Unix seconds), 0 when
	// the account holds none; such an actor is never passivated.
	nextExpiry atomic.Int64
}

type shard struct {
	mu      sync.Mutex
	entries map[charging.SubscriberID]*entry
}

type directory struct {
	shards [directoryShards]shard
	active atomic.Int64
}

func newDirectory() *directory {
	d := &directory{}
	for i := range d.shards {
		d.shards[i].entries = make(map[charging.SubscriberID]*entry)
	}
	return d
}

func (d *directory) shard(id charging.SubscriberID) *shard {
	// Fibonacci hashing: MSISDNs are dense in their low digits.
	return &d.shards[(uint64(id)*0x9E3779B97F4A7C15)>>56]
}
