package broker

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// Group is a named set of streams — a chat room, a topic — that a
// broadcast reaches without touching anyone else: the frame is encoded
// once and its bytes shared by every member's queue, no member waits for
// another, and a stream that closes leaves every group. A Group is a
// handle, cheap to make and to copy (StreamList.Group); the set behind it
// exists while it has members.
//
// A Group obtained from the StreamList of a stream's message broadcasts
// on that stream's behalf: a member that cannot keep up stalls that
// stream (see Config.Overflow).
type Group struct {
	set  *streamSet
	name string
	from *Stream
}

// group is the set behind the Group handles of one name.
type group struct {
	name string

	mu      sync.RWMutex
	members []*Stream
	slot    map[*Stream]int
	dead    bool // emptied and gone from the registry: a Join looks the name up again
}

// groups is the broker's registry of groups by name.
type groups struct {
	mu     sync.RWMutex
	byName map[string]*group
	// interest, when set (a clustered broker), is told under mu when a
	// name enters the registry (on) and when it leaves (off), so that the
	// other nodes send this one a group's frames only while it has
	// members of it.
	interest func(name string, on bool)
}

// setInterest sets the registry's interest hook and tells it every group
// there is now.
func (gs *groups) setInterest(fn func(name string, on bool)) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	gs.interest = fn
	for name := range gs.byName {
		fn(name, true)
	}
}

// Group is the group named name. Names are opaque, non-empty byte
// strings; the application chooses them (and whom it lets use which).
func (l *StreamList) Group(name string) Group { return Group{set: l.set, name: name, from: l.from} }

// Name is the group's name.
func (g Group) Name() string { return g.name }

// lookup is the group's set, made if make is true and it has none.
func (g Group) lookup(create bool) *group {
	gs := &g.set.groups
	gs.mu.RLock()
	grp := gs.byName[g.name]
	gs.mu.RUnlock()
	if grp != nil || !create {
		return grp
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if grp = gs.byName[g.name]; grp == nil {
		if gs.byName == nil {
			gs.byName = map[string]*group{}
		}
		grp = &group{name: g.name, slot: map[*Stream]int{}}
		gs.byName[g.name] = grp
		if gs.interest != nil {
			gs.interest(g.name, true)
		}
	}
	return grp
}

// Join adds s to the group; joining twice is joining once. It fails with
// ErrClosed once s has closed, and with ErrGroupName for the
// group named "", which has no members.
func (g Group) Join(s *Stream) error {
	if g.name == "" {
		return ErrGroupName
	}
	for {
		grp := g.lookup(true)
		s.gmu.Lock()
		if s.left {
			s.gmu.Unlock()
			g.set.dropIfEmpty(grp) // it may have been made for s
			return netpoll.ErrClosed
		}
		if slices.Contains(s.groups, grp) {
			s.gmu.Unlock()
			return nil
		}
		grp.mu.Lock()
		if grp.dead {
			// Emptied meanwhile and dropped from the registry.
			grp.mu.Unlock()
			s.gmu.Unlock()
			continue
		}
		grp.slot[s] = len(grp.members)
		grp.members = append(grp.members, s)
		grp.mu.Unlock()
		s.groups = append(s.groups, grp)
		s.gmu.Unlock()
		g.set.memberships.Add(1)
		return nil
	}
}

// Leave removes s from the group, and reports whether it was a member.
func (g Group) Leave(s *Stream) bool {
	s.gmu.Lock()
	i := slices.IndexFunc(s.groups, func(x *group) bool { return x.name == g.name })
	if i < 0 {
		s.gmu.Unlock()
		return false
	}
	grp := s.groups[i]
	s.groups = slices.Delete(s.groups, i, i+1)
	s.gmu.Unlock()
	g.set.removeMember(grp, s)
	return true
}

// removeMember takes s out of grp, and grp out of the registry once empty.
func (set *streamSet) removeMember(grp *group, s *Stream) {
	grp.mu.Lock()
	i, ok := grp.slot[s]
	if ok {
		last := len(grp.members) - 1
		moved := grp.members[last]
		grp.members[i] = moved
		grp.slot[moved] = i
		grp.members[last] = nil
		grp.members = grp.members[:last]
		delete(grp.slot, s)
	}
	empty := len(grp.members) == 0
	grp.mu.Unlock()
	if ok {
		set.memberships.Add(-1)
	}
	if empty {
		set.dropIfEmpty(grp)
	}
}

// dropIfEmpty takes grp out of the registry if it has no members.
func (set *streamSet) dropIfEmpty(grp *group) {
	gs := &set.groups
	gs.mu.Lock()
	grp.mu.Lock()
	if len(grp.members) == 0 && !grp.dead && gs.byName[grp.name] == grp {
		grp.dead = true
		delete(gs.byName, grp.name)
		if gs.interest != nil {
			gs.interest(grp.name, false)
		}
	}
	grp.mu.Unlock()
	gs.mu.Unlock()
}

// leaveAll takes a closing stream out of every group it joined; it joins
// none after.
func (s *Stream) leaveAll() {
	s.gmu.Lock()
	s.left = true
	gs := s.groups
	s.groups = nil
	s.gmu.Unlock()
	for _, grp := range gs {
		s.list.set.removeMember(grp, s)
	}
}

// memberships is how many groups s belongs to, and whether name is one.
func (s *Stream) memberships(name string) (int, bool) {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	return len(s.groups), slices.ContainsFunc(s.groups, func(g *group) bool { return g.name == name })
}

// Groups are the names of the groups s belongs to.
func (s *Stream) Groups() []string {
	s.gmu.Lock()
	defer s.gmu.Unlock()
	names := make([]string, len(s.groups))
	for i, g := range s.groups {
		names[i] = g.name
	}
	return names
}

// Len is the group's number of members on this broker.
func (g Group) Len() int {
	grp := g.lookup(false)
	if grp == nil {
		return 0
	}
	grp.mu.RLock()
	defer grp.mu.RUnlock()
	return len(grp.members)
}

// Each calls fn for every member until fn returns false. fn runs under
// the group's read lock: it may Send to and Close streams, but must not
// block, join or leave.
func (g Group) Each(fn func(*Stream) bool) {
	grp := g.lookup(false)
	if grp == nil {
		return
	}
	grp.mu.RLock()
	defer grp.mu.RUnlock()
	for _, s := range grp.members {
		if !fn(s) {
			return
		}
	}
}

// Reachable reports whether the group's broadcasts published on every
// other node of the cluster now reach this node's members (see
// WhenReachable). It is true on a broker that is not clustered, and for a
// group with no members here.
func (g Group) Reachable() bool {
	if g.set.known == nil {
		return true
	}
	return g.set.known(g.name)
}

// WhenReachable calls fn once the group's broadcasts published on every
// other node of the cluster reach this node's members: each node sends
// another a group's frames only while that node has members of it, and
// learns of a group's first member here a moment after Join. A stream
// that has joined and then waits for WhenReachable receives every
// broadcast to the group published anywhere after fn runs. fn runs at
// once, on the caller's goroutine, when that is already so (always on a
// broker that is not clustered, and for a group that has had members
// here for a while); otherwise on another goroutine, with confirmed false
// if a node did not answer within a second (the node is then likely cut
// off, and hears of the group once it answers again) or the broker is
// shutting down. fn must not block.
func (g Group) WhenReachable(fn func(confirmed bool)) {
	if g.set.whenKnown == nil {
		fn(true)
		return
	}
	g.set.whenKnown(g.name, fn)
}

// Broadcast sends payload to every member, and returns how many it was
// queued for, as StreamList.Broadcast does.
func (g Group) Broadcast(payload []byte) (int, error) { return g.BroadcastExcept(nil, payload) }

// BroadcastExcept sends payload to every member but except. On a
// clustered broker it also reaches the group's members on every other
// node that has any (the count is of this node's).
func (g Group) BroadcastExcept(except *Stream, payload []byte) (int, error) {
	frame, err := wire.Encode(payload)
	if err != nil {
		return 0, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	if g.set.remote != nil && g.name != "" {
		g.set.remote(except, g.name, payload)
	}
	return g.sendFrame(except, frame), nil
}

// sendFrame queues an encoded frame to every member but except.
func (g Group) sendFrame(except *Stream, frame []byte) int {
	grp := g.lookup(false)
	if grp == nil {
		return 0
	}
	g.set.batches.flush()
	var producer *netpoll.Conn
	if g.from != nil {
		producer = g.from.conn
	}
	sent := 0
	grp.mu.RLock()
	for _, s := range grp.members {
		if s != except && s.conn.SendFrameFrom(producer, frame) == nil {
			sent++
		}
	}
	grp.mu.RUnlock()
	return sent
}

// GroupStats are the broker's groups in figures.
type GroupStats struct {
	Groups      int         // groups with members
	Memberships int64       // members of all groups together
	Largest     []GroupSize // the largest groups, at most 10, largest first
}

// GroupSize is one group's name and number of members.
type GroupSize struct {
	Name    string
	Members int
}

// GroupStats reports the groups: how many, how many members, the largest.
func (l *StreamList) GroupStats() GroupStats {
	gs := &l.set.groups
	gs.mu.RLock()
	all := make([]*group, 0, len(gs.byName))
	for _, g := range gs.byName {
		all = append(all, g)
	}
	gs.mu.RUnlock()
	st := GroupStats{Groups: len(all), Memberships: l.set.memberships.Load()}
	sizes := make([]GroupSize, len(all))
	for i, g := range all {
		g.mu.RLock()
		sizes[i] = GroupSize{g.name, len(g.members)}
		g.mu.RUnlock()
	}
	slices.SortFunc(sizes, func(a, b GroupSize) int {
		if c := cmp.Compare(b.Members, a.Members); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	st.Largest = sizes[:min(len(sizes), 10)]
	return st
}
