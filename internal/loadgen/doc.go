// Package loadgen generates load against a hydrogen broker (or the baseline
// server) over plain TCP connections and measures it: Echo for round trips,
// Fanout for one-to-many delivery, Conns for how many connections a server
// takes. It speaks the frame protocol itself over plain net.Conns with
// package wire, so that it measures the server and not a client library.
// With Connect.WebSocket the same workloads run over WebSocket: each
// connection is upgraded and a thin adapter carries each frame's payload
// as one binary message (websocket.go).
//
// Payloads carry the send time as nanoseconds since a process-wide
// monotonic base, so latency is the receive time minus the stamp, recorded
// in HDR histograms. Frames are built into one buffer per batch and read
// with one large buffer: the generator shares the machine with the server
// under test and must not cost a syscall or an allocation per frame.
//
// Every run is bounded by a Count, a Duration or its context. Echo and
// Fanout give back a Result, Conns a ConnsResult; both carry json tags for
// machine-readable output and a String method for people. A Progress
// callback, if set, is called about once a second on the goroutine that
// called the run.
//
// Concurrency: the functions are safe for concurrent use. Every goroutine a
// run starts has stopped, and every connection it opened is closed, when
// it returns (except the connections a ConnSet holds until its Close).
package loadgen
