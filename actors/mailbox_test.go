package actors

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// loopProps runs receive as the on-loop actors run: on the sender's
// goroutine, with a LoopMailbox.
func loopProps(receive actor.ReceiveFunc, opts ...actor.PropsOption) *actor.Props {
	opts = append(opts, actor.WithDispatcher(actor.NewSynchronizedDispatcher(300)), actor.WithMailbox(NewLoopMailbox))
	return actor.PropsFromFunc(receive, opts...)
}

func TestLoopMailboxOrderFromManySenders(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	const senders, each = 8, 5000
	var mu sync.Mutex // the actor's state is its own; the mutex only lets the test read it
	next := make([]int, senders)
	var bad atomic.Int32
	var total atomic.Int32
	pid := sys.Root.Spawn(loopProps(func(ctx actor.Context) {
		if m, ok := ctx.Message().([2]int); ok {
			mu.Lock()
			if next[m[0]] != m[1] {
				bad.Add(1)
			}
			next[m[0]] = m[1] + 1
			mu.Unlock()
			total.Add(1)
		}
	}))
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				sys.Root.Send(pid, [2]int{s, i})
			}
		})
	}
	wg.Wait()
	// Every message was run by some sender before its Send returned, or
	// by the sender that held the mailbox at the time.
	deadline := time.Now().Add(5 * time.Second)
	for total.Load() != senders*each && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := total.Load(); got != senders*each {
		t.Fatalf("handled %d messages, want %d", got, senders*each)
	}
	if bad.Load() != 0 {
		t.Fatalf("%d messages out of their sender's order", bad.Load())
	}
}

func TestLoopMailboxRunsOnTheSender(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	var handled atomic.Int32
	pid := sys.Root.Spawn(loopProps(func(ctx actor.Context) {
		if _, ok := ctx.Message().(int); ok {
			handled.Add(1)
		}
	}))
	for i := range 100 {
		sys.Root.Send(pid, i)
		if got := handled.Load(); got != int32(i+1) {
			t.Fatalf("after Send %d returned, %d handled: the mailbox did not run on the sender", i, got)
		}
	}
	msg := any(1)
	if allocs := testing.AllocsPerRun(1000, func() { sys.Root.Send(pid, msg) }); allocs != 0 {
		t.Fatalf("%v allocations per message, want 0", allocs)
	}
}

func TestLoopMailboxPanicRestartsAndGoesOn(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	var started, handled atomic.Int32
	pid := sys.Root.Spawn(loopProps(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			started.Add(1)
		case string:
			if m == "boom" {
				panic(m)
			}
			handled.Add(1)
		}
	}, actor.WithSupervisor(actor.NewOneForOneStrategy(1000, time.Second, actor.DefaultDecider))))
	for range 10 {
		sys.Root.Send(pid, "boom")
		sys.Root.Send(pid, "ok")
	}
	deadline := time.Now().Add(5 * time.Second)
	for handled.Load() != 10 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if handled.Load() != 10 {
		t.Fatalf("handled %d messages after panics, want 10", handled.Load())
	}
	if started.Load() != 11 { // the first start and ten restarts
		t.Fatalf("started %d times, want 11", started.Load())
	}
}

type testBatch []any

func (b testBatch) GetMessages() []any { return b }

func TestLoopMailboxUnpacksBatches(t *testing.T) {
	sys := actor.NewActorSystem()
	defer sys.Shutdown()
	var got []int
	pid := sys.Root.Spawn(loopProps(func(ctx actor.Context) {
		if n, ok := ctx.Message().(int); ok {
			got = append(got, n)
		}
	}))
	sys.Root.Send(pid, testBatch{1, 2, 3})
	sys.Root.Send(pid, 4)
	if want := []int{1, 2, 3, 4}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v: a batch's messages, then the next", got, want)
	}
}
