package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
	"golang.org/x/sys/unix"
)

// waitLong bounds every wait for something that must happen. It is far
// beyond what any step needs, so that only a real hang fails a test, even
// under the race detector on a loaded machine.
const waitLong = 10 * time.Second

// replyMode is what the test handler does with the frames it receives.
type replyMode int

const (
	replyNone  replyMode = iota // record only; Release at once
	replyEcho                   // Send each frame back on the loop, then Release
	replyAsync                  // Send each frame back from a goroutine of the connection's, then Release
	replyHold                   // record and keep the batch unreleased until releaseHeld
)

type opened struct {
	c  *Conn
	fd int // the loop's fd for c, read on the loop in OnOpen
}

type received struct {
	c      *Conn
	frames [][]byte // copies
}

type closed struct {
	c   *Conn
	err error
}

// handler is the Handler of these tests: it echoes or records, and reports
// every event on a channel. The channels are buffered well past what any
// test produces; a full one is reported as a test error rather than
// blocking the loop.
type handler struct {
	t    testing.TB
	mode replyMode

	opened   chan opened
	received chan received
	closed   chan closed

	wg sync.WaitGroup // replyAsync goroutines

	mu      sync.Mutex
	opens   map[*Conn]int
	closes  map[*Conn]int
	reasons map[*Conn]error
	held    []*Batch
}

func newHandler(t testing.TB, mode replyMode) *handler {
	h := &handler{
		t:        t,
		mode:     mode,
		opened:   make(chan opened, 4096),
		received: make(chan received, 4096),
		closed:   make(chan closed, 4096),
		opens:    make(map[*Conn]int),
		closes:   make(map[*Conn]int),
		reasons:  make(map[*Conn]error),
	}
	t.Cleanup(func() {
		h.releaseHeld()
		h.wg.Wait()
	})
	return h
}

func (h *handler) OnOpen(c *Conn) {
	if h.mode == replyAsync {
		// One worker per connection keeps its replies in order.
		batches := make(chan *Batch, 1024)
		c.SetValue(batches)
		h.wg.Go(func() {
			for b := range batches {
				for _, f := range b.Frames {
					if err := c.Send(f); err != nil && !errors.Is(err, ErrClosed) {
						h.t.Errorf("async echo Send: %v", err)
					}
				}
				b.Release()
			}
		})
	}
	h.mu.Lock()
	h.opens[c]++
	h.mu.Unlock()
	select {
	case h.opened <- opened{c, c.fd}:
	default:
		h.t.Errorf("handler: opened channel full")
	}
}

func (h *handler) OnFrames(c *Conn, b *Batch) {
	if b.Conn() != c {
		h.t.Errorf("OnFrames: batch of connection %d handed with connection %d", b.Conn().ID(), c.ID())
	}
	if h.mode != replyEcho {
		frames := make([][]byte, len(b.Frames))
		for i, f := range b.Frames {
			frames[i] = bytes.Clone(f)
		}
		if h.mode == replyHold {
			// Held before the test can hear of it: a test that has
			// received the frames and then calls releaseHeld must find
			// their batch there.
			h.mu.Lock()
			h.held = append(h.held, b)
			h.mu.Unlock()
		}
		select {
		case h.received <- received{c, frames}:
		default:
			h.t.Errorf("handler: received channel full")
		}
	}
	switch h.mode {
	case replyNone:
		b.Release()
	case replyEcho:
		for _, f := range b.Frames {
			if err := c.Send(f); err != nil && !errors.Is(err, ErrClosed) {
				h.t.Errorf("echo Send: %v", err)
			}
		}
		b.Release()
	case replyAsync:
		select {
		case c.Value().(chan *Batch) <- b:
		default:
			h.t.Errorf("handler: connection %d's batch queue full", c.ID())
			b.Release()
		}
	case replyHold:
		// held above
	}
}

func (h *handler) OnClose(c *Conn, err error) {
	if h.mode == replyAsync {
		close(c.Value().(chan *Batch))
	}
	h.mu.Lock()
	h.closes[c]++
	h.reasons[c] = err
	h.mu.Unlock()
	select {
	case h.closed <- closed{c, err}:
	default:
		h.t.Errorf("handler: closed channel full")
	}
}

// releaseOldest releases the batch held longest.
func (h *handler) releaseOldest(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	if len(h.held) == 0 {
		h.mu.Unlock()
		t.Fatal("no batch held")
	}
	b := h.held[0]
	h.held = h.held[1:]
	h.mu.Unlock()
	b.Release()
}

// noTick stops the loops' periodic tick, so that a test sees what
// happens without the tick's sweep of time limits and deferred output.
// Use it before Serve.
func noTick(s *Server) {
	for _, l := range s.loops {
		l.tickEvery = int64(time.Hour)
	}
}

func (h *handler) releaseHeld() {
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, b := range held {
		b.Release()
	}
}

// counts reports how many times OnOpen and OnClose saw c.
func (h *handler) counts(c *Conn) (opens, closes int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opens[c], h.closes[c]
}

func (h *handler) nextOpened(t testing.TB) opened {
	t.Helper()
	select {
	case o := <-h.opened:
		return o
	case <-time.After(waitLong):
		t.Fatal("no OnOpen")
	}
	panic("unreachable")
}

func (h *handler) nextClosed(t testing.TB) closed {
	t.Helper()
	select {
	case c := <-h.closed:
		return c
	case <-time.After(waitLong):
		t.Fatal("no OnClose")
	}
	panic("unreachable")
}

// closedFor waits for c's OnClose, skipping other connections' closes.
func (h *handler) closedFor(t testing.TB, c *Conn) error {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		select {
		case ev := <-h.closed:
			if ev.c == c {
				return ev.err
			}
		case <-deadline:
			t.Fatalf("no OnClose for connection %d", c.ID())
		}
	}
}

// reasonFor waits for c's OnClose and returns its reason. Unlike
// closedFor it consumes no event, so tests waiting for several closes may
// ask in any order.
func (h *handler) reasonFor(t testing.TB, c *Conn) error {
	t.Helper()
	var err error
	waitFor(t, fmt.Sprintf("OnClose for connection %d", c.ID()), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		e, ok := h.reasons[c]
		err = e
		return ok
	})
	return err
}

// receivedFrom collects the frames c delivers until there are n of them.
func (h *handler) receivedFrom(t testing.TB, c *Conn, n int) [][]byte {
	t.Helper()
	var got [][]byte
	deadline := time.After(waitLong)
	for len(got) < n {
		select {
		case r := <-h.received:
			if r.c == c {
				got = append(got, r.frames...)
			}
		case <-deadline:
			t.Fatalf("got %d of %d frames", len(got), n)
		}
	}
	return got
}

// testLogger sends the server's log to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startServer listens on cfg.Addr (default 127.0.0.1:0) and serves until
// the test ends, when it shuts the server down, if the test has not, and
// checks that Serve returned nil. Tests that shut down themselves wait for
// s.Done().
func startServer(t testing.TB, cfg Config, h Handler, beforeServe ...func(*Server)) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := Listen(cfg, h)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	for _, f := range beforeServe {
		f(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// dial connects to the server with Go's net package; the connection is
// closed when the test ends.
func dial(t testing.TB, addr net.Addr) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), waitLong)
	if err != nil {
		t.Fatalf("dial %v: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// frame returns payload framed for the wire.
func frame(payload []byte) []byte {
	f, err := wire.AppendFrame(nil, payload)
	if err != nil {
		panic(err)
	}
	return f
}

// frames returns the payloads framed back to back.
func frames(payloads ...[]byte) []byte {
	var s []byte
	for _, p := range payloads {
		s = append(s, frame(p)...)
	}
	return s
}

// readFrame reads one frame with a decoder of its own, independent of
// package wire's, so that the two cannot share a bug.
func readFrame(r io.Reader) ([]byte, error) {
	var hdr [wire.HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	if hdr[0] != wire.Start {
		return nil, fmt.Errorf("frame starts with 0x%02x", hdr[0])
	}
	n := int(hdr[1])<<8 | int(hdr[2])
	p := make([]byte, n+1)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, fmt.Errorf("reading a %d-byte payload: %w", n, noEOF(err))
	}
	if p[n] != wire.End {
		return nil, fmt.Errorf("frame of %d bytes ends with 0x%02x", n, p[n])
	}
	return p[:n], nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readFrames reads n frames, failing the test on any error or after
// waitLong.
func readFrames(t testing.TB, c net.Conn, r io.Reader, n int) [][]byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	got := make([][]byte, 0, n)
	for range n {
		p, err := readFrame(r)
		if err != nil {
			t.Fatalf("after %d of %d frames: %v", len(got), n, err)
		}
		got = append(got, p)
	}
	return got
}

func write(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if err := c.SetWriteDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// roundTrip sends payload and expects it echoed.
func roundTrip(t testing.TB, c net.Conn, payload []byte) {
	t.Helper()
	write(t, c, frame(payload))
	got := readFrames(t, c, c, 1)[0]
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo: got %s, want %s", brief(got), brief(payload))
	}
}

// expectEOF reads until the peer's close and fails if anything arrives.
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	var b [64]byte
	n, err := c.Read(b[:])
	if n > 0 {
		t.Fatalf("read %d unexpected bytes: % x", n, b[:n])
	}
	if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v, want EOF", err)
	}
}

// brief describes a payload for a failure message without printing 64 KiB.
func brief(p []byte) string {
	if len(p) <= 16 {
		return fmt.Sprintf("%d bytes [% x]", len(p), p)
	}
	return fmt.Sprintf("%d bytes [% x ...]", len(p), p[:16])
}

// waitFor polls cond until it holds, failing the test after waitLong.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitStats polls the server's counters until cond holds.
func waitStats(t testing.TB, s *Server, what string, cond func(Stats) bool) Stats {
	t.Helper()
	var st Stats
	waitFor(t, what, func() bool {
		st = s.Stats()
		return cond(st)
	})
	return st
}

// cpuTime is the CPU time, user and system, the whole process has used.
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// inq reports the bytes waiting in a socket's receive queue. The tests use
// it on a server connection's fd to see that its loop has read what was
// sent, which makes a split between two writes a split between two reads.
func inq(fd int) (int, error) { return unix.IoctlGetInt(fd, unix.SIOCINQ) }

// openFDs counts this process's open file descriptors and reports the
// highest.
func openFDs() (n, highest int, err error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		n++
		highest = max(highest, fd)
	}
	// ReadDir's own descriptor was listed and is closed now.
	return n - 1, highest, nil
}

// dialer is a Dialer bounded by waitLong.
func dialer() *net.Dialer { return &net.Dialer{Timeout: waitLong} }

// dialSlow connects with a small receive buffer, set before the handshake
// so that the window the client advertises stays small: what the server
// queues for it then stays queued until it reads.
func dialSlow(t testing.TB, addr net.Addr) *net.TCPConn {
	t.Helper()
	d := dialer()
	d.Control = func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		}); cerr != nil {
			return cerr
		}
		return err
	}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatalf("dial %v: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
