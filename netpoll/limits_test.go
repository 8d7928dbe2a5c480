package netpoll

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
	"golang.org/x/sys/unix"
)

// echoing keeps a second connection doing round trips until stop is
// closed, proving the server serves it while another is being dealt with.
// It returns how many round trips were made.
func echoing(t *testing.T, c net.Conn, stop <-chan struct{}) <-chan int {
	trips := make(chan int, 1)
	go func() {
		n := 0
		defer func() { trips <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := tricky(n, 100)
			c.SetDeadline(time.Now().Add(waitLong))
			if _, err := c.Write(frame(p)); err != nil {
				t.Errorf("round trip %d: %v", n, err)
				return
			}
			got, err := readFrame(c)
			if err != nil || string(got) != string(p) {
				t.Errorf("round trip %d: %s, %v", n, brief(got), err)
				return
			}
			n++
		}
	}()
	return trips
}

// TestSlowConsumer fills the queue of a client that never reads, from
// another goroutine, past MaxPending: that connection alone is closed as a
// slow consumer.
func TestSlowConsumer(t *testing.T) {
	const maxPending = 256 << 10
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{MaxPending: maxPending}, h)

	other := dial(t, s.Addr())
	otherConn := h.nextOpened(t).c
	roundTrip(t, other, []byte("warm up"))
	dial(t, s.Addr()) // never reads
	slow := h.nextOpened(t).c

	stop := make(chan struct{})
	trips := echoing(t, other, stop)

	payload := make([]byte, 32<<10)
	sent := 0
	var err error
	for ; err == nil; sent++ {
		err = slow.Send(payload)
		if sent > 100_000 {
			t.Fatal("the queue never passed MaxPending")
		}
	}
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Send %d: %v, want ErrSlowConsumer", sent, err)
	}
	if err := slow.Send(payload); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after the slow close: %v, want ErrClosed", err)
	}
	if err := h.closedFor(t, slow); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("OnClose: %v, want ErrSlowConsumer", err)
	}
	close(stop)
	if n := <-trips; n == 0 {
		t.Error("the other connection made no round trip meanwhile")
	}
	roundTrip(t, other, []byte("still here"))
	if _, closes := h.counts(otherConn); closes != 0 {
		t.Error("the other connection was closed")
	}
	st := s.Stats()
	if st.ClosedSlow != 1 || st.Open != 1 {
		t.Errorf("ClosedSlow %d, Open %d; want 1, 1", st.ClosedSlow, st.Open)
	}
}

// TestWriteTimeout: a queue below MaxPending that does not drain within
// WriteTimeout is a slow consumer too.
func TestWriteTimeout(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{MaxPending: 64 << 20, WriteTimeout: writeTimeout}, h)

	other := dial(t, s.Addr())
	h.nextOpened(t)
	dialSlow(t, s.Addr())
	slow := h.nextOpened(t).c
	stop := make(chan struct{})
	trips := echoing(t, other, stop)

	// More than the socket buffers can hold, far less than MaxPending.
	payload := make([]byte, 60000)
	start := time.Now()
	// The loop may time the queue out before all is sent: then Send
	// reports the connection closed, never ErrSlowConsumer, which would
	// mean the byte bound was hit instead.
	for range 10 << 20 / len(payload) {
		if err := slow.Send(payload); err != nil {
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Send: %v, want nil or ErrClosed", err)
			}
			break
		}
	}
	// The socket buffers filled while the frames were queued: the last
	// write progress was before now.
	sent := time.Now()
	err := h.closedFor(t, slow)
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("OnClose: %v, want ErrSlowConsumer", err)
	}
	// The tick checks every writeTimeout/8: the close comes within an
	// eighth of the timeout after it expires, plus scheduling.
	if d := time.Since(start); d < writeTimeout {
		t.Errorf("closed after %v, before the write timeout", d)
	}
	if d := time.Since(sent); d > 2*writeTimeout {
		t.Errorf("closed %v after the last frame was queued, want within %v of a %v timeout", d, writeTimeout, writeTimeout)
	}
	close(stop)
	if n := <-trips; n == 0 {
		t.Error("the other connection made no round trip meanwhile")
	}
	if st := s.Stats(); st.ClosedSlow != 1 {
		t.Errorf("ClosedSlow %d, want 1", st.ClosedSlow)
	}
}

// TestMaxConns: past MaxConns a connection gets one frame saying why and
// is closed at once; once one closes, a new one is served.
func TestMaxConns(t *testing.T) {
	const limit = 5
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{MaxConns: limit}, h)

	var conns []*net.TCPConn
	for i := range limit {
		c := dial(t, s.Addr())
		roundTrip(t, c, tricky(i, 8))
		conns = append(conns, c)
	}
	extra := dial(t, s.Addr())
	expectRefusal(t, extra)
	st := waitStats(t, s, "ClosedLimit 1", func(st Stats) bool { return st.ClosedLimit == 1 })
	if st.Open != limit || st.Accepted != limit+1 {
		t.Errorf("Open %d, Accepted %d; want %d, %d", st.Open, st.Accepted, limit, limit+1)
	}
	for i, c := range conns {
		roundTrip(t, c, tricky(i, 9))
	}

	conns[0].Close()
	if err := h.nextClosed(t).err; !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("OnClose: %v", err)
	}
	c := dial(t, s.Addr())
	roundTrip(t, c, []byte("room again"))
	if st := s.Stats(); st.ClosedLimit != 1 || st.Open != limit {
		t.Errorf("ClosedLimit %d, Open %d; want 1, %d", st.ClosedLimit, st.Open, limit)
	}
}

// TestIdleTimeout closes a connection that sends nothing, and keeps one
// that does, or whose reading the layer above has paused.
func TestIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{IdleTimeout: idle}, h)

	start := time.Now()
	dial(t, s.Addr())
	silent := h.nextOpened(t).c
	active := dial(t, s.Addr())
	activeConn := h.nextOpened(t).c
	pausedCl := dial(t, s.Addr())
	paused := h.nextOpened(t).c
	paused.PauseRead()

	// The active connection sends every idle/4 for three idle periods.
	ctx, cancel := context.WithTimeout(context.Background(), 3*idle)
	defer cancel()
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	var silentErr error
	for i := 0; ctx.Err() == nil; i++ {
		roundTrip(t, active, tricky(i, 8))
		select {
		case ev := <-h.closed:
			if ev.c != silent {
				t.Fatalf("connection %d closed: %v", ev.c.ID(), ev.err)
			}
			silentErr = ev.err
			if d := time.Since(start); d < idle {
				t.Errorf("closed as idle after %v", d)
			}
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	if silentErr == nil {
		silentErr = h.closedFor(t, silent)
	}
	if !errors.Is(silentErr, ErrIdle) {
		t.Fatalf("silent connection: %v, want ErrIdle", silentErr)
	}
	for _, c := range []*Conn{activeConn, paused} {
		if _, closes := h.counts(c); closes != 0 {
			t.Errorf("connection %d closed", c.ID())
		}
	}
	if st := s.Stats(); st.ClosedIdle != 1 || st.Open != 2 {
		t.Errorf("ClosedIdle %d, Open %d; want 1, 2", st.ClosedIdle, st.Open)
	}
	// Once resumed, the paused connection is served.
	paused.ResumeRead()
	roundTrip(t, pausedCl, []byte("resumed"))
}

// expectRefusal reads the refusal a connection over a limit gets, one
// error frame, and then the server's close.
func expectRefusal(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLong))
	got, err := readFrame(c)
	if err != nil || string(got) != `{"error":"connection limit reached"}` {
		t.Fatalf("refusal: %s, %v", brief(got), err)
	}
	expectEOF(t, c)
}

// TestWriteTimeoutCountsProgress: the write timeout is about progress,
// not an empty queue: a reader slower than its queue fills, but reading,
// is never closed for it.
func TestWriteTimeoutCountsProgress(t *testing.T) {
	const writeTimeout = 2 * time.Second
	h := newHandler(t, replyNone)
	s := startServer(t, Config{MaxPending: 64 << 20, WriteTimeout: writeTimeout}, h)
	cl := dialSlow(t, s.Addr())
	o := h.nextOpened(t)
	// A small send buffer keeps the queue in the server's hands rather
	// than the kernel's.
	if err := unix.SetsockoptInt(o.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	c := o.c
	payload := make([]byte, 60000)
	const n = 70 // 4 MB: two write timeouts' worth at the reader's pace
	go func() {
		for range n {
			if c.Send(payload) != nil {
				return
			}
		}
	}()
	// 256 KiB every writeTimeout/8: the queue never empties for two
	// timeouts, but moves all the time.
	buf := make([]byte, 256<<10)
	total := 0
	for total < n*wire.FrameSize(len(payload)) {
		cl.SetReadDeadline(time.Now().Add(waitLong))
		k, err := io.ReadFull(cl, buf[:min(len(buf), n*wire.FrameSize(len(payload))-total)])
		total += k
		if err != nil {
			t.Fatalf("after %d bytes: %v (closed: %v)", total, err, h.reasonFor(t, c))
		}
		time.Sleep(writeTimeout / 8) // the reader's pace
	}
	if _, closes := h.counts(c); closes != 0 {
		t.Fatal("a reader making progress was closed")
	}
}

// TestMaxConnsPerIP: past MaxConnsPerIP from one address a connection is
// refused with one frame saying why; other addresses are served, and a
// close makes room again.
func TestMaxConnsPerIP(t *testing.T) {
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{Addr: "127.0.0.1:0", MaxConnsPerIP: 2}, h)
	from := func(ip string) *net.TCPConn {
		d := dialer()
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
		c, err := d.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatalf("dial from %s: %v", ip, err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.TCPConn)
	}
	a1, a2 := from("127.0.0.1"), from("127.0.0.1")
	roundTrip(t, a1, []byte("a1"))
	roundTrip(t, a2, []byte("a2"))
	expectRefusal(t, from("127.0.0.1"))
	b := from("127.0.0.2")
	roundTrip(t, b, []byte("another address"))
	a1.Close()
	waitStats(t, s, "a1's close", func(st Stats) bool { return st.ClosedPeer == 1 })
	roundTrip(t, from("127.0.0.1"), []byte("room again"))
	if st := s.Stats(); st.ClosedLimit != 1 || st.Open != 3 {
		t.Errorf("ClosedLimit %d, Open %d; want 1, 3", st.ClosedLimit, st.Open)
	}
}

// TestIdleCountsFrames: the idle timeout counts complete frames, not
// bytes: a client dripping one byte of a frame now and then is idle.
func TestIdleCountsFrames(t *testing.T) {
	const idle = 300 * time.Millisecond
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{IdleTimeout: idle}, h)
	cl := dial(t, s.Addr())
	c := h.nextOpened(t).c
	f := frame(make([]byte, 100))
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range f {
			if _, err := cl.Write(f[i : i+1]); err != nil {
				return
			}
			time.Sleep(idle / 5) // the drip's pace
		}
	}()
	if err := h.closedFor(t, c); !errors.Is(err, ErrIdle) {
		t.Fatalf("OnClose: %v, want ErrIdle", err)
	}
	if d := time.Since(start); d < idle || d > 2*idle {
		t.Errorf("closed after %v, want within %v..%v", d, idle, 2*idle)
	}
	<-done
}

// TestFrameTimeout: a frame begun must be complete within FrameTimeout;
// a connection that completes its frames, however slowly each arrives
// in pieces, within it is not closed.
func TestFrameTimeout(t *testing.T) {
	const frameTimeout = 300 * time.Millisecond
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{FrameTimeout: frameTimeout}, h)
	stuck := dial(t, s.Addr())
	stuckConn := h.nextOpened(t).c
	slow := dial(t, s.Addr())
	slowConn := h.nextOpened(t).c

	start := time.Now()
	write(t, stuck, frame(make([]byte, 1000))[:500])
	// The slow client sends each frame in two halves, frameTimeout/3
	// apart, for several frame timeouts.
	for i := range 6 {
		f := frame(tricky(i, 200))
		write(t, slow, f[:100])
		time.Sleep(frameTimeout / 3) // the client's pace
		write(t, slow, f[100:])
		slow.SetReadDeadline(time.Now().Add(waitLong))
		if got, err := readFrame(slow); err != nil || !bytes.Equal(got, tricky(i, 200)) {
			t.Fatalf("frame %d: %s, %v", i, brief(got), err)
		}
	}
	if err := h.reasonFor(t, stuckConn); !errors.Is(err, ErrFrameTimeout) {
		t.Fatalf("OnClose: %v, want ErrFrameTimeout", err)
	}
	if _, closes := h.counts(slowConn); closes != 0 {
		t.Error("the connection completing its frames was closed")
	}
	if st := s.Stats(); st.ClosedFrame != 1 || st.Open != 1 {
		t.Errorf("ClosedFrame %d, Open %d; want 1, 1", st.ClosedFrame, st.Open)
	}
	if d := time.Since(start); d < frameTimeout {
		t.Errorf("the stuck frame was closed after %v, before the frame timeout", d)
	}
}

// TestKeepAlive: accepted sockets have TCP keepalive as configured (they
// inherit it from the listener), and none when it is turned off.
func TestKeepAlive(t *testing.T) {
	for _, tt := range []struct {
		cfg  time.Duration
		want int // TCP_KEEPIDLE seconds, 0 for off
	}{{0, int(DefaultTCPKeepAlive / time.Second)}, {7 * time.Second, 7}, {-1, 0}} {
		h := newHandler(t, replyEcho)
		s := startServer(t, Config{TCPKeepAlive: tt.cfg}, h)
		dial(t, s.Addr())
		fd := h.nextOpened(t).fd
		on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		if err != nil {
			t.Fatal(err)
		}
		if tt.want == 0 {
			if on != 0 {
				t.Errorf("TCPKeepAlive %v: SO_KEEPALIVE on", tt.cfg)
			}
			continue
		}
		idle, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		intvl, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		cnt, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		nodelay, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		if on != 1 || idle != tt.want || intvl != tt.want || cnt != keepAliveProbes || nodelay != 1 {
			t.Errorf("TCPKeepAlive %v: keepalive %d, idle %d, interval %d, probes %d, nodelay %d; want 1, %d, %d, %d, 1",
				tt.cfg, on, idle, intvl, cnt, nodelay, tt.want, tt.want, keepAliveProbes)
		}
	}
}
