package loadgen

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// epoch is the process-wide base of the timestamps in payloads. It is set
// once, when the package is initialised, and never changes; time.Since
// reads the monotonic clock, so a stamp is immune to wall-clock steps.
var epoch = time.Now()

// now is the current time as a payload stamp: nanoseconds since epoch.
func now() int64 { return int64(time.Since(epoch)) }

// Histogram bounds: 1 ns to a minute at three significant digits. A
// latency past a minute is recorded as a minute.
const (
	histLow     = 1
	histHigh    = int64(time.Minute)
	histDigits  = 3
	histShardsN = 8 // shards, so connections recording at once rarely share a lock
)

// latencies is a latency histogram sharded by connection: each connection
// records a whole read's worth of samples under one lock, and the shards
// are merged at the end. One histogram per connection would cost ~200 KiB
// each, too much for thousands of connections.
type latencies struct {
	shards []latencyShard
}

type latencyShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [64]byte // keep the shards' locks off each other's cache lines
}

func newLatencies(conns int) *latencies {
	l := &latencies{shards: make([]latencyShard, min(max(conns, 1), histShardsN))}
	for i := range l.shards {
		l.shards[i].h = hdrhistogram.New(histLow, histHigh, histDigits)
	}
	return l
}

// record adds samples (nanoseconds) to connection conn's shard.
func (l *latencies) record(conn int, samples []int64) {
	if len(samples) == 0 {
		return
	}
	s := &l.shards[conn%len(l.shards)]
	s.mu.Lock()
	for _, v := range samples {
		// RecordValue fails only for a value out of range, and the
		// clamp rules that out.
		_ = s.h.RecordValue(min(max(v, histLow), histHigh))
	}
	s.mu.Unlock()
}

// summary merges the shards and summarises them.
func (l *latencies) summary() Latency {
	h := hdrhistogram.New(histLow, histHigh, histDigits)
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		h.Merge(s.h)
		s.mu.Unlock()
	}
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		P50:  time.Duration(h.ValueAtQuantile(50)),
		P99:  time.Duration(h.ValueAtQuantile(99)),
		P999: time.Duration(h.ValueAtQuantile(99.9)),
		Max:  time.Duration(h.Max()),
	}
}
