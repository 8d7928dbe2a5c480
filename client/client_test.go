package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait for a condition in these tests. It is long
// because a loaded CI machine under -race is slow; a passing test never
// waits for it.
const waitLimit = 20 * time.Second

// statsReply is a telemetry reply in the shape of docs/PROTOCOL.md §2,
// with extra members as this broker sends them.
const statsReply = `{"up_time":42,"bytes_recv":1000,"bytes_sent":2000,"msg_recv":10,"msg_sent":20,"num_clients":3,` +
	`"resources":{"ram":{"bytes_used":1024,"bytes_available":4096},"cpu_overall":0.5,` +
	`"cpu_per_core":[{"core":0,"using":0.75},{"core":1,"using":0.25}]},` +
	`"process":{"rss_bytes":12345,"goroutines":7},"protocol_errors":2}`

// server is a small hydrogen broker for the tests: real sockets on a
// loopback port, the frame format of package wire, and a handler per test
// for what to do with each received frame.
type server struct {
	ln       net.Listener
	handle   func(sc *serverConn, payload []byte)
	accepted chan *serverConn // every accepted connection, for tests that drive one

	mu     sync.Mutex
	conns  map[*serverConn]bool
	closed bool
	wg     sync.WaitGroup // the accept loop, the connections, pending timers
}

// serverConn is one connection of a server. The handler runs on its read
// goroutine; send may be called from any goroutine.
type serverConn struct {
	srv  *server
	conn net.Conn

	wmu    sync.Mutex
	timers []*time.Timer
}

// startServer starts a server on 127.0.0.1 port 0 that calls handle for
// every frame it receives, on the connection's goroutine; the payload is
// valid only during the call.
func startServer(handle func(sc *serverConn, payload []byte)) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, handle: handle, accepted: make(chan *serverConn, 16), conns: make(map[*serverConn]bool)}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// serve starts a server that the test closes when it ends.
func serve(t testing.TB, handle func(sc *serverConn, payload []byte)) *server {
	t.Helper()
	s, err := startServer(handle)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *server) Addr() string { return s.ln.Addr().String() }

func (s *server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // the listener is closed
		}
		sc := &serverConn{srv: s, conn: conn}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[sc] = true
		s.wg.Add(1)
		s.mu.Unlock()
		select {
		case s.accepted <- sc:
		default:
		}
		go sc.serve()
	}
}

// Close stops the server: it closes the listener and every connection,
// cancels pending timers and waits for every goroutine it started.
func (s *server) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	for _, sc := range conns {
		sc.conn.Close()
		sc.stopTimers()
	}
	s.wg.Wait()
}

func (sc *serverConn) serve() {
	defer sc.srv.wg.Done()
	defer func() {
		sc.conn.Close()
		sc.stopTimers()
		sc.srv.mu.Lock()
		delete(sc.srv.conns, sc)
		sc.srv.mu.Unlock()
	}()
	dec := wire.NewDecoder(wire.MaxPayload)
	buf := make([]byte, 64<<10)
	for {
		n, err := sc.conn.Read(buf)
		dec.Feed(buf[:n])
		for {
			p, ok, derr := dec.Next()
			if derr != nil || !ok {
				if derr != nil {
					return
				}
				break
			}
			sc.srv.handle(sc, p)
		}
		if err != nil {
			return
		}
	}
}

// send writes the payloads, framed, in one write.
func (sc *serverConn) send(payloads ...[]byte) error {
	var out []byte
	for _, p := range payloads {
		var err error
		if out, err = wire.AppendFrame(out, p); err != nil {
			return err
		}
	}
	return sc.writeRaw(out)
}

func (sc *serverConn) writeRaw(b []byte) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	_, err := sc.conn.Write(b)
	return err
}

// after runs f on its own goroutine after d, unless the connection or the
// server closes first.
func (sc *serverConn) after(d time.Duration, f func()) {
	// The connection's goroutine is counted in wg, so Add cannot race
	// with the Wait in Close.
	sc.srv.wg.Add(1)
	t := time.AfterFunc(d, func() {
		defer sc.srv.wg.Done()
		f()
	})
	sc.wmu.Lock()
	sc.timers = append(sc.timers, t)
	sc.wmu.Unlock()
}

func (sc *serverConn) stopTimers() {
	sc.wmu.Lock()
	timers := sc.timers
	sc.timers = nil
	sc.wmu.Unlock()
	for _, t := range timers {
		if t.Stop() {
			sc.srv.wg.Done()
		}
	}
}

// echoAndStats is a broker: it echoes every frame and answers telemetry
// requests with reply once the span has passed, or at once with an error
// object for a span outside (0, 60].
func echoAndStats(reply string) func(*serverConn, []byte) {
	return func(sc *serverConn, p []byte) {
		if span, ok := wire.ParseTelemetryRequest(p); ok {
			sc.answer(span, func() { sc.send([]byte(reply)) })
			return
		}
		sc.send(p)
	}
}

// answer refuses a bad span at once, as the broker does, or runs reply
// once the span has passed.
func (sc *serverConn) answer(span float32, reply func()) {
	s := float64(span)
	switch {
	case math.IsNaN(s):
		sc.send([]byte(`{"error":"span is NaN"}`))
	case s <= 0 || s > 60:
		sc.send([]byte(fmt.Sprintf(`{"error":"span %g is outside (0, 60]"}`, s)))
	default:
		sc.after(time.Duration(s*float64(time.Second)), reply)
	}
}

func dial(t testing.TB, s *server, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := client.Dial(ctx, s.Addr(), opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func mustSend(t testing.TB, c *client.Client, p []byte) {
	t.Helper()
	if err := c.Send(p); err != nil {
		t.Fatalf("Send(%d bytes): %v", len(p), err)
	}
}

func mustRecv(t testing.TB, c *client.Client) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	p, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return p
}

// receive waits for a value on ch, failing the test after waitLimit.
func receive[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("no %T within %v", *new(T), waitLimit)
		panic("unreachable")
	}
}

func TestEcho(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)

	full := make([]byte, wire.MaxPayload)
	for i := range full {
		full[i] = byte(i * 7)
	}
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", []byte{}},
		{"one byte", []byte{0x17}},
		{"protocol bytes", []byte{wire.Start, wire.End, wire.ActionTelemetry, 0x00, wire.End}},
		{"0x0D, 4 bytes", []byte{wire.ActionTelemetry, 0, 0, 0}},
		{"0x0D, 6 bytes", []byte{wire.ActionTelemetry, 0x3f, 0x80, 0, 0, 0}},
		{"65,535 bytes", full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustSend(t, c, tt.payload)
			got := mustRecv(t, c)
			if !bytes.Equal(got, tt.payload) {
				t.Fatalf("echo of %d bytes: got %d bytes, want them equal", len(tt.payload), len(got))
			}
		})
	}
}

func TestRecvPayloadIsOwned(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)
	if err := c.SendBatch([]byte("first"), []byte("second")); err != nil {
		t.Fatal(err)
	}
	first := mustRecv(t, c)
	second := mustRecv(t, c)
	first = append(first, "-grown"...) // must not run into the second payload
	copy(first, "XXXXX")
	if string(second) != "second" || string(first) != "XXXXX-grown" {
		t.Fatalf("payloads share memory: %q, %q", first, second)
	}
}

func TestSendRejects(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)

	tests := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"65,536 bytes", make([]byte, wire.MaxPayload+1), wire.ErrPayloadTooLarge},
		{"telemetry request", wire.AppendTelemetryRequest(nil, 1), client.ErrTelemetryPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.Send(tt.payload); !errors.Is(err, tt.want) {
				t.Errorf("Send: %v, want %v", err, tt.want)
			}
			if err := c.SendBatch([]byte("sent?"), tt.payload); !errors.Is(err, tt.want) {
				t.Errorf("SendBatch: %v, want %v", err, tt.want)
			}
		})
	}
	// Nothing of the refused calls went out: the next echo is the next
	// frame.
	mustSend(t, c, []byte("after"))
	if got := mustRecv(t, c); string(got) != "after" {
		t.Fatalf("Recv = %q, want %q: a refused batch was partly sent", got, "after")
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err = %v after refused sends, want nil", err)
	}
}

func TestConcurrentSenders(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)

	const senders, perSender = 8, 2000
	// Receive while sending: an echoing broker and a client that does
	// not read would stall each other once both directions are full.
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	ctx := testContext(t)
	go func() {
		next := make([]uint32, senders)
		for n := 0; n < senders*perSender; n++ {
			p, err := c.Recv(ctx)
			if err != nil {
				done <- result{n, err}
				return
			}
			if len(p) != 5 || p[0] >= senders {
				done <- result{n, fmt.Errorf("frame %d: bad payload %x", n, p)}
				return
			}
			g, seq := p[0], binary.BigEndian.Uint32(p[1:])
			if seq != next[g] {
				done <- result{n, fmt.Errorf("sender %d: frame %d arrived when %d was due", g, seq, next[g])}
				return
			}
			next[g]++
		}
		done <- result{senders * perSender, nil}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for g := range senders {
		wg.Go(func() {
			var batch [][]byte
			for seq := range perSender {
				p := binary.BigEndian.AppendUint32([]byte{byte(g)}, uint32(seq))
				if g%2 == 1 { // half the senders use SendBatch
					batch = append(batch, p)
					if len(batch) == 7 || seq == perSender-1 {
						if err := c.SendBatch(batch...); err != nil {
							errs <- err
							return
						}
						batch = batch[:0]
					}
					continue
				}
				if err := c.Send(p); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("send: %v", err)
	}
	if r := receive(t, done); r.err != nil {
		t.Fatalf("after %d frames: %v", r.n, r.err)
	}
}

func TestRecvAfterServerClose(t *testing.T) {
	srv := serve(t, func(sc *serverConn, p []byte) {
		sc.send(p)
		if string(p) == "last" {
			sc.conn.Close()
		}
	})
	c := dial(t, srv)
	if err := c.SendBatch([]byte("one"), []byte("last")); err != nil {
		t.Fatal(err)
	}
	receive(t, c.Done())
	// Frames received before the end are still delivered, then the end.
	for _, want := range []string{"one", "last"} {
		if got := mustRecv(t, c); string(got) != want {
			t.Fatalf("Recv = %q, want %q", got, want)
		}
	}
	_, err := c.Recv(testContext(t))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the broker closed: %v, want io.EOF", err)
	}
	if err := c.Err(); !errors.Is(err, io.EOF) {
		t.Fatalf("Err = %v, want io.EOF", err)
	}
	if err := c.Send([]byte("x")); !errors.Is(err, io.EOF) {
		t.Fatalf("Send after the broker closed: %v, want io.EOF", err)
	}
	if _, err := c.Stats(testContext(t), 1); !errors.Is(err, io.EOF) {
		t.Fatalf("Stats after the broker closed: %v, want io.EOF", err)
	}
}

func TestServerClosesInsideFrame(t *testing.T) {
	srv := serve(t, func(sc *serverConn, p []byte) {
		sc.writeRaw([]byte{wire.Start, 0, 10, 'p', 'a', 'r'})
		sc.conn.Close()
	})
	c := dial(t, srv)
	mustSend(t, c, []byte("go"))
	if _, err := c.Recv(testContext(t)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Recv: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestProtocolError(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte // written after one good frame, "ok"
		opts []client.Option
		want error
	}{
		{"bad end byte", []byte{wire.Start, 0, 1, 'x', 0x18}, nil, wire.ErrBadEnd},
		{"bad end byte of an empty frame", []byte{wire.Start, 0, 0, wire.Start}, nil, wire.ErrBadEnd},
		{"bad start byte", []byte{wire.End, 0, 1, 'x', wire.End}, nil, wire.ErrBadStart},
		{"payload over WithMaxPayload", []byte{wire.Start, 0, 11, '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', wire.End}, []client.Option{client.WithMaxPayload(10)}, wire.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, func(sc *serverConn, p []byte) {
				ok, _ := wire.Encode([]byte("ok"))
				sc.writeRaw(append(ok, tt.raw...))
			})
			c := dial(t, srv, tt.opts...)
			mustSend(t, c, []byte("go"))
			if got := mustRecv(t, c); string(got) != "ok" {
				t.Fatalf("Recv = %q, want the good frame before the bad one", got)
			}
			_, err := c.Recv(testContext(t))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Recv: %v, want %v", err, tt.want)
			}
			var pe *wire.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Recv: %v is not a *wire.ProtocolError", err)
			}
			if err := c.Send([]byte("x")); !errors.Is(err, tt.want) {
				t.Fatalf("Send after the protocol error: %v, want %v", err, tt.want)
			}
			if err := c.Err(); !errors.Is(err, tt.want) {
				t.Fatalf("Err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCloseUnblocksRecv(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Recv(context.Background())
		errc <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := receive(t, errc); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Recv blocked during Close: %v, want net.ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil", err)
	}
	if _, err := c.Recv(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Recv after Close: %v, want net.ErrClosed", err)
	}
	if err := c.Send([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Stats(context.Background(), 1); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Stats after Close: %v, want net.ErrClosed", err)
	}
	if err := c.Err(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Err after Close: %v, want net.ErrClosed", err)
	}
}

func TestConcurrentClose(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- c.Close() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestRecvContext(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Recv(ctx)
		errc <- err
	}()
	cancel()
	if err := receive(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv with a cancelled context: %v, want context.Canceled", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := c.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv past its deadline: %v, want context.DeadlineExceeded", err)
	}

	// The abandoned calls took nothing: the client still works and the
	// next frame is the next echo.
	mustSend(t, c, []byte("still here"))
	if got := mustRecv(t, c); string(got) != "still here" {
		t.Fatalf("Recv = %q", got)
	}
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	srv := serve(t, echoAndStats(statsReply))
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name string
		ctx  context.Context
		addr string
		opts []client.Option
		want error // nil: any error
	}{
		{"closed port", context.Background(), closedAddr, []client.Option{client.WithDialTimeout(waitLimit)}, syscall.ECONNREFUSED},
		{"cancelled context", cancelled, srv.Addr(), nil, context.Canceled},
		{"recv buffer 0", context.Background(), srv.Addr(), []client.Option{client.WithRecvBuffer(0)}, nil},
		{"max payload 65,536", context.Background(), srv.Addr(), []client.Option{client.WithMaxPayload(wire.MaxPayload + 1)}, nil},
		{"max payload -1", context.Background(), srv.Addr(), []client.Option{client.WithMaxPayload(-1)}, nil},
		{"negative dial timeout", context.Background(), srv.Addr(), []client.Option{client.WithDialTimeout(-time.Second)}, nil},
		{"empty credential", context.Background(), srv.Addr(), []client.Option{client.WithCredential([]byte{})}, nil},
		{"nil credential", context.Background(), srv.Addr(), []client.Option{client.WithCredential(nil)}, nil},
		{"telemetry request as credential", context.Background(), srv.Addr(), []client.Option{client.WithCredential(wire.AppendTelemetryRequest(nil, 1))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.Dial(tt.ctx, tt.addr, tt.opts...)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if c != nil {
				t.Errorf("Dial returned a Client with error %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Dial: %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "hydrogen: ") {
				t.Errorf("Dial error %q lacks the package's context", err)
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)
	sc := receive(t, srv.accepted)
	if got, want := c.RemoteAddr().String(), srv.Addr(); got != want {
		t.Errorf("RemoteAddr = %s, want %s", got, want)
	}
	if got, want := c.LocalAddr().String(), sc.conn.RemoteAddr().String(); got != want {
		t.Errorf("LocalAddr = %s, want %s (the server's view)", got, want)
	}
}

func TestHandler(t *testing.T) {
	srv := serve(t, func(sc *serverConn, p []byte) {
		if span, ok := wire.ParseTelemetryRequest(p); ok {
			sc.send([]byte(`{"error":"not alone","code":1}`), []byte("between"))
			sc.answer(span, func() { sc.send([]byte(statsReply)) })
			return
		}
		sc.send(p)
	})
	got := make(chan string, 100)
	c := dial(t, srv, client.WithHandler(func(p []byte) { got <- string(p) }))

	if _, err := c.Recv(testContext(t)); !errors.Is(err, client.ErrHandlerSet) {
		t.Fatalf("Recv with a handler: %v, want ErrHandlerSet", err)
	}
	want := []string{"a", "", "c"}
	for _, p := range want {
		mustSend(t, c, []byte(p))
	}
	for _, w := range want {
		if g := receive(t, got); g != w {
			t.Fatalf("handler got %q, want %q", g, w)
		}
	}
	// The reply is recognised before the handler sees frames: the
	// handler gets the frames around it, Stats the reply.
	s, err := c.Stats(testContext(t), 0.001)
	if err != nil {
		t.Fatalf("Stats with a handler: %v", err)
	}
	if s.UpTime != 42 {
		t.Fatalf("Stats took the decoy: %s", s.Raw)
	}
	for _, w := range []string{`{"error":"not alone","code":1}`, "between"} {
		if g := receive(t, got); g != w {
			t.Fatalf("handler got %q, want %q", g, w)
		}
	}
}

func TestRecvBufferPushesBack(t *testing.T) {
	// The server writes 64 KiB frames until a write makes no progress for
	// a while. A client that kept reading without bound would take all
	// of limit; one that stops at its receive buffer stalls the server
	// after the buffer and the sockets' kernel buffers are full.
	const limit = 2048 // 128 MiB
	type flood struct {
		frames  int // whole frames written
		partial int // bytes of the frame cut by the deadline
	}
	flooded := make(chan flood, 1)
	srv := serve(t, func(sc *serverConn, p []byte) {
		frame, _ := wire.Encode(make([]byte, wire.MaxPayload))
		for i := range limit {
			binary.BigEndian.PutUint32(frame[wire.HeaderSize:], uint32(i))
			sc.conn.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
			if n, err := sc.conn.Write(frame); err != nil {
				flooded <- flood{i, n}
				sc.conn.Close()
				return
			}
		}
		flooded <- flood{limit, 0}
		sc.conn.Close()
	})
	c := dial(t, srv, client.WithRecvBuffer(2))
	mustSend(t, c, []byte("flood"))
	f := receive(t, flooded)
	if f.frames == limit {
		t.Fatalf("the server wrote all %d frames to a client that received none", limit)
	}
	t.Logf("the server stalled after %d frames (%d MiB)", f.frames, f.frames*wire.FrameSize(wire.MaxPayload)>>20)
	// Nothing was dropped on the way.
	for i := range f.frames {
		p := mustRecv(t, c)
		if len(p) != wire.MaxPayload || binary.BigEndian.Uint32(p) != uint32(i) {
			t.Fatalf("frame %d: %d bytes, number %d", i, len(p), binary.BigEndian.Uint32(p))
		}
	}
	want := io.EOF
	if f.partial > 0 {
		want = io.ErrUnexpectedEOF
	}
	if _, err := c.Recv(testContext(t)); !errors.Is(err, want) {
		t.Fatalf("Recv after the flood: %v, want %v", err, want)
	}
}

func TestCloseWaitsForHandler(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	entered, release := make(chan struct{}), make(chan struct{})
	c := dial(t, srv, client.WithHandler(func([]byte) {
		close(entered)
		<-release
	}))
	mustSend(t, c, []byte("block"))
	receive(t, entered)

	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	// Close owns the reader goroutine and must not return while it runs.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the handler was still running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := receive(t, closed); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestSendBatchOverFlushThreshold(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)
	// 200 frames of 2 KiB: the batch is written in several pieces.
	var batch [][]byte
	for i := range 200 {
		batch = append(batch, bytes.Repeat([]byte{byte(i)}, 2048))
	}
	errc := make(chan error, 1)
	go func() { errc <- c.SendBatch(batch...) }()
	for i, want := range batch {
		if got := mustRecv(t, c); !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %d bytes of %d, want %d of %d", i, len(got), got[0], len(want), want[0])
		}
	}
	if err := receive(t, errc); err != nil {
		t.Fatalf("SendBatch: %v", err)
	}
}

func TestCloseUnblocksSend(t *testing.T) {
	// The server takes one frame and then stops reading, so the client's
	// Sends soon block on a full socket.
	entered, release := make(chan struct{}, 1), make(chan struct{})
	srv := serve(t, func(sc *serverConn, p []byte) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	c := dial(t, srv)

	errc := make(chan error, 1)
	go func() {
		big := make([]byte, wire.MaxPayload)
		for {
			if err := c.Send(big); err != nil {
				errc <- err
				return
			}
		}
	}()
	receive(t, entered)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := receive(t, errc); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send during Close: %v, want net.ErrClosed", err)
	}
}
