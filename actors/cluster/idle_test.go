package cluster_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestIdleMemoryIsFlat runs an idle three-node cluster (probes every
// second, protoactor's gossip once a minute) and checks that the heap,
// after a GC, stays flat: nothing the nodes keep grows while they idle.
// HYDROGEN_LONG=1 runs it; HYDROGEN_IDLE_DURATION sets how long (default
// 10 minutes), and HYDROGEN_IDLE_PPROF a directory for heap profiles at
// its start and end. (The brokers' RSS, one process each, is
// test.TestClusterIdleMemory.)
func TestIdleMemoryIsFlat(t *testing.T) {
	if os.Getenv("HYDROGEN_LONG") != "1" {
		t.Skip("HYDROGEN_LONG=1 runs it (ten minutes)")
	}
	if raceDetector {
		t.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	d := 10 * time.Minute
	if s := os.Getenv("HYDROGEN_IDLE_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv("HYDROGEN_IDLE_PPROF") != "" {
		runtime.MemProfileRate = 4096
	}
	startCluster(t, 3)

	heap := func() (uint64, int) {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc, runtime.NumGoroutine()
	}
	// The baseline is taken once the cluster has formed and its first
	// connections are up; the samples are spaced, not a synchronisation.
	time.Sleep(10 * time.Second)
	base, g0 := heap()
	profile := func(name string) {
		if dir := os.Getenv("HYDROGEN_IDLE_PPROF"); dir != "" {
			f, err := os.Create(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := pprof.WriteHeapProfile(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	profile("heap-start.pprof")
	defer profile("heap-end.pprof")
	t.Logf("after 10s: heap %.2f MiB, %d goroutines", float64(base)/(1<<20), g0)
	var last uint64
	for el := time.Duration(0); el < d; el += 30 * time.Second {
		time.Sleep(30 * time.Second)
		h, g := heap()
		last = h
		t.Logf("+%v: heap %.2f MiB (%+.1f KiB), %d goroutines", el+30*time.Second, float64(h)/(1<<20), (float64(h)-float64(base))/1024, g)
	}
	// What remains is protoactor's registry of futures, which its gossip,
	// once a minute, touches a few dozen times (TestFutureRegistryPlateaus):
	// a few KiB a minute. 64 KiB a node is many times that.
	if grow := float64(last) - float64(base); grow > 3*64<<10 {
		t.Errorf("heap grew %.0f KiB over %v idle; want under %d KiB", grow/1024, d, 3*64)
	}
}

// TestIdleAllocatesLittle measures what an idle node allocates: a node's
// probes and the remote's work for them, no more. Garbage is what makes
// an idle process's RSS climb until the next GC; protoactor's gossip every
// 300 ms and the automanaged provider's HTTP checks made 102 KB/s a node,
// the probes alone make about 9.
func TestIdleAllocatesLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster and idles: 15 s")
	}
	if raceDetector {
		t.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	startCluster(t, 3)
	time.Sleep(3 * time.Second) // past the joins' own work
	const span = 10 * time.Second
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	time.Sleep(span)
	runtime.ReadMemStats(&b)
	perNode := float64(b.TotalAlloc-a.TotalAlloc) / span.Seconds() / 3
	t.Logf("%.1f KB/s and %.0f allocations/s a node", perNode/1024, float64(b.Mallocs-a.Mallocs)/span.Seconds()/3)
	if perNode > 32<<10 {
		t.Errorf("an idle node allocates %.1f KB/s; want under 32", perNode/1024)
	}
}

// TestFutureRegistryPlateaus pins down where an idle node's heap goes:
// protoactor's gossip makes a few request futures a second, and each
// future's id lands in one of the 32,768 maps of the process registry,
// which keep their first table once a key has passed through. That growth
// is bounded: about 9 MiB once every map has been touched, which takes
// some 150,000 futures, hours of idling; past that the heap is flat.
func TestFutureRegistryPlateaus(t *testing.T) {
	if testing.Short() || raceDetector {
		t.Skip("800,000 futures")
	}
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return testLogger() }))
	defer sys.Shutdown()
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	base := heap()
	n := 0
	var at []float64
	for _, target := range []int{100000, 200000, 400000, 800000} {
		for ; n < target; n++ {
			f := actor.NewFuture(sys, time.Second)
			sys.Root.Send(f.PID(), n)
			_ = f.Wait()
		}
		at = append(at, heap())
		t.Logf("after %d futures: heap %+.2f MiB", n, at[len(at)-1]-base)
	}
	if grow := at[3] - at[1]; grow > 1 {
		t.Errorf("the heap grew %.2f MiB from 200,000 to 800,000 futures", grow)
	}
}
