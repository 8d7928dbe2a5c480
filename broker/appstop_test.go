package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// TestPerStreamActorStoppingClosesItsStream: a per-stream application
// actor that stops itself leaves its stream with no one to handle its
// frames, so the broker closes the stream rather than keep reading frames
// nobody will answer; the other streams carry on.
func TestPerStreamActorStoppingClosesItsStream(t *testing.T) {
	for _, mode := range appModes {
		if !mode.perStream {
			continue
		}
		t.Run(mode.name, func(t *testing.T) {
			b := start(t, broker.Config{}, actor.PropsFromFunc(func(ctx actor.Context) {
				if m, ok := ctx.Message().(*broker.Received); ok {
					if string(m.Payload) == "stop" {
						ctx.Stop(ctx.Self())
						return
					}
					m.Stream.Send(m.Payload)
				}
			}), true, mode.opts...)
			p, other := dial(t, b), dial(t, b)
			p.send([]byte("before"))
			if got := string(p.next(5 * time.Second)); got != "before" {
				t.Fatalf("got %q", got)
			}
			// Frames after the stop, in the same read and in later ones.
			p.send([]byte("stop"), []byte("lost"))
			// A later read, unless the stream has closed already: then the
			// write may fail, which is what the test waits for anyway.
			later, _ := wire.AppendFrame(nil, []byte("lost too"))
			p.c.Write(later)
			p.expectEOF(5 * time.Second)
			other.send([]byte("other"))
			if got := string(other.next(5 * time.Second)); got != "other" {
				t.Fatalf("other stream got %q", got)
			}
			waitFor(t, "the stopped stream to leave the list", 5*time.Second, func() bool {
				return b.Streams().Len() == 1
			})
		})
	}
}

// TestSharedActorStoppingEndsEveryStream: when the shared application
// actor stops itself no stream has a handler left, so every stream is
// closed and new ones are refused, and nothing is left pending: Shutdown's
// drain ends at once instead of waiting out its deadline.
func TestSharedActorStoppingEndsEveryStream(t *testing.T) {
	b := start(t, broker.Config{MaxInbound: 4}, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*broker.Received); ok {
			if string(m.Payload) == "stop" {
				ctx.Stop(ctx.Self())
				return
			}
			m.Stream.Send(m.Payload)
		}
	}), false)
	p, other := dial(t, b), dial(t, b)
	p.send([]byte("before"))
	if got := string(p.next(5 * time.Second)); got != "before" {
		t.Fatalf("got %q", got)
	}
	// One write, so that the close cannot race the sending: "stop" and
	// frames well past the inbound bound behind it.
	burst := [][]byte{[]byte("stop")}
	for range 100 {
		burst = append(burst, []byte("into the void"))
	}
	p.send(burst...)
	p.expectEOF(5 * time.Second)
	other.expectEOF(5 * time.Second)
	dial(t, b).expectEOF(5 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (after %v)", err, time.Since(t0))
	}
}
