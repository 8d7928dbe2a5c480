package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDispatcherBlockedMailboxDoesNotStarveOthers(t *testing.T) {
	d := NewDispatcher(2, 16, 300)
	block := make(chan struct{})
	var started sync.WaitGroup
	// Block more mailboxes than workers are kept awake.
	for range 4 {
		started.Add(1)
		d.Schedule(func() { started.Done(); <-block })
	}
	started.Wait()
	ran := make(chan struct{})
	d.Schedule(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a mailbox waited behind blocked ones")
	}
	close(block)
	d.Stop()
}

func TestDispatcherRunsEverything(t *testing.T) {
	d := NewDispatcher(2, 8, 300)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10000 {
				d.Schedule(func() { n.Add(1) })
			}
		})
	}
	wg.Wait()
	d.Stop() // runs what is queued before the workers end
	if n.Load() != 40000 {
		t.Fatalf("ran %d of 40000", n.Load())
	}
	if w := d.workers; w != 0 {
		t.Fatalf("%d workers left after stop", w)
	}
}

func TestDispatcherKeepsFewWorkers(t *testing.T) {
	d := NewDispatcher(2, 64, 300)
	defer d.Stop()
	for range 1000 {
		done := make(chan struct{})
		d.Schedule(func() { close(done) })
		<-done
	}
	d.mu.Lock()
	w := d.workers
	d.mu.Unlock()
	if w < 1 || w > 2 {
		t.Fatalf("%d workers after sequential schedules, want 1 or 2", w)
	}
}

func TestRateLimit(t *testing.T) {
	l := RateLimit{Every: time.Hour, Burst: 3}
	for i := range 3 {
		if ok, _ := l.Allow(); !ok {
			t.Fatalf("event %d refused within the burst", i)
		}
	}
	for range 5 {
		if ok, _ := l.Allow(); ok {
			t.Fatal("event allowed past the burst")
		}
	}
	l.start = time.Now().Add(-2 * time.Hour)
	ok, dropped := l.Allow()
	if !ok || dropped != 5 {
		t.Fatalf("after the interval: allowed %v, dropped %d; want true, 5", ok, dropped)
	}
}
