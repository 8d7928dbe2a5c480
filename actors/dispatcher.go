package actors

import (
	"sync"
	"sync/atomic"
	"time"
)

// Dispatcher runs actor mailboxes on a pool of long-lived worker
// goroutines fed from one run queue.
//
// protoactor's default dispatcher starts a goroutine every time an idle
// mailbox gets a message. Each new goroutine starts with a small stack
// that the actor's call depth grows and copies at once (14% of the
// broker's CPU on the echo path when profiled), and every mailbox costs a
// goroutine switch. Here up to GOMAXPROCS workers stay awake while there
// is work and take mailboxes from the queue one after another, so a busy
// broker pays for neither; a worker parks only when the queue is empty.
//
// A handler that blocks holds its worker. So that it cannot hold up every
// other mailbox, a watchdog checks the queue while it is not empty, and
// when no mailbox has finished for stallAfter it starts one more worker,
// up to maxWorkers in all.
type Dispatcher struct {
	throughput int
	awakeMax   int32 // workers kept awake while there is work: GOMAXPROCS
	maxWorkers int32

	mu      sync.Mutex
	cond    sync.Cond
	queue   []func()
	head    int
	awake   int32 // workers not parked
	workers int32 // workers in all
	closed  bool

	pending  atomic.Int32 // len(queue) - head, for the watchdog
	progress atomic.Int64 // unix nanoseconds when a mailbox last finished
	watching atomic.Bool
	kick     chan struct{}
	quit     chan struct{}
	wg       sync.WaitGroup
}

// stallAfter is how long the queue may wait without any mailbox finishing
// before the watchdog adds a worker: long against a mailbox run (they take
// microseconds), short against a person waiting.
const stallAfter = 10 * time.Millisecond

// NewDispatcher starts a Dispatcher that keeps up to awake workers
// running while there is work, adds workers up to maxWorkers when the
// queue stalls, and runs up to throughput messages of a mailbox before it
// yields. Stop it when the actor system is done with it.
func NewDispatcher(awake, maxWorkers, throughput int) *Dispatcher {
	d := &Dispatcher{
		throughput: throughput,
		awakeMax:   int32(max(awake, 1)),
		maxWorkers: int32(max(maxWorkers, awake, 1)),
		kick:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
	}
	d.cond.L = &d.mu
	d.wg.Add(1)
	go d.watchdog()
	return d
}

// Throughput implements actor.Dispatcher.
func (d *Dispatcher) Throughput() int { return d.throughput }

// Schedule implements actor.Dispatcher: fn runs on a worker.
func (d *Dispatcher) Schedule(fn func()) {
	d.mu.Lock()
	d.queue = append(d.queue, fn)
	d.pending.Add(1)
	switch {
	case d.awake >= d.awakeMax:
		// Enough workers are awake; one of them will take it.
	case d.awake < d.workers:
		d.awake++
		d.cond.Signal()
	case d.workers < d.maxWorkers:
		d.spawnLocked()
	}
	d.mu.Unlock()
	if !d.watching.Load() && d.watching.CompareAndSwap(false, true) {
		d.kick <- struct{}{}
	}
}

// spawnLocked starts a worker that begins awake.
func (d *Dispatcher) spawnLocked() {
	d.workers++
	d.awake++
	d.wg.Add(1)
	go d.worker()
}

func (d *Dispatcher) worker() {
	defer d.wg.Done()
	d.mu.Lock()
	for {
		for d.head == len(d.queue) {
			if d.closed {
				d.awake--
				d.workers--
				d.mu.Unlock()
				return
			}
			// Drop the drained queue's memory now and then.
			if cap(d.queue) > 4096 {
				d.queue = nil
			} else {
				clear(d.queue)
				d.queue = d.queue[:0]
			}
			d.head = 0
			d.awake--
			d.cond.Wait()
		}
		fn := d.queue[d.head]
		d.queue[d.head] = nil
		d.head++
		d.pending.Add(-1)
		d.mu.Unlock()
		fn()
		d.progress.Store(time.Now().UnixNano())
		d.mu.Lock()
	}
}

// watchdog adds a worker when the queue stalls behind blocked handlers.
// It sleeps while the queue is empty, so an idle broker costs nothing.
func (d *Dispatcher) watchdog() {
	defer d.wg.Done()
	t := time.NewTimer(stallAfter)
	defer t.Stop()
	for {
		select {
		case <-d.kick:
		case <-d.quit:
			return
		}
		for d.pending.Load() > 0 {
			before := d.progress.Load()
			t.Reset(stallAfter)
			select {
			case <-t.C:
			case <-d.quit:
				return
			}
			if d.pending.Load() > 0 && d.progress.Load() == before {
				d.mu.Lock()
				if d.awake < d.workers {
					d.awake++
					d.cond.Signal()
				} else if d.workers < d.maxWorkers {
					d.spawnLocked()
				}
				d.mu.Unlock()
			}
		}
		d.watching.Store(false)
		// A Schedule between the last check and the store above found
		// watching still set and did not kick; look once more.
		if d.pending.Load() > 0 && d.watching.CompareAndSwap(false, true) {
			select {
			case d.kick <- struct{}{}:
			default:
			}
		}
	}
}

// Stop ends the workers once the queue is empty, and the watchdog, and
// waits for them.
func (d *Dispatcher) Stop() {
	d.mu.Lock()
	d.closed = true
	d.cond.Broadcast()
	d.mu.Unlock()
	close(d.quit)
	d.wg.Wait()
}
