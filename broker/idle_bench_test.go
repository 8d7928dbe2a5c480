package broker_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
)

// serveEchoQuiet is the broker the binary runs with --app echo
// (SpawnOnFirstFrame and ReleaseWhenQuiet), serveEchoEager the same with
// neither, for BenchmarkIdleConnections.
func serveEchoQuiet() (string, error) {
	return serveEcho(broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet())
}
func serveEchoEager() (string, error) { return serveEcho() }

func serveEcho(opts ...broker.HandleOption) (string, error) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", err
	}
	b.HandlePerStream(broker.Echo(), append(opts, broker.OnEventLoop())...)
	go b.Serve(context.Background())
	return b.Addr().String(), nil
}

// BenchmarkIdleConnections: the server's RSS per idle connection, each
// server in a process of its own, 5,000 connections that never sent a
// frame ("silent") or that each did one round trip first ("spoke"). The
// broker runs with its actors made at the first frame and stopped once
// the stream is quiet (the binary's way, "broker-lazy") and made at the
// open and kept ("broker-eager"); the baseline is a goroutine per
// connection. One op is one such set.
func BenchmarkIdleConnections(b *testing.B) {
	const n = 5000
	for _, server := range []string{"baseline", "broker-eager", "broker-lazy"} {
		for _, spoke := range []bool{false, true} {
			mode := "silent"
			if spoke {
				mode = "spoke"
			}
			b.Run(server+"/"+mode, func(b *testing.B) {
				for range b.N {
					p := benchproc.Start(b, server)
					before := settledRSS(b, p)
					conns := make([]net.Conn, 0, n)
					frame := []byte{1, 0, 4, 'i', 'd', 'l', 'e', 0x17}
					reply := make([]byte, len(frame))
					for range n {
						c, err := net.Dial("tcp", p.Addr)
						if err != nil {
							b.Fatal(err)
						}
						conns = append(conns, c)
						if !spoke {
							continue
						}
						if _, err := c.Write(frame); err != nil {
							b.Fatal(err)
						}
						if _, err := readFull(c, reply); err != nil || string(reply) != string(frame) {
							b.Fatalf("round trip: %q, %v", reply, err)
						}
					}
					b.ReportMetric(float64(settledRSS(b, p)-before)/n, "rss-bytes/conn")
					for _, c := range conns {
						c.Close()
					}
				}
			})
		}
	}
}

// settledRSS is p's RSS once it has stopped changing for half a second,
// or after five seconds: the server has accepted and registered every
// connection by then.
func settledRSS(b *testing.B, p *benchproc.Proc) int64 {
	last, still := p.RSS(b), 0
	for deadline := time.Now().Add(5 * time.Second); still < 5 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		rss := p.RSS(b)
		if rss == last {
			still++
		} else {
			still = 0
		}
		last = rss
	}
	return last
}
