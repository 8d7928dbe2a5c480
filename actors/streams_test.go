package actors

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// serve runs a Runtime behind a real netpoll server on loopback.
func serve(t testing.TB, app *actor.Props) (*Runtime, *netpoll.Server) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := New(Config{Shards: 2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(nil, app, false); err != nil {
		t.Fatal(err)
	}
	srv, err := netpoll.Listen(netpoll.Config{Addr: "127.0.0.1:0", Loops: 2, Logger: log}, rt)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		rt.Shutdown()
	})
	return rt, srv
}

func nothing() *actor.Props { return actor.PropsFromFunc(func(actor.Context) {}) }

func waitLen(t testing.TB, l *StreamList, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("StreamList has %d streams, want %d", l.Len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStreamListTracksOpenStreams(t *testing.T) {
	rt, srv := serve(t, nothing())
	var conns []net.Conn
	for range 200 {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitLen(t, rt.Streams(), 200)
	// Close every other one: removal swaps streams within a shard, and
	// the list must stay exact.
	for i := 0; i < len(conns); i += 2 {
		conns[i].Close()
	}
	waitLen(t, rt.Streams(), 100)
	seen := map[uint64]bool{}
	rt.Streams().Each(func(s *Stream) bool {
		if seen[s.ID()] {
			t.Errorf("stream %d listed twice", s.ID())
		}
		seen[s.ID()] = true
		return true
	})
	if len(seen) != 100 {
		t.Fatalf("Each visited %d streams, want 100", len(seen))
	}
	n, err := rt.Streams().Broadcast([]byte("hi"))
	if err != nil || n != 100 {
		t.Fatalf("Broadcast reached %d (%v), want 100", n, err)
	}
	for i := 1; i < len(conns); i += 2 {
		conns[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 6)
		if _, err := io.ReadFull(conns[i], buf); err != nil || string(buf[3:5]) != "hi" {
			t.Fatalf("stream %d read %q, %v", i, buf, err)
		}
		conns[i].Close()
	}
	waitLen(t, rt.Streams(), 0)
	if _, err := rt.Streams().Broadcast(make([]byte, wire.MaxPayload+1)); err == nil {
		t.Fatal("Broadcast of an oversized payload succeeded")
	}
}

// BenchmarkBroadcastDelivery compares the cost of one delivery through the
// StreamList (a shared frame appended to a stream's queue, and written to
// the socket by its loop on the other core) with one actor message per
// delivery, the alternative the StreamList avoids, which has not written
// anything yet when it is done.
func BenchmarkBroadcastDelivery(b *testing.B) {
	const streams = 100
	b.Run("streamlist", func(b *testing.B) {
		rt, srv := serve(b, nothing())
		for range streams {
			c, err := net.Dial("tcp", srv.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			go io.Copy(io.Discard, c)
		}
		waitLen(b, rt.Streams(), streams)
		frame, _ := wire.Encode(make([]byte, 64))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += streams {
			rt.Streams().SendFrameExcept(nil, frame)
		}
	})
	b.Run("actor-message", func(b *testing.B) {
		sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(slog.NewTextHandler(io.Discard, nil))
		}))
		var got atomic.Int64
		pids := make([]*actor.PID, streams)
		for i := range pids {
			pids[i] = sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
				if _, ok := ctx.Message().([]byte); ok {
					got.Add(1)
				}
			}))
		}
		msg := make([]byte, 64)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += streams {
			for _, p := range pids {
				sys.Root.Send(p, msg)
			}
		}
		for got.Load() < int64((b.N+streams-1)/streams*streams) {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		sys.Shutdown()
	})
}
