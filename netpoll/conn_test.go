package netpoll

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
	"golang.org/x/sys/unix"
)

// TestManyConnections opens 1,000 connections at once, each doing a round
// trip, and checks the open count and that every connection is opened and
// closed exactly once.
func TestManyConnections(t *testing.T) {
	const n = 1000
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{}, h)

	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", s.Addr().String(), waitLong)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			c.SetDeadline(time.Now().Add(waitLong))
			want := fmt.Appendf(nil, "connection %d", i)
			if _, err := c.Write(frame(want)); err != nil {
				errs <- err
				return
			}
			got, err := readFrame(c)
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
				return
			}
			if string(got) != string(want) {
				errs <- fmt.Errorf("connection %d: echo %q", i, got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	st := waitStats(t, s, "1000 open", func(st Stats) bool { return st.Open == n })
	if st.Accepted != n {
		t.Errorf("Accepted = %d, want %d", st.Accepted, n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitStats(t, s, "none open", func(st Stats) bool { return st.Open == 0 })
	for range n {
		ev := h.nextClosed(t)
		if !errors.Is(ev.err, ErrPeerClosed) && !errors.Is(ev.err, ErrReset) {
			t.Errorf("connection %d closed with %v", ev.c.ID(), ev.err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.opens) != n || len(h.closes) != n {
		t.Fatalf("OnOpen saw %d connections, OnClose %d; want %d", len(h.opens), len(h.closes), n)
	}
	ids := make(map[uint64]bool)
	for c, k := range h.opens {
		if k != 1 || h.closes[c] != 1 {
			t.Errorf("connection %d: %d OnOpen, %d OnClose", c.ID(), k, h.closes[c])
		}
		if ids[c.ID()] {
			t.Errorf("ID %d given twice", c.ID())
		}
		ids[c.ID()] = true
	}
}

// TestPauseResumeRead pauses a connection, sends it frames, sees none
// delivered while paused, and all of them in order after ResumeRead.
func TestPauseResumeRead(t *testing.T) {
	h := newHandler(t, replyNone)
	s := startServer(t, Config{}, h)
	cl := dial(t, s.Addr())
	sc := h.nextOpened(t).c

	// Before the pause, frames flow.
	write(t, cl, frame([]byte("before")))
	if got := h.receivedFrom(t, sc, 1); string(got[0]) != "before" {
		t.Fatalf("got %q", got[0])
	}

	sc.PauseRead()
	sc.PauseRead() // a second pause is a no-op, not a second count
	waitStats(t, s, "PausedReads 1", func(st Stats) bool { return st.PausedReads == 1 })

	var want [][]byte
	for i := range 50 {
		want = append(want, tricky(i, 10+i))
	}
	write(t, cl, frames(want...))
	select {
	case r := <-h.received:
		t.Fatalf("%d frames delivered while paused", len(r.frames))
	case <-time.After(200 * time.Millisecond):
	}
	if st := s.Stats(); st.PausedReads != 1 || st.MsgRecv != 1 {
		t.Fatalf("while paused: PausedReads %d, MsgRecv %d; want 1, 1", st.PausedReads, st.MsgRecv)
	}

	sc.ResumeRead()
	checkEcho(t, h.receivedFrom(t, sc, len(want)), want)
	waitStats(t, s, "PausedReads 0", func(st Stats) bool { return st.PausedReads == 0 })
}

// TestHalfClose: a client that sends frames and shuts its side down still
// gets every reply, sent by the handler from another goroutine, before the
// server closes the connection with ErrPeerClosed.
func TestHalfClose(t *testing.T) {
	h := newHandler(t, replyAsync)
	s := startServer(t, Config{}, h)
	cl := dial(t, s.Addr())
	sc := h.nextOpened(t).c

	var want [][]byte
	for i := range 500 {
		want = append(want, tricky(i, i%64))
	}
	write(t, cl, frames(want...))
	if err := cl.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	checkEcho(t, readFrames(t, cl, cl, len(want)), want)
	expectEOF(t, cl)
	if err := h.closedFor(t, sc); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("OnClose: %v, want ErrPeerClosed", err)
	}
	if st := s.Stats(); st.ClosedPeer != 1 || st.Open != 0 {
		t.Errorf("ClosedPeer %d, Open %d; want 1, 0", st.ClosedPeer, st.Open)
	}
}

// TestReset: a client that resets its connection gets it closed once, with
// ErrReset or ErrPeerClosed, whatever state the connection was in, and the
// loop does not spin on the dead socket.
func TestReset(t *testing.T) {
	tests := []struct {
		name  string
		slow  bool // dial with a small receive buffer
		setup func(t *testing.T, s *Server, h *handler, cl *net.TCPConn, sc *Conn)
	}{
		{"reading", false, func(*testing.T, *Server, *handler, *net.TCPConn, *Conn) {}},
		{"paused", false, func(t *testing.T, s *Server, _ *handler, _ *net.TCPConn, sc *Conn) {
			sc.PauseRead()
			waitStats(t, s, "PausedReads 1", func(st Stats) bool { return st.PausedReads == 1 })
		}},
		{"half-closed with a batch unreleased", false, func(t *testing.T, s *Server, h *handler, cl *net.TCPConn, sc *Conn) {
			write(t, cl, frame([]byte("held")))
			h.receivedFrom(t, sc, 1)
			if err := cl.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			// Once the server's kernel has the FIN, the loop reads the end
			// of file and, with the batch unreleased, keeps the connection
			// open with reading off.
			waitFor(t, "the FIN to be acknowledged", func() bool {
				return tcpState(t, cl) == unix.BPF_TCP_FIN_WAIT2
			})
			if _, closes := h.counts(sc); closes != 0 {
				t.Fatal("closed before its batch was released")
			}
		}},
		{"queue waiting for EPOLLOUT", true, func(t *testing.T, s *Server, _ *handler, cl *net.TCPConn, sc *Conn) {
			// More than the socket buffers hold, with the client reading
			// nothing.
			big := make([]byte, 60000)
			for range 8 << 20 / len(big) {
				if err := sc.Send(big); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the loop to write", func() bool { return sc.Queued() < 8<<20-len(big) })
			if sc.Queued() == 0 {
				t.Fatal("the queue drained: no EPOLLOUT wait to test")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandler(t, replyHold)
			s := startServer(t, Config{Loops: 1, MaxPending: 64 << 20}, h)
			var cl *net.TCPConn
			if tt.slow {
				cl = dialSlow(t, s.Addr())
			} else {
				cl = dial(t, s.Addr())
			}
			sc := h.nextOpened(t).c
			tt.setup(t, s, h, cl, sc)

			if err := cl.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			cl.Close()
			err := h.closedFor(t, sc)
			if !errors.Is(err, ErrReset) && !errors.Is(err, ErrPeerClosed) {
				t.Fatalf("OnClose: %v, want ErrReset or ErrPeerClosed", err)
			}
			t.Logf("OnClose: %v", err)

			// A loop left spinning on the dead socket burns a whole CPU.
			before := cpuTime(t)
			time.Sleep(300 * time.Millisecond) // a window to measure, not a synchronisation
			if used := cpuTime(t) - before; used > 150*time.Millisecond {
				t.Errorf("the process used %v of CPU in 300ms after the reset", used)
			}
			if opens, closes := h.counts(sc); opens != 1 || closes != 1 {
				t.Errorf("%d OnOpen, %d OnClose; want 1 each", opens, closes)
			}
			if st := s.Stats(); st.Open != 0 || st.PausedReads != 0 || st.ClosedReset+st.ClosedPeer != 1 {
				t.Errorf("Open %d, PausedReads %d, ClosedReset %d, ClosedPeer %d", st.Open, st.PausedReads, st.ClosedReset, st.ClosedPeer)
			}
			if err := sc.Send([]byte("late")); !errors.Is(err, ErrClosed) {
				t.Errorf("Send after close: %v, want ErrClosed", err)
			}
		})
	}
}

// tcpState reads a client socket's TCP state.
func tcpState(t testing.TB, c *net.TCPConn) uint8 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	cerr := rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if cerr != nil || err != nil {
		t.Fatalf("TCP_INFO: %v %v", cerr, err)
	}
	return info.State
}

// TestRepliesOnRelease: replies sent while the handler holds a batch are
// written when that batch is released, even if a later batch of the same
// connection is still held, as a pipelining client keeps one. The tick,
// which writes output held back for long, is stopped: replies must not
// depend on it.
func TestRepliesOnRelease(t *testing.T) {
	h := newHandler(t, replyHold)
	s := startServer(t, Config{}, h, noTick)
	cl := dial(t, s.Addr())
	sc := h.nextOpened(t).c

	for i, p := range []string{"one", "two", "three"} {
		write(t, cl, frame([]byte(p)))
		if got := h.receivedFrom(t, sc, 1); string(got[0]) != p {
			t.Fatalf("frame %d: got %q", i, got[0])
		}
	}
	// Three batches held. Reply to the first and release it.
	for i, reply := range []string{"reply one", "reply two"} {
		if err := sc.Send([]byte(reply)); err != nil {
			t.Fatal(err)
		}
		h.releaseOldest(t)
		if got := readFrames(t, cl, cl, 1)[0]; string(got) != reply {
			t.Fatalf("reply %d: got %q", i, got)
		}
	}
	// From another goroutine, with the last batch held, then released.
	go sc.Send([]byte("reply three"))
	waitFor(t, "the Send", func() bool { return sc.Queued() > 0 })
	h.releaseOldest(t)
	if got := readFrames(t, cl, cl, 1)[0]; string(got) != "reply three" {
		t.Fatalf("got %q", got)
	}
	// Nothing held: a Send is written at once.
	if err := sc.Send([]byte("unprompted")); err != nil {
		t.Fatal(err)
	}
	if got := readFrames(t, cl, cl, 1)[0]; string(got) != "unprompted" {
		t.Fatalf("got %q", got)
	}
}

// oweHandler answers a frame "owe" later, from another goroutine, the way
// the telemetry actor answers a request once its span has passed.
type oweHandler struct {
	*handler
	later time.Duration
}

func (h oweHandler) OnFrames(c *Conn, b *Batch) {
	for _, f := range b.Frames {
		if string(f) == "owe" {
			c.Owe()
			h.wg.Go(func() {
				time.Sleep(h.later) // the span of the reply owed
				if err := c.Send([]byte("paid")); err != nil {
					h.t.Errorf("Send: %v", err)
				}
				c.Settle()
			})
		}
	}
	b.Release()
}

// TestHalfCloseWaitsForOwedReplies: a peer that half-closes after a frame
// whose reply the layer above owes still gets that reply, however long
// it takes (past the write timeout, which bounds only the flush), then the
// close.
func TestHalfCloseWaitsForOwedReplies(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	h := oweHandler{newHandler(t, replyNone), 3 * writeTimeout}
	s := startServer(t, Config{WriteTimeout: writeTimeout}, h)
	cl := dial(t, s.Addr())
	sc := h.nextOpened(t).c
	write(t, cl, frame([]byte("owe")))
	if err := cl.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	cl.SetReadDeadline(time.Now().Add(waitLong))
	if got, err := readFrame(cl); err != nil || string(got) != "paid" {
		t.Fatalf("reply: %q, %v", got, err)
	}
	expectEOF(t, cl)
	if err := h.closedFor(t, sc); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("OnClose: %v, want ErrPeerClosed", err)
	}
}

// TestBoundCountsNotYetWritten: the per-connection bound counts the bytes
// not yet handed to the kernel. The bytes of a writev in progress are
// taken as written: senders may queue up to MaxPending more meanwhile,
// so that a reader that keeps up is never cut because one large writev
// had finished in the kernel before the loop subtracted it.
func TestBoundCountsNotYetWritten(t *testing.T) {
	p, err := openPoller(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	const maxPending = 4 << 20
	l := &loop{p: p, srv: &Server{mem: newBudget(1 << 30)}, maxPending: maxPending, stallMark: maxPending / 4 * 3, resumeMark: maxPending / 2}
	c := &Conn{loop: l}
	// The loop has taken 3 MiB and has one writev of all of it in flight.
	c.queued.Store(3 << 20)
	c.inWrite.Store(3 << 20)
	payload := make([]byte, 60000)
	size := int64(wire.FrameSize(len(payload)))
	sent := 0
	for c.queued.Load()-3<<20+size <= maxPending {
		if err := c.Send(payload); err != nil {
			t.Fatalf("Send %d, with %d bytes not yet written: %v", sent, c.queued.Load()-3<<20, err)
		}
		sent++
	}
	if err := c.Send(payload); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Send past MaxPending of unwritten bytes: %v, want ErrSlowConsumer", err)
	}
}
