package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
)

// processes counts the actor system's live processes (actors).
func processes(b *broker.Broker) int {
	n := 0
	for _, m := range b.ActorSystem().ProcessRegistry.LocalPIDs.LocalPIDs {
		n += m.Count()
	}
	return n
}

// TestSpawnOnFirstFrame: a stream's actors wait for its first frame.
// Quiet streams have none, and still get broadcasts; a stream that speaks
// gets both, and its application hears Connected just before the frame;
// a quiet stream that closes is never heard of.
func TestSpawnOnFirstFrame(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []broker.HandleOption
	}{
		{"workers", []broker.HandleOption{broker.SpawnOnFirstFrame()}},
		{"on-loop", []broker.HandleOption{broker.SpawnOnFirstFrame(), broker.OnEventLoop()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			b := start(t, broker.Config{}, rec.props(), true, tc.opts...)
			before := processes(b)
			quiet := make([]*peer, 20)
			for i := range quiet {
				quiet[i] = dial(t, b)
			}
			waitFor(t, "the streams listed", 5*time.Second, func() bool { return b.Streams().Len() == len(quiet) })
			if n := processes(b) - before; n != 0 {
				t.Fatalf("%d actors for %d quiet streams, want none", n, len(quiet))
			}
			if n, err := b.Streams().Broadcast([]byte("news")); n != len(quiet) || err != nil {
				t.Fatalf("Broadcast reached %d (%v), want %d", n, err, len(quiet))
			}
			for _, p := range quiet {
				if got := string(p.next(5 * time.Second)); got != "news" {
					t.Fatalf("a quiet stream read %q", got)
				}
			}
			talker := quiet[0]
			talker.send([]byte("hi"), []byte("there"))
			for _, want := range []string{"hi", "there"} {
				if got := string(talker.next(5 * time.Second)); got != want {
					t.Fatalf("echo %q, want %q", got, want)
				}
			}
			if n := processes(b) - before; n != 2 {
				t.Errorf("%d actors once one stream spoke, want 2 (its connection actor and its application)", n)
			}
			for _, p := range quiet[1:] {
				p.c.Close()
			}
			talker.c.Close()
			waitFor(t, "the streams gone", 5*time.Second, func() bool { return b.Streams().Len() == 0 })
			waitFor(t, "the talker's close heard", 5*time.Second, func() bool { return len(rec.events()) == 4 })
			if ev := strings.Join(rec.events(), "|"); ev != "connected <none>|hi|there|closed" {
				t.Errorf("the application heard %q", ev)
			}
			waitFor(t, "the actors gone", 5*time.Second, func() bool { return processes(b) == before })
		})
	}
}

// TestSpawnOnFirstFrameAuthTimeout: with authentication, a stream that
// never sends its credential is closed at the timeout though it has no
// actor.
func TestSpawnOnFirstFrameAuthTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	rec := &recorder{}
	b := start(t, broker.Config{Authenticator: tokens(t, aliceToken+" alice\n"), AuthTimeout: timeout},
		rec.props(), true, broker.SpawnOnFirstFrame(), broker.OnEventLoop())
	silent := dial(t, b)
	ok := dial(t, b)
	ok.send([]byte(aliceToken), []byte("one"))
	if got := string(ok.next(5 * time.Second)); got != `{"auth":"ok","identity":"alice"}` {
		t.Fatalf("answer %q", got)
	}
	if got := string(ok.next(5 * time.Second)); got != "one" {
		t.Fatalf("echo %q", got)
	}
	start := time.Now()
	silent.expectEOF(5 * time.Second)
	if d := time.Since(start); d > 2*timeout+250*time.Millisecond {
		t.Errorf("closed after %v, want about %v", d, timeout)
	}
	waitFor(t, "the close counted", 5*time.Second, func() bool { return b.Stats().IO.ClosedHandshake == 1 })
	// The authenticated stream outlives the timeout.
	time.Sleep(timeout)
	ok.send([]byte("two"))
	if got := string(ok.next(5 * time.Second)); got != "two" {
		t.Fatalf("echo after the timeout %q", got)
	}
}
