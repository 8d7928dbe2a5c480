package netpoll

import (
	"bytes"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

func TestNewFrames(t *testing.T) {
	three := frames([]byte("a"), []byte(""), bytes.Repeat([]byte("z"), 300))
	f, err := NewFrames(three)
	if err != nil || f.Len() != 3 || f.Size() != len(three) || f.payload != 301 {
		t.Fatalf("NewFrames(three frames) = %d frames, %d bytes, %d payload, %v", f.Len(), f.Size(), f.payload, err)
	}
	for name, b := range map[string][]byte{
		"empty":           nil,
		"bad start":       append([]byte{0x02}, three[1:]...),
		"bad end":         append(three[:len(three)-1:len(three)-1], 0x00),
		"cut short":       three[:len(three)-1],
		"trailing byte":   append(three[:len(three):len(three)], wire.Start),
		"header only":     []byte{wire.Start, 0, 1},
		"length past end": {wire.Start, 0xff, 0xff, wire.End},
	} {
		if _, err := NewFrames(b); !errors.Is(err, ErrNotFrames) {
			t.Errorf("NewFrames(%s) = %v, want ErrNotFrames", name, err)
		}
	}
}

// FuzzNewFrames: NewFrames accepts exactly what the wire decoder reads as
// whole frames with nothing left over, and counts them as it does.
func FuzzNewFrames(f *testing.F) {
	f.Add(frames([]byte("a"), []byte("bc")))
	f.Add([]byte{wire.Start, 0, 0, wire.End})
	f.Add([]byte{wire.Start, 0, 2, 'x', wire.End})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d wire.Decoder
		d.Init(wire.MaxPayload)
		d.Feed(b)
		n, payload, whole := 0, 0, true
		for {
			p, ok, err := d.Next()
			if err != nil {
				whole = false
				break
			}
			if !ok {
				break
			}
			n++
			payload += len(p)
		}
		whole = whole && n > 0 && d.Buffered() == 0
		fr, err := NewFrames(b)
		if whole != (err == nil) {
			t.Fatalf("NewFrames(%x): %v; the decoder read %d whole frames (all of it: %v)", b, err, n, whole)
		}
		if err == nil && (fr.Len() != n || fr.payload != payload || fr.Size() != len(b)) {
			t.Fatalf("NewFrames(%x) = %d frames, %d payload; the decoder read %d, %d", b, fr.Len(), fr.payload, n, payload)
		}
	})
}

// SendFramesFrom queues a run of frames as one piece: every frame arrives
// whole and in order, after what was queued before and before what is
// queued after, and the sent counters count each frame.
func TestSendFramesFrom(t *testing.T) {
	h := newHandler(t, replyNone)
	s := startServer(t, Config{}, h)
	c := dial(t, s.Addr())
	conn := h.nextOpened(t).c
	run, err := NewFrames(frames([]byte("two"), []byte("three"), bytes.Repeat([]byte("4"), 5000)))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := conn.SendFramesFrom(nil, run); err != nil {
		t.Fatal(err)
	}
	if err := conn.Send([]byte("five")); err != nil {
		t.Fatal(err)
	}
	got := readFrames(t, c, c, 5)
	want := [][]byte{[]byte("one"), []byte("two"), []byte("three"), bytes.Repeat([]byte("4"), 5000), []byte("five")}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d = %q, want %q", i, got[i], want[i])
		}
	}
	waitStats(t, s, "5 frames sent", func(st Stats) bool { return st.MsgSent == 5 })
}

// The bound counts a run of frames whole: one that does not fit closes
// the connection as a slow consumer and queues none of it.
func TestSendFramesFromPastTheBound(t *testing.T) {
	const maxPending = 128 << 10
	h := newHandler(t, replyNone)
	s := startServer(t, Config{MaxPending: maxPending}, h)
	c := dial(t, s.Addr())
	conn := h.nextOpened(t).c
	var b []byte
	for len(b) < maxPending+1 {
		b, _ = wire.AppendFrame(b, make([]byte, 1000))
	}
	run, err := NewFrames(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.SendFramesFrom(nil, run); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("SendFramesFrom past MaxPending = %v, want ErrSlowConsumer", err)
	}
	if err := h.closedFor(t, conn); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("closed with %v, want ErrSlowConsumer", err)
	}
	c.SetReadDeadline(time.Now().Add(waitLong))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Fatal("a frame of a run that did not fit was written")
	}
}

// TestQuietConnectionsGiveUpTheirBuffers: connections that each had a
// burst of replies, and then went quiet, hold no outbound buffers a few
// ticks later: the heap per connection falls back to what it was before
// the burst, whatever the burst took (4 KiB of arena each, kept).
func TestQuietConnectionsGiveUpTheirBuffers(t *testing.T) {
	const n = 500
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{WriteTimeout: 800 * time.Millisecond}, h) // ticks every 100 ms
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		conns[i] = dial(t, s.Addr())
	}
	waitStats(t, s, "every connection open", func(st Stats) bool { return st.Open == n })
	before := heap()
	burst := frames(bytes.Repeat([]byte("x"), 1000), bytes.Repeat([]byte("y"), 1000), bytes.Repeat([]byte("z"), 1000))
	for _, c := range conns {
		if _, err := c.Write(burst); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		readFrames(t, c, c, 3)
	}
	deadline := time.Now().Add(waitLong)
	for {
		time.Sleep(100 * time.Millisecond)
		grown := (heap() - before) / n
		if grown < 1<<10 {
			t.Logf("heap: %d B more per connection than before the burst", grown)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("heap: %d B more per connection than before the burst: the buffers were kept", grown)
		}
	}
}
