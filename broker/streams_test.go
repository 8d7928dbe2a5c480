package broker

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// serve runs an actorRuntime behind a real netpoll server on loopback,
// its application on the worker pool.
func serve(t testing.TB, app *actor.Props) (*actorRuntime, *netpoll.Server) {
	t.Helper()
	return serveMode(t, app, true, false)
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
// delivery, the alternative the StreamList avoids. Both are timed until
// every delivery has arrived and been checked: each stream's client must
// read every broadcast, whole and in order, and each actor must receive
// every message; a loss, a corrupt frame or a reordering fails the
// benchmark.
func BenchmarkBroadcastDelivery(b *testing.B) {
	const streams = 100
	b.Run("streamlist", func(b *testing.B) {
		rt, srv := serve(b, nothing())
		rounds := (b.N + streams - 1) / streams
		// One frame per broadcast, numbered, encoded before the timer.
		frames := make([][]byte, rounds)
		for i := range frames {
			p := make([]byte, 64)
			binary.BigEndian.PutUint64(p, uint64(i))
			for j := 8; j < len(p); j++ {
				p[j] = byte(i + j)
			}
			frames[i], _ = wire.Encode(p)
		}
		got := make([]atomic.Int64, streams)
		errs := make(chan error, streams)
		var readers sync.WaitGroup
		for k := range streams {
			c, err := net.Dial("tcp", srv.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			readers.Go(func() {
				// Checked in place, without copying: the client's work
				// is timed too, and should cost what a client's would.
				dec := wire.NewDecoder(wire.MaxPayload)
				buf := make([]byte, 64<<10)
				c.SetReadDeadline(time.Now().Add(time.Minute))
				for n := 0; n < rounds; {
					m, err := c.Read(buf)
					if err != nil {
						errs <- fmt.Errorf("stream %d: after %d of %d frames: %w", k, n, rounds, err)
						return
					}
					dec.Feed(buf[:m])
					for {
						p, ok, err := dec.Next()
						if err != nil {
							errs <- fmt.Errorf("stream %d: %w", k, err)
							return
						}
						if !ok {
							break
						}
						if len(p) != 64 || binary.BigEndian.Uint64(p) != uint64(n) || p[8] != byte(n+8) || p[63] != byte(n+63) {
							errs <- fmt.Errorf("stream %d: frame %d is %x", k, n, p)
							return
						}
						n++
					}
					got[k].Store(int64(n))
				}
			})
		}
		waitLen(b, rt.Streams(), streams)
		// slowest is the fewest frames a client has read. The broadcaster
		// stays within a window of it, so that no queue nears its bound
		// (a stream closed as a slow consumer would lose frames).
		slowest := func() int64 {
			m := int64(rounds)
			for k := range got {
				m = min(m, got[k].Load())
			}
			return m
		}
		const window = 1024
		b.ReportAllocs()
		b.ResetTimer()
		for i, f := range frames {
			if i%64 == 0 {
				for int64(i)-slowest() > window {
					if len(errs) > 0 {
						b.Fatal(<-errs)
					}
					runtime.Gosched()
				}
			}
			if n := rt.Streams().sendFrameExcept(nil, f); n != streams {
				b.Fatalf("broadcast %d queued for %d streams, want %d", i, n, streams)
			}
		}
		readers.Wait()
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	})
	b.Run("actor-message", func(b *testing.B) {
		sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(slog.NewTextHandler(io.Discard, nil))
		}))
		defer sys.Shutdown()
		rounds := (b.N + streams - 1) / streams
		var got, bad atomic.Int64
		pids := make([]*actor.PID, streams)
		for i := range pids {
			next := 0 // this actor's own state: the round it expects
			pids[i] = sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
				if m, ok := ctx.Message().(int); ok {
					if m != next {
						bad.Add(1)
					}
					next = m + 1
					got.Add(1)
				}
			}))
		}
		msgs := make([]any, rounds) // boxed before the timer
		for i := range msgs {
			msgs[i] = i
		}
		b.ReportAllocs()
		b.ResetTimer()
		for _, m := range msgs {
			for _, p := range pids {
				sys.Root.Send(p, m)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for got.Load() < int64(rounds*streams) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d messages received", got.Load(), rounds*streams)
			}
			runtime.Gosched()
		}
		b.StopTimer()
		if bad.Load() != 0 {
			b.Fatalf("%d messages out of order", bad.Load())
		}
	})
}

// TestStreamShardGivesMemoryBack: after a wave of disconnects a shard's
// slice of streams shrinks to what is left, and the list stays exact.
func TestStreamShardGivesMemoryBack(t *testing.T) {
	l := newStreamList(1)
	streams := make([]*Stream, 3000)
	for i := range streams {
		streams[i] = &Stream{id: uint64(i + 1)}
		l.set.add(streams[i], 0)
	}
	for _, s := range streams[:2900] {
		l.set.remove(s)
	}
	sh := &l.set.shards[0]
	if len(sh.streams) != 100 || l.Len() != 100 {
		t.Fatalf("%d streams in the shard, Len %d; want 100", len(sh.streams), l.Len())
	}
	if c := cap(sh.streams); c > 1024 {
		t.Fatalf("the shard keeps room for %d streams with 100 left", c)
	}
	for i, s := range sh.streams {
		if s.slot != i || !contains(streams[2900:], s) {
			t.Fatalf("stream at %d has slot %d (or was removed)", i, s.slot)
		}
	}
}

func contains(ss []*Stream, s *Stream) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
