package gnet_test

import (
	"testing"

	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// The WebSocket comparison: the broker's WebSocket listener beside
// goroutine-per-connection servers on three maintained Go WebSocket
// libraries (wsServers: gobwas/ws, gorilla/websocket, coder/websocket),
// under the same load generator, its connections upgraded and each
// frame's payload sent as one binary message (loadgen.Connect.WebSocket).
// As for the TCP benchmarks, each server runs in a child process of its
// own, started afresh for each run of a sub-benchmark, and the names are
// <workload>/<server>.

// wsConnect is how the load generator reaches a WebSocket server.
var wsConnect = loadgen.Connect{WebSocket: true}

// BenchmarkWSEcho is BenchmarkEcho over WebSocket: 50 connections × 16
// messages in flight, 64-byte payloads; one op is 10,000 round trips.
// Reports msg/s, server-cpu-ns/msg, client-cpu-ns/msg, p50-µs and p99-µs;
// any error, such as a reply out of order or for another connection,
// fails it.
func BenchmarkWSEcho(b *testing.B) {
	for _, s := range wsServers {
		b.Run(s.name, func(b *testing.B) {
			p := benchproc.Start(b, "ws/"+s.name)
			benchecho.RunConnect(b, p.Addr, wsConnect, p, 50, 16, 10_000)
		})
	}
}

// BenchmarkWSIdleConns is BenchmarkIdleConns over WebSocket: idleConns
// connections opened at once (100 dials under way at a time), each
// upgraded, held idle and closed; one op is one such storm. Under
// "silent" a connection only upgrades; under "spoke" it is verified with
// one echo round trip first. It reports rss-B/conn (the first storm's,
// from /proc once settled), connects/s (dial and upgrade, and the round
// trip under spoke) and server-cpu-ns/conn, as BenchmarkIdleConns does.
func BenchmarkWSIdleConns(b *testing.B) {
	for _, s := range wsServers {
		for _, spoke := range []bool{false, true} {
			mode := "silent"
			if spoke {
				mode = "spoke"
			}
			b.Run(s.name+"/"+mode, func(b *testing.B) { idleStorms(b, "ws/"+s.name, wsConnect, spoke) })
		}
	}
}
