package cluster_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/actors/cluster"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

func testLogger() *slog.Logger {
	if os.Getenv("HYDROGEN_CLUSTER_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// recorder checks what one node receives. A publisher's frames are
// checked from the sequence number the test says it must start at
// (expect): every number from there on arrives once and in order; a
// frame from a publisher nobody said to expect is an error too. A lossy
// recorder lets numbers be skipped, and counts them, but never go back.
type recorder struct {
	lossy bool

	mu      sync.Mutex
	next    map[uint64]uint64 // publisher → the sequence number due next
	last    map[uint64]uint64 // publisher → the last one received
	n       map[uint64]int
	skipped uint64
	errs    []string
}

func newRecorder() *recorder {
	return &recorder{next: map[uint64]uint64{}, last: map[uint64]uint64{}, n: map[uint64]int{}}
}

// expect says that publisher's frames are due from seq on.
func (r *recorder) expect(publisher, seq uint64) {
	r.mu.Lock()
	r.next[publisher] = seq
	r.mu.Unlock()
}

func (r *recorder) deliver(publisher uint64, _ string, payload []byte) {
	seq := binary.BigEndian.Uint64(payload)
	r.mu.Lock()
	defer r.mu.Unlock()
	next, ok := r.next[publisher]
	switch {
	case !ok:
		r.fail("publisher %d: frame %d, but nothing from it was expected", publisher, seq)
	case seq == next:
	case r.lossy && seq > next:
		r.skipped += seq - next
	default:
		r.fail("publisher %d: frame %d where %d was due", publisher, seq, next)
	}
	r.next[publisher] = seq + 1
	r.last[publisher] = seq
	r.n[publisher]++
}

func (r *recorder) fail(format string, a ...any) {
	if len(r.errs) < 10 {
		r.errs = append(r.errs, fmt.Sprintf(format, a...))
	}
}

// waitFor waits until publisher's last sequence number is want, and fails
// on any error the recorder has seen.
func (r *recorder) waitFor(t testing.TB, name string, publisher, want uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		last, errs := r.last[publisher], append([]string(nil), r.errs...)
		r.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("%s: %v", name, errs)
		}
		if last == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: publisher %d: last sequence number %d, want %d", name, publisher, last, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testNode struct {
	addr string
	node *cluster.Node
	rec  *recorder
}

// startCluster starts n nodes that list each other as peers, waits until
// every node sees them all and is OK, and shuts them down when the test
// ends.
func startCluster(t testing.TB, n int) ([]string, []*testNode) {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = testnet.ClusterAddr(t)
	}
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, addrs[i], addrs)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.shutdown(t)
		}
	})
	waitMembers(t, nodes...)
	return addrs, nodes
}

func startNode(t testing.TB, addr string, peers []string) *testNode {
	t.Helper()
	rec := newRecorder()
	n, err := cluster.Start(cluster.Config{Name: "test", Addr: addr, Peers: peers, Logger: testLogger()}, rec.deliver)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{addr: addr, node: n, rec: rec}
}

func (n *testNode) shutdown(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.node.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// waitMembers waits until every node sees exactly the given nodes as
// members and is OK: from then on, every frame published on one of them
// reaches the others.
func waitMembers(t testing.TB, nodes ...*testNode) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for {
			ms := n.node.Members()
			got := map[string]bool{}
			for _, m := range ms {
				got[m.Address] = true
			}
			ok := len(ms) == len(nodes) && n.node.State() == cluster.OK
			for _, o := range nodes {
				ok = ok && got[o.addr]
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s is %v and sees members %v, want %d nodes", n.addr, n.node.State(), ms, len(nodes))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// publish publishes sequence numbers from to to as publisher. A full
// buffer drops the frame (counted); it publishes it again, as a publisher
// that must not lose frames would, and returns how often it had to.
func publish(n *testNode, publisher, from, to uint64) (full int, err error) {
	p := make([]byte, 64)
	for seq := from; seq <= to; seq++ {
		binary.BigEndian.PutUint64(p, seq)
		for {
			err := n.node.Publish(publisher, p)
			if err == nil {
				break
			}
			if !errors.Is(err, cluster.ErrFull) {
				return full, fmt.Errorf("%s: publish %d: %w", n.addr, seq, err)
			}
			full++
			time.Sleep(100 * time.Microsecond)
		}
	}
	return full, nil
}

// mustPublish is publish, from the test's goroutine.
func mustPublish(t testing.TB, n *testNode, publisher, from, to uint64) {
	t.Helper()
	if _, err := publish(n, publisher, from, to); err != nil {
		t.Fatal(err)
	}
}

// expectAll makes every node expect every other node's publisher (node i
// publishes as i+1) from seq on.
func expectAll(nodes []*testNode, seq uint64) {
	for i, n := range nodes {
		for j := range nodes {
			if i != j {
				n.rec.expect(uint64(j+1), seq)
			}
		}
	}
}

func TestThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster: seconds")
	}
	if raceDetector {
		t.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	addrs, nodes := startCluster(t, 3)

	// Every node publishes as publisher i+1, all at once, from the moment
	// all are OK; every other node gets all of it from the first frame,
	// in order, and nothing comes back to the publisher (its recorder
	// expects nothing from it).
	const frames = 20000
	expectAll(nodes, 1)
	errs := make(chan error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := publish(n, uint64(i+1), 1, frames)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range nodes {
		for j := range nodes {
			if i != j {
				n.rec.waitFor(t, n.addr, uint64(j+1), frames)
			}
		}
		if s := n.node.Stats(); s.Duplicates != 0 || s.Gaps != 0 || s.Refused != 0 || s.Rejoins != 0 {
			t.Errorf("%s: %+v", n.addr, s)
		}
	}

	// Stop the third node: the other two carry on between them, every
	// frame still due.
	nodes[2].shutdown(t)
	waitMembers(t, nodes[0], nodes[1])
	mustPublish(t, nodes[0], 1, frames+1, 2*frames)
	mustPublish(t, nodes[1], 2, frames+1, 2*frames)
	nodes[1].rec.waitFor(t, nodes[1].addr, 1, 2*frames)
	nodes[0].rec.waitFor(t, nodes[0].addr, 2, 2*frames)

	// Start it again at the same address: once every node is OK again,
	// it receives every frame published from then on, and the others
	// every frame it publishes (a new incarnation, a new publisher).
	nodes[2] = startNode(t, addrs[2], addrs)
	waitMembers(t, nodes...)
	nodes[2].rec.expect(1, 2*frames+1)
	nodes[0].rec.expect(4, 1)
	nodes[1].rec.expect(4, 1)
	mustPublish(t, nodes[0], 1, 2*frames+1, 3*frames)
	mustPublish(t, nodes[2], 4, 1, frames)
	nodes[2].rec.waitFor(t, nodes[2].addr, 1, 3*frames)
	nodes[0].rec.waitFor(t, nodes[0].addr, 4, frames)
	nodes[1].rec.waitFor(t, nodes[1].addr, 4, frames)
	nodes[2].rec.mu.Lock()
	got := nodes[2].rec.n[1]
	nodes[2].rec.mu.Unlock()
	if got != frames {
		t.Errorf("the restarted node got %d frames of publisher 1, want %d", got, frames)
	}
}

// TestSingleNode runs under the race detector too: one node, its own
// cluster of one, publishing to nobody.
func TestSingleNode(t *testing.T) {
	addr := testnet.ClusterAddr(t)
	n := startNode(t, addr, []string{addr})
	waitMembers(t, n)
	ms := n.node.Members()
	if len(ms) != 1 || !ms[0].Self || ms[0].Address != addr {
		t.Fatalf("members %+v", ms)
	}
	mustPublish(t, n, 1, 1, 1000)
	if s := n.node.Stats(); s.Published != 0 || s.Dropped != 0 || s.Members != 1 || s.State != cluster.OK {
		t.Errorf("stats with no peers: %+v", s)
	}
	n.shutdown(t)
	n.shutdown(t) // a second Shutdown returns at once
	if err := n.node.Publish(1, []byte("x")); err != cluster.ErrClosed {
		t.Errorf("Publish after Shutdown: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	deliver := func(uint64, string, []byte) {}
	for _, c := range []cluster.Config{
		{Addr: "127.0.0.1:7000"},
		{Name: "x", Addr: "127.0.0.1"},
		{Name: "x", Addr: "0.0.0.0:7000"},
		{Name: "x", Addr: ":7000"},
		{Name: "x", Addr: "127.0.0.1:0"},
		{Name: "x", Addr: "127.0.0.1:7000", Peers: []string{"nope"}},
		{Name: "x", Addr: "127.0.0.1:7000", Advertise: "0.0.0.0:7000"},
		{Name: "x", Addr: "127.0.0.1:7000", ProbeInterval: time.Second, DeadAfter: time.Second},
	} {
		if n, err := cluster.Start(c, deliver); err == nil {
			n.Shutdown(context.Background())
			t.Errorf("%+v: no error", c)
		} else {
			t.Logf("%+v: %v", c, err)
		}
	}
	if _, err := cluster.Start(cluster.Config{Name: "x", Addr: "127.0.0.1:7000"}, nil); err == nil {
		t.Error("no deliver function: no error")
	}
}

// TestSlowPeerLosesOnlyItsOwn stalls one node's deliveries: its peers drop
// what does not fit its backlog for it alone (counted), the third node
// still gets everything in order, and the stalled node, once it resumes,
// sees frames in order with exactly the dropped ones missing.
func TestSlowPeerLosesOnlyItsOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster: seconds")
	}
	if raceDetector {
		t.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	stall := make(chan struct{})
	var stallOnce sync.Once
	nodes := make([]*testNode, 3)
	for i := range nodes {
		rec := newRecorder()
		deliver := rec.deliver
		if i == 2 {
			rec.lossy = true
			deliver = func(origin uint64, g string, p []byte) {
				<-stall
				rec.deliver(origin, g, p)
			}
		}
		n, err := cluster.Start(cluster.Config{
			Name: "slow", Addr: addrs[i], Peers: addrs, Logger: testLogger(),
			MaxPending: 256 << 10, AckTimeout: time.Minute,
		}, deliver)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &testNode{addr: addrs[i], node: n, rec: rec}
	}
	defer func() {
		stallOnce.Do(func() { close(stall) })
		for _, n := range nodes {
			n.shutdown(t)
		}
	}()
	waitMembers(t, nodes...)
	nodes[1].rec.expect(1, 1)
	nodes[2].rec.expect(1, 1)

	// 3.6 MB of frames, many times the stalled node's backlog, published
	// at the pace the healthy node takes them.
	const frames = 50000
	full := 0
	for from := uint64(1); from <= frames; from += 1000 {
		f, err := publish(nodes[0], 1, from, from+999)
		if err != nil {
			t.Fatal(err)
		}
		full += f
		nodes[1].rec.waitFor(t, nodes[1].addr, 1, from+999)
	}
	s := nodes[0].node.Stats()
	if s.Dropped == 0 {
		t.Fatalf("nothing dropped for the stalled node: %+v", s)
	}
	t.Logf("publisher: %+v, full %d times", s, full)

	// Resumed, the stalled node works through what it was sent; once the
	// publisher's backlog for it has drained, it gets new frames again.
	stallOnce.Do(func() { close(stall) })
	for deadline := time.Now().Add(20 * time.Second); nodes[0].node.Stats().Backlog > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the backlog for the stalled node did not drain: %+v", nodes[0].node.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustPublish(t, nodes[0], 1, frames+1, frames+100)
	nodes[2].rec.waitFor(t, nodes[2].addr, 1, frames+100)
	nodes[1].rec.waitFor(t, nodes[1].addr, 1, frames+100)

	// The frames it misses are exactly those dropped for it: each drop
	// of a full buffer (ErrFull) counted one per peer, two here, and was
	// published again.
	s = nodes[0].node.Stats()
	nodes[2].rec.mu.Lock()
	skipped := nodes[2].rec.skipped
	nodes[2].rec.mu.Unlock()
	if want := s.Dropped - uint64(2*full); skipped != want {
		t.Errorf("the stalled node misses %d frames; %d were dropped for it (%d drops, %d of a full buffer)", skipped, want, s.Dropped, full)
	}
	s2 := nodes[2].node.Stats()
	if s2.Gaps == 0 || s2.Duplicates != 0 || s.BatchesLost != 0 {
		t.Errorf("stalled node: %+v; publisher %+v", s2, s)
	}
	t.Logf("stalled node: %+v, %d frames missed", s2, skipped)
}
