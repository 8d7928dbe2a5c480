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

// TestIdleMemoryIsFlat runs an idle three-node cluster (gossip, heartbeats
// and the provider's health checks still going) for two minutes and checks
// that the heap, after a GC, grows no faster than protoactor's registry of
// futures fills, a bounded growth (TestFutureRegistryPlateaus).
// HYDROGEN_LONG=1 runs it; HYDROGEN_IDLE_DURATION sets how long, and
// HYDROGEN_IDLE_PPROF a directory for heap profiles at its start and end.
func TestIdleMemoryIsFlat(t *testing.T) {
	if os.Getenv("HYDROGEN_LONG") != "1" {
		t.Skip("HYDROGEN_LONG=1 runs it (two minutes)")
	}
	if raceDetector {
		t.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	d := 2 * time.Minute
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
	// Let the first rounds of gossip settle before the baseline.
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
	for el := time.Duration(0); el < d; el += 15 * time.Second {
		time.Sleep(15 * time.Second)
		h, g := heap()
		last = h
		t.Logf("+%v: heap %.2f MiB (%+.1f KiB), %d goroutines", el+15*time.Second, float64(h)/(1<<20), (float64(h)-float64(base))/1024, g)
	}
	// Each node's registry of futures fills at a few KiB a second until
	// its bound (TestFutureRegistryPlateaus); anything faster is a leak.
	allowed := 3 * min(9<<20, 8<<10*d.Seconds())
	if grow := float64(last) - float64(base); grow > allowed {
		t.Errorf("heap grew %.0f KiB over %v idle; the futures' registry explains %.0f KiB", grow/1024, d, allowed/1024)
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
