package actors

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// LoopMailbox is the mailbox of the actors that run on the goroutine
// sending to them (the broker's connection actors, and per-stream
// applications run on the event loop): for their frames, the event loop.
//
// protoactor's default mailbox hands its dispatcher a method value each
// time an idle mailbox gets a message, which allocates; an actor that runs
// on the loop goes idle after every read, so that was one allocation per
// read for the connection actor and one per frame for the application.
// This mailbox binds its run function once. Its queues are slices under a
// mutex that are reused once drained: the sender is nearly always the
// goroutine that then runs the mailbox, so the mutex is uncontended.
//
// It keeps the default mailbox's contract: system messages before user
// messages, SuspendMailbox/ResumeMailbox honoured, a message batch
// unpacked, a panic escalated to the supervisor with the message that
// caused it, and a yield to the scheduler every throughput messages.
type LoopMailbox struct {
	mu     sync.Mutex
	user   fifo
	system fifo

	// taken holds the user messages drain took from user in one go, one
	// lock for all of them; only the goroutine running the mailbox
	// touches it.
	taken fifo

	status    atomic.Int32 // idle or running
	userN     atomic.Int32
	sysN      atomic.Int32
	suspended atomic.Bool

	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
	run        func() // processMessages, bound once

	// plain, when set, reports messages that cannot be an
	// actor.MessageBatch nor carry one (see mayBeBatch).
	plain func(any) bool
	// hooks, when set, is told when each run of the mailbox begins and
	// ends: an on-loop application's mailbox gathers what a run
	// broadcasts into one batch. Nil for a connection actor's.
	hooks RunHooks
}

// RunHooks are told when each run of a LoopMailbox begins and ends, on
// the goroutine running it.
type RunHooks interface {
	BeginRun()
	EndRun()
}

const (
	mailboxIdle int32 = iota
	mailboxRunning
)

// NewLoopMailbox is an actor.MailboxProducer of LoopMailboxes that check
// every user message for an actor.MessageBatch to unpack.
func NewLoopMailbox() actor.Mailbox { return NewLoopMailboxOf(nil, nil) }

// NewLoopMailboxOf makes a LoopMailbox. plain, when set, reports the
// messages that cannot be an actor.MessageBatch nor carry one: those of
// the frame path, which it spares two interface assertions (an itab
// lookup each) per message. hooks, when set, is told when each run
// begins and ends.
func NewLoopMailboxOf(plain func(any) bool, hooks RunHooks) *LoopMailbox {
	m := &LoopMailbox{plain: plain, hooks: hooks}
	m.run = m.processMessages
	return m
}

// fifo is a queue in a slice: popped from head, reset when empty.
type fifo struct {
	items []any
	head  int
}

func (q *fifo) push(v any) { q.items = append(q.items, v) }

func (q *fifo) len() int { return len(q.items) - q.head }

// moveTo moves every item of q to dst, which must be empty, and returns
// how many; the two swap backing arrays.
func (q *fifo) moveTo(dst *fifo) int {
	n := q.len()
	dst.items, q.items = q.items, dst.items[:0]
	dst.head, q.head = q.head, 0
	return n
}

func (q *fifo) pop() (any, bool) {
	if q.head == len(q.items) {
		return nil, false
	}
	v := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		// Keep a small backing array for the next burst; let a large one go.
		if cap(q.items) > 1024 {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
		q.head = 0
	}
	return v, true
}

// PostUserMessage implements actor.Mailbox.
func (m *LoopMailbox) PostUserMessage(message any) {
	if m.plain == nil || !m.plain(message) {
		if batch, ok := message.(actor.MessageBatch); ok {
			for _, msg := range batch.GetMessages() {
				m.PostUserMessage(msg)
			}
		}
		if env, ok := message.(*actor.MessageEnvelope); ok {
			if batch, ok := env.Message.(actor.MessageBatch); ok {
				for _, msg := range batch.GetMessages() {
					m.PostUserMessage(msg)
				}
			}
		}
	}
	m.mu.Lock()
	m.user.push(message)
	m.mu.Unlock()
	m.userN.Add(1)
	m.schedule()
}

// PostUserMessages queues msgs, none of which may be an
// actor.MessageBatch or carry one, and schedules the mailbox once for all
// of them.
func (m *LoopMailbox) PostUserMessages(msgs []any) {
	m.mu.Lock()
	m.user.items = append(m.user.items, msgs...)
	m.mu.Unlock()
	m.userN.Add(int32(len(msgs)))
	m.schedule()
}

// PostSystemMessage implements actor.Mailbox.
func (m *LoopMailbox) PostSystemMessage(message any) {
	m.mu.Lock()
	m.system.push(message)
	m.mu.Unlock()
	m.sysN.Add(1)
	m.schedule()
}

// RegisterHandlers implements actor.Mailbox.
func (m *LoopMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker = invoker
	m.dispatcher = dispatcher
}

// Start implements actor.Mailbox.
func (m *LoopMailbox) Start() {}

// UserMessageCount implements actor.Mailbox.
func (m *LoopMailbox) UserMessageCount() int { return int(m.userN.Load()) }

func (m *LoopMailbox) schedule() {
	if m.status.CompareAndSwap(mailboxIdle, mailboxRunning) {
		m.dispatcher.Schedule(m.run)
	}
}

func (m *LoopMailbox) processMessages() {
	for {
		if m.hooks != nil {
			m.hooks.BeginRun()
			m.drain()
			m.hooks.EndRun()
		} else {
			m.drain()
		}
		// Messages drain took and did not run (a panic cut it short): read
		// before the mailbox goes idle, when another goroutine may start
		// running it.
		left := m.taken.len()
		m.status.Store(mailboxIdle)
		// A message posted after drain found the queues empty, and before
		// the store above, did not schedule: look again.
		if m.sysN.Load() == 0 && (m.suspended.Load() || m.userN.Load() == 0 && left == 0) {
			return
		}
		if !m.status.CompareAndSwap(mailboxIdle, mailboxRunning) {
			return // its poster scheduled the mailbox
		}
	}
}

func (m *LoopMailbox) drain() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	throughput := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if i >= throughput {
			i = 0
			runtime.Gosched()
		}
		var sys any
		ok := false
		if m.sysN.Load() > 0 { // spare the lock on the usual path
			m.mu.Lock()
			sys, ok = m.system.pop()
			m.mu.Unlock()
		}
		if ok {
			msg = sys
			m.sysN.Add(-1)
			switch sys.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			default:
				m.invoker.InvokeSystemMessage(sys)
			}
			continue
		}
		if m.suspended.Load() {
			return
		}
		if m.taken.len() == 0 {
			m.mu.Lock()
			n := m.user.moveTo(&m.taken)
			m.mu.Unlock()
			if n == 0 {
				return
			}
			m.userN.Add(int32(-n))
		}
		user, _ := m.taken.pop()
		msg = user
		m.invoker.InvokeUserMessage(user)
	}
}
