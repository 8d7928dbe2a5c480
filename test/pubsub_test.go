package test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
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

// psExpectTicks reads from every subscriber until it has had MSG ticks
// p i for both publishers p and every i below n, each once and in order;
// subscriber pub, a publisher too, also gets its n +OKs.
func psExpectTicks(t testing.TB, subs []*client.Client, n, pub int) {
	t.Helper()
	for si, s := range subs {
		next := []int{0, 0}
		oks := 0
		for next[0] < n || next[1] < n || (si == pub && oks < n) {
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
	psExpectTicks(t, subs, n, 2)
	if _, err := other.Recv(ctxWithin(t, 200*time.Millisecond)); err == nil {
		t.Error("a subscriber of another topic got a message")
	}
}

// psCluster starts three brokers running `--app pubsub` as a cluster and
// waits until they are OK; not with -short.
func psCluster(t *testing.T) []*clNode {
	t.Helper()
	if testing.Short() {
		t.Skip("three brokers forming a cluster: seconds")
	}
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	nodes := make([]*clNode, 3)
	for i := range nodes {
		nodes[i] = clStart(t, addrs[i], addrs, "--app", "pubsub")
	}
	clWaitOK(t, nodes, 30*time.Second)
	return nodes
}

// TestPubSubCluster runs `--app pubsub` on a cluster of three brokers:
// two publishers, on the first and the second node, interleave numbered
// PUBs on one topic; its subscribers on every node (the first publisher
// among them) get each PUB exactly once and each publisher's in order; a
// subscriber of another topic, and a client subscribed to nothing, on
// the node with no publisher get none. A topic's frames go to the other
// nodes as a group's, not to every stream.
func TestPubSubCluster(t *testing.T) {
	nodes := psCluster(t)

	pubs := []*client.Client{dial(t, nodes[0].Addr), dial(t, nodes[1].Addr)}
	subs := []*client.Client{pubs[0], dial(t, nodes[0].Addr), dial(t, nodes[1].Addr), dial(t, nodes[2].Addr), dial(t, nodes[2].Addr)}
	other, idle := dial(t, nodes[2].Addr), dial(t, nodes[2].Addr)
	for _, s := range subs {
		if a, _ := psCmd(t, s, "SUB ticks"); a != "+OK" {
			t.Fatalf("SUB: %q", a)
		}
	}
	if a, _ := psCmd(t, other, "SUB other"); a != "+OK" {
		t.Fatalf("SUB: %q", a)
	}
	const n = 2000
	for i := range n {
		for p, c := range pubs {
			if err := c.Send(fmt.Appendf(nil, "PUB ticks %d %d", p, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	psExpectTicks(t, subs, n, 0)
	for name, c := range map[string]*client.Client{"a subscriber of another topic": other, "a client subscribed to nothing": idle} {
		if p, err := c.Recv(ctxWithin(t, 300*time.Millisecond)); err == nil {
			t.Errorf("%s got %q", name, p)
		}
	}
}

// TestPubSubClusterTopicsGoWhereSubscribed: on a cluster of three
// brokers, a SUB's +OK means the other nodes send the topic here: a PUB
// on another node right after it reaches the subscriber, for topic after
// new topic. A node with no subscriber of a topic gets none of its
// frames: the publishing node counts them spared, and the node receives
// nothing from the cluster.
func TestPubSubClusterTopicsGoWhereSubscribed(t *testing.T) {
	nodes := psCluster(t)
	const late = `hydrogen_cluster_interest_late_total{cluster="e2e"}`
	sub, pubs := dial(t, nodes[0].Addr), []*client.Client{dial(t, nodes[1].Addr), dial(t, nodes[2].Addr)}
	for i := range 30 {
		topic := fmt.Sprintf("fresh-%d", i)
		if a, _ := psCmd(t, sub, "SUB "+topic); a != "+OK" {
			t.Fatalf("SUB: %q", a)
		}
		pub := pubs[i%2]
		if a, _ := psCmd(t, pub, "PUB "+topic+" hello"); a != "+OK" {
			t.Fatalf("PUB: %q", a)
		}
		if got, want := string(recv(t, sub)), "MSG "+topic+" hello"; got != want {
			t.Fatalf("the subscriber got %q, want %q", got, want)
		}
	}
	if v := nodes[0].metric(late); v != 0 {
		t.Errorf("%v SUBs were answered after a timed-out wait, not an acknowledgement", v)
	}
	pub := pubs[0]

	const spared = `hydrogen_cluster_group_frames_spared_total{cluster="e2e"}`
	const received = `hydrogen_cluster_received_total{cluster="e2e"}`
	before, quiet := nodes[1].metric(spared), nodes[2].metric(received)
	const n = 500
	for i := range n {
		if err := pub.Send(fmt.Appendf(nil, "PUB fresh-0 %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if got, want := string(recv(t, sub)), fmt.Sprintf("MSG fresh-0 %d", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	for range n {
		if a := string(recv(t, pub)); a != "+OK" {
			t.Fatalf("PUB: %q", a)
		}
	}
	if got := nodes[1].metric(spared) - before; got != n {
		t.Errorf("the publishing node spared %v frames of the node without subscribers, want %d", got, n)
	}
	if got := nodes[2].metric(received); got != quiet {
		t.Errorf("the node without subscribers received %v frames from the cluster, want %v", got, quiet)
	}
}

// TestPubSubClusterAfterRejoin: the publisher's node is stopped past the
// time the others wait (it rejoins as a new member) while a subscriber on
// another node takes a new topic; once the cluster is OK again, a PUB on
// the rejoined node reaches the subscriber on both topics: what the nodes
// told each other's former memberships is not taken for what they know.
func TestPubSubClusterAfterRejoin(t *testing.T) {
	nodes := psCluster(t)
	t.Cleanup(func() { nodes[1].Cmd.Process.Signal(syscall.SIGCONT) })
	sub, pub := dial(t, nodes[0].Addr), dial(t, nodes[1].Addr)
	if a, _ := psCmd(t, sub, "SUB before"); a != "+OK" {
		t.Fatalf("SUB: %q", a)
	}
	clSignal(t, nodes[1], syscall.SIGSTOP)
	time.Sleep(time.Second)
	if a, _ := psCmd(t, sub, "SUB during"); a != "+OK" {
		t.Fatalf("SUB while a node is stopped: %q", a)
	}
	time.Sleep(4 * time.Second) // past DeadAfter (3 s): it is dropped
	clSignal(t, nodes[1], syscall.SIGCONT)
	clWaitOK(t, nodes, clHealBound+20*time.Second)
	for _, topic := range []string{"before", "during"} {
		if a, _ := psCmd(t, pub, "PUB "+topic+" hello"); a != "+OK" {
			t.Fatalf("PUB: %q", a)
		}
		if got, want := string(recv(t, sub)), "MSG "+topic+" hello"; got != want {
			t.Fatalf("the subscriber got %q, want %q", got, want)
		}
	}
	if v := nodes[1].metric(`hydrogen_cluster_rejoins_total{cluster="e2e"}`); v < 1 {
		t.Errorf("the stopped node did not rejoin (rejoins %v): the test did not test a rejoin", v)
	}
}
