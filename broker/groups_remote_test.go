package broker

import (
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestGroupsAcrossTheRemoteHook: what a clustered broker relies on. A
// group's broadcast hands the remote hook the group's name (the whole
// list's, ""); the group named "" is no group (Join refuses it, its
// broadcast reaches nobody and nothing goes out); deliverRemote queues a
// group's frame to its members here only, and publishes nothing again.
func TestGroupsAcrossTheRemoteHook(t *testing.T) {
	rt, srv := serve(t, nothing())
	type out struct{ group, payload string }
	var mu sync.Mutex
	var sent []out
	l := rt.Streams()
	l.setRemote(func(_ *Stream, group string, payload []byte) {
		mu.Lock()
		sent = append(sent, out{group, string(payload)})
		mu.Unlock()
	})
	taken := func() []out {
		mu.Lock()
		defer mu.Unlock()
		s := sent
		sent = nil
		return s
	}
	clients := []net.Conn{dialRaw(t, srv), dialRaw(t, srv), dialRaw(t, srv)}
	waitLen(t, l, 3)
	var streams []*Stream
	l.Each(func(s *Stream) bool { streams = append(streams, s); return true })
	g := l.Group("g")
	for _, s := range streams[:2] { // which clients they are, the reads below find out
		if err := g.Join(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Group("").Join(streams[0]); !errors.Is(err, ErrGroupName) {
		t.Errorf("joining the group named \"\": %v, want ErrGroupName", err)
	}

	// From another node: to the group's members here, nothing out again.
	if n, err := l.deliverRemote("g", []byte("from-afar")); n != 2 || err != nil {
		t.Errorf("deliverRemote to g: %d, %v; want 2", n, err)
	}
	if n, err := l.deliverRemote("nobody-here", []byte("x")); n != 0 || err != nil {
		t.Errorf("deliverRemote to a group with no members here: %d, %v; want 0", n, err)
	}
	if s := taken(); len(s) != 0 {
		t.Errorf("deliverRemote published %v again", s)
	}
	got := 0
	for _, c := range clients {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 64)
		if n, _ := c.Read(buf); n > 0 {
			got++
		}
	}
	if got != 2 {
		t.Errorf("%d clients got the group's frame from afar, want its 2 members", got)
	}

	// Out to the other nodes: the group's name with the payload.
	if _, err := g.Broadcast([]byte("p")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Broadcast([]byte("q")); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Group("").Broadcast([]byte("r")); n != 0 || err != nil {
		t.Errorf("the group named \"\" reached %d: %v", n, err)
	}
	if s := taken(); !slices.Equal(s, []out{{"g", "p"}, {"", "q"}}) {
		t.Errorf("handed to the remote hook: %v, want g's p and the list's q", s)
	}

	// Too large for a frame: the same error everywhere, and nothing out.
	big := make([]byte, 65536)
	_, errList := l.Broadcast(big)
	_, errGroup := g.Broadcast(big)
	errSend := streams[0].Send(big)
	for name, err := range map[string]error{"Broadcast": errList, "Group.Broadcast": errGroup, "Stream.Send": errSend} {
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("%s of 65,536 bytes: %v, want ErrFrameTooLarge", name, err)
		}
	}
	if s := taken(); len(s) != 0 {
		t.Errorf("a payload too large was handed to the remote hook: %d", len(s))
	}
}

// TestGroupJoinAndLeave drives the membership bookkeeping directly:
// joining twice is joining once, Leave takes a stream out of the one
// group only and reports whether it was in it, and the counts follow
// (an emptied group is gone).
func TestGroupJoinAndLeave(t *testing.T) {
	rt, srv := serve(t, nothing())
	l := rt.Streams()
	dialRaw(t, srv)
	dialRaw(t, srv)
	waitLen(t, l, 2)
	var a, b *Stream
	l.Each(func(s *Stream) bool {
		if a == nil {
			a = s
		} else {
			b = s
		}
		return true
	})
	x, y := l.Group("x"), l.Group("y")
	for _, join := range []struct {
		g Group
		s *Stream
	}{{x, a}, {x, a}, {x, b}, {y, a}} {
		if err := join.g.Join(join.s); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, groups int, members int64, xLen, yLen int, aIn []string) {
		t.Helper()
		st := l.GroupStats()
		if st.Groups != groups || st.Memberships != members || x.Len() != xLen || y.Len() != yLen || !slices.Equal(sorted(a.Groups()), aIn) {
			t.Errorf("%s: %d groups, %d memberships, x %d, y %d, a in %v; want %d, %d, %d, %d, %v",
				when, st.Groups, st.Memberships, x.Len(), y.Len(), a.Groups(), groups, members, xLen, yLen, aIn)
		}
	}
	check("joined", 2, 3, 2, 1, []string{"x", "y"})
	if !x.Leave(a) {
		t.Error("a left x: Leave said it was not a member")
	}
	check("a left x", 2, 2, 1, 1, []string{"y"})
	if x.Leave(a) {
		t.Error("a left x twice: Leave said it was a member")
	}
	check("a left x again", 2, 2, 1, 1, []string{"y"})
	if !y.Leave(a) {
		t.Error("a left y: Leave said it was not a member")
	}
	check("a left y", 1, 1, 1, 0, nil)
	var got []*Stream
	x.Each(func(s *Stream) bool { got = append(got, s); return true })
	if len(got) != 1 || got[0] != b {
		t.Errorf("x's members %v, want b alone", got)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if len(s) == 0 {
		return nil
	}
	return s
}
