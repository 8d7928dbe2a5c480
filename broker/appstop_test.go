package broker_test

import (
	"context"
	"errors"
	"log/slog"
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
// closed, and the broker shuts down at once — nothing is left pending for
// its drain to wait on — with Serve returning ErrAppStopped, so that
// whatever supervises the process sees it end.
func TestSharedActorStoppingEndsEveryStream(t *testing.T) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", MaxInbound: 4, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	b.Handle(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*broker.Received); ok {
			if string(m.Payload) == "stop" {
				ctx.Stop(ctx.Self())
				return
			}
			m.Stream.Send(m.Payload)
		}
	}))
	served := make(chan error, 1)
	go func() { served <- b.Serve(context.Background()) }()
	t.Cleanup(func() { b.Shutdown(context.Background()) })

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
	select {
	case err := <-served:
		if !errors.Is(err, broker.ErrAppStopped) {
			t.Fatalf("Serve returned %v, want ErrAppStopped", err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Serve returned %v: the drain waited out its deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5 s after the application stopped")
	}
}

// TestOnLoopRepliesInReadOrder: on the event loop, an application's
// replies and the broker's own immediate answer to a bad telemetry span
// leave in the order their frames came, even within one read.
func TestOnLoopRepliesInReadOrder(t *testing.T) {
	b := start(t, broker.Config{}, broker.Echo(), true, broker.OnEventLoop())
	p := dial(t, b)
	p.send([]byte("first"), telemetryRequest(-1), []byte("last"))
	if got := string(p.next(5 * time.Second)); got != "first" {
		t.Fatalf("first reply %q, want the echo of the frame before the request", got)
	}
	if m := decodeJSON(t, p.next(5*time.Second)); m["error"] == nil {
		t.Fatalf("second reply %v, want the bad span's error", m)
	}
	if got := string(p.next(5 * time.Second)); got != "last" {
		t.Fatalf("third reply %q", got)
	}
}
