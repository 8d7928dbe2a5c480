package netpoll

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fillQueue sends 60,000-byte frames to c until at least n bytes are queued
// (what the kernel takes off the queue is not counted), and returns the
// first error.
func fillQueue(t testing.TB, c *Conn, n int) error {
	t.Helper()
	payload := make([]byte, 60000)
	for c.Queued() < n {
		if err := c.Send(payload); err != nil {
			return err
		}
	}
	return nil
}

// silentConn opens a connection that never reads, with the socket buffers
// on both sides made small, so that what the server queues for it stays
// in its queue instead of in the kernel's send buffer (which autotuning
// would grow to a megabyte or more, and which no budget of the process's
// counts).
func silentConn(t testing.TB, s *Server, h *handler) *Conn {
	t.Helper()
	dialSlow(t, s.Addr())
	o := h.nextOpened(t)
	if err := unix.SetsockoptInt(o.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	return o.c
}

// TestMemoryBudgetReclaimsLargestFirst: with the server's queues over 3/4
// of MaxMemory every loop stalls reading; when the stall does not bring
// the total down, the connections holding the most bytes are closed,
// largest first, until it is below 1/2 — and no more. A reader that keeps
// up is never closed, and reading resumes once the total is down.
//
// Each loop reclaims from its own connections, its share of the excess:
// largest first is exact within a loop, so the test runs one. (Across
// loops a loop may close one more than the global order would, when its
// share ends inside a large holder.)
func TestMemoryBudgetReclaimsLargestFirst(t *testing.T) {
	const mib = 1 << 20
	const limit = 16 * mib // stall at 12, resume below 8
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{MaxMemory: limit, MaxPending: 8 * mib, Loops: 1}, h)

	reader := dial(t, s.Addr())
	readerConn := h.nextOpened(t).c
	roundTrip(t, reader, []byte("warm up"))
	silent := make([]*Conn, 8)
	for i := range silent {
		silent[i] = silentConn(t, s, h)
	}
	// 4.5 + 3.5 + 6×0.5 = 11 MiB: below the stall mark.
	sizes := []int{9 * mib / 2, 7 * mib / 2, mib / 2, mib / 2, mib / 2, mib / 2, mib / 2, mib / 2}
	for i, c := range silent {
		if err := fillQueue(t, c, sizes[i]); err != nil {
			t.Fatalf("filling connection %d: %v", i, err)
		}
	}
	if st := s.Stats(); st.MemoryStalled || st.ClosedMemory != 0 {
		t.Fatalf("below the stall mark: stalled %v, closed %d", st.MemoryStalled, st.ClosedMemory)
	}
	// 1.5 MiB more crosses 3/4: the stall begins, and since nobody reads,
	// reclaiming takes the total to 3/8 (6 MiB) or below, largest first:
	// the two largest holders go (12.5 → 4.5 MiB), the rest stay.
	if err := fillQueue(t, silent[7], 2*mib); err != nil {
		t.Fatalf("crossing the stall mark: %v", err)
	}
	for i, c := range silent[:2] {
		if err := h.reasonFor(t, c); !errors.Is(err, ErrMemoryLimit) || !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("holder %d closed with %v, want ErrMemoryLimit and ErrSlowConsumer", i, err)
		}
	}
	st := waitStats(t, s, "the stall to end", func(st Stats) bool { return !st.MemoryStalled })
	if st.ClosedMemory != 2 || st.MemoryStalls != 1 || st.ClosedSlow != 0 {
		t.Errorf("ClosedMemory %d, MemoryStalls %d, ClosedSlow %d; want 2, 1, 0", st.ClosedMemory, st.MemoryStalls, st.ClosedSlow)
	}
	if st.MemoryUsed >= limit/2 {
		t.Errorf("MemoryUsed %d after reclaiming, want below %d", st.MemoryUsed, limit/2)
	}
	for i, c := range append([]*Conn{readerConn}, silent[2:]...) {
		if _, closes := h.counts(c); closes != 0 {
			t.Errorf("connection %d (of the kept ones) was closed", i)
		}
	}
	roundTrip(t, reader, []byte("reading again"))
}

// TestMemoryBudgetIsAHardBound: a Send that would take the total past
// MaxMemory is refused and its connection closed (ErrMemoryLimit); the
// total never passes the budget, and closing a connection gives back all
// it held.
func TestMemoryBudgetIsAHardBound(t *testing.T) {
	const limit = MinMaxMemory
	h := newHandler(t, replyNone)
	// The connection's own bound is above the budget, so the budget
	// refuses first.
	s := startServer(t, Config{MaxMemory: limit, MaxPending: 2 * limit}, h)

	c := silentConn(t, s, h)
	payload := make([]byte, 60000)
	var err error
	for sent := 0; err == nil; sent++ {
		err = c.Send(payload)
		if used := s.Stats().MemoryUsed; used > limit {
			t.Fatalf("MemoryUsed %d after %d frames, over the budget %d", used, sent, limit)
		}
		if sent > 2*limit/len(payload) {
			t.Fatal("the budget never refused a Send")
		}
	}
	if !errors.Is(err, ErrMemoryLimit) && !errors.Is(err, ErrClosed) {
		t.Fatalf("Send: %v, want ErrMemoryLimit (or ErrClosed, when reclaiming closed it first); queued %d, stats %+v", err, c.Queued(), s.Stats())
	}
	if err := h.reasonFor(t, c); !errors.Is(err, ErrMemoryLimit) {
		t.Fatalf("OnClose: %v, want ErrMemoryLimit", err)
	}
	waitStats(t, s, "the budget to be given back", func(st Stats) bool { return st.MemoryUsed == 0 })
}

// TestCarryAndBatchesCount: a frame split across reads counts its carry
// buffer against the budget until it completes or its connection closes;
// a batch counts its payload bytes until the handler releases it.
func TestCarryAndBatchesCount(t *testing.T) {
	h := newHandler(t, replyHold)
	s := startServer(t, Config{}, h)
	cl := dial(t, s.Addr())
	c := h.nextOpened(t)

	f := frame(make([]byte, 50000))
	write(t, cl, f[:1000])
	waitFor(t, "the partial frame to be read", func() bool { n, err := inq(c.fd); return err == nil && n == 0 })
	st := waitStats(t, s, "the carry buffer to count", func(st Stats) bool { return st.MemoryUsed > 0 })
	if st.MemoryUsed < int64(len(f)) || st.MemoryUsed > 64<<10+4 {
		t.Errorf("MemoryUsed %d with a 50,004-byte frame begun, want the frame's carry buffer (%d..%d)", st.MemoryUsed, len(f), 64<<10+4)
	}
	write(t, cl, f[1000:])
	if got := h.receivedFrom(t, c.c, 1); len(got[0]) != 50000 {
		t.Fatalf("got a %d-byte frame", len(got[0]))
	}
	// The carry buffer is back; the batch holding the payload counts.
	st = waitStats(t, s, "the carry buffer to go", func(st Stats) bool { return st.MemoryUsed < int64(len(f))+1000 })
	if st.MemoryUsed < 50000 {
		t.Errorf("MemoryUsed %d with a 50,000-byte batch held, want at least that", st.MemoryUsed)
	}
	// The handler reports the frame before it keeps the batch.
	waitFor(t, "the batch to be held", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.held) == 1 })
	h.releaseHeld()
	waitStats(t, s, "the batch to be given back", func(st Stats) bool { return st.MemoryUsed == 0 })

	// A connection closing mid-frame gives its carry buffer back.
	write(t, cl, f[:30000])
	waitStats(t, s, "the second carry buffer to count", func(st Stats) bool { return st.MemoryUsed >= int64(len(f)) })
	cl.Close()
	h.closedFor(t, c.c)
	waitStats(t, s, "the carry buffer to be given back at close", func(st Stats) bool { return st.MemoryUsed == 0 })
}

// TestMemoryStallStopsReading: while the budget stalls, no connection is
// read (TCP pushes back on senders), and every connection is read again
// once the total falls below the resume mark.
func TestMemoryStallStopsReading(t *testing.T) {
	const limit = MinMaxMemory
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{MaxMemory: limit, MaxPending: limit}, h)
	sender := dial(t, s.Addr())
	roundTrip(t, sender, []byte("before"))
	h.nextOpened(t)
	hog := silentConn(t, s, h)
	// 13 MiB queued for a client that does not read: over 3/4, under 7/8.
	if err := fillQueue(t, hog, 13<<20); err != nil {
		t.Fatal(err)
	}
	waitStats(t, s, "the stall", func(st Stats) bool { return st.MemoryStalled })
	write(t, sender, frame([]byte("while stalled")))
	sender.SetReadDeadline(time.Now().Add(reclaimAfter / 4))
	if got, err := readFrame(sender); err == nil {
		// The stall may already have ended by reclaiming the hog; then
		// the echo is fine, but the hog must be gone.
		if _, closes := h.counts(hog); closes == 0 {
			t.Fatalf("echoed %q during the stall", got)
		}
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("reading during the stall: %v", err)
	} else {
		// Nobody reads the hog's queue: reclaiming ends the stall, and
		// the frame sent meanwhile is echoed.
		sender.SetReadDeadline(time.Now().Add(waitLong))
		if got, err := readFrame(sender); err != nil || string(got) != "while stalled" {
			t.Fatalf("after the stall: %q, %v", got, err)
		}
	}
	if err := h.reasonFor(t, hog); !errors.Is(err, ErrMemoryLimit) {
		t.Fatalf("hog: %v, want ErrMemoryLimit", err)
	}
}

// The budget's reserve refuses exactly what would pass the limit.
func TestBudgetReserve(t *testing.T) {
	b := newBudget(100)
	for _, step := range []struct {
		n    int64
		ok   bool
		used int64
	}{{60, true, 60}, {40, true, 100}, {1, false, 100}, {-30, true, 70}, {31, false, 70}, {30, true, 100}} {
		if ok := b.reserve(step.n); ok != step.ok || b.used.Load() != step.used {
			t.Fatalf("reserve(%d) = %v with %d used, want %v with %d", step.n, ok, b.used.Load(), step.ok, step.used)
		}
	}
	if b.stallAt != 75 || b.reclaimAt != 84 || b.resumeAt != 50 {
		t.Errorf("marks %d %d %d, want 75 84 50", b.stallAt, b.reclaimAt, b.resumeAt)
	}
}
