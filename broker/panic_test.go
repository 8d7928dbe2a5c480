package broker_test

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
)

// TestPanicStorm: a handler that panics on every frame of one stream, for
// seconds (minutes with HYDROGEN_LONG=1), in every application mode. The
// broker stays up, another stream is echoed throughout, every panic is a
// restart, and heap and goroutines stay flat: nothing accumulates per
// restart (protoactor's own restart statistics would, which is why the
// broker's supervisor keeps none).
func TestPanicStorm(t *testing.T) {
	d := 3 * time.Second
	if os.Getenv("HYDROGEN_LONG") == "1" {
		d = 2 * time.Minute
	}
	for _, mode := range appModes {
		t.Run(mode.name, func(t *testing.T) {
			b := start(t, broker.Config{}, actor.PropsFromFunc(func(ctx actor.Context) {
				if m, ok := ctx.Message().(*broker.Received); ok {
					if m.Payload[0] == 'x' {
						panic("bad frame")
					}
					_ = m.Stream.Send(m.Payload)
				}
			}), mode.perStream, mode.opts...)
			bad, good := dial(t, b), dial(t, b)

			var sent atomic.Int64
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				frame := []byte("x-panics")
				for {
					select {
					case <-stop:
						done <- nil
						return
					default:
					}
					if err := bad.trySend(frame, frame, frame, frame, frame, frame, frame, frame); err != nil {
						done <- err
						return
					}
					sent.Add(8)
					time.Sleep(time.Millisecond) // pacing the storm, not waiting for anything
				}
			}()
			stopped := false
			stopStorm := func() error {
				if stopped {
					return nil
				}
				stopped = true
				close(stop)
				return <-done
			}
			defer stopStorm() // the sender is waited for on every path

			// level is the live heap after a collection, and goroutines.
			level := func() (heap uint64, goroutines int) {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return ms.HeapAlloc, runtime.NumGoroutine()
			}
			var midHeap, midPanics uint64
			var midG int
			deadline := time.Now().Add(d)
			rounds := 0
			for time.Now().Before(deadline) {
				good.send([]byte("ok"))
				if got := string(good.next(5 * time.Second)); got != "ok" {
					t.Fatalf("the other stream got %q during the storm", got)
				}
				rounds++
				if midHeap == 0 && time.Until(deadline) < d/2 {
					midHeap, midG = level()
					midPanics = b.Stats().Actors.HandlerPanics
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := stopStorm(); err != nil {
				t.Fatalf("the panicking stream's sender: %v", err)
			}
			waitFor(t, "every panic handled and its actor restarted", 10*time.Second, func() bool {
				// The restart follows the panic's count: wait for both.
				st := b.Stats().Actors
				return st.HandlerPanics == uint64(sent.Load()) && st.HandlerRestarts == st.HandlerPanics
			})
			st := b.Stats().Actors
			if st.HandlerRestarts != st.HandlerPanics {
				t.Errorf("%d panics but %d restarts", st.HandlerPanics, st.HandlerRestarts)
			}
			endHeap, endG := level()
			t.Logf("%d panics in %v, %d round trips on the other stream; live heap %.1f → %.1f MiB (%+d bytes), goroutines %d → %d",
				st.HandlerPanics, d, rounds, float64(midHeap)/(1<<20), float64(endHeap)/(1<<20), int64(endHeap)-int64(midHeap), midG, endG)
			// Nothing is kept per restart, so the live heap after a GC does
			// not grow: measured, it ends some 130–150 KB below the middle
			// (what was in flight then). The slack is the GC's noise: a
			// time.Time kept per restart (what protoactor's restart
			// statistics keep, 24 bytes) over the second half's ~9,000
			// restarts ends 130–270 KB above the middle and fails it.
			const heapSlack = 64 << 10
			if endHeap > midHeap+heapSlack {
				t.Errorf("live heap grew from %d to %d bytes in the second half of the storm (%d panics then): more than %d",
					midHeap, endHeap, st.HandlerPanics-midPanics, heapSlack)
			}
			if endG > midG+5 {
				t.Errorf("goroutines grew from %d to %d in the second half of the storm", midG, endG)
			}
			// The panicking stream is still open and served once it stops.
			bad.send([]byte("fine"))
			if got := string(bad.next(5 * time.Second)); got != "fine" {
				t.Fatalf("the panicking stream got %q afterwards", got)
			}
		})
	}
}
