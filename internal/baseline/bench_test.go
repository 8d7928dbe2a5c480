package baseline_test

import (
	"context"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// These benchmarks are the figures the broker is compared against: the
// hand-written server under the same load generator. b.N is scaled into
// the run's Count (one op is many round trips or frames, noted on each),
// so a run of -benchtime 3x still measures thousands of messages;
// msg/s, deliveries/s and the latency percentiles are the numbers to
// read. Allocations include the server's (it runs in this process).

const benchPayload = 64

// BenchmarkEcho: 50 connections × 16 frames in flight, 64-byte payloads;
// one op is 10,000 round trips.
func BenchmarkEcho(b *testing.B) { benchEcho(b, 50, 16, 10_000) }

// BenchmarkEcho1x1: one connection, one frame in flight, so pure latency;
// one op is 1,000 round trips.
func BenchmarkEcho1x1(b *testing.B) { benchEcho(b, 1, 1, 1_000) }

func benchEcho(b *testing.B, conns, inFlight int, perOp int64) {
	s := serve(b, baseline.Echo)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.SetBytes(perOp * benchPayload)
	b.ResetTimer()
	res, err := loadgen.Echo(ctx, loadgen.EchoConfig{
		Addr: s.Addr(), Conns: conns, InFlight: inFlight, PayloadSize: benchPayload,
		Count: int64(b.N) * perOp,
	})
	b.StopTimer()
	if want := int64(b.N) * perOp; err != nil || res.Errors != 0 || res.Messages != want {
		b.Fatalf("Echo: %v; %v; want %d round trips", err, res, want)
	}
	b.ReportMetric(res.MsgPerSec, "msg/s")
	reportLatency(b, res.Latency)
}

// BenchmarkFanout: 1 publisher, 100 subscribers, 64-byte payloads; one op
// is 1,000 frames published, 100,000 delivered.
func BenchmarkFanout(b *testing.B) {
	const subscribers, perOp = 100, 1_000
	s := serve(b, baseline.Broadcast)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.SetBytes(perOp * subscribers * benchPayload)
	b.ResetTimer()
	res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{
		Addr: s.Addr(), Publishers: 1, Subscribers: subscribers, PayloadSize: benchPayload,
		Count: int64(b.N) * perOp,
	})
	b.StopTimer()
	if want := int64(b.N) * perOp; err != nil || res.Errors != 0 || res.Gaps != 0 || res.Lost != 0 || res.Sent != want || res.Deliveries != want*subscribers {
		b.Fatalf("Fanout: %v; %v; want %d frames sent, %d delivered", err, res, want, want*subscribers)
	}
	b.ReportMetric(res.DeliveriesPerSec, "deliveries/s")
	b.ReportMetric(res.MsgPerSec, "msg/s")
	reportLatency(b, res.Latency)
}

func reportLatency(b *testing.B, l loadgen.Latency) {
	b.ReportMetric(float64(l.P50)/float64(time.Microsecond), "p50-µs")
	b.ReportMetric(float64(l.P99)/float64(time.Microsecond), "p99-µs")
}
