// Package baseline is the server a Go programmer would write by hand for
// hydrogen's frame protocol: one goroutine per connection on Go's net
// package, bufio for reading and writing. It is not a broker (telemetry
// requests are echoed or broadcast like any other frame); it is the yardstick
// the project's benchmarks compare the epoll broker against, so it is written
// the natural, efficient way and no cleverer.
//
// Two modes: Echo writes each frame back to its sender; Broadcast sends each
// frame to every other connection. In Broadcast mode each connection has a
// writer goroutine fed by a bounded queue of frames encoded once and shared;
// a connection whose queue is full is dropped, so a client that stops
// reading costs the others nothing (see Server.Stats).
//
// Concurrency: a Server's methods are safe for concurrent use. Every
// goroutine a Server starts is stopped and waited for by Close.
package baseline
