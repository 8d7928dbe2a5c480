// Package gnet_test measures the hydrogen broker side by side with gnet, a
// mature epoll framework for Go, and with the goroutine-per-connection
// baseline, on the same machine, under one load generator, in one run.
//
// Every server runs in a process of its own (a copy of this test binary,
// package internal/benchproc), so that its CPU time is read apart from
// the load generator's: this process generates the load (package
// internal/loadgen) and each server answers for its own CPU time
// (getrusage in the child: user + system). The servers, in the order
// they run within each benchmark:
//
//   - broker: the real broker, broker.New with the built-in Echo or
//     Broadcast application per stream on the event loops, as the
//     binary runs it;
//   - gnet: gnet v2, multicore, its echo the usual one (whatever a read
//     brought, written back with one write) and its broadcast written as
//     a gnet user would (gnetBroadcast);
//   - baseline: internal/baseline, a goroutine per connection.
//
// The WebSocket benchmarks (BenchmarkWSEcho, BenchmarkWSIdleConns) run
// the broker's WebSocket listener beside goroutine-per-connection echo
// servers on gobwas/ws (internal/baseline's), gorilla/websocket and
// coder/websocket (wsServers), the load generator's connections upgraded
// (loadgen.Connect.WebSocket).
//
// It is a module of its own so that gnet, gorilla/websocket,
// coder/websocket and their dependencies never enter the broker's go.mod.
package gnet_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
)

// TestMain first hands the process to its server when it is a child that
// benchproc.Start started; it never returns then. In the parent it fails
// the run if anything leaves a goroutine behind. gnet starts its worker
// pool's goroutines when its package is initialised, before TestMain, in
// every process: they are nobody's leak.
func TestMain(m *testing.M) {
	children := benchproc.Servers{}
	for _, s := range servers {
		children[s.name+"/echo"] = s.echo
		children[s.name+"/broadcast"] = s.broadcast
	}
	for _, s := range wsServers {
		children["ws/"+s.name] = s.start
	}
	benchproc.Main(children)
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
