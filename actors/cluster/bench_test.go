package cluster_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/actors/cluster"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
	"go.uber.org/goleak"
)

// Clusters for the benchmarks, by size, started on first use and left by
// TestMain, so that every b.N does not pay for forming one.
var benchClusters = map[int][]*benchNode{}

// benchNode is a node of a benchmark's cluster. It checks every frame it
// is handed: each run of a benchmark publishes as a publisher of its own,
// sequence numbers from 0, and a node must get them all, once, in order.
type benchNode struct {
	node *cluster.Node
	pub  atomic.Uint64 // the publisher of the run now
	next uint64        // the sequence number due next; the deliver goroutine's alone
	got  atomic.Uint64 // frames of the run now
	bad  atomic.Uint64 // frames of another publisher, out of order, duplicated or after a gap
	what atomic.Pointer[string]
}

func (bn *benchNode) deliver(pub uint64, _ string, p []byte) {
	seq := binary.BigEndian.Uint64(p)
	if pub != bn.pub.Load() || seq != bn.next {
		if bn.bad.Add(1) == 1 {
			s := fmt.Sprintf("publisher %d frame %d, where publisher %d frame %d was due", pub, seq, bn.pub.Load(), bn.next)
			bn.what.Store(&s)
		}
	}
	bn.next = seq + 1
	bn.got.Add(1)
}

// run starts a run of publisher pub. Only between runs, with nothing in
// flight: next belongs to the deliver goroutine, and the last frame it
// delivered (got) happened before.
func (bn *benchNode) run(pub uint64) {
	bn.pub.Store(pub)
	bn.next = 0
	bn.got.Store(0)
}

func TestMain(m *testing.M) {
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	for _, ns := range benchClusters {
		for _, n := range ns {
			_ = n.node.Shutdown(ctx)
		}
	}
	cancel()
	if code == 0 {
		// Every node's goroutines end with its Shutdown, but for
		// protoactor's own, which end on their next tick or timeout.
		if err := goleak.Find(protoactorLeftovers...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var runs atomic.Uint64

// protoactorLeftovers are goroutines of protoactor that outlive a node's
// Shutdown by design and end on their own: the timers of its log
// throttles, which the gossip starts at its first round (a minute into a
// node's life, so only the long tests see them) and which end at the
// throttle's period, 60 s, whoever owned them.
var protoactorLeftovers = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.NewGossipActor.NewThrottleWithLogger.func2.1"),
}

func benchCluster(b *testing.B, size int) []*benchNode {
	if ns, ok := benchClusters[size]; ok {
		return ns
	}
	addrs := make([]string, size)
	for i := range addrs {
		addrs[i] = testnet.ClusterAddr(b)
	}
	var ns []*benchNode
	var tns []*testNode
	for i := range addrs {
		bn := &benchNode{}
		n, err := cluster.Start(cluster.Config{Name: "bench", Addr: addrs[i], Peers: addrs, Logger: testLogger()}, bn.deliver)
		if err != nil {
			b.Fatal(err)
		}
		bn.node = n
		ns = append(ns, bn)
		tns = append(tns, &testNode{addr: addrs[i], node: n})
	}
	waitMembers(b, tns...)
	benchClusters[size] = ns
	return ns
}

// benchmarkAcross publishes b.N 64-byte frames on the first node of a
// cluster of size nodes and reports the rate at which they reach the
// others: frames/s per receiving node and deliveries/s over all of them.
// A publisher that finds the buffer full yields and publishes the frame
// again, so the figure is what the cluster sustains without loss; a frame
// lost, duplicated or out of order fails the benchmark.
func benchmarkAcross(b *testing.B, size int) { benchmarkGroupAcross(b, size, size-1) }

// benchmarkGroupAcross is benchmarkAcross with frames to a group that has
// members on the first members of the other nodes only (members == size-1
// and the frames go to every stream instead); a node without members must
// get none of them. deliveries/s counts what reaches nodes with members.
func benchmarkGroupAcross(b *testing.B, size, members int) {
	if raceDetector {
		b.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	ns := benchCluster(b, size)
	pub := runs.Add(1)
	for _, n := range ns[1:] {
		n.run(pub)
	}
	group := ""
	if members < size-1 {
		group = fmt.Sprintf("bench-%d", pub)
		for _, n := range ns[1 : 1+members] {
			n.node.SetInterest(group, true)
		}
		defer func() {
			for _, n := range ns[1 : 1+members] {
				n.node.SetInterest(group, false)
			}
		}()
		for _, n := range ns[1 : 1+members] {
			done := make(chan bool, 1)
			n.node.WhenKnown(group, func(ok bool) { done <- ok })
			if !<-done {
				b.Fatal("the nodes did not hear of the group's members in time")
			}
		}
	}
	publish := func(p []byte) error {
		if group == "" {
			return ns[0].node.Publish(pub, p)
		}
		return ns[0].node.PublishGroup(pub, group, p)
	}
	reach := ns[1 : 1+members]
	full := 0
	p := make([]byte, 64)
	b.SetBytes(64)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		// Pace on the slowest peer, as a publisher that must not lose
		// frames would.
		if i%256 == 0 {
			for ns[0].node.Stats().Backlog > cluster.DefaultMaxPending/2 {
				time.Sleep(20 * time.Microsecond)
			}
		}
		binary.BigEndian.PutUint64(p, uint64(i))
		for publish(p) == cluster.ErrFull {
			full++
			runtime.Gosched()
		}
	}
	// Wait until every receiver has everything; one that has had nothing
	// new for longer than a batch may wait unacknowledged (AckTimeout)
	// has lost frames.
	var got uint64
	lastGot, lastAt := uint64(0), time.Now()
	for {
		got = 0
		done := true
		for _, n := range reach {
			g := n.got.Load()
			got += g
			done = done && g >= uint64(b.N)
		}
		if done {
			break
		}
		if got != lastGot {
			lastGot, lastAt = got, time.Now()
		} else if time.Since(lastAt) > cluster.DefaultAckTimeout {
			b.Fatalf("lost: %d of %d deliveries arrived; %+v", got, b.N*len(reach), ns[0].node.Stats())
		}
		time.Sleep(50 * time.Microsecond)
	}
	el := time.Since(start)
	b.StopTimer()
	for i, n := range reach {
		if bad := n.bad.Load(); bad != 0 || n.got.Load() != uint64(b.N) {
			b.Fatalf("node %d: %d frames of %d, %d out of order, duplicated or after a gap: first %s", i+1, n.got.Load(), b.N, bad, *n.what.Load())
		}
	}
	for i, n := range ns[1+members:] {
		if g := n.got.Load(); g != 0 {
			b.Fatalf("node %d, without members of the group, got %d of its frames", 1+members+i, g)
		}
	}
	b.ReportMetric(float64(got)/float64(len(reach))/el.Seconds(), "frames/s")
	b.ReportMetric(float64(got)/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(full)/float64(b.N), "full/op")
}

func BenchmarkAcrossTwoNodes(b *testing.B)   { benchmarkAcross(b, 2) }
func BenchmarkAcrossThreeNodes(b *testing.B) { benchmarkAcross(b, 3) }

// BenchmarkGroupAcrossThreeNodes: a group's frames published on one node
// of three, with members on one of the other two (each group frame went
// to both before groups were told between nodes), against the same frames
// to every stream of both.
func BenchmarkGroupAcrossThreeNodes(b *testing.B) {
	b.Run("members=1of2", func(b *testing.B) { benchmarkGroupAcross(b, 3, 1) })
	b.Run("everyone=2of2", func(b *testing.B) { benchmarkGroupAcross(b, 3, 2) })
}
