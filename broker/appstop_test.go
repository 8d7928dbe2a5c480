package broker_test

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
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
			p.send([]byte("lost too"))
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
