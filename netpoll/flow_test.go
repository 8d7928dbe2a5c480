package netpoll

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
	"golang.org/x/sys/unix"
)

// fanout is a Handler that sends every frame it receives to every other
// open connection, on the loop, on behalf of its sender: a broadcast
// application at netpoll's level.
type fanout struct {
	t      testing.TB
	mu     sync.Mutex
	conns  map[*Conn]bool
	errs   map[*Conn]error
	opened chan *Conn
}

func newFanout(t testing.TB) *fanout {
	return &fanout{t: t, conns: map[*Conn]bool{}, errs: map[*Conn]error{}, opened: make(chan *Conn, 64)}
}

func (f *fanout) OnOpen(c *Conn) {
	f.mu.Lock()
	f.conns[c] = true
	f.mu.Unlock()
	f.opened <- c
}

func (f *fanout) OnFrames(c *Conn, b *Batch) {
	f.mu.Lock()
	for _, p := range b.Frames {
		frame, _ := wire.Encode(p)
		for o := range f.conns {
			if o != c {
				_ = o.SendFrameFrom(c, frame)
			}
		}
	}
	f.mu.Unlock()
	b.Release()
}

func (f *fanout) OnClose(c *Conn, err error) {
	f.mu.Lock()
	delete(f.conns, c)
	f.errs[c] = err
	f.mu.Unlock()
}

func (f *fanout) next(t testing.TB) *Conn {
	t.Helper()
	select {
	case c := <-f.opened:
		return c
	case <-time.After(waitLong):
		t.Fatal("no connection opened")
		return nil
	}
}

// reason waits for c's close and returns why.
func (f *fanout) reason(t testing.TB, c *Conn) error {
	t.Helper()
	var err error
	waitFor(t, fmt.Sprintf("connection %d to close", c.ID()), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		e, ok := f.errs[c]
		err = e
		return ok
	})
	return err
}

// flood writes n numbered frames of size bytes as fast as the socket
// takes them, in a goroutine; the returned channel reports how many were
// written and the first error.
func flood(c net.Conn, n, size int) <-chan error {
	done := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(c, 256<<10)
		p := make([]byte, size)
		for i := range n {
			binary.BigEndian.PutUint64(p, uint64(i))
			f, _ := wire.AppendFrame(nil, p)
			if _, err := w.Write(f); err != nil {
				done <- fmt.Errorf("frame %d: %w", i, err)
				return
			}
		}
		done <- w.Flush()
	}()
	return done
}

// readSeq reads numbered frames until n have come or the connection ends,
// pausing pause after every chunk bytes to read at a fraction of the
// publisher's speed. It reports how many arrived in order, and an error
// for a gap or a reordering.
func readSeq(c net.Conn, n, chunk int, pause time.Duration) (int, error) {
	r := bufio.NewReaderSize(c, chunk)
	read := 0
	for i := range n {
		c.SetReadDeadline(time.Now().Add(waitLong))
		p, err := readFrame(r)
		if err != nil {
			return i, err
		}
		if got := binary.BigEndian.Uint64(p); got != uint64(i) {
			return i, fmt.Errorf("frame %d carries number %d", i, got)
		}
		read += len(p) + wire.Overhead
		if pause > 0 && read >= chunk {
			read = 0
			time.Sleep(pause) // the reader's own pace, not synchronisation
		}
	}
	return n, nil
}

// TestOverflowThrottleIsLossless: under OverflowThrottle a publisher
// flooding far faster than a subscriber reads is stalled instead of the
// subscriber cut: the steady reader gets every frame in order, the one
// that never reads is closed once it has made no write progress for
// WriteTimeout, and the publisher then goes on.
func TestOverflowThrottleIsLossless(t *testing.T) {
	const (
		frames    = 20_000 // 20 MB of 1 KB frames, 80 times MaxPending
		size      = 1000
		writeTime = 500 * time.Millisecond
	)
	f := newFanout(t)
	s := startServer(t, Config{Overflow: OverflowThrottle, MaxPending: 256 << 10, WriteTimeout: writeTime}, f)
	steady := dial(t, s.Addr())
	f.next(t)
	dialSlow(t, s.Addr())
	silent := f.next(t)
	pub := dial(t, s.Addr())
	f.next(t)

	start := time.Now()
	sent := flood(pub, frames, size)
	// The steady reader reads 64 KiB every 2 ms: about 30 MB/s, a
	// fraction of what the publisher can send on loopback.
	got, err := readSeq(steady, frames, 64<<10, 2*time.Millisecond)
	if err != nil {
		t.Fatalf("steady reader: %d frames in order, then %v", got, err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	err = f.reason(t, silent)
	if !errors.Is(err, ErrSlowConsumer) || errors.Is(err, ErrMemoryLimit) {
		t.Fatalf("silent subscriber: %v, want a slow consumer for its write timeout", err)
	}
	st := s.Stats()
	if st.ClosedSlow != 1 || st.ProducerStalls == 0 || st.Open != 2 {
		t.Errorf("ClosedSlow %d, ProducerStalls %d, Open %d; want 1, >0, 2", st.ClosedSlow, st.ProducerStalls, st.Open)
	}
	t.Logf("%d frames to the steady reader in %v, %d producer stalls", frames, time.Since(start).Round(time.Millisecond), st.ProducerStalls)
}

// TestOverflowCloseStallsThenCuts: under OverflowClose a publisher feeding
// a subscriber that never reads is stalled briefly (each stall at most
// stallMax), and the subscriber is closed once its queue would pass
// MaxPending; the publisher and a reader that keeps up carry on.
func TestOverflowCloseStallsThenCuts(t *testing.T) {
	const (
		frames = 5_000
		size   = 1000
	)
	f := newFanout(t)
	// 1 MiB: room for the fast reader to be starved for a while on a
	// loaded machine (the race detector, other packages' tests) without
	// being cut; the silent one passes it well before the 5 MB end.
	s := startServer(t, Config{MaxPending: 1 << 20}, f)
	fast := dial(t, s.Addr())
	fastConn := f.next(t)
	dialSlow(t, s.Addr())
	silent := f.next(t)
	pub := dial(t, s.Addr())
	f.next(t)

	sent := flood(pub, frames, size)
	got, err := readSeq(fast, frames, 64<<10, 0)
	if err != nil {
		t.Fatalf("fast reader: %d frames in order, then %v (closed for %v)", got, err, f.reason(t, fastConn))
	}
	if err := <-sent; err != nil {
		t.Fatalf("publisher: %v", err)
	}
	if err := f.reason(t, silent); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("silent subscriber: %v, want ErrSlowConsumer", err)
	}
	st := s.Stats()
	if st.ProducerStalls == 0 || st.ClosedSlow != 1 {
		t.Errorf("ProducerStalls %d, ClosedSlow %d; want >0, 1", st.ProducerStalls, st.ClosedSlow)
	}
	waitStats(t, s, "no read stalled", func(st Stats) bool { return st.StalledReads == 0 })
}

// stallSeen reports whether a Send on producer's behalf has stalled it:
// asked for (stallOn, as the Send returns) or already applied by its loop
// (counted).
func stallSeen(s *Server, producer *Conn) bool {
	producer.mu.Lock()
	asked := producer.stalled
	producer.mu.Unlock()
	return asked || s.Stats().ProducerStalls > 0
}

// nudgeUntilStalled sends 1-byte frames to consumer on producer's behalf
// until producer is stalled, and returns how many it sent. A queue can
// pass the stall mark without a stall: a Send counts the bytes of a
// writev in progress as written (the bound counts what has not been
// handed to the kernel), so one made while the loop is in writev judges
// the queue emptier than it turns out to be, and stalls nobody. On a
// busy machine the loop can be in one writev for milliseconds (measured:
// 10,000 Sends during one). So each nudge waits until no writev is in
// progress; 5 bytes a frame keep the queue far from MaxPending.
func nudgeUntilStalled(t testing.TB, s *Server, consumer, producer *Conn) int {
	t.Helper()
	n := 0
	deadline := time.Now().Add(waitLong)
	for ; !stallSeen(s, producer); n++ {
		for consumer.inWrite.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the loop stayed in a writev of %d bytes", consumer.inWrite.Load())
			}
			runtime.Gosched()
		}
		if n == 1000 {
			t.Fatalf("no stall after %d more frames, with %d bytes queued", n, consumer.Queued())
		}
		if err := consumer.SendFrom(producer, []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestCloseStallIsBounded: under OverflowClose a stall ends after
// stallMax even when the queue that caused it never drains, so a
// publisher is never held long by a consumer that cannot keep up.
func TestCloseStallIsBounded(t *testing.T) {
	h := newHandler(t, replyNone)
	s := startServer(t, Config{MaxPending: 1 << 20}, h)
	consumer := silentConn(t, s, h)
	prodCl := dial(t, s.Addr())
	producer := h.nextOpened(t).c

	payload := make([]byte, 60000)
	for consumer.Queued() <= 3<<20/4 {
		if err := consumer.SendFrom(producer, payload); err != nil {
			t.Fatal(err)
		}
	}
	nudgeUntilStalled(t, s, consumer, producer)
	begun := time.Now()
	waitStats(t, s, "the stall to end", func(st Stats) bool { return st.ProducerStalls == 1 && st.StalledReads == 0 })
	if d := time.Since(begun); d > 20*stallMax {
		t.Errorf("the stall lasted %v, want about %v at most", d, stallMax)
	}
	if q := consumer.Queued(); q <= 1<<20/2 {
		t.Fatalf("the consumer's queue drained to %d: the stall did not have to end on its own", q)
	}
	write(t, prodCl, frame([]byte("after the stall")))
	if got := h.receivedFrom(t, producer, 1); string(got[0]) != "after the stall" {
		t.Fatalf("got %q", got[0])
	}
}

// TestThrottleStallWaitsForDrain: under OverflowThrottle a stall lasts
// while the queue stays over the resume mark, and ends once the consumer
// has read it down.
func TestThrottleStallWaitsForDrain(t *testing.T) {
	h := newHandler(t, replyNone)
	s := startServer(t, Config{MaxPending: 1 << 20, Overflow: OverflowThrottle}, h)
	consCl := dialSlow(t, s.Addr())
	o := h.nextOpened(t)
	if err := unix.SetsockoptInt(o.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	consumer := o.c
	prodCl := dial(t, s.Addr())
	producer := h.nextOpened(t).c

	payload := make([]byte, 60000)
	n := 0
	for ; consumer.Queued() <= 3<<20/4; n++ {
		if err := consumer.SendFrom(producer, payload); err != nil {
			t.Fatal(err)
		}
	}
	n += nudgeUntilStalled(t, s, consumer, producer)
	waitStats(t, s, "the producer's stall", func(st Stats) bool { return st.StalledReads == 1 })
	// While stalled the producer is not read.
	write(t, prodCl, frame([]byte("during the stall")))
	// Well past any stall OverflowClose would allow, the stall holds.
	time.Sleep(10 * stallMax) // a span to observe, not synchronisation
	if st := s.Stats(); st.StalledReads != 1 || st.MsgRecv != 0 {
		t.Fatalf("with the queue still full: StalledReads %d, MsgRecv %d; want 1, 0", st.StalledReads, st.MsgRecv)
	}
	// Reading everything drains the queue; the stall ends, and the frame
	// sent meanwhile is read.
	r := bufio.NewReader(consCl)
	for i := range n {
		consCl.SetReadDeadline(time.Now().Add(waitLong))
		if _, err := readFrame(r); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if got := h.receivedFrom(t, producer, 1); string(got[0]) != "during the stall" {
		t.Fatalf("got %q", got[0])
	}
	if st := s.Stats(); st.StalledReads != 0 || st.ProducerStalls != 1 {
		t.Errorf("StalledReads %d, ProducerStalls %d; want 0, 1", st.StalledReads, st.ProducerStalls)
	}
	if _, closes := h.counts(consumer); closes != 0 {
		t.Error("the consumer was closed")
	}
}
