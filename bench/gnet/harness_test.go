package gnet_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// TestServers checks the harness: every server's echo sends each frame
// back intact and in order, every server's broadcast sends each frame,
// in order, to every other connection and never back to its sender, and
// every child stops cleanly — it exits with status 0 when told to
// (benchproc fails the subtest otherwise) and its port is free after.
func TestServers(t *testing.T) {
	for _, s := range servers {
		for _, app := range []struct {
			name  string
			check func(*testing.T, string)
		}{
			{"echo", checkEcho},
			{"broadcast", checkBroadcast},
		} {
			name := s.name + "/" + app.name
			var addr string
			t.Run(name, func(t *testing.T) {
				p := benchproc.Start(t, name)
				addr = p.Addr
				app.check(t, p.Addr)
			})
			if addr == "" {
				continue // the subtest failed to start the child and said why
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("%s: %s still accepts connections after its process was stopped", name, addr)
			}
		}
	}
}

// payloads include the protocol's own bytes, an empty message and the
// largest, so that a server that scans for delimiters or cuts frames
// wrongly fails. None is a telemetry request (5 bytes starting with
// 0x0D), which the broker would answer itself.
var payloads = [][]byte{
	[]byte("hello"), {}, {wire.Start, wire.End, wire.ActionTelemetry},
	bytes.Repeat([]byte{wire.End}, 0x0117), bytes.Repeat([]byte{wire.Start}, 0x1701),
	bytes.Repeat([]byte("x"), wire.MaxPayload), []byte("last"),
}

// stream is payloads framed, one after another.
func stream(t *testing.T) []byte {
	var b []byte
	for _, p := range payloads {
		var err error
		if b, err = wire.AppendFrame(b, p); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// writeSplit writes b in pieces of 7 bytes, so that frames are split at
// every offset and several share a write, from a goroutine of its own;
// the result comes on the channel.
func writeSplit(c net.Conn, b []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i := 0; i < len(b); i += 7 {
			if _, err := c.Write(b[i:min(i+7, len(b))]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

func checkEcho(t *testing.T, addr string) {
	// Frames of every size, split everywhere.
	c := dial(t, addr, "echo")
	wrote := writeSplit(c.c, stream(t))
	for i, want := range payloads {
		if got := c.next(t); !bytes.Equal(got, want) {
			t.Fatalf("echo %d: got %d bytes %.16q, want %d bytes %.16q", i, len(got), got, len(want), want)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}

	// Under load: loadgen checks that each reply is its connection's,
	// intact and in order.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := loadgen.Echo(ctx, loadgen.EchoConfig{
		Addr: addr, Conns: 2, InFlight: 8, PayloadSize: 64, Count: 2_000,
	})
	if err != nil || res.Errors != 0 || res.Messages != 2_000 {
		t.Fatalf("Echo: %v; %v", err, res)
	}
}

func checkBroadcast(t *testing.T, addr string) {
	a, b, c := dial(t, addr, "a"), dial(t, addr, "b"), dial(t, addr, "c")
	// a's frames reach b and c once the server has registered them.
	register(t, a, b, c)

	// Frames of every size, split everywhere: every other connection
	// gets them all, whole and in order.
	wrote := writeSplit(a.c, stream(t))
	for _, r := range []*conn{b, c} {
		for i, want := range payloads {
			if got := r.next(t); !bytes.Equal(got, want) {
				t.Fatalf("%s: frame %d: got %d bytes %.16q, want %d bytes %.16q", r.name, i, len(got), got, len(want), want)
			}
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	// a got none of its own: the first frame it gets is b's.
	b.send(t, []byte("from b"))
	if got := a.next(t); string(got) != "from b" {
		t.Fatalf("a's first frame is %.16q, want b's: it got its own frames back", got)
	}
	if got := c.next(t); string(got) != "from b" {
		t.Fatalf("c: got %.16q, want b's frame", got)
	}

	// Under load, 3 connections of which 2 publish: loadgen checks that
	// every connection gets every frame of every other once and in
	// order, and none of its own.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{
		Addr: addr, Publishers: 2, Subscribers: 1, PayloadSize: 64, Count: 2_000,
	})
	if err != nil || res.Errors != 0 || res.Gaps != 0 || res.Lost != 0 || res.Deliveries != 2_000 {
		t.Fatalf("Fanout: %v; %v", err, res)
	}
}

// register has a repeat a frame until both b and c have it, then a marker,
// and reads both up to the marker: after it, the server has every
// connection registered and nothing of a's in flight.
func register(t *testing.T, a, b, c *conn) {
	t.Helper()
	seen := map[*conn]bool{}
	for end := time.Now().Add(10 * time.Second); len(seen) < 2; {
		if time.Now().After(end) {
			t.Fatalf("a's frames did not reach b and c in 10 s (seen by %d of them)", len(seen))
		}
		a.send(t, []byte("sync"))
		tick := time.After(20 * time.Millisecond)
	wait:
		for len(seen) < 2 {
			select {
			case f := <-b.frames:
				b.expect(t, f, "sync")
				seen[b] = true
			case f := <-c.frames:
				c.expect(t, f, "sync")
				seen[c] = true
			case <-tick:
				break wait
			}
		}
	}
	a.send(t, []byte("mark"))
	for _, r := range []*conn{b, c} {
		for f := r.next(t); string(f) != "mark"; f = r.next(t) {
			r.expect(t, f, "sync")
		}
	}
}

// conn is a test connection whose frames a goroutine reads.
type conn struct {
	name   string
	c      net.Conn
	frames chan []byte // closed when the read fails
}

func dial(t *testing.T, addr, name string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	k := &conn{name: name, c: c, frames: make(chan []byte, 64)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(k.frames)
		dec := wire.NewDecoder(wire.MaxPayload)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			dec.Feed(buf[:n])
			for {
				p, ok, derr := dec.Next()
				if derr != nil {
					t.Errorf("%s: %v", k.name, derr)
					return
				}
				if !ok {
					break
				}
				k.frames <- bytes.Clone(p)
			}
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("%s: %v", k.name, err)
				}
				return
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		for range k.frames {
		}
		<-read
	})
	return k
}

func (k *conn) send(t *testing.T, p []byte) {
	t.Helper()
	f, err := wire.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.c.Write(f); err != nil {
		t.Fatalf("%s: %v", k.name, err)
	}
}

// next returns the next frame's payload; it fails t after 10 s.
func (k *conn) next(t *testing.T) []byte {
	t.Helper()
	select {
	case f, ok := <-k.frames:
		if !ok {
			t.Fatalf("%s: the connection closed", k.name)
		}
		return f
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no frame in 10 s", k.name)
		return nil
	}
}

func (k *conn) expect(t *testing.T, got []byte, want string) {
	t.Helper()
	if string(got) != want {
		t.Fatalf("%s: got %.16q, want %q", k.name, got, want)
	}
}

// TestCompleteFrames: gnet's broadcast cuts exactly the whole frames of
// a read, wherever the read ends, and stops at a malformed one.
func TestCompleteFrames(t *testing.T) {
	s := stream(t)
	var ends []int // where each frame ends
	for off, i := 0, 0; i < len(payloads); i++ {
		off += wire.FrameSize(len(payloads[i]))
		ends = append(ends, off)
	}
	for k := 0; k <= len(s); k++ {
		want := 0
		for _, e := range ends {
			if e <= k {
				want = e
			}
		}
		if n, err := completeFrames(s[:k]); n != want || err != nil {
			t.Fatalf("the first %d bytes: completeFrames = %d, %v; want %d, nil", k, n, err, want)
		}
	}
	for _, tc := range []struct {
		name string
		bad  []byte
	}{
		{"start", []byte{0x02, 0x00, 0x00, wire.End}},
		{"end", []byte{wire.Start, 0x00, 0x01, 'x', wire.Start}},
	} {
		in := append(append([]byte(nil), s[:ends[1]]...), tc.bad...)
		if n, err := completeFrames(in); n != ends[1] || !errors.Is(err, errFrame) {
			t.Errorf("two frames and a bad %s byte: completeFrames = %d, %v; want %d, errFrame", tc.name, n, err, ends[1])
		}
	}
}
