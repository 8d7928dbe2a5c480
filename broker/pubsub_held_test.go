package broker

import (
	"errors"
	"fmt"
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
	var reachable atomic.Bool
	var mu sync.Mutex
	var waiting []func(bool)
	_, srv := serveSetUp(t, PubSub(), true, true, func(rt *actorRuntime) {
		l := rt.Streams()
		l.set.known = reachable.Load
		l.set.whenKnown = func(fn func(bool)) {
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

	// Past maxHeld answers, the wait ends: everything comes, in order,
	// and the late call back sends nothing twice.
	reachable.Store(false)
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
