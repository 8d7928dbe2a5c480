package broker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPubSubHoldsAnswersBehindAWaitingSub: on a clustered broker, a SUB
// whose topic the other nodes have not yet heard of is answered once they
// have (WhenReachable), and the stream's answers after it wait behind it,
// in order; the MSG frames it is owed meanwhile are not held. Past
// maxHeld answers the wait ends. The cluster is stood in for by the
// hooks a clustered broker sets.
func TestPubSubHoldsAnswersBehindAWaitingSub(t *testing.T) {
	var reachable, atOnce atomic.Bool
	var mu sync.Mutex
	var waiting []func(bool)
	_, srv := serveSetUp(t, PubSub(), true, true, func(rt *actorRuntime) {
		l := rt.Streams()
		l.set.known = func(string) bool { return reachable.Load() }
		l.set.whenKnown = func(_ string, fn func(bool)) {
			if atOnce.Load() {
				fn(true) // became reachable between the two calls
				return
			}
			mu.Lock()
			waiting = append(waiting, fn)
			mu.Unlock()
		}
	})
	release := func() int {
		mu.Lock()
		w := waiting
		waiting = nil
		mu.Unlock()
		for _, fn := range w {
			fn(true)
		}
		return len(w)
	}
	c := dialRaw(t, srv)
	r := newFrameReader(c)
	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			p, err := r.next(5 * time.Second)
			if err != nil || string(p) != w {
				t.Fatalf("got %q (%v), want %q", p, err, w)
			}
		}
	}
	expectNothing := func() {
		t.Helper()
		if p, err := r.next(200 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %q (%v) while the answers are held", p, err)
		}
	}
	if _, err := c.Write(frames("SUB a", "PUB a x", "PUB zz y", "UNSUB a", "bogus")); err != nil {
		t.Fatal(err)
	}
	expect("MSG a x") // owed to the subscriber at once
	expectNothing()
	if n := release(); n != 1 {
		t.Fatalf("%d waits, want 1 (the SUB)", n)
	}
	expect("+OK", "+OK", "+OK", "+OK", "-ERR unknown command; want SUB, UNSUB or PUB")

	// Reachable already: no wait.
	reachable.Store(true)
	if _, err := c.Write(frames("SUB b", "PUB b z")); err != nil {
		t.Fatal(err)
	}
	expect("+OK", "MSG b z", "+OK")
	if n := release(); n != 0 {
		t.Fatalf("%d waits for a topic already reachable", n)
	}

	// Not reachable when asked, but by the time it waits: answered at
	// once, in order, with the answers behind it.
	reachable.Store(false)
	atOnce.Store(true)
	if _, err := c.Write(frames("SUB d", "PUB d w", "bogus")); err != nil {
		t.Fatal(err)
	}
	expect("+OK", "MSG d w", "+OK", "-ERR unknown command; want SUB, UNSUB or PUB")
	atOnce.Store(false)

	// Past maxHeld answers, the wait ends: everything comes, in order,
	// and the late call back sends nothing twice.
	cmds := []string{"SUB c"}
	for i := range maxHeld + 10 {
		cmds = append(cmds, fmt.Sprintf("PUB nobody %d", i))
	}
	if _, err := c.Write(frames(cmds...)); err != nil {
		t.Fatal(err)
	}
	for range len(cmds) {
		expect("+OK")
	}
	release()
	expectNothing()
}

// TestPubSubHeldAnswersRace: SUBs whose waits end at once, on the loop, or
// soon on other goroutines, in any order, among commands answered at
// once: every answer comes once and in the order of the commands (run it
// with -race).
func TestPubSubHeldAnswersRace(t *testing.T) {
	_, srv := serveSetUp(t, PubSub(), true, true, func(rt *actorRuntime) {
		l := rt.Streams()
		l.set.known = func(string) bool { return rand.IntN(2) == 0 }
		l.set.whenKnown = func(_ string, fn func(bool)) {
			if rand.IntN(3) == 0 {
				fn(true)
				return
			}
			go func() {
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				fn(true)
			}()
		}
	})
	c := dialRaw(t, srv)
	r := newFrameReader(c)
	var cmds []string
	for i := range 3000 {
		if i%3 == 0 {
			cmds = append(cmds, fmt.Sprintf("SUB t%d", i))
		} else {
			cmds = append(cmds, "x")
		}
	}
	if _, err := c.Write(frames(cmds...)); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		p, err := r.next(5 * time.Second)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		want := "+OK"
		if cmd == "x" {
			want = "-ERR unknown command; want SUB, UNSUB or PUB"
		}
		if string(p) != want {
			t.Fatalf("answer %d: %q, want %q", i, p, want)
		}
	}
}
