package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ocs-engine/ocs/charging"
	"github.com/prometheus/client_golang/prometheus"
)

// Clock tells the time. The engine reads it nowhere else, so tests control it.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

const (
	// InflightMaxDefault bounds commands inside the engine. At ≈ 150k
	// commands/s and a few ms per commit, 4096 keeps the disk and both
	// cores busy; more only lengthens queues (DESIGN.md: at saturation p99
	// is queueing, held by bounding concurrency).
	InflightMaxDefault = 4096
	// CommitBatchMax bounds changes per synced batch: beyond a few hundred
	// the fsync is amortised and a larger batch only delays its first reply.
	CommitBatchMax = 512
	// RequestTimeoutDefault bounds how long Execute waits for an answer.
	// A healthy engine answers in milliseconds; past this something is
	// stuck and the caller retries with its request key.
	RequestTimeoutDefault = 5 * time.Second
	// IdleAfterDefault passivates an actor unused this long.
	IdleAfterDefault = 2 * time.Minute
	// workersDefault sizes the dispatcher's pool: a few per core, so that
	// a Pebble read that misses the cache does not idle a core.
	workersDefault = 8
	// mailboxThroughput is messages per mailbox run before yielding.
	mailboxThroughput = 64
	// ActorsMaxDefault bounds subscriber actors in memory (≈ 0.9 KiB each,
	// so ≈ 1.7 GiB): past it the sweeper passivates every idle actor, not
	// only those idle for IdleAfter. DESIGN.md: one actor per subscriber for
	// all 10M would take ≈ 7 GB; only active subscribers may live as actors.
	ActorsMaxDefault = 2_000_000
)

// The committer's queue holds every in-flight command at most once, plus
// sweeper expirations (at most one per active actor, also counted in
// flight), so a send to it never blocks.
const _ uint = InflightMaxDefault - CommitBatchMax

// Config wires an Engine.
type Config struct {
	Store    Store
	Clock    Clock            // nil: SystemClock
	Charging *charging.Config // tariffs, tiers, channels
	Logger   *slog.Logger     // nil: discard
	// Registerer receives the engine's metrics; nil means none.
	Registerer  prometheus.Registerer
	InflightMax int           // 0: InflightMaxDefault
	IdleAfter   time.Duration // 0: IdleAfterDefault
	Workers     int           // 0: workersDefault
	ActorsMax   int           // 0: ActorsMaxDefault
	// RequestTimeout bounds Execute's wait for an answer, except for a
	// card's credit (see Execute); 0: RequestTimeoutDefault.
	RequestTimeout time.Duration
}

// ErrStopped is returned by Execute once the engine stops or has failed.
var ErrStopped = errors.New("actors: engine stopped")

// ErrTimeout is returned by Execute when no answer came in time; the outcome
// is unknown and the caller retries with the same request key.
var ErrTimeout = errors.New("actors: request timed out")

// Engine runs subscriber actors over a Store.
type Engine struct {
	cfg        Config
	charging   *charging.Config
	store      Store
	clock      Clock
	log        *slog.Logger
	system     *actor.ActorSystem
	props      *actor.Props
	dispatcher *workerDispatcher
	dir        *directory
	committer  *committer
	metrics    *metrics

	inflight    atomic.Int64
	inflightMax int64
	stopping    atomic.Bool
	failed      chan struct{}
	failOnce    sync.Once
	stopOnce    sync.Once
	stopErr     error
	failErr     error
	sweepStop   chan struct{}
	sweepDone   chan struct{}
	requests    sync.Pool
	// spawnMu serializes spawns so that the props' mailbox producer can
	// hand the mailbox built for this spawn (spawning) to Proto.Actor and
	// the directory keeps a typed pointer to it. Taken only inside a shard
	// lock, never the other way round.
	spawnMu  sync.Mutex
	spawning *mailbox
}

// request is one command travelling to an actor and back. Pooled: the reply
// slot is a buffered channel reused across requests, cheaper than a
// Proto.Actor future (DESIGN.md: 1.3 µs against 7.8 µs).
type request struct {
	cmd   charging.Command
	entry *entry
	reply chan reply
	timer *time.Timer // bounds the wait; reused, as a new timer per call allocates
}

type reply struct {
	out charging.Outcome
	err error
}

func (req *request) stopTimer() {
	if req.timer != nil {
		req.timer.Stop()
	}
}

// answer sends r to the waiting caller. The entry stops counting the request
// first: the actor is done with it, and only then may the sweeper passivate.
func (req *request) answer(out charging.Outcome, err error) {
	req.entry.inflight.Add(-1)
	req.reply <- reply{out: out, err: err}
}

// Start builds the engine and starts its committer and sweeper.
func Start(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Charging == nil {
		return nil, errors.New("actors: Config.Store and Config.Charging are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InflightMax <= 0 {
		cfg.InflightMax = InflightMaxDefault
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = IdleAfterDefault
	}
	if cfg.Workers <= 0 {
		cfg.Workers = workersDefault
	}
	if cfg.ActorsMax <= 0 {
		cfg.ActorsMax = ActorsMaxDefault
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = RequestTimeoutDefault
	}
	e := &Engine{
		cfg:         cfg,
		charging:    cfg.Charging,
		store:       cfg.Store,
		clock:       cfg.Clock,
		log:         cfg.Logger,
		dir:         newDirectory(),
		inflightMax: int64(cfg.InflightMax),
		failed:      make(chan struct{}),
		sweepStop:   make(chan struct{}),
		sweepDone:   make(chan struct{}),
	}
	e.requests.New = func() any { return &request{reply: make(chan reply, 1)} }
	e.metrics = newMetrics(cfg.Registerer, e)
	quiet := slog.New(slog.DiscardHandler)
	e.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	e.dispatcher = newWorkerDispatcher(cfg.Workers, mailboxThroughput)
	e.props = actor.PropsFromProducer(func() actor.Actor { return &subscriber{engine: e} },
		actor.WithDispatcher(e.dispatcher),
		actor.WithMailbox(func() actor.Mailbox { return e.spawning }),
		actor.WithSupervisor(failEngine{e}))
	e.committer = newCommitter(e, cfg.InflightMax+directoryShards)
	go e.committer.run()
	go e.sweep()
	return e, nil
}

// Execute runs cmd on its subscriber's actor and returns once the outcome is
// durable. It never blocks on a full engine: past InflightMax it answers
// ResultOverloaded at once.
func (e *Engine) Execute(cmd *charging.Command) (charging.Outcome, error) {
	if e.stopping.Load() {
		return charging.Outcome{}, ErrStopped
	}
	if e.inflight.Add(1) > e.inflightMax {
		e.inflight.Add(-1)
		e.metrics.overload.Inc()
		return charging.Outcome{Result: charging.ResultOverloaded}, nil
	}
	req := e.requests.Get().(*request)
	req.cmd = *cmd
	e.deliver(req)
	var r reply
	// A card's credit is waited for until it is answered or the engine
	// fails, however long that takes. Its caller holds the card's lock
	// until then (storage's "Redemption protocol"); giving up while the
	// credit may still be made would free the card, still active on disk,
	// for a second redemption, and the card would be credited twice.
	var timeout <-chan time.Time
	if cmd.Card == nil {
		if req.timer == nil {
			req.timer = time.NewTimer(e.cfg.RequestTimeout)
		} else {
			req.timer.Reset(e.cfg.RequestTimeout)
		}
		timeout = req.timer.C
	}
	select {
	case r = <-req.reply:
		req.stopTimer()
		req.entry = nil
		req.cmd = charging.Command{}
		e.requests.Put(req)
	case <-timeout:
		// The actor may still answer into req: leave it to the garbage
		// collector rather than reuse it.
		r.err = ErrTimeout
	case <-e.failed:
		// A failed engine applies nothing more (committer.apply), so
		// nothing the caller gives up on here can still become durable.
		req.stopTimer()
		r.err = ErrStopped
	}
	e.inflight.Add(-1)
	if r.err == nil {
		e.metrics.observe(cmd, &r.out)
	}
	return r.out, r.err
}

// deliver sends req to its subscriber's actor, spawning it if needed. The
// spawn and the in-flight count happen under the shard lock, so the sweeper
// cannot passivate the actor before req is in its mailbox.
//
// req is posted to the actor's mailbox directly (what Proto.Actor's Send
// does after resolving the PID) and after the shard lock is released. If
// the mailbox was idle, the calling goroutine runs it at once instead of
// waking a worker: the caller would only wait for its answer anyway, and
// one goroutine hand-off less per command is what separated the engine
// from its in-process ceiling (BENCHMARKS.md). A busy mailbox is already
// running elsewhere and takes req in turn; after the dispatcher's
// throughput a run yields to the worker pool, so no caller runs a hot
// actor's queue for long.
func (e *Engine) deliver(req *request) {
	id := req.cmd.Subscriber
	s := e.dir.shard(id)
	s.mu.Lock()
	en, ok := s.entries[id]
	if !ok {
		en = &entry{}
		e.spawnMu.Lock()
		e.spawning = newMailbox()
		en.pid = e.system.Root.Spawn(e.props)
		en.mailbox, e.spawning = e.spawning, nil
		e.spawnMu.Unlock()
		s.entries[id] = en
		e.dir.active.Add(1)
		e.metrics.activations.Inc()
	}
	en.inflight.Add(1)
	en.lastUsed.Store(e.clock.Now().Unix())
	req.entry = en
	mb := en.mailbox
	s.mu.Unlock()
	if mb.post(req) {
		mb.process()
	}
}

// History returns journal entries of id, newest first; see Store.History.
func (e *Engine) History(id charging.SubscriberID, beforeSeq uint64, limit int) ([]charging.Entry, error) {
	return e.store.History(id, beforeSeq, limit)
}

// Totals returns the ledger totals as of the last commit.
func (e *Engine) Totals() charging.Totals { return e.store.Totals() }

// Ready reports whether the engine accepts work.
func (e *Engine) Ready() bool {
	select {
	case <-e.failed:
		return false
	default:
		return !e.stopping.Load()
	}
}

// Failed is closed when the engine fails (a commit error or a panic in an
// actor); Err says why. The process must stop: memory is ahead of disk.
func (e *Engine) Failed() <-chan struct{} { return e.failed }

// Err returns why the engine failed, or nil.
func (e *Engine) Err() error {
	select {
	case <-e.failed:
		return e.failErr
	default:
		return nil
	}
}

func (e *Engine) fail(err error) {
	e.failOnce.Do(func() {
		e.failErr = err
		e.metrics.failures.Inc()
		e.log.Error("engine failed: stopping; acknowledged state is on disk", "err", err)
		close(e.failed)
	})
}

// Stop refuses new work, waits until every command in flight is answered
// (durable or refused), then stops the actors and the committer. It returns
// the failure that stopped the engine, if any.
func (e *Engine) Stop() error {
	e.stopOnce.Do(func() { e.stopErr = e.stop() })
	return e.stopErr
}

func (e *Engine) stop() error {
	e.stopping.Store(true)
	deadline := time.Now().Add(2 * e.cfg.RequestTimeout)
	for e.inflight.Load() > 0 && time.Now().Before(deadline) {
		select {
		case <-e.failed:
			deadline = time.Now()
		case <-time.After(time.Millisecond):
		}
	}
	close(e.sweepStop)
	<-e.sweepDone
	e.committer.stop()
	for i := range e.dir.shards {
		s := &e.dir.shards[i]
		s.mu.Lock()
		for id, en := range s.entries {
			e.system.Root.Stop(en.pid)
			delete(s.entries, id)
		}
		s.mu.Unlock()
	}
	e.system.Shutdown()
	e.dispatcher.stop()
	if left := e.inflight.Load(); left > 0 {
		return fmt.Errorf("actors: stopped with %d commands unanswered", left)
	}
	return e.Err()
}

// ActiveActors returns the number of subscriber actors in memory.
func (e *Engine) ActiveActors() int64 { return e.dir.active.Load() }

// failEngine is the supervisor of every subscriber actor: a panic means a
// broken invariant, memory cannot be trusted, so the engine stops rather
// than restart the actor from a possibly stale store.
type failEngine struct{ e *Engine }

// HandleFailure implements actor.SupervisorStrategy.
func (f failEngine) HandleFailure(_ *actor.ActorSystem, _ actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	f.e.fail(fmt.Errorf("actors: subscriber actor %s panicked: %v", child.Id, reason))
}
