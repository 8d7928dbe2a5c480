package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
)

// psAsk sends one command and checks the answer. When want is a MSG (a
// PUB by a subscriber of its topic), the +OK after it is checked too;
// otherwise MSG frames before the answer are skipped.
func psAsk(t testing.TB, p *peer, cmd, want string) {
	t.Helper()
	p.send([]byte(cmd))
	for {
		got := string(p.next(5 * time.Second))
		if strings.HasPrefix(got, "MSG ") && !strings.HasPrefix(want, "MSG ") {
			continue
		}
		if got != want {
			t.Fatalf("%q: %q, want %q", cmd, got, want)
		}
		if strings.HasPrefix(want, "MSG ") {
			if got := string(p.next(5 * time.Second)); got != "+OK" {
				t.Fatalf("%q after its MSG: %q, want +OK", cmd, got)
			}
		}
		return
	}
}

// TestPubSub: SUB, UNSUB and PUB with their answers; a subscriber gets
// each PUB once, in order, its own included (before its +OK); nobody else
// gets it; malformed commands and topics are refused with a reason.
func TestPubSub(t *testing.T) {
	b := start(t, broker.Config{}, broker.PubSub(), true, broker.OnEventLoop())
	pub, sub, other := dial(t, b), dial(t, b), dial(t, b)
	psAsk(t, sub, "SUB news", "+OK")
	psAsk(t, sub, "SUB news", "+OK") // twice is once
	psAsk(t, pub, "SUB news", "+OK")
	psAsk(t, other, "SUB sport", "+OK")
	for i := range 100 {
		pub.send(fmt.Appendf(nil, "PUB news item %d", i))
	}
	for i := range 100 {
		want := fmt.Sprintf("MSG news item %d", i)
		if got := string(sub.next(5 * time.Second)); got != want {
			t.Fatalf("subscriber: %q, want %q", got, want)
		}
		// The publisher is subscribed: its MSG, then its +OK.
		if got := string(pub.next(5 * time.Second)); got != want {
			t.Fatalf("publisher: %q, want %q", got, want)
		}
		if got := string(pub.next(5 * time.Second)); got != "+OK" {
			t.Fatalf("publisher: %q, want +OK", got)
		}
	}
	if f, err := other.tryNext(100 * time.Millisecond); err == nil {
		t.Fatalf("a subscriber of another topic got %q", f)
	}
	psAsk(t, sub, "UNSUB news", "+OK")
	psAsk(t, pub, "PUB news after", "MSG news after")
	if f, err := sub.tryNext(100 * time.Millisecond); err == nil {
		t.Fatalf("an unsubscribed stream got %q", f)
	}
	// A payload with spaces, and an empty one.
	psAsk(t, other, "PUB sport a b  c", "MSG sport a b  c")
	psAsk(t, other, "PUB sport ", "MSG sport ")
	for _, c := range []struct{ cmd, want string }{
		{"SUB", "-ERR topic must be 1 to 255 bytes without spaces"},
		{"SUB " + strings.Repeat("t", 256), "-ERR topic must be 1 to 255 bytes without spaces"},
		{"SUB a\tb", "-ERR topic must be 1 to 255 bytes without spaces"},
		{"PUB news", "-ERR want PUB <topic> <payload>"},
		{"PUB  x", "-ERR topic must be 1 to 255 bytes without spaces"},
		{"sub news", "-ERR unknown command; want SUB, UNSUB or PUB"},
		{"", "-ERR unknown command; want SUB, UNSUB or PUB"},
	} {
		psAsk(t, other, c.cmd, c.want)
	}
	psAsk(t, other, "SUB "+strings.Repeat("t", 255), "+OK")
}

// TestPubSubSubscriptionsBounded: a stream subscribes to at most 1,024
// topics at a time; a SUB of one it has, or after an UNSUB, still works.
func TestPubSubSubscriptionsBounded(t *testing.T) {
	b := start(t, broker.Config{}, broker.PubSub(), true, broker.OnEventLoop())
	c := dial(t, b)
	var cmds [][]byte
	for i := range 1024 {
		cmds = append(cmds, fmt.Appendf(nil, "SUB t%d", i))
	}
	c.send(cmds...)
	for i := range 1024 {
		if got := string(c.next(5 * time.Second)); got != "+OK" {
			t.Fatalf("SUB %d: %q", i, got)
		}
	}
	psAsk(t, c, "SUB one-too-many", "-ERR too many subscriptions (at most 1024 a connection)")
	psAsk(t, c, "SUB t7", "+OK")
	psAsk(t, c, "UNSUB t7", "+OK")
	psAsk(t, c, "SUB one-more", "+OK")
	if n := b.Streams().GroupStats().Groups; n != 1024 {
		t.Errorf("%d groups, want 1024", n)
	}
}

// TestPubSubRights: with authentication, an identity subscribes and
// publishes only on the topics its token allows, and publishes only if it
// may publish.
func TestPubSubRights(t *testing.T) {
	tk := tokens(t, aliceToken+" alice groups=news,chat\n"+bobToken+" bob publish=false\n")
	b := start(t, broker.Config{Authenticator: tk}, broker.PubSub(), true, broker.OnEventLoop())
	alice, bob := dial(t, b), dial(t, b)
	alice.send([]byte(aliceToken))
	alice.next(5 * time.Second)
	bob.send([]byte(bobToken))
	bob.next(5 * time.Second)
	psAsk(t, alice, "SUB news", "+OK")
	psAsk(t, alice, "SUB secret", "-ERR not allowed to subscribe to secret")
	psAsk(t, alice, "PUB secret x", "-ERR not allowed to publish to secret")
	psAsk(t, bob, "SUB secret", "+OK") // bob may use any topic
	psAsk(t, bob, "PUB news x", "-ERR not allowed to publish to news")
	psAsk(t, alice, "PUB chat hi", "+OK")
}
