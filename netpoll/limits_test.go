package netpoll

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
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
	const writeTimeout = 100 * time.Millisecond
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
	err := h.closedFor(t, slow)
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("OnClose: %v, want ErrSlowConsumer", err)
	}
	if d := time.Since(start); d < writeTimeout {
		t.Errorf("closed after %v, before the write timeout", d)
	}
	close(stop)
	if n := <-trips; n == 0 {
		t.Error("the other connection made no round trip meanwhile")
	}
	if st := s.Stats(); st.ClosedSlow != 1 {
		t.Errorf("ClosedSlow %d, want 1", st.ClosedSlow)
	}
}

// TestMaxConns: past MaxConns a connection is closed at once; once one
// closes, a new one is served.
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
	expectEOF(t, extra)
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
