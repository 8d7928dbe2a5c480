package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
)

// Heap bound: what the broker's memory budget does not count — its fixed
// state, the actor system, goroutines, the state of each connection — is
// allowed heapOverhead plus heapPerConn per open connection above the
// budget. Both come from measurement: an idle broker's heap is 10–20 MiB,
// and an idle connection costs about 4 KB (README, Limits).
const (
	heapOverhead = 64 << 20
	heapPerConn  = 8 << 10
	heapEvery    = time.Second
)

// limitHeap keeps the Go runtime's soft memory limit (debug.SetMemoryLimit)
// at the broker's budget plus what the budget does not count, updated
// every second as connections come and go. Without it the garbage
// collector lets the heap grow to twice what is live (GOGC=100), so a
// broker whose queues fill its budget would use twice the budget; with it
// the collector works harder as the heap nears the bound and the process
// stays near it. A GOMEMLIMIT set in the environment wins and turns this
// off. The returned function stops the updates.
func limitHeap(b *broker.Broker, budget int64, log *slog.Logger) (stop func()) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		log.Info("GOMEMLIMIT is set; the heap bound follows it, not --max-memory")
		return func() {}
	}
	set := func() { debug.SetMemoryLimit(budget + heapOverhead + heapPerConn*max(b.Stats().IO.Open, 0)) }
	set()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(heapEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				set()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
