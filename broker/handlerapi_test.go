package broker_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/netpoll"
)

var nick = broker.NewKey[string]("nick")

// chatter is a handler with state of both kinds: a field of the actor (gone
// with a restart) and a value of the stream (kept). "nick X" sets the
// value, "panic" panics, anything else is answered with what the actor
// knows.
type chatter struct {
	events  *eventLog
	mine    *broker.Stream // the stream, as the actor instance learnt it
	handled int            // frames this instance has handled
}

type eventLog struct {
	mu sync.Mutex
	ev []string
}

func (l *eventLog) add(format string, a ...any) {
	l.mu.Lock()
	l.ev = append(l.ev, fmt.Sprintf(format, a...))
	l.mu.Unlock()
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.ev, "|")
}

func (c *chatter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *broker.Connected:
		c.mine = m.Stream
		c.events.add("connected")
	case *broker.Restarted:
		if m.Stream != nil {
			c.mine = m.Stream
		}
		c.events.add("restarted")
	case *broker.Received:
		p := string(m.Payload)
		switch {
		case p == "panic":
			panic("the handler's bug")
		case strings.HasPrefix(p, "nick "):
			nick.Set(m.Stream, strings.TrimPrefix(p, "nick "))
		}
		c.handled++
		n, _ := nick.Get(m.Stream)
		_ = m.Stream.Send(fmt.Appendf(nil, "nick=%s handled=%d knows-stream=%v", n, c.handled, c.mine == m.Stream))
	case *broker.Closed:
		n, _ := nick.Get(m.Stream)
		c.events.add("closed %s", n)
	}
}

// TestRestartSemantics: after a panic the new actor instance is told what
// it serves (Restarted, before any frame), the stream's values survive,
// and the actor's own fields start afresh — in all three modes.
func TestRestartSemantics(t *testing.T) {
	modes := []struct {
		name      string
		perStream bool
		opts      []broker.HandleOption
	}{
		{"per-stream", true, nil},
		{"on-loop", true, []broker.HandleOption{broker.OnEventLoop()}},
		{"shared", false, nil},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			log := &eventLog{}
			props := actor.PropsFromProducer(func() actor.Actor { return &chatter{events: log} })
			b := start(t, broker.Config{}, props, mode.perStream, mode.opts...)
			p := dial(t, b)
			p.send([]byte("nick ada"))
			if got := string(p.next(5 * time.Second)); got != "nick=ada handled=1 knows-stream=true" {
				t.Fatalf("before the panic: %q", got)
			}
			// The panicking frame and the next one in one write: the next
			// is handled by the new instance, after Restarted.
			p.send([]byte("panic"), []byte("hello"))
			want := "nick=ada handled=1 knows-stream=true"
			if !mode.perStream {
				// The shared actor learns the list, not one stream.
				want = "nick=ada handled=1 knows-stream=false"
			}
			if got := string(p.next(5 * time.Second)); got != want {
				t.Fatalf("after the restart: %q, want %q", got, want)
			}
			p.c.Close()
			waitFor(t, "the close to be handled", 5*time.Second, func() bool { return strings.HasSuffix(log.String(), "closed ada") })
			if got := log.String(); got != "connected|restarted|closed ada" {
				t.Errorf("events %q, want connected|restarted|closed ada", got)
			}
		})
	}
}

// TestStreamValuesAndLookup: values are typed by their key, any actor
// holding the stream reads them, and they go once the application has
// handled Closed; Get finds an open stream by its ID and not a closed one;
// a kept *Stream fails with ErrClosed; IDs are never reused.
func TestStreamValuesAndLookup(t *testing.T) {
	type other struct{}
	var mu sync.Mutex
	var streams []*broker.Stream
	var list *broker.StreamList
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *broker.Connected:
			mu.Lock()
			streams, list = append(streams, m.Stream), m.Streams
			mu.Unlock()
			nick.Set(m.Stream, fmt.Sprint("n", m.Stream.ID()))
			m.Stream.SetValue(other{}, 42)
		case *broker.Received:
			_ = m.Stream.Send(m.Payload)
		}
	})
	b := start(t, broker.Config{}, props, true, broker.OnEventLoop())
	seen := map[uint64]bool{}
	for range 50 {
		p := dial(t, b)
		p.send([]byte("x"))
		p.next(5 * time.Second)
		p.c.Close()
	}
	keep := dial(t, b)
	keep.send([]byte("x"))
	keep.next(5 * time.Second)
	mu.Lock()
	all := append([]*broker.Stream(nil), streams...)
	l := list
	mu.Unlock()
	for _, s := range all {
		if seen[s.ID()] {
			t.Fatalf("stream ID %d given twice", s.ID())
		}
		seen[s.ID()] = true
	}
	last := all[len(all)-1]
	if got := l.Get(last.ID()); got != last {
		t.Fatalf("Get(%d) = %v, want the open stream", last.ID(), got)
	}
	if n, ok := nick.Get(last); !ok || n != fmt.Sprint("n", last.ID()) || last.Value(other{}) != 42 {
		t.Errorf("values of the open stream: %q %v %v", n, ok, last.Value(other{}))
	}
	first := all[0]
	waitFor(t, "the first stream's values to go", 5*time.Second, func() bool {
		_, ok := nick.Get(first)
		return !ok && first.Value(other{}) == nil
	})
	if l.Get(first.ID()) != nil {
		t.Error("Get found a closed stream")
	}
	if err := first.Send([]byte("late")); !errors.Is(err, netpoll.ErrClosed) {
		t.Errorf("Send on a kept, closed stream: %v, want ErrClosed", err)
	}
	if l.Get(1<<40) != nil {
		t.Error("Get found a stream that never was")
	}
}

// TestDebugPayloads: with DebugPayloads a payload kept past Receive reads
// as '~' at once, instead of another frame's bytes some frames later.
func TestDebugPayloads(t *testing.T) {
	var kept []byte              // the handler's alone
	seen := make(chan string, 1) // what the kept slice read at the second frame
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*broker.Received); ok {
			if kept == nil {
				kept = m.Payload // the mistake: no copy
				return
			}
			// The second frame: the first's Receive has returned. Read
			// the kept slice here, in the handler, where nothing else
			// writes to it: after this Receive the broker overwrites the
			// second payload, which may share the first's memory.
			select {
			case seen <- string(kept):
			default:
			}
		}
	})
	b := start(t, broker.Config{DebugPayloads: true}, props, true, broker.OnEventLoop())
	p := dial(t, b)
	p.send([]byte("AAAAAAAA"))
	p.send([]byte("B"))
	select {
	case got := <-seen:
		// Overwritten with ~ once Receive returned; the second frame's
		// bytes may have landed on some of it since, never the first's.
		if got == "AAAAAAAA" || !strings.Contains(got, "~~~~") {
			t.Errorf("a kept payload reads %q, want ~ (overwritten)", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second frame never reached the handler")
	}
}
