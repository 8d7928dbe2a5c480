package cluster_test

import (
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/actors/cluster"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

// Clusters for the benchmarks, by size, started on first use and left by
// TestMain, so that every b.N does not pay for forming one.
var benchClusters = map[int][]*benchNode{}

type benchNode struct {
	node *cluster.Node
	got  atomic.Uint64
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
	os.Exit(code)
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
		n, err := cluster.Start(cluster.Config{Name: "bench", Addr: addrs[i], Peers: addrs, Logger: testLogger()},
			func(uint64, []byte) { bn.got.Add(1) })
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
// again, so the figure is what the cluster sustains without loss.
func benchmarkAcross(b *testing.B, size int) {
	if raceDetector {
		b.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	ns := benchCluster(b, size)
	base := make([]uint64, len(ns))
	for i, n := range ns {
		base[i] = n.got.Load()
	}
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
		for ns[0].node.Publish(1, p) == cluster.ErrFull {
			full++
			runtime.Gosched()
		}
	}
	// Wait until every receiver has everything, or has had nothing new
	// for a second (frames dropped for a peer that fell behind).
	last, lastAt := time.Now(), uint64(0)
	var got uint64
	for {
		got = 0
		done := true
		for i := 1; i < len(ns); i++ {
			g := ns[i].got.Load() - base[i]
			got += g
			done = done && g >= uint64(b.N)
		}
		if done {
			last = time.Now()
			break
		}
		if got != lastAt {
			last, lastAt = time.Now(), got
		} else if time.Since(last) > time.Second {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	el := last.Sub(start)
	b.StopTimer()
	b.ReportMetric(float64(got)/float64(len(ns)-1)/el.Seconds(), "frames/s")
	b.ReportMetric(float64(got)/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(uint64(b.N*(len(ns)-1))-got), "lost")
	b.ReportMetric(float64(full)/float64(b.N), "full/op")
}

func BenchmarkAcrossTwoNodes(b *testing.B)   { benchmarkAcross(b, 2) }
func BenchmarkAcrossThreeNodes(b *testing.B) { benchmarkAcross(b, 3) }
