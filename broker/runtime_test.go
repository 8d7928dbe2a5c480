package broker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// runModes are the ways actorRuntime.Start runs an application: one shared
// actor, an actor per stream on the worker pool, one per stream on the
// event loop.
var runModes = []struct {
	name            string
	perStream, loop bool
}{
	{"shared", false, false},
	{"perstream", true, false},
	{"onloop", true, true},
}

// serveMode is serve for any of runModes.
func serveMode(t testing.TB, app *actor.Props, perStream, onLoop bool) (*actorRuntime, *netpoll.Server) {
	t.Helper()
	return serveSetUp(t, app, perStream, onLoop, nil)
}

// serveSetUp is serveMode with setup run on the runtime before it
// serves: what a broker sets before Serve (a clustered one's hooks).
func serveSetUp(t testing.TB, app *actor.Props, perStream, onLoop bool, setup func(*actorRuntime)) (*actorRuntime, *netpoll.Server) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := newRuntime(runtimeConfig{Shards: 2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if perStream {
		err = rt.Start(nil, app, onLoop)
	} else {
		err = rt.Start(app, nil, false)
	}
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(rt)
	}
	srv, err := netpoll.Listen(netpoll.Config{Addr: "127.0.0.1:0", Loops: 2, Logger: log}, rt)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		rt.Shutdown()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return rt, srv
}

// frameReader reads whole frames from a raw connection.
type frameReader struct {
	c   net.Conn
	dec *wire.Decoder
	buf []byte
}

func newFrameReader(c net.Conn) *frameReader {
	return &frameReader{c: c, dec: wire.NewDecoder(wire.MaxPayload), buf: make([]byte, 64<<10)}
}

// next returns the next frame's payload, or an error after timeout.
func (r *frameReader) next(timeout time.Duration) ([]byte, error) {
	r.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		if p, ok, err := r.dec.Next(); err != nil {
			return nil, err
		} else if ok {
			return bytes.Clone(p), nil
		}
		n, err := r.c.Read(r.buf)
		if n > 0 {
			r.dec.Feed(r.buf[:n])
			continue
		}
		if err != nil {
			return nil, err
		}
	}
}

func dialRaw(t testing.TB, srv *netpoll.Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestFramesOfOneReadInOrder: many frames written at once, so that most
// reads carry many of them, reach the application in the order sent, in
// every mode, with telemetry requests among them (the connection actor
// hands the frames before one over first). The application records what
// it gets and echoes it, so the order is checked at both ends.
func TestFramesOfOneReadInOrder(t *testing.T) {
	const frames, perWrite = 4000, 200
	for _, mode := range runModes {
		t.Run(mode.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []uint32
			rt, srv := serveMode(t, actor.PropsFromFunc(func(ctx actor.Context) {
				if m, ok := ctx.Message().(*Received); ok {
					mu.Lock()
					got = append(got, binary.BigEndian.Uint32(m.Payload))
					mu.Unlock()
					_ = m.Stream.Send(m.Payload)
				}
			}), mode.perStream, mode.loop)
			c := dialRaw(t, srv)
			var out []byte
			for seq := range frames {
				var p [8]byte
				binary.BigEndian.PutUint32(p[:], uint32(seq))
				out, _ = wire.AppendFrame(out, p[:])
				if seq%perWrite == perWrite/2 {
					// A bad span: answered at once by the connection
					// actor, between the frames around it.
					out, _ = wire.AppendFrame(out, wire.AppendTelemetryRequest(nil, -1))
				}
				if (seq+1)%perWrite == 0 {
					if _, err := c.Write(out); err != nil {
						t.Fatal(err)
					}
					out = out[:0]
				}
			}
			r := newFrameReader(c)
			for want := 0; want < frames; {
				p, err := r.next(10 * time.Second)
				if err != nil {
					t.Fatalf("after %d echoes: %v", want, err)
				}
				if len(p) > 0 && p[0] == '{' {
					continue // a telemetry error reply
				}
				if seq := binary.BigEndian.Uint32(p); seq != uint32(want) {
					t.Fatalf("echo %d is frame %d", want, seq)
				}
				want++
			}
			// Every frame handed over is marked handled, telemetry
			// requests included: none is left in the actors' hands (or
			// reading would pause for good once MaxInbound were).
			var st *Stream
			rt.Streams().Each(func(s *Stream) bool { st = s; return false })
			deadline := time.Now().Add(5 * time.Second)
			for st.pending.Load() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d frames still counted in the actors' hands", st.pending.Load())
				}
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != frames {
				t.Fatalf("the application got %d frames, want %d", len(got), frames)
			}
			for i, seq := range got {
				if seq != uint32(i) {
					t.Fatalf("the application's frame %d is frame %d", i, seq)
				}
			}
		})
	}
}

// TestBroadcastExceptSkipsOnlyTheExcepted: a stream whose frame is
// broadcast with BroadcastExcept(itself) does not get it, and every other
// stream gets it exactly once; Broadcast reaches every stream, the sender
// too. The sender's own check needs no wait: the application replies to
// it after broadcasting, and what one actor sends a stream is written in
// order, so a broadcast that reached the sender would come before the
// reply.
func TestBroadcastExceptSkipsOnlyTheExcepted(t *testing.T) {
	const streams = 6
	for _, mode := range runModes {
		t.Run(mode.name, func(t *testing.T) {
			counts := make(chan int, 4)
			rt, srv := serveMode(t, actor.PropsFromFunc(func(ctx actor.Context) {
				m, ok := ctx.Message().(*Received)
				if !ok {
					return
				}
				var n int
				var err error
				switch string(m.Payload[:4]) {
				case "excp":
					n, err = m.Streams.BroadcastExcept(m.Stream, m.Payload)
				case "all:":
					n, err = m.Streams.Broadcast(m.Payload)
				}
				if err != nil {
					n = -1
				}
				counts <- n
				_ = m.Stream.Send([]byte("done"))
			}), mode.perStream, mode.loop)
			conns := make([]net.Conn, streams)
			readers := make([]*frameReader, streams)
			for i := range conns {
				conns[i] = dialRaw(t, srv)
				readers[i] = newFrameReader(conns[i])
			}
			waitLen(t, rt.Streams(), streams)
			send := func(i int, payload string) {
				t.Helper()
				f, _ := wire.Encode([]byte(payload))
				if _, err := conns[i].Write(f); err != nil {
					t.Fatal(err)
				}
			}
			expect := func(i int, want string) {
				t.Helper()
				p, err := readers[i].next(5 * time.Second)
				if err != nil {
					t.Fatalf("stream %d, waiting for %q: %v", i, want, err)
				}
				if string(p) != want {
					t.Fatalf("stream %d got %q, want %q", i, p, want)
				}
			}
			for from := range streams {
				msg := fmt.Sprintf("excp from %d", from)
				send(from, msg)
				if n := <-counts; n != streams-1 {
					t.Fatalf("BroadcastExcept from %d reached %d streams, want %d", from, n, streams-1)
				}
				expect(from, "done") // and not its own broadcast first
				for i := range streams {
					if i != from {
						expect(i, msg)
					}
				}
			}
			send(0, "all: to everyone")
			if n := <-counts; n != streams {
				t.Fatalf("Broadcast reached %d streams, want %d", n, streams)
			}
			expect(0, "all: to everyone")
			expect(0, "done")
			for i := 1; i < streams; i++ {
				expect(i, "all: to everyone")
			}
			// Nothing else arrived: one more broadcast from the last stream
			// is the next frame each of the others reads.
			send(streams-1, "excp last")
			<-counts
			expect(streams-1, "done")
			for i := range streams - 1 {
				expect(i, "excp last")
			}
		})
	}
}
