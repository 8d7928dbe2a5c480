package gnet_test

import (
	"context"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// Every benchmark runs each server (servers: broker, gnet, baseline) as a
// sub-benchmark, <workload>/<server>, each in a child process of its own
// started afresh for every run of the sub-benchmark and stopped at its
// end. b.N is scaled into the load generator's count (one op is many
// messages, noted on each), so -benchtime Nx still measures thousands.
// Server CPU is the child's user + system time from getrusage, read
// before and after the load; client CPU is this process's.
//
// -count N runs each sub-benchmark N times back to back, not the servers
// in turn; to alternate them, run the benchmarks N times with -count 1
// (README.md).

// BenchmarkEcho: 50 connections × 16 frames in flight, 64-byte payloads;
// one op is 10,000 round trips. Reports msg/s, server-cpu-ns/msg,
// client-cpu-ns/msg, p50-µs and p99-µs (benchecho.Run); any error, such
// as a reply out of order or for another connection, fails it.
func BenchmarkEcho(b *testing.B) {
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			p := benchproc.Start(b, s.name+"/echo")
			benchecho.Run(b, p.Addr, p, 50, 16, 10_000)
		})
	}
}

// BenchmarkEcho1x1: one connection, one frame in flight; one op is 1,000
// round trips. The figure is p50-µs, a round trip's latency.
func BenchmarkEcho1x1(b *testing.B) {
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			p := benchproc.Start(b, s.name+"/echo")
			benchecho.Run(b, p.Addr, p, 1, 1, 1_000)
		})
	}
}

// BenchmarkFanout100: 1 publisher, 100 subscribers, 64-byte payloads;
// one op is 10,000 frames published, 1,000,000 delivered.
func BenchmarkFanout100(b *testing.B) { benchFanout(b, 100, 10_000) }

// BenchmarkFanout1000: 1 publisher, 1,000 subscribers, 64-byte payloads;
// one op is 1,000 frames published, 1,000,000 delivered.
func BenchmarkFanout1000(b *testing.B) { benchFanout(b, 1_000, 1_000) }

// fanoutWindow is how many frames the publisher may be ahead of its
// slowest subscriber (loadgen's default, set here to be explicit). It
// must stay below the baseline's queue of baseline.QueueLen frames per
// subscriber, or the baseline would drop subscribers for being slow when
// they are only paced; the broker's queue bound (4 MiB) and gnet's
// (none) are far above it.
const fanoutWindow = 256

var _ [baseline.QueueLen - fanoutWindow - 1]struct{} // fanoutWindow < baseline.QueueLen

// benchFanout runs every server's broadcast under loadgen.Fanout: one
// publisher, subscribers subscribers, perOp frames published per op.
// It reports deliveries/s, p50-µs and p99-µs from publish to delivery,
// and server-cpu-ns/delivery and client-cpu-ns/delivery: each process's
// CPU time per delivery over the steady part of the run (steadySpan).
//
// Every delivery is checked. For the broker and gnet, an error (a
// subscriber's connection failing, a frame duplicated or out of order),
// a gap or a lost frame fails the benchmark. The baseline drops a
// subscriber whose queue is full by design, so for it they are reported
// (lost, gaps, errors) and logged, not fatal; with fanoutWindow below its
// queue's length it should lose nothing here.
func benchFanout(b *testing.B, subscribers int, perOp int64) {
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			p := benchproc.Start(b, s.name+"/broadcast")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.SetBytes(perOp * int64(subscribers) * benchecho.Payload)
			span := steadySpan{b: b, p: p}
			whole := span.sample(0)
			b.ResetTimer()
			res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{
				Addr: p.Addr, Publishers: 1, Subscribers: subscribers,
				PayloadSize: benchecho.Payload, Window: fanoutWindow,
				Count:            int64(b.N) * perOp,
				Progress:         span.progress,
				ProgressInterval: steadyInterval,
			})
			b.StopTimer()
			if err != nil {
				b.Fatalf("Fanout: %v; %v", err, res)
			}
			clean := res.Errors == 0 && res.Gaps == 0 && res.Lost == 0 &&
				res.Deliveries == res.Sent*int64(subscribers)
			switch {
			case s.name == "baseline":
				b.ReportMetric(float64(res.Lost), "lost")
				b.ReportMetric(float64(res.Gaps), "gaps")
				b.ReportMetric(float64(res.Errors), "errors")
				if !clean {
					b.Logf("the baseline lost frames (it drops a subscriber whose queue is full): %v", res)
				}
			case !clean:
				b.Fatalf("Fanout: not every frame delivered once, in order, to every subscriber: %v", res)
			}
			first, last := span.first, span.last
			if span.n < 2 || last.delivered == first.delivered {
				// Too short a run for two progress reports: fall back to
				// the whole of it, connecting and warming up included.
				b.Logf("a run too short for a steady span (%d progress reports in %v); CPU per delivery over the whole run", span.n, res.Elapsed)
				first, last = whole, span.sample(res.Deliveries)
			}
			if last.delivered == 0 {
				b.Fatalf("Fanout: nothing delivered: %v", res)
			}
			perDelivery := func(d time.Duration) float64 { return float64(d) / float64(last.delivered-first.delivered) }
			b.ReportMetric(res.DeliveriesPerSec, "deliveries/s")
			b.ReportMetric(perDelivery(last.server-first.server), "server-cpu-ns/delivery")
			b.ReportMetric(perDelivery(last.client-first.client), "client-cpu-ns/delivery")
			benchecho.ReportLatency(b, res.Latency)
		})
	}
}

// steadyInterval is how often a Fanout run reports its progress, and so
// the resolution of steadySpan.
const steadyInterval = 50 * time.Millisecond

// steadySpan is the steady part of a Fanout run: from its first progress
// report to its last, which loadgen makes only once every connection is
// open and warmed up, and before the drain and the closing. Connecting
// 1,000 subscribers costs the server 0.15 to 0.4 s of CPU on the 2-core
// development machine, as much as a million deliveries, so CPU per
// delivery is read over this span alone: each process's CPU time, and
// the deliveries, between the two reports.
type steadySpan struct {
	b           *testing.B
	p           *benchproc.Proc
	n           int // reports seen
	first, last cpuSample
}

type cpuSample struct {
	server, client time.Duration // CPU time so far
	delivered      int64         // deliveries so far
}

func (s *steadySpan) sample(delivered int64) cpuSample {
	return cpuSample{server: s.p.CPU(s.b), client: benchproc.SelfCPU(), delivered: delivered}
}

// progress is the run's Progress callback, called on the benchmark's
// goroutine.
func (s *steadySpan) progress(pr loadgen.Progress) {
	c := s.sample(pr.Received)
	if s.n == 0 {
		s.first = c
	}
	s.last = c
	s.n++
}

// idleConns is how many connections BenchmarkIdleConns opens. The fd
// limit here is 20,000 per process, hard (ulimit -Hn), and each
// connection costs one fd in this process and one in the server's: 19,000
// leaves each process room for its listener, pollers, pipes and standard
// streams, and no more would fit. Each server's child has exited, and its
// fds with it, before the next server's starts.
const idleConns = 19_000

// BenchmarkIdleConns opens idleConns connections to each server's echo
// at once (loadgen.Open, 100 dials under way at a time), holds them idle,
// and closes them; one op is one such storm, and the timer runs only
// while opening. Under "silent" the connections send nothing (a
// subscriber that only listens); under "spoke" each is verified with one
// echo round trip first (a client that said something and went quiet).
// It reports:
//
//   - rss-B/conn: the server's resident memory with the connections of
//     its first storm open (from /proc, once it has settled) less its
//     resident memory before, per connection. It is what the OS sees,
//     with no GC forced: a Go server's garbage not yet collected and heap
//     not yet returned count, as they do for an operator. Only the first
//     storm of each child counts: a later one starts on the garbage of
//     the connections before it, which a Go server has not collected yet
//     (the GC lets the heap grow to twice what was live): averaged over
//     two storms, the figure came out 25–45% higher for the broker and
//     the baseline, 10–15% for gnet, than the first storm's alone;
//   - connects/s: connections opened and verified per second of the
//     storm. Much of it is the load generator's kernel, not the
//     server: on the development machine the first ~14,000 connect at
//     several thousand a second and the rest at several hundred,
//     whatever the server, once about half of the 28,232 ephemeral
//     ports (ip_local_port_range 32768–60999) are in use towards the one
//     address (Linux's connect() tries the even ports first, and then
//     scans a lengthening run of taken ones for each connection);
//   - server-cpu-ns/conn: the server's CPU time over the storm (accept,
//     registration, the echo) per connection.
//
// Between storms it waits for the server to have closed every
// connection (its fd count back where it started, give or take
// fdSlack).
func BenchmarkIdleConns(b *testing.B) {
	for _, s := range servers {
		for _, spoke := range []bool{false, true} {
			mode := "silent"
			if spoke {
				mode = "spoke"
			}
			b.Run(s.name+"/"+mode, func(b *testing.B) { idleStorms(b, s.name+"/echo", loadgen.Connect{}, spoke) })
		}
	}
}

// idleStorms is one of BenchmarkIdleConns' (and BenchmarkWSIdleConns')
// sub-benchmarks: storms against the echo server child, its connections
// made as cn says.
func idleStorms(b *testing.B, child string, cn loadgen.Connect, spoke bool) {
	p := benchproc.Start(b, child)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rss0 := settledRSS(b, p)
	fds0 := p.FDs(b)
	var (
		opening   time.Duration
		serverCPU time.Duration
		rss       int64
	)
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		cpu0 := p.CPU(b)
		b.StartTimer()
		set, err := loadgen.Open(ctx, loadgen.ConnsConfig{Addr: p.Addr, N: idleConns, Connect: cn, SkipVerify: !spoke})
		b.StopTimer()
		serverCPU += p.CPU(b) - cpu0
		if err != nil {
			b.Fatalf("Open: %v", err)
		}
		res := set.Result()
		opening += res.Elapsed
		ok := res.Held == idleConns && res.Failed == 0
		held := p.FDs(b) - fds0
		if ok && held >= idleConns && i == 0 {
			rss = settledRSS(b, p) - rss0
		}
		if err := set.Close(); err != nil {
			b.Errorf("closing the connections: %v", err)
		}
		if !ok {
			b.Fatalf("not every connection opened and verified: %v", res)
		}
		if held < idleConns {
			b.Fatalf("%v, but the server holds %d fds more than before, want at least %d", res, held, idleConns)
		}
		waitFDs(b, p, fds0+fdSlack)
	}
	n := float64(b.N) * idleConns
	b.ReportMetric(float64(rss)/idleConns, "rss-B/conn")
	b.ReportMetric(n/opening.Seconds(), "connects/s")
	b.ReportMetric(float64(serverCPU)/n, "server-cpu-ns/conn")
}

// fdSlack is how many more fds than before its first storm a server may
// hold once its clients have closed every connection. A Go process opens
// a few files lazily (the runtime's cgroup CPU limit files, /dev/null),
// some while the first storm runs; a server that kept its connections
// would hold thousands.
const fdSlack = 64

// settledRSS returns the child's RSS once it has stopped growing: less
// than 1% in the last half second, read every 100 ms, or after 10 s.
func settledRSS(b *testing.B, p *benchproc.Proc) int64 {
	b.Helper()
	const (
		every  = 100 * time.Millisecond
		span   = 5 // readings: half a second
		within = 10 * time.Second
	)
	readings := []int64{p.RSS(b)}
	for end := time.Now().Add(within); ; {
		time.Sleep(every)
		rss := p.RSS(b)
		readings = append(readings, rss)
		if len(readings) > span && rss <= readings[len(readings)-1-span]*101/100 {
			return rss
		}
		if time.Now().After(end) {
			b.Logf("the server's RSS was still growing after %v: %d B, %d B half a second before", within, rss, readings[len(readings)-1-span])
			return rss
		}
	}
}

// waitFDs waits for the child to be back to want fds or fewer, and fails
// b if it is not within 30 s: a server that does not close its side of
// connections its clients closed.
func waitFDs(b *testing.B, p *benchproc.Proc, want int) {
	b.Helper()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := p.FDs(b)
		if n <= want {
			return
		}
		if time.Now().After(end) {
			b.Fatalf("the server still has %d fds open 30 s after its clients closed every connection, want at most %d", n, want)
		}
	}
}
