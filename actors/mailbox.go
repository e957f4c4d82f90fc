package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// mailbox is a lean actor.Mailbox for subscriber actors. Proto.Actor's
// default (Unbounded) keeps a 10-slot ring and a lock-free system queue per
// actor, ≈ 370 B even when idle, a third of an active subscriber's budget
// (issue 2: under 1 KiB). This one holds nothing while idle, keeps a small
// queue's capacity between bursts, and has the same semantics: system
// messages first, suspend/resume, yield after the dispatcher's throughput,
// a panic escalated to the supervisor.
//
// Unbounded is safe here because the engine bounds commands in flight
// (Config.InflightMax), not the mailbox.
type mailbox struct {
	mu        sync.Mutex
	user      []any // user[head:] are queued
	head      int
	system    []any
	scheduled bool
	suspended bool

	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
	run        func() // m.process, bound once: a method value per Schedule would allocate
}

// queueCapKeep: a user queue that grew past this in a burst is released
// when it drains, so an idle actor stays small.
const queueCapKeep = 4

func newMailbox() *mailbox {
	m := &mailbox{}
	m.run = m.process
	return m
}

// PostUserMessage implements actor.Mailbox.
func (m *mailbox) PostUserMessage(msg any) {
	if m.post(msg) {
		m.dispatcher.Schedule(m.run)
	}
}

// post queues a user message. It reports whether the mailbox was idle: then
// it is marked scheduled and the caller must see that it runs, by running
// process itself (Engine.deliver) or by handing it to the dispatcher.
func (m *mailbox) post(msg any) (runHere bool) {
	m.mu.Lock()
	m.user = append(m.user, msg)
	return m.claimLocked()
}

// PostSystemMessage implements actor.Mailbox.
func (m *mailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.system = append(m.system, msg)
	if m.claimLocked() {
		m.dispatcher.Schedule(m.run)
	}
}

// claimLocked marks m scheduled and unlocks it. It reports whether m was
// idle, so that the caller, and nobody else, starts its run.
func (m *mailbox) claimLocked() (wasIdle bool) {
	wasIdle = !m.scheduled
	m.scheduled = true
	m.mu.Unlock()
	return wasIdle
}

// RegisterHandlers implements actor.Mailbox.
func (m *mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker = invoker
	m.dispatcher = dispatcher
}

// Start implements actor.Mailbox.
func (m *mailbox) Start() {}

// UserMessageCount implements actor.Mailbox.
func (m *mailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.user) - m.head
}

// process runs queued messages until the queue is empty or the throughput
// is used up, in which case it reschedules itself so other mailboxes get the
// worker.
func (m *mailbox) process() {
	throughput := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if i >= throughput {
			m.dispatcher.Schedule(m.run) // still scheduled: nobody else may
			return
		}
		msg, system, ok := m.next()
		if !ok {
			return
		}
		if system {
			m.invokeSystem(msg)
		} else {
			m.invokeUser(msg)
		}
	}
}

// next pops the next message, system messages first; user messages wait
// while suspended. When there is none it marks the mailbox idle.
func (m *mailbox) next() (msg any, system bool, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.system) > 0 {
		msg = m.system[0]
		m.system[0] = nil
		m.system = m.system[1:]
		if len(m.system) == 0 {
			m.system = nil
		}
		return msg, true, true
	}
	if m.suspended || m.head == len(m.user) {
		m.scheduled = false
		return nil, false, false
	}
	msg = m.user[m.head]
	m.user[m.head] = nil
	m.head++
	if m.head == len(m.user) {
		m.head = 0
		if cap(m.user) > queueCapKeep {
			m.user = nil
		} else {
			m.user = m.user[:0]
		}
	}
	return msg, false, true
}

func (m *mailbox) invokeSystem(msg any) {
	switch msg.(type) {
	case *actor.SuspendMailbox:
		m.mu.Lock()
		m.suspended = true
		m.mu.Unlock()
	case *actor.ResumeMailbox:
		m.mu.Lock()
		m.suspended = false
		m.mu.Unlock()
	default:
		defer m.escalate(msg)
		m.invoker.InvokeSystemMessage(msg)
	}
}

func (m *mailbox) invokeUser(msg any) {
	defer m.escalate(msg)
	m.invoker.InvokeUserMessage(msg)
}

// escalate hands a panic to the supervisor, as Proto.Actor's mailbox does.
func (m *mailbox) escalate(msg any) {
	if r := recover(); r != nil {
		m.invoker.EscalateFailure(r, msg)
	}
}
