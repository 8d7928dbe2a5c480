package broker

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// serveOnLoop runs a per-stream application on the event loops, behind a
// real netpoll server on loopback: the mode whose broadcasts are batched.
func serveOnLoop(t testing.TB, app *actor.Props) (*actorRuntime, *netpoll.Server) {
	t.Helper()
	return serveMode(t, app, true, true)
}

// dialN connects n clients and waits until the broker lists them all.
func dialN(t testing.TB, rt *actorRuntime, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	waitLen(t, rt.Streams(), n)
	return conns
}

// frames encodes payloads back to back, to be written in one write so
// that the broker reads them together and handles them in one run.
func frames(payloads ...string) []byte {
	var b []byte
	for _, p := range payloads {
		b, _ = wire.AppendFrame(b, []byte(p))
	}
	return b
}

// readPayloads reads n frames from c and returns their payloads.
func readPayloads(t testing.TB, c net.Conn, n int) []string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var dec wire.Decoder
	dec.Init(wire.MaxPayload)
	var got []string
	buf := make([]byte, 64<<10)
	for len(got) < n {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d frames: %v", len(got), n, err)
		}
		dec.Feed(buf[:k])
		for {
			p, ok, err := dec.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got = append(got, string(p))
		}
	}
	if len(got) != n {
		t.Fatalf("read %d frames, want %d: %q", len(got), n, got)
	}
	return got
}

func seq(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = prefix + strconv.Itoa(i)
	}
	return s
}

// A handler that broadcasts and then replies has its broadcast queued
// first: the sender, a receiver of its own broadcast, sees each frame
// before the reply to it, and the others see every frame in order.
func TestBatchBroadcastThenReplyKeepsOrder(t *testing.T) {
	rt, srv := serveOnLoop(t, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			m.Streams.Broadcast(m.Payload)
			m.Stream.Send(append([]byte("ack "), m.Payload...))
		}
	}))
	conns := dialN(t, rt, srv.Addr().String(), 3)
	const n = 300
	sent := seq("f", n)
	if _, err := conns[0].Write(frames(sent...)); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range sent {
		want = append(want, p, "ack "+p)
	}
	if got := readPayloads(t, conns[0], 2*n); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the sender read %q, want each frame before its ack", got)
	}
	for _, c := range conns[1:] {
		if got := readPayloads(t, c, n); fmt.Sprint(got) != fmt.Sprint(sent) {
			t.Fatalf("a receiver read %q, want %q", got, sent)
		}
	}
}

// A handler that broadcasts and then sends to another stream, found by
// its ID, has its broadcast queued first there too.
func TestBatchBroadcastThenSendElsewhereKeepsOrder(t *testing.T) {
	var mu sync.Mutex
	var target uint64 // the stream direct sends go to
	rt, srv := serveOnLoop(t, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			m.Streams.BroadcastExcept(m.Stream, m.Payload)
			mu.Lock()
			id := target
			mu.Unlock()
			if s := m.Streams.Get(id); s != nil {
				s.Send(append([]byte("direct "), m.Payload...))
			}
		}
	}))
	conns := dialN(t, rt, srv.Addr().String(), 2)
	rt.Streams().Each(func(s *Stream) bool {
		if s.RemoteAddr().String() == conns[1].LocalAddr().String() {
			mu.Lock()
			target = s.ID()
			mu.Unlock()
		}
		return true
	})
	const n = 200
	sent := seq("g", n)
	if _, err := conns[0].Write(frames(sent...)); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range sent {
		want = append(want, p, "direct "+p)
	}
	if got := readPayloads(t, conns[1], 2*n); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the target read %q, want each broadcast before its direct send", got)
	}
}

// Broadcasts that leave out different streams, and more bytes than one
// batch holds, still arrive in the order sent.
func TestBatchSplitsKeepOrder(t *testing.T) {
	rt, srv := serveOnLoop(t, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			if m.Payload[0] == 'x' {
				m.Streams.BroadcastExcept(m.Stream, m.Payload)
			} else {
				m.Streams.Broadcast(m.Payload)
			}
		}
	}))
	conns := dialN(t, rt, srv.Addr().String(), 3)
	// 400 frames of 1 KiB: several batches' worth in a few reads.
	var sent []string
	for i := range 400 {
		kind := "b"
		if i%3 == 0 {
			kind = "x"
		}
		sent = append(sent, kind+strconv.Itoa(i)+string(bytes.Repeat([]byte{'.'}, 1000)))
	}
	if _, err := conns[0].Write(frames(sent...)); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns[1:] {
		if got := readPayloads(t, c, len(sent)); fmt.Sprint(got) != fmt.Sprint(sent) {
			t.Fatal("a receiver read the frames out of order or altered")
		}
	}
	var own []string
	for _, p := range sent {
		if p[0] != 'x' {
			own = append(own, p)
		}
	}
	if got := readPayloads(t, conns[0], len(own)); fmt.Sprint(got) != fmt.Sprint(own) {
		t.Fatal("the sender read its own broadcasts out of order or altered")
	}
}

type hold struct{ d time.Duration }

// A stream that half-closes right after a frame it receives back from
// its own broadcast gets that frame before the broker finishes it, even
// when the run that gathered the frame goes on past the frame's release.
func TestBatchOwnCopyBeforeHalfClose(t *testing.T) {
	pids := make(chan *actor.PID, 1)
	rt, srv := serveOnLoop(t, actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *Connected:
			pids <- ctx.Self()
		case hold:
			time.Sleep(m.d)
		case *Received:
			m.Streams.Broadcast(m.Payload)
		}
	}))
	c := dialN(t, rt, srv.Addr().String(), 1)[0]
	pid := <-pids
	var s *Stream
	rt.Streams().Each(func(x *Stream) bool { s = x; return false })
	// Run the application's mailbox on another goroutine, held up, so the
	// frame is handled there, and the run goes on after it.
	go rt.System().Root.Send(pid, hold{200 * time.Millisecond})
	time.Sleep(50 * time.Millisecond)
	if _, err := c.Write(frames("mine")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.pending.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the frame never reached the application")
		}
		time.Sleep(time.Millisecond)
	}
	go rt.System().Root.Send(pid, hold{500 * time.Millisecond})
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := frames("mine"); !bytes.Equal(got, want) {
		t.Fatalf("read %q before the end, want %q", got, want)
	}
}

// Each hands fn streams outside the list's locks: fn may broadcast and
// send while streams come and go, and nothing deadlocks.
func TestBatchEachUnderChurn(t *testing.T) {
	rt, srv := serveOnLoop(t, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			m.Streams.Broadcast(m.Payload)
			m.Streams.Each(func(s *Stream) bool {
				s.Send(m.Payload)
				return true
			})
		}
	}))
	addr := srv.Addr().String()
	conns := dialN(t, rt, addr, 4)
	for _, c := range conns {
		go io.Copy(io.Discard, c)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // churn: the shards' write locks, over and over
		for {
			select {
			case <-stop:
				return
			default:
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
			}
		}
	})
	for range 200 {
		if _, err := conns[0].Write(frames(seq("e", 20)...)); err != nil {
			t.Fatal(err)
		}
	}
	// The last frame's echo through Each proves the handler got through.
	if _, err := conns[1].Write(frames("last")); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for rt.Streams().set.batches.n.Load() != 0 || pendingFrames(rt) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the handler is stuck")
		}
		time.Sleep(time.Millisecond)
	}
}

// pendingFrames is the frames handed to actors and not yet handled.
func pendingFrames(rt *actorRuntime) int {
	n := 0
	rt.Streams().Each(func(s *Stream) bool {
		n += int(s.pending.Load())
		return true
	})
	return n
}

// A group's broadcast and a Close after a broadcast queue it first: a
// member sees the broadcast before the group's frame, and a stream the
// handler closes gets the broadcast before the end.
func TestBatchGroupAndCloseKeepOrder(t *testing.T) {
	rt, srv := serveOnLoop(t, actor.PropsFromFunc(func(ctx actor.Context) {
		m, ok := ctx.Message().(*Received)
		if !ok {
			return
		}
		switch p := string(m.Payload); {
		case p == "join":
			m.Streams.Group("g").Join(m.Stream)
			m.Stream.Send([]byte("joined"))
		case p == "bye":
			m.Streams.BroadcastExcept(m.Stream, m.Payload)
			m.Streams.Each(func(s *Stream) bool {
				if s != m.Stream {
					s.Close(nil)
				}
				return true
			})
		default:
			m.Streams.BroadcastExcept(m.Stream, m.Payload)
			m.Streams.Group("g").Broadcast(append([]byte("grp "), m.Payload...))
		}
	}))
	conns := dialN(t, rt, srv.Addr().String(), 2)
	if _, err := conns[1].Write(frames("join")); err != nil {
		t.Fatal(err)
	}
	readPayloads(t, conns[1], 1)
	const n = 100
	sent := seq("h", n)
	if _, err := conns[0].Write(frames(append(sent, "bye")...)); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range sent {
		want = append(want, p, "grp "+p)
	}
	want = append(want, "bye")
	if got := readPayloads(t, conns[1], len(want)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the member read %q, want %q", got, want)
	}
	conns[1].SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(conns[1]); err != nil || len(rest) != 0 {
		t.Fatalf("after the last frame: %q, %v; want the end", rest, err)
	}
}

// TestBatchKeepsEachExcept: one run that broadcasts past its sender and
// then to everyone (another except) gathers them into two batches, so
// the sender gets the second and not the first, and the others get both,
// in order.
func TestBatchKeepsEachExcept(t *testing.T) {
	rt, srv := serveOnLoop(t, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			m.Streams.BroadcastExcept(m.Stream, append([]byte("others "), m.Payload...))
			m.Streams.Broadcast(append([]byte("all "), m.Payload...))
		}
	}))
	conns := dialN(t, rt, srv.Addr().String(), 3)
	const n = 100
	sent := seq("f", n)
	if _, err := conns[0].Write(frames(sent...)); err != nil {
		t.Fatal(err)
	}
	var own, others []string
	for _, p := range sent {
		own = append(own, "all "+p)
		others = append(others, "others "+p, "all "+p)
	}
	if got := readPayloads(t, conns[0], n); fmt.Sprint(got) != fmt.Sprint(own) {
		t.Fatalf("the sender read %q, want only the broadcasts to all", got)
	}
	for _, c := range conns[1:] {
		if got := readPayloads(t, c, 2*n); fmt.Sprint(got) != fmt.Sprint(others) {
			t.Fatalf("a receiver read %q, want %q", got, others)
		}
	}
}
