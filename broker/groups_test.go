package broker_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
)

// roomApp is a chat-room handler on groups: "join R", "leave R", "say R
// text" (to the others in R), "who R" (the members' IDs).
func roomApp() *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		m, ok := ctx.Message().(*broker.Received)
		if !ok {
			return
		}
		f := strings.SplitN(string(m.Payload), " ", 3)
		g := m.Streams.Group(f[1])
		switch f[0] {
		case "join":
			if err := g.Join(m.Stream); err != nil {
				_ = m.Stream.Send([]byte("error " + err.Error()))
				return
			}
			_ = m.Stream.Send([]byte("joined " + f[1]))
		case "leave":
			_ = m.Stream.Send(fmt.Appendf(nil, "left %s %v", f[1], g.Leave(m.Stream)))
		case "say":
			n, err := g.BroadcastExcept(m.Stream, []byte(f[2]))
			_ = m.Stream.Send(fmt.Appendf(nil, "said to %d %v", n, err))
		case "who":
			var ids []string
			g.Each(func(s *broker.Stream) bool { ids = append(ids, fmt.Sprint(s.ID())); return true })
			_ = m.Stream.Send(fmt.Appendf(nil, "%d members", len(ids)))
		}
	})
}

// TestGroups: a group broadcast reaches its members and no one else, once
// each; a member that leaves, or closes, is no longer reached; an emptied
// group is gone from the figures.
func TestGroups(t *testing.T) {
	b := start(t, broker.Config{}, roomApp(), true, broker.OnEventLoop())
	a, c, d := dial(t, b), dial(t, b), dial(t, b)
	ask := func(p *peer, cmd, want string) {
		t.Helper()
		p.send([]byte(cmd))
		if got := string(p.next(5 * time.Second)); got != want {
			t.Fatalf("%s: %q, want %q", cmd, got, want)
		}
	}
	ask(a, "join r1", "joined r1")
	ask(a, "join r1", "joined r1") // twice is once
	ask(c, "join r1", "joined r1")
	ask(d, "join r2", "joined r2")
	ask(a, "who r1", "2 members")
	ask(a, "say r1 hello", "said to 1 <nil>")
	if got := string(c.next(5 * time.Second)); got != "hello" {
		t.Fatalf("c got %q", got)
	}
	if _, err := d.tryNext(100 * time.Millisecond); err == nil {
		t.Fatal("a member of another group got r1's broadcast")
	}
	st := b.Streams().GroupStats()
	if st.Groups != 2 || st.Memberships != 3 || st.Largest[0].Name != "r1" || st.Largest[0].Members != 2 {
		t.Errorf("stats %+v, want 2 groups, 3 members, r1 the largest with 2", st)
	}
	ask(c, "leave r1", "left r1 true")
	ask(c, "leave r1", "left r1 false")
	ask(a, "say r1 anyone", "said to 0 <nil>")
	d.c.Close()
	waitFor(t, "the closed member to leave r2", 5*time.Second, func() bool { return b.Streams().Group("r2").Len() == 0 })
	st = b.Streams().GroupStats()
	if st.Groups != 1 || st.Memberships != 1 {
		t.Errorf("after a leave and a close: %+v, want 1 group, 1 member", st)
	}
}

// TestGroupsUnderChurn: joins, leaves, broadcasts and closes from many
// goroutines at once leave the groups consistent: no member counted twice,
// none left behind by a closed stream.
func TestGroupsUnderChurn(t *testing.T) {
	b := start(t, broker.Config{}, roomApp(), true)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 32 {
		wg.Go(func() {
			p := dial(t, b)
			for j := range 20 {
				room := fmt.Sprint("r", (i+j)%4)
				for _, cmd := range []string{"join " + room, "say " + room + " x", "leave " + room} {
					p.send([]byte(cmd))
					if _, err := nextAnswer(p); err != nil {
						errs <- err
						return
					}
				}
			}
			p.send([]byte("join r0"))
			if _, err := nextAnswer(p); err != nil {
				errs <- err
			}
			p.c.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "every group emptied by the closes", 10*time.Second, func() bool {
		st := b.Streams().GroupStats()
		return st.Groups == 0 && st.Memberships == 0
	})
}

// nextAnswer reads frames until one that answers a command (the rest are
// others' broadcasts, "x").
func nextAnswer(p *peer) (string, error) {
	for {
		f, err := p.tryNext(10 * time.Second)
		if err != nil {
			return "", err
		}
		if string(f) != "x" {
			return string(f), nil
		}
	}
}
