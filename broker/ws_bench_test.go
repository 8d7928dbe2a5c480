package broker_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// serveOnLoopEchoWS is the broker as `broker serve --app echo --ws-addr`
// runs it: the built-in Echo per stream on the event loops, a stream's
// actors made at its first frame, with a WebSocket listener beside the
// TCP one. The child reports the WebSocket address. Origins are left at
// their default (the page's own host): the load generator sends no
// Origin header, which a broker allows from a program.
func serveOnLoopEchoWS() (string, error) {
	b, err := broker.New(broker.Config{
		Addr: "127.0.0.1:0", WebSocketAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return "", err
	}
	b.HandlePerStream(broker.Echo(), broker.OnEventLoop(), broker.SpawnOnFirstFrame())
	go b.Serve(context.Background())
	return b.WebSocketAddr().String(), nil
}

// wsServers are the WebSocket echo servers compared: the broker, whose
// loops do the upgrade and the framing themselves, and a Go server on
// github.com/gobwas/ws with a goroutine per connection
// (baseline.ListenWebSocket).
var wsServers = []string{"baseline-ws", "broker-onloop-ws"}

// wsConnect is how the load generator reaches them: each frame's payload
// as one binary WebSocket message.
var wsConnect = loadgen.Connect{WebSocket: true}

// BenchmarkEchoWSProcess is BenchmarkEchoProcess over WebSocket: 50
// connections × 16 messages in flight, 64-byte payloads, each server in
// a process of its own; one op is 10,000 round trips. It reports msg/s,
// server-cpu-ns/msg (the child's CPU), client-cpu-ns/msg, p50-µs and
// p99-µs.
func BenchmarkEchoWSProcess(b *testing.B) {
	for _, name := range wsServers {
		b.Run(name, func(b *testing.B) {
			p := benchproc.Start(b, name)
			benchecho.RunConnect(b, p.Addr, wsConnect, p, 50, 16, 10_000)
		})
	}
}

// BenchmarkIdleWSConnections: the server's RSS per idle WebSocket
// connection, 2,000 connections opened (loadgen.Open, 100 at a time) and
// left idle. Under "spoke" each is verified by one echo round trip
// first; under "silent" it only upgrades. RSS is read from /proc once it
// has settled, less the RSS before, per connection. One op is one such
// set, on a fresh child.
func BenchmarkIdleWSConnections(b *testing.B) {
	const n = 2000
	for _, name := range wsServers {
		for _, spoke := range []bool{false, true} {
			mode := "silent"
			if spoke {
				mode = "spoke"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				for range b.N {
					p := benchproc.Start(b, name)
					before := settledRSS(b, p)
					fds := p.FDs(b)
					set, err := loadgen.Open(ctx, loadgen.ConnsConfig{Addr: p.Addr, N: n, Connect: wsConnect, SkipVerify: !spoke})
					if err != nil {
						b.Fatal(err)
					}
					if r := set.Result(); r.Held != n || r.Failed != 0 {
						b.Fatalf("not every connection opened: %v", r)
					}
					if held := p.FDs(b) - fds; held < n {
						b.Fatalf("the server holds %d fds more than before, want at least %d", held, n)
					}
					b.ReportMetric(float64(settledRSS(b, p)-before)/n, "rss-bytes/conn")
					set.Close()
				}
			})
		}
	}
}
