// Package benchecho is the echo benchmark's measurement, shared by every
// package that benchmarks a server against the goroutine-per-connection
// baseline (netpoll, broker, and the gnet calibration module), so that
// all of them load and report the same way: 64-byte payloads, b.N scaled
// into the load generator's count of round trips, and msg/s, CPU per
// round trip and latency percentiles as the figures to read.
package benchecho

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
)

// Payload is the size of every frame's payload, in bytes.
const Payload = 64

// Run keeps inFlight frames outstanding on each of conns connections to
// the echo server at addr for b.N × perOp round trips. It reports msg/s,
// latency p50 and p99, and CPU per round trip: when server is nil, that of
// this whole process (server and load generator, cpu-ns/msg); otherwise
// server is the process serving addr, and its CPU and this process's are
// reported apart (server-cpu-ns/msg, client-cpu-ns/msg). A failed run or
// any error counted by the load generator (a reply lost, corrupt or out
// of order) fails b.
func Run(b *testing.B, addr string, server *benchproc.Proc, conns, inFlight int, perOp int64) {
	RunConnect(b, addr, loadgen.Connect{}, server, conns, inFlight, perOp)
}

// RunConnect is Run with the load generator's connections made as cn
// says (over TLS, say).
func RunConnect(b *testing.B, addr string, cn loadgen.Connect, server *benchproc.Proc, conns, inFlight int, perOp int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ReportAllocs()
	b.SetBytes(perOp * Payload)
	var serverCPU0 time.Duration
	if server != nil {
		serverCPU0 = server.CPU(b)
	}
	b.ResetTimer()
	cpu0 := benchproc.SelfCPU()
	res, err := loadgen.Echo(ctx, loadgen.EchoConfig{
		Addr: addr, Connect: cn, Conns: conns, InFlight: inFlight, PayloadSize: Payload,
		Count: int64(b.N) * perOp,
	})
	cpu := benchproc.SelfCPU() - cpu0
	b.StopTimer()
	// Every reply is checked by the load generator (its length, stamp,
	// connection, sequence and every byte after them); a wrong one is an
	// error, and a lost one leaves the round trips short of the count.
	if want := int64(b.N) * perOp; err != nil || res.Errors != 0 || res.Messages != want {
		b.Fatalf("Echo: %v; %v; want %d round trips", err, res, want)
	}
	b.ReportMetric(res.MsgPerSec, "msg/s")
	perMsg := func(d time.Duration) float64 { return float64(d) / float64(res.Messages) }
	if server != nil {
		b.ReportMetric(perMsg(server.CPU(b)-serverCPU0), "server-cpu-ns/msg")
		b.ReportMetric(perMsg(cpu), "client-cpu-ns/msg")
	} else {
		// Steadier than msg/s on a machine with other load.
		b.ReportMetric(perMsg(cpu), "cpu-ns/msg")
	}
	ReportLatency(b, res.Latency)
}

// ReportLatency reports l's median and 99th percentile in microseconds.
func ReportLatency(b *testing.B, l loadgen.Latency) {
	b.ReportMetric(float64(l.P50)/float64(time.Microsecond), "p50-µs")
	b.ReportMetric(float64(l.P99)/float64(time.Microsecond), "p99-µs")
}

// ServeBaseline starts the baseline echo server on 127.0.0.1, for a
// benchproc.Servers entry: it runs until the process exits.
func ServeBaseline() (string, error) {
	s, err := baseline.Listen("127.0.0.1:0", baseline.Echo)
	if err != nil {
		return "", err
	}
	return s.Addr(), nil
}

// The TLS benchmarks' certificate reaches a server process in these
// variables, set by SetupTLS in the parent.
const (
	envTLSCert = "HYDROGEN_BENCH_TLS_CERT"
	envTLSKey  = "HYDROGEN_BENCH_TLS_KEY"
)

// SetupTLS makes a CA and a certificate for 127.0.0.1, hands the
// certificate to server processes started after it (through the
// environment), and returns how the load generator connects to them.
func SetupTLS(b *testing.B) loadgen.Connect {
	ca := testpki.NewCA(b, "benchmark CA")
	cert, key := testpki.Files(b, b.TempDir(), "server", ca.Issue(b, "127.0.0.1", "127.0.0.1"))
	b.Setenv(envTLSCert, cert)
	b.Setenv(envTLSKey, key)
	return loadgen.Connect{TLS: &tls.Config{RootCAs: ca.Pool}}
}

// ServerTLS is the server side of SetupTLS, in a server process.
func ServerTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(os.Getenv(envTLSCert), os.Getenv(envTLSKey))
	if err != nil {
		return nil, fmt.Errorf("benchecho: the TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// ServeBaselineTLS is ServeBaseline over TLS (crypto/tls, a goroutine per
// connection), with the certificate of SetupTLS.
func ServeBaselineTLS() (string, error) {
	cfg, err := ServerTLS()
	if err != nil {
		return "", err
	}
	s, err := baseline.ListenTLS("127.0.0.1:0", baseline.Echo, cfg)
	if err != nil {
		return "", err
	}
	return s.Addr(), nil
}

// ServeBaselineWebSocket starts the WebSocket baseline (a goroutine per
// connection on github.com/gobwas/ws) on 127.0.0.1, for a
// benchproc.Servers entry: it runs until the process exits.
func ServeBaselineWebSocket() (string, error) {
	s, err := baseline.ListenWebSocket("127.0.0.1:0")
	if err != nil {
		return "", err
	}
	return s.Addr(), nil
}
