package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
)

// psCmd sends one pubsub command and returns the answer, skipping MSG
// frames (which it returns apart).
func psCmd(t testing.TB, c *client.Client, cmd string) (answer string, msgs []string) {
	t.Helper()
	if err := c.Send([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	for {
		p := recv(t, c)
		if strings.HasPrefix(string(p), "MSG ") {
			msgs = append(msgs, string(p))
			continue
		}
		return string(p), msgs
	}
}

// TestPubSubBinary runs `broker serve --app pubsub`: two publishers
// interleave numbered PUBs on one topic; every subscriber, a publisher
// among them, gets each PUB exactly once and each publisher's in order;
// a subscriber of another topic gets none.
func TestPubSubBinary(t *testing.T) {
	b := startBroker(t, "--app", "pubsub")
	const n = 2000
	pubs := []*client.Client{dial(t, b.Addr), dial(t, b.Addr)}
	subs := []*client.Client{dial(t, b.Addr), dial(t, b.Addr), pubs[0]}
	other := dial(t, b.Addr)
	for _, s := range subs {
		if a, _ := psCmd(t, s, "SUB ticks"); a != "+OK" {
			t.Fatalf("SUB: %q", a)
		}
	}
	if a, _ := psCmd(t, other, "SUB other"); a != "+OK" {
		t.Fatalf("SUB: %q", a)
	}
	// Publish without waiting for each +OK: pipelined, as a client would.
	for i := range n {
		for p, c := range pubs {
			if err := c.Send(fmt.Appendf(nil, "PUB ticks %d %d", p, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for si, s := range subs {
		next := []int{0, 0}
		oks := 0
		for next[0] < n || next[1] < n || (si == 2 && oks < n) {
			got := string(recv(t, s))
			if got == "+OK" {
				oks++
				continue
			}
			var p, i int
			if _, err := fmt.Sscanf(got, "MSG ticks %d %d", &p, &i); err != nil {
				t.Fatalf("subscriber %d: %q", si, got)
			}
			if i != next[p] {
				t.Fatalf("subscriber %d: publisher %d's message %d, want %d (a gap, a duplicate or a reordering)", si, p, i, next[p])
			}
			next[p]++
		}
	}
	if _, err := other.Recv(ctxWithin(t, 200*time.Millisecond)); err == nil {
		t.Error("a subscriber of another topic got a message")
	}
}
