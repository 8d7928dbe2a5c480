package broker_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// The whole broker (netpoll, connection actors, application actors)
// against the goroutine-per-connection baseline, under the same load
// generator in the same run. b.N is scaled into the run's Count; msg/s,
// deliveries/s and the latency percentiles are the figures to read.
//
//	go test -run '^$' -bench . -benchtime 20x ./broker/

const benchPayload = 64

// target is a server under test: its address and a way to stop it.
type target func(testing.TB) string

func brokerTarget(app func() *actor.Props, perStream bool, opts ...broker.HandleOption) target {
	return func(tb testing.TB) string {
		return start(tb, broker.Config{}, app(), perStream, opts...).Addr().String()
	}
}

func baselineTarget(mode baseline.Mode) target {
	return func(tb testing.TB) string {
		s, err := baseline.Listen("127.0.0.1:0", mode)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		return s.Addr()
	}
}

// BenchmarkEcho: 50 connections × 16 frames in flight, 64-byte payloads;
// one op is 10,000 round trips.
func BenchmarkEcho(b *testing.B) {
	for _, tc := range []struct {
		name string
		t    target
	}{
		{"baseline", baselineTarget(baseline.Echo)},
		{"broker-onloop", brokerTarget(broker.Echo, true, broker.OnEventLoop())},
		{"broker-perstream", brokerTarget(broker.Echo, true)},
		{"broker-shared", brokerTarget(broker.Echo, false)},
	} {
		b.Run(tc.name, func(b *testing.B) { benchEcho(b, tc.t(b), 50, 16, 10_000) })
	}
}

// BenchmarkEchoProcess is BenchmarkEcho with each server in a process of
// its own (a copy of the test binary), so that the server's CPU time per
// round trip (server-cpu-ns/msg) is measured apart from the load
// generator's (client-cpu-ns/msg). Both processes share the machine's
// cores, as in BenchmarkEcho.
func BenchmarkEchoProcess(b *testing.B) {
	for _, name := range []string{"baseline", "broker-onloop"} {
		b.Run(name, func(b *testing.B) {
			p := benchproc.Start(b, name)
			benchEchoProc(b, p.Addr, p, 50, 16, 10_000)
		})
	}
}

// serveOnLoopEcho starts the broker the binary runs with --app echo, until
// the process exits.
func serveOnLoopEcho() (string, error) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", err
	}
	b.HandlePerStream(broker.Echo(), broker.OnEventLoop())
	go b.Serve(context.Background())
	return b.Addr().String(), nil
}

func serveBaselineEcho() (string, error) {
	s, err := baseline.Listen("127.0.0.1:0", baseline.Echo)
	if err != nil {
		return "", err
	}
	return s.Addr(), nil
}

// BenchmarkEcho1x1: one connection, one frame in flight: latency. One op
// is 1,000 round trips.
func BenchmarkEcho1x1(b *testing.B) {
	for _, tc := range []struct {
		name string
		t    target
	}{
		{"baseline", baselineTarget(baseline.Echo)},
		{"broker-onloop", brokerTarget(broker.Echo, true, broker.OnEventLoop())},
		{"broker-perstream", brokerTarget(broker.Echo, true)},
	} {
		b.Run(tc.name, func(b *testing.B) { benchEcho(b, tc.t(b), 1, 1, 1_000) })
	}
}

func benchEcho(b *testing.B, addr string, conns, inFlight int, perOp int64) {
	benchEchoProc(b, addr, nil, conns, inFlight, perOp)
}

// benchEchoProc runs the echo load against addr; when server is not nil
// it is the process serving addr, and the server's and the load
// generator's CPU time per round trip are reported apart.
func benchEchoProc(b *testing.B, addr string, server *benchproc.Proc, conns, inFlight int, perOp int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.SetBytes(perOp * benchPayload)
	var serverCPU0 time.Duration
	if server != nil {
		serverCPU0 = server.CPU(b)
	}
	b.ResetTimer()
	cpu0 := benchproc.SelfCPU()
	res, err := loadgen.Echo(ctx, loadgen.EchoConfig{
		Addr: addr, Conns: conns, InFlight: inFlight, PayloadSize: benchPayload,
		Count: int64(b.N) * perOp,
	})
	cpu := benchproc.SelfCPU() - cpu0
	b.StopTimer()
	if err != nil || res.Errors != 0 {
		b.Fatalf("Echo: %v; %v", err, res)
	}
	b.ReportMetric(res.MsgPerSec, "msg/s")
	if server != nil {
		serverCPU := server.CPU(b) - serverCPU0
		b.ReportMetric(float64(serverCPU)/float64(res.Messages), "server-cpu-ns/msg")
		b.ReportMetric(float64(cpu)/float64(res.Messages), "client-cpu-ns/msg")
	} else {
		// CPU time of the whole process (server and load generator)
		// per round trip: steadier than msg/s on a machine with other
		// load.
		b.ReportMetric(float64(cpu)/float64(res.Messages), "cpu-ns/msg")
	}
	reportLatency(b, res.Latency)
}

// BenchmarkFanout: 1 publisher, 100 subscribers, 64-byte payloads; one op
// is 1,000 frames published, 100,000 delivered. Every delivery is checked:
// a gap, a loss or a reordering fails the benchmark.
func BenchmarkFanout(b *testing.B) {
	for _, tc := range []struct {
		name string
		t    target
	}{
		{"baseline", baselineTarget(baseline.Broadcast)},
		{"broker-onloop", brokerTarget(broker.Broadcast, true, broker.OnEventLoop())},
		{"broker-perstream", brokerTarget(broker.Broadcast, true)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const subscribers, perOp = 100, 1_000
			addr := tc.t(b)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.ReportAllocs()
			b.SetBytes(perOp * subscribers * benchPayload)
			b.ResetTimer()
			res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{
				Addr: addr, Publishers: 1, Subscribers: subscribers, PayloadSize: benchPayload,
				Count: int64(b.N) * perOp,
			})
			b.StopTimer()
			if err != nil || res.Errors != 0 || res.Gaps != 0 || res.Lost != 0 {
				b.Fatalf("Fanout: %v; %v", err, res)
			}
			b.ReportMetric(res.DeliveriesPerSec, "deliveries/s")
			reportLatency(b, res.Latency)
		})
	}
}

func reportLatency(b *testing.B, l loadgen.Latency) {
	b.ReportMetric(float64(l.P50)/float64(time.Microsecond), "p50-µs")
	b.ReportMetric(float64(l.P99)/float64(time.Microsecond), "p99-µs")
}
