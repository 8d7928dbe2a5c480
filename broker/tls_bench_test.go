package broker_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
)

// serveOnLoopEchoTLS is serveOnLoopEcho over TLS, with the certificate
// of benchecho.SetupTLS.
func serveOnLoopEchoTLS() (string, error) {
	cfg, err := benchecho.ServerTLS()
	if err != nil {
		return "", err
	}
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", TLS: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", err
	}
	b.HandlePerStream(broker.Echo(), broker.OnEventLoop())
	go b.Serve(context.Background())
	return b.Addr().String(), nil
}

// tlsServers are the TLS echo servers compared: the broker, whose loops
// drive crypto/tls themselves, and a Go server over crypto/tls with a
// goroutine per connection.
var tlsServers = []string{"baseline-tls", "broker-onloop-tls"}

// BenchmarkEchoTLSProcess is BenchmarkEchoProcess over TLS: 50
// connections × 16 frames in flight, 64-byte payloads, each server in a
// process of its own; one op is 10,000 round trips.
func BenchmarkEchoTLSProcess(b *testing.B) {
	cn := benchecho.SetupTLS(b)
	for _, name := range tlsServers {
		b.Run(name, func(b *testing.B) {
			p := benchproc.Start(b, name)
			benchecho.RunConnect(b, p.Addr, cn, p, 50, 16, 10_000)
		})
	}
}

// BenchmarkTLSHandshake: full TLS handshakes (no resumption), one after
// another, each connection closed once done; reports handshakes/s and the
// server's CPU per handshake. One op is 100 handshakes.
func BenchmarkTLSHandshake(b *testing.B) {
	cn := benchecho.SetupTLS(b)
	for _, name := range tlsServers {
		b.Run(name, func(b *testing.B) {
			p := benchproc.Start(b, name)
			cpu0 := p.CPU(b)
			start := time.Now()
			n := b.N * 100
			for range n {
				raw, err := net.Dial("tcp", p.Addr)
				if err != nil {
					b.Fatal(err)
				}
				c := tls.Client(raw, &tls.Config{RootCAs: cn.TLS.RootCAs, ServerName: "127.0.0.1", ClientSessionCache: nil})
				if err := c.Handshake(); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			d := time.Since(start)
			b.ReportMetric(float64(n)/d.Seconds(), "handshakes/s")
			b.ReportMetric(float64(p.CPU(b)-cpu0)/float64(n), "server-cpu-ns/handshake")
		})
	}
}

// BenchmarkIdleTLSConnections: the server's RSS per idle TLS connection,
// 2,000 connections opened, each verified by a round trip, then left
// idle. One op is one such set.
func BenchmarkIdleTLSConnections(b *testing.B) {
	cn := benchecho.SetupTLS(b)
	for _, name := range tlsServers {
		b.Run(name, func(b *testing.B) {
			const n = 2000
			for range b.N {
				p := benchproc.Start(b, name)
				before := p.RSS(b)
				conns := make([]*tls.Conn, 0, n)
				frame := []byte{1, 0, 4, 'i', 'd', 'l', 'e', 0x17}
				reply := make([]byte, len(frame))
				for range n {
					c, err := tls.Dial("tcp", p.Addr, &tls.Config{RootCAs: cn.TLS.RootCAs, ServerName: "127.0.0.1"})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := c.Write(frame); err != nil {
						b.Fatal(err)
					}
					if _, err := readFull(c, reply); err != nil || string(reply) != string(frame) {
						b.Fatalf("round trip: %q, %v", reply, err)
					}
					conns = append(conns, c)
				}
				b.ReportMetric(float64(p.RSS(b)-before)/n, "rss-bytes/conn")
				for _, c := range conns {
					c.Close()
				}
			}
		})
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
