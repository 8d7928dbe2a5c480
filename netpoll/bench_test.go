package netpoll

import (
	"context"
	"log/slog"
	"testing"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
)

// The echo benchmarks run the same load generator against a netpoll echo
// server and against the goroutine-per-connection baseline, as
// sub-benchmarks of one run so that they compare under the same
// conditions. One op is perOp round trips (b.N is scaled into the load
// generator's Count); msg/s and the latency percentiles are the figures to
// read. Allocations are the whole process's: the client's and the
// server's.

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
			benchecho.Run(b, p.Addr, p, 50, 16, 10_000)
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
		benchecho.Run(b, s.Addr().String(), nil, conns, inFlight, perOp)
	})
	b.Run("baseline", func(b *testing.B) {
		s, err := baseline.Listen("127.0.0.1:0", baseline.Echo)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchecho.Run(b, s.Addr(), nil, conns, inFlight, perOp)
	})
}
