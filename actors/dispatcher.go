package actors

// workerDispatcher runs mailbox work on a fixed pool of goroutines instead of
// a goroutine per mailbox wake-up (Proto.Actor's default). DESIGN.md measured
// the pool cutting request/reply overhead from 5–6× to 1–3× of a plain
// goroutine and channel.
//
// Our actors' only blocking calls are Pebble point reads (activation and
// idempotency look-ups), which are served from the block cache or page cache
// in microseconds; no actor waits for a commit, so the pool cannot deadlock.
type workerDispatcher struct {
	work       chan func()
	quit       chan struct{}
	throughput int
}

// dispatchQueueMax bounds scheduled mailbox runs waiting for a worker. A full
// queue falls back to a goroutine rather than block a sender that may hold a
// shard lock.
const dispatchQueueMax = 1 << 14

func newWorkerDispatcher(workers, throughput int) *workerDispatcher {
	d := &workerDispatcher{work: make(chan func(), dispatchQueueMax), quit: make(chan struct{}), throughput: throughput}
	for i := 0; i < workers; i++ {
		go func() {
			for {
				select {
				case fn := <-d.work:
					fn()
				case <-d.quit:
					return
				}
			}
		}()
	}
	return d
}

// Schedule implements actor.Dispatcher.
func (d *workerDispatcher) Schedule(fn func()) {
	select {
	case <-d.quit:
		go fn()
		return
	default:
	}
	select {
	case d.work <- fn:
	default:
		go fn()
	}
}

// Throughput implements actor.Dispatcher: messages one mailbox run handles
// before yielding its worker to other mailboxes.
func (d *workerDispatcher) Throughput() int { return d.throughput }

// stop ends the workers. The work channel stays open: a late Schedule (a
// stop message to an actor) runs on a goroutine of its own instead.
func (d *workerDispatcher) stop() {
	close(d.quit)
	for {
		select {
		case fn := <-d.work:
			go fn()
		default:
			return
		}
	}
}
