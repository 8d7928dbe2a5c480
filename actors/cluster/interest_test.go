package cluster_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/actors/cluster"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

// groupRecorder counts what a node delivers, by group ("" for frames to
// every stream), and checks that each group's numbers rise.
type groupRecorder struct {
	mu   sync.Mutex
	got  map[string]int
	last map[string]uint64
	errs []string
}

func (r *groupRecorder) deliver(_ uint64, group string, payload []byte) {
	seq := binary.BigEndian.Uint64(payload)
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq <= r.last[group] && len(r.errs) < 10 {
		r.errs = append(r.errs, fmt.Sprintf("group %q: frame %d after %d", group, seq, r.last[group]))
	}
	r.last[group] = seq
	r.got[group]++
}

func (r *groupRecorder) count(group string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[group]
}

// waitCount waits until the node has delivered want frames of group.
func (r *groupRecorder) waitCount(t *testing.T, name, group string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		got, errs := r.got[group], append([]string(nil), r.errs...)
		r.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("%s: %v", name, errs)
		}
		if got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%s: %d frames of %q, want %d", name, got, group, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type groupNode struct {
	addr string
	node *cluster.Node
	rec  *groupRecorder
}

// startGroupCluster starts n nodes that record frames by group and waits
// until they are all OK.
func startGroupCluster(t *testing.T, n int) []*groupNode {
	t.Helper()
	if raceDetector {
		t.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector); test.TestPubSubClusterTopicsGoWhereSubscribed covers this under -race")
	}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = testnet.ClusterAddr(t)
	}
	nodes := make([]*groupNode, n)
	tn := make([]*testNode, n)
	for i := range nodes {
		rec := &groupRecorder{got: map[string]int{}, last: map[string]uint64{}}
		node, err := cluster.Start(cluster.Config{Name: "test", Addr: addrs[i], Peers: addrs, Logger: testLogger()}, rec.deliver)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &groupNode{addrs[i], node, rec}
		tn[i] = &testNode{addr: addrs[i], node: node}
	}
	t.Cleanup(func() {
		for _, n := range tn {
			n.shutdown(t)
		}
	})
	waitMembers(t, tn...)
	return nodes
}

// known waits for WhenKnown's call back for group, and returns what it
// said.
//
// Versions are told in order, so once a group's is known, every change
// the node made before it is too: settled (below) waits for those.
func known(t *testing.T, n *cluster.Node, group string) bool {
	t.Helper()
	ch := make(chan bool, 1)
	n.WhenKnown(group, func(ok bool) { ch <- ok })
	select {
	case ok := <-ch:
		return ok
	case <-time.After(10 * time.Second):
		t.Fatal("WhenKnown never called back")
		return false
	}
}

func frame(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

var markers atomic.Uint64

// settled waits until the peers have acknowledged every change n made to
// its groups so far, by making one more and waiting for it.
func settled(t *testing.T, n *cluster.Node) {
	t.Helper()
	m := fmt.Sprintf("marker-%d", markers.Add(1))
	n.SetInterest(m, true)
	if !known(t, n, m) {
		t.Fatal("the peers did not acknowledge the node's groups")
	}
}

// TestGroupFramesGoOnlyToNodesWithMembers: once the nodes have told each
// other their groups, a group frame reaches the nodes with members of its
// group and no other; batches with nothing for a node are not sent it,
// and it counts no gap for them; frames to every stream still reach
// everyone; a node that loses its last member stops getting them.
func TestGroupFramesGoOnlyToNodesWithMembers(t *testing.T) {
	nodes := startGroupCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	b.node.SetInterest("room", true)
	if !known(t, b.node, "room") {
		t.Fatal("the peers did not acknowledge b's groups")
	}
	// c tells its set too (it does so unasked: a node with no members
	// of anything is told as such).
	settled(t, c.node)

	seq := uint64(0)
	next := func() []byte { seq++; return frame(seq) }
	const rounds, per = 20, 50
	for r := range rounds {
		for range per {
			if err := a.node.PublishGroup(1, "room", next()); err != nil {
				t.Fatal(err)
			}
			if err := a.node.PublishGroup(1, "hall", next()); err != nil {
				t.Fatal(err)
			}
		}
		// Let batches of group frames alone leave (c's are skipped),
		// then one to everyone.
		b.rec.waitCount(t, "b", "room", (r+1)*per)
		if err := a.node.Publish(1, next()); err != nil {
			t.Fatal(err)
		}
		c.rec.waitCount(t, "c", "", r+1)
	}
	b.rec.waitCount(t, "b", "", rounds)
	if n := b.rec.count("hall"); n != 0 {
		t.Errorf("b, with no member of hall, got %d of its frames", n)
	}
	if n, m := c.rec.count("room"), c.rec.count("hall"); n+m != 0 {
		t.Errorf("c, with no members, got %d room and %d hall frames", n, m)
	}
	sa := a.node.Stats()
	if want := uint64(rounds * per * 3); sa.Spared != want {
		t.Errorf("a spared %d group frames, want %d (room to c, hall to b and c)", sa.Spared, want)
	}
	for _, n := range []*groupNode{b, c} {
		if s := n.node.Stats(); s.Gaps != 0 || s.Duplicates != 0 {
			t.Errorf("%s counts %d gaps and %d duplicates: batches left out of its sequence were taken for losses", n.addr, s.Gaps, s.Duplicates)
		}
	}

	// b's last member leaves: once a knows, b gets no more room frames.
	b.node.SetInterest("room", false)
	settled(t, b.node)
	for range per {
		if err := a.node.PublishGroup(1, "room", next()); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.node.Publish(1, next()); err != nil {
		t.Fatal(err)
	}
	b.rec.waitCount(t, "b", "", rounds+1)
	if n := b.rec.count("room"); n != rounds*per {
		t.Errorf("b got %d room frames after it had no members, want none", n-rounds*per)
	}
}

// TestWhenKnownClosesTheWindow: a node that gets a group's first member
// and waits for WhenKnown gets the group's next frame from another node,
// every time. Without the wait the other node, still filtering by what it
// knew, would leave the frame out.
func TestWhenKnownClosesTheWindow(t *testing.T) {
	nodes := startGroupCluster(t, 2)
	a, b := nodes[0], nodes[1]
	settled(t, b.node) // a knows b's set from here on
	const n = 100
	late := 0
	for i := range n {
		g := fmt.Sprintf("topic-%d", i)
		b.node.SetInterest(g, true)
		if !known(t, b.node, g) {
			late++
		}
		if err := a.node.PublishGroup(1, g, frame(1)); err != nil {
			t.Fatal(err)
		}
		b.rec.waitCount(t, "b", g, 1)
	}
	if late > 0 {
		t.Errorf("%d of %d waits timed out on loopback", late, n)
	}
}

// TestWhenKnownAtOnce: with nothing new to tell, WhenKnown calls back on
// the caller's goroutine before it returns; a node alone does too.
func TestWhenKnownAtOnce(t *testing.T) {
	nodes := startGroupCluster(t, 2)
	n := nodes[0].node
	n.SetInterest("g", true)
	if n.InterestKnown("g") {
		t.Error("InterestKnown right after a change no peer can have heard of yet")
	}
	if !known(t, n, "g") {
		t.Fatal("not acknowledged")
	}
	called := false
	n.WhenKnown("g", func(ok bool) { called = ok })
	if !called || !n.InterestKnown("g") {
		t.Error("nothing new to tell of g, and WhenKnown did not call back at once")
	}
	// Another group's change pending does not hold g back, and a group
	// with no members here has nothing to wait for.
	n.SetInterest("h", true)
	called = false
	n.WhenKnown("g", func(ok bool) { called = ok })
	if !called {
		t.Error("g waited for h's change")
	}
	called = false
	n.WhenKnown("nobody", func(ok bool) { called = ok })
	if !called {
		t.Error("a group without members here waited")
	}

	alone, err := cluster.Start(cluster.Config{Name: "solo", Addr: testnet.ClusterAddr(t), Logger: testLogger()}, func(uint64, string, []byte) {})
	if err != nil {
		t.Fatal(err)
	}
	alone.SetInterest("g", true)
	called = false
	alone.WhenKnown("g", func(ok bool) { called = ok })
	if !called {
		t.Error("a node without peers did not call back at once")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := alone.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestManyGroupsMeanEveryGroup: a node whose group names pass the bound
// tells the others it wants every group frame, and gets them all.
func TestManyGroupsMeanEveryGroup(t *testing.T) {
	nodes := startGroupCluster(t, 2)
	a, b := nodes[0], nodes[1]
	name := strings.Repeat("n", 250)
	for i := range 4300 { // 4,300 × 254 bytes: over a MiB
		b.node.SetInterest(fmt.Sprintf("%s%04d", name, i), true)
	}
	settled(t, b.node)
	for i := range 10 {
		if err := a.node.PublishGroup(1, fmt.Sprintf("unheard-of-%d", i), frame(1)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		b.rec.waitCount(t, "b", fmt.Sprintf("unheard-of-%d", i), 1)
	}
	// Back under the bound, it is filtered again.
	for i := range 4300 {
		b.node.SetInterest(fmt.Sprintf("%s%04d", name, i), false)
	}
	settled(t, b.node)
	spared := a.node.Stats().Spared
	if err := a.node.PublishGroup(1, "unheard-of-0", frame(2)); err != nil {
		t.Fatal(err)
	}
	if err := a.node.Publish(1, frame(1)); err != nil {
		t.Fatal(err)
	}
	b.rec.waitCount(t, "b", "", 1)
	if b.rec.count("unheard-of-0") != 1 || a.node.Stats().Spared != spared+1 {
		t.Errorf("b got a frame of a group it has no members of (spared %d → %d)", spared, a.node.Stats().Spared)
	}
}
