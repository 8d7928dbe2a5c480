package broker_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// The whole broker (netpoll, connection actors, application actors)
// against the goroutine-per-connection baseline, under the same load
// generator in the same run. b.N is scaled into the run's Count; msg/s,
// deliveries/s and the latency percentiles are the figures to read.
//
//	go test -run '^$' -bench . -benchtime 20x ./broker/

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
		b.Run(tc.name, func(b *testing.B) { benchecho.Run(b, tc.t(b), nil, 50, 16, 10_000) })
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
			benchecho.Run(b, p.Addr, p, 50, 16, 10_000)
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
		b.Run(tc.name, func(b *testing.B) { benchecho.Run(b, tc.t(b), nil, 1, 1, 1_000) })
	}
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
			b.SetBytes(perOp * subscribers * benchecho.Payload)
			b.ResetTimer()
			res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{
				Addr: addr, Publishers: 1, Subscribers: subscribers, PayloadSize: benchecho.Payload,
				Count: int64(b.N) * perOp,
			})
			b.StopTimer()
			if want := int64(b.N) * perOp; err != nil || res.Errors != 0 || res.Gaps != 0 || res.Lost != 0 || res.Sent != want || res.Deliveries != want*subscribers {
				b.Fatalf("Fanout: %v; %v; want %d frames sent, %d delivered", err, res, want, want*subscribers)
			}
			b.ReportMetric(res.DeliveriesPerSec, "deliveries/s")
			benchecho.ReportLatency(b, res.Latency)
		})
	}
}
