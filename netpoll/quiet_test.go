package netpoll

import (
	"bufio"
	"sync"
	"testing"
	"time"
)

// quietHandler is the tests' echo handler that also hears of quiet
// connections: it records when each was told, and refuses (asks to be
// told again) as many times as refuse says for it.
type quietHandler struct {
	*handler
	mu     sync.Mutex
	told   map[*Conn][]time.Time
	refuse map[uint64]int // by connection ID
}

func (h *quietHandler) OnQuiet(c *Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.told[c] = append(h.told[c], time.Now())
	if h.refuse[c.ID()] > 0 {
		h.refuse[c.ID()]--
		return false
	}
	return true
}

func (h *quietHandler) calls(c *Conn) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.told[c]...)
}

// TestQuietHandler: a QuietHandler hears of a connection once it has
// completed no frame for QuietTicks ticks, and not before; once it says
// it is done, not again until the connection has sent another frame and
// gone quiet again; while it says it is not, again at later ticks. A
// connection that never sent a frame is quiet too.
func TestQuietHandler(t *testing.T) {
	const tick = 10 * time.Millisecond
	h := &quietHandler{handler: newHandler(t, replyEcho), told: map[*Conn][]time.Time{}, refuse: map[uint64]int{}}
	s := startServer(t, Config{WriteTimeout: 8 * tick}, h)
	if got := time.Duration(s.loops[0].tickEvery); got != tick {
		t.Fatalf("tick every %v, want %v", got, tick)
	}

	talker := dial(t, s.Addr())
	tc := (<-h.opened).c
	silent := dial(t, s.Addr())
	sc := (<-h.opened).c
	stubborn := dial(t, s.Addr())
	stc := (<-h.opened).c
	h.mu.Lock()
	h.refuse[stc.ID()] = 3
	h.mu.Unlock()

	r := bufio.NewReader(talker)
	say := func(payload string) time.Time {
		t.Helper()
		sent := time.Now()
		if _, err := talker.Write(frame([]byte(payload))); err != nil {
			t.Fatal(err)
		}
		if got := readFrames(t, talker, r, 1); string(got[0]) != payload {
			t.Fatalf("echo %q, want %q", got[0], payload)
		}
		return sent
	}
	sent := say("one")
	waitCalls := func(c *Conn, n int) []time.Time {
		t.Helper()
		deadline := time.Now().Add(waitLong)
		for {
			if got := h.calls(c); len(got) >= n {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("connection %d: told %d times, want %d", c.ID(), len(h.calls(c)), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if got := waitCalls(tc, 1); got[0].Sub(sent) < QuietTicks*tick {
		t.Errorf("told %v after its frame was sent, want at least %v", got[0].Sub(sent), QuietTicks*tick)
	}
	waitCalls(sc, 1)
	waitCalls(stc, 4)

	// Done: not told again while it stays quiet.
	time.Sleep(10 * tick)
	for _, c := range []*Conn{tc, sc, stc} {
		want := 1
		if c == stc {
			want = 4 // refused three times, then done
		}
		if n := len(h.calls(c)); n != want {
			t.Errorf("connection %d told %d times, want %d", c.ID(), n, want)
		}
	}

	// A frame starts a new quiet spell.
	sent = say("two")
	if got := waitCalls(tc, 2); got[1].Sub(sent) < QuietTicks*tick {
		t.Errorf("told again %v after its frame was sent, want at least %v", got[1].Sub(sent), QuietTicks*tick)
	}
	silent.Close()
	stubborn.Close()
	<-h.closed
	<-h.closed
}
