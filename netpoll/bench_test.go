package netpoll

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// The echo benchmarks run the same load generator against a netpoll echo
// server and against the goroutine-per-connection baseline, as
// sub-benchmarks of one run so that they compare under the same
// conditions. One op is perOp round trips (b.N is scaled into the load
// generator's Count); msg/s and the latency percentiles are the figures to
// read. Allocations are the whole process's: the client's and the
// server's.

const benchPayload = 64

// echoHandler is the benchmark's server: every frame straight back.
type echoHandler struct{}

func (echoHandler) OnOpen(*Conn) {}

func (echoHandler) OnFrames(c *Conn, b *Batch) {
	for _, f := range b.Frames {
		c.Send(f)
	}
	b.Release()
}

func (echoHandler) OnClose(*Conn, error) {}

// BenchmarkEcho: 50 connections × 16 frames in flight, 64-byte payloads;
// one op is 10,000 round trips.
func BenchmarkEcho(b *testing.B) { benchServers(b, 50, 16, 10_000) }

// BenchmarkEchoProcess is BenchmarkEcho with each server in a process of
// its own (a copy of the test binary), so that the server's CPU time per
// round trip (server-cpu-ns/msg) is measured apart from the load
// generator's (client-cpu-ns/msg). Both processes share the machine's
// cores, as in BenchmarkEcho.
func BenchmarkEchoProcess(b *testing.B) {
	for _, name := range []string{"netpoll", "baseline"} {
		b.Run(name, func(b *testing.B) {
			p := benchproc.Start(b, name)
			benchEchoProc(b, p.Addr, p, 50, 16, 10_000)
		})
	}
}

// BenchmarkEcho1x1: one connection, one frame in flight, so pure latency;
// one op is 1,000 round trips.
func BenchmarkEcho1x1(b *testing.B) { benchServers(b, 1, 1, 1_000) }

func benchServers(b *testing.B, conns, inFlight int, perOp int64) {
	b.Run("netpoll", func(b *testing.B) {
		s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, echoHandler{})
		if err != nil {
			b.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve() }()
		defer func() {
			if err := s.Shutdown(context.Background()); err != nil {
				b.Error(err)
			}
			if err := <-served; err != nil {
				b.Error(err)
			}
		}()
		benchEcho(b, s.Addr().String(), conns, inFlight, perOp)
	})
	b.Run("baseline", func(b *testing.B) {
		s, err := baseline.Listen("127.0.0.1:0", baseline.Echo)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchEcho(b, s.Addr(), conns, inFlight, perOp)
	})
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
	clientCPU0 := benchproc.SelfCPU()
	res, err := loadgen.Echo(ctx, loadgen.EchoConfig{
		Addr: addr, Conns: conns, InFlight: inFlight, PayloadSize: benchPayload,
		Count: int64(b.N) * perOp,
	})
	clientCPU := benchproc.SelfCPU() - clientCPU0
	b.StopTimer()
	if err != nil || res.Errors != 0 {
		b.Fatalf("Echo: %v; %v", err, res)
	}
	b.ReportMetric(res.MsgPerSec, "msg/s")
	if server != nil {
		serverCPU := server.CPU(b) - serverCPU0
		b.ReportMetric(float64(serverCPU)/float64(res.Messages), "server-cpu-ns/msg")
		b.ReportMetric(float64(clientCPU)/float64(res.Messages), "client-cpu-ns/msg")
	} else {
		b.ReportMetric(float64(clientCPU)/float64(res.Messages), "cpu-ns/msg")
	}
	b.ReportMetric(float64(res.Latency.P50)/float64(time.Microsecond), "p50-µs")
	b.ReportMetric(float64(res.Latency.P99)/float64(time.Microsecond), "p99-µs")
}
