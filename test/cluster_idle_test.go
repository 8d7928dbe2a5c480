package test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

// TestClusterIdleMemory runs an idle cluster of three brokers, each its
// own process, for ten minutes (HYDROGEN_IDLE_DURATION to change it) and
// reads every node's RSS every 10 s from /proc, which costs the broker
// nothing. From its first GC on, each must stay within 2 MiB: an idle
// node keeps nothing that grows. HYDROGEN_LONG=1 runs it.
//
// An idle broker collects garbage only when the runtime forces it, two
// minutes after the last collection; until then its RSS climbs by what it
// allocated meanwhile (about 1.5 MiB, the scavenger having returned part
// of the startup's heap), so the window starts at 2 minutes, and the
// figure from 1 minute is logged.
//
// The Go heap is logged at the end, from /metrics (every answer of which
// allocates: asked during the run, it moved RSS by more than what it
// measures); the heap live after a GC is
// actors/cluster.TestIdleMemoryIsFlat's to check,
// in one process, and what an idle node allocates, garbage until the next
// GC that RSS shows for the first few collections,
// actors/cluster.TestIdleAllocatesLittle's.
func TestClusterIdleMemory(t *testing.T) {
	if os.Getenv("HYDROGEN_LONG") != "1" {
		t.Skip("HYDROGEN_LONG=1 runs it (ten minutes)")
	}
	d := 10 * time.Minute
	if s := os.Getenv("HYDROGEN_IDLE_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	var nodes []*clNode
	for _, a := range addrs {
		nodes = append(nodes, clStart(t, a, addrs))
	}
	start := clWaitOK(t, nodes, 30*time.Second)
	const mib = 1 << 20
	rssOf := make([][]float64, len(nodes))
	var b strings.Builder
	fmt.Fprintf(&b, "%8s", "t")
	for i := range nodes {
		fmt.Fprintf(&b, "  node %d RSS (MiB)", i)
	}
	b.WriteString("\n")
	var heaps strings.Builder
	end := (d + time.Minute).Truncate(10 * time.Second)
	for el := time.Duration(0); el <= end; el += 10 * time.Second {
		time.Sleep(time.Until(start.Add(el))) // sampling, not synchronisation
		fmt.Fprintf(&b, "%7.0fs", el.Seconds())
		for i, n := range nodes {
			r := float64(rss(t, n.Cmd.Process.Pid)) / mib
			rssOf[i] = append(rssOf[i], r)
			fmt.Fprintf(&b, "  %16.2f", r)
		}
		b.WriteString("\n")
		if el == end {
			for i, n := range nodes {
				fmt.Fprintf(&heaps, "%v node %d: heap allocated %.2f MiB, in use %.2f MiB, next GC at %.2f MiB, %v goroutines\n",
					el, i, n.metric("go_memstats_heap_alloc_bytes")/mib, n.metric("go_memstats_heap_inuse_bytes")/mib,
					n.metric("go_memstats_next_gc_bytes")/mib, n.metric("go_goroutines"))
			}
		}
	}
	t.Logf("idle cluster of three, one process a node:\n%s\n%s", b.String(), heaps.String())
	spread := func(xs []float64) (lo, hi float64) {
		lo, hi = xs[0], xs[0]
		for _, x := range xs {
			lo, hi = min(lo, x), max(hi, x)
		}
		return lo, hi
	}
	for i := range nodes {
		lo1, hi1 := spread(rssOf[i][6:]) // from 1 minute on
		lo, hi := spread(rssOf[i][12:])  // from 2 minutes on
		t.Logf("node %d: RSS %.2f-%.2f MiB from 2 min to %v (%.2f-%.2f from 1 min)", i, lo, hi, end, lo1, hi1)
		if hi-lo > 2 {
			t.Errorf("node %d: RSS varied by %.2f MiB from 2 minutes on; want 2 at most", i, hi-lo)
		}
	}
}
