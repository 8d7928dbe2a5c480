package broker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// lifecycle records what an application actor is told, per stream.
type lifecycle struct {
	mu     sync.Mutex
	events map[uint64][]string
	closed chan uint64
}

func newLifecycle() *lifecycle {
	return &lifecycle{events: map[uint64][]string{}, closed: make(chan uint64, 16)}
}

func (l *lifecycle) props() *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		var id uint64
		var ev string
		switch m := ctx.Message().(type) {
		case *Connected:
			id, ev = m.Stream.ID(), "connected"
		case *Received:
			id, ev = m.Stream.ID(), "received "+string(m.Payload)
			if string(m.Payload) == "stop" {
				ctx.Stop(ctx.Self())
			}
		case *Closed:
			id, ev = m.Stream.ID(), "closed"
			if !errors.Is(m.Reason, netpoll.ErrPeerClosed) && !errors.Is(m.Reason, ErrAppStopped) {
				ev = fmt.Sprintf("closed for %v", m.Reason)
			}
		default:
			return
		}
		l.mu.Lock()
		l.events[id] = append(l.events[id], ev)
		l.mu.Unlock()
		if ev == "closed" {
			l.closed <- id
		}
	})
}

func (l *lifecycle) of(id uint64) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events[id]...)
}

// TestLifecycleInEveryMode: an application actor hears of a stream's
// opening, each of its frames, and its close (once, after every frame,
// with the reason), in every mode; the stream's actors then stop.
func TestLifecycleInEveryMode(t *testing.T) {
	for _, mode := range runModes {
		t.Run(mode.name, func(t *testing.T) {
			l := newLifecycle()
			rt, srv := serveMode(t, l.props(), mode.perStream, mode.loop)
			c := dialRaw(t, srv)
			waitLen(t, rt.Streams(), 1)
			var id uint64
			rt.Streams().Each(func(s *Stream) bool { id = s.ID(); return false })
			var out []byte
			for _, p := range []string{"a", "b", "c"} {
				out, _ = wire.AppendFrame(out, []byte(p))
			}
			if _, err := c.Write(out); err != nil {
				t.Fatal(err)
			}
			c.Close()
			select {
			case got := <-l.closed:
				if got != id {
					t.Fatalf("closed stream %d, want %d", got, id)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no Closed; heard %q", l.of(id))
			}
			want := []string{"connected", "received a", "received b", "received c", "closed"}
			if got := l.of(id); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("heard %q, want %q", got, want)
			}
			waitLen(t, rt.Streams(), 0)
			waitActors(t, rt, id)
		})
	}
}

// waitActors waits until the stream's connection actor and its own
// application actor (in the per-stream modes) have stopped: their names
// are gone from the process registry.
func waitActors(t *testing.T, rt *actorRuntime, id uint64) {
	t.Helper()
	conn := "conn-" + strconv.FormatUint(id, 10)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, c := rt.System().ProcessRegistry.GetLocal(conn)
		_, a := rt.System().ProcessRegistry.GetLocal(conn + "/app")
		if !c && !a {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %d: connection actor still registered %v, its application actor %v", id, c, a)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPerStreamActorStopClosesItsStream: a per-stream application actor
// that stops itself closes its stream (the client sees the close), the
// frames after the stop are not delivered, and the other streams go on.
func TestPerStreamActorStopClosesItsStream(t *testing.T) {
	for _, mode := range runModes[1:] {
		t.Run(mode.name, func(t *testing.T) {
			l := newLifecycle()
			rt, srv := serveMode(t, l.props(), true, mode.loop)
			c, other := dialRaw(t, srv), dialRaw(t, srv)
			waitLen(t, rt.Streams(), 2)
			var out []byte
			for _, p := range []string{"x", "stop", "after"} {
				out, _ = wire.AppendFrame(out, []byte(p))
			}
			if _, err := c.Write(out); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(c); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the stream was not closed")
				}
			}
			waitLen(t, rt.Streams(), 1)
			var otherID uint64
			rt.Streams().Each(func(s *Stream) bool { otherID = s.ID(); return false })
			if _, err := other.Write(func() []byte { f, _ := wire.Encode([]byte("still")); return f }()); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for fmt.Sprint(l.of(otherID)) != fmt.Sprint([]string{"connected", "received still"}) {
				if time.Now().After(deadline) {
					t.Fatalf("the other stream's actor heard %q", l.of(otherID))
				}
				time.Sleep(time.Millisecond)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			for id, evs := range l.events {
				if id != otherID && fmt.Sprint(evs) != fmt.Sprint([]string{"connected", "received x", "received stop"}) {
					t.Fatalf("the stopped actor heard %q", evs)
				}
			}
		})
	}
}
