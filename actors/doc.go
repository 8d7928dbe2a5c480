// Package actors runs hydrogen's actors on protoactor-go: a connection
// actor per stream, the application actors with their supervision, the
// StreamList with its broadcasts, and the telemetry actor that answers
// 0x0D requests. Its Runtime is the netpoll.Handler of the broker's
// server; package broker is its public face.
//
// The path of a read: the event loop hands a netpoll.Batch to OnFrames,
// which sends one message (a pooled delivery) to the stream's connection
// actor. That actor answers telemetry requests through the telemetry
// actor and forwards every other frame, in order, to the application
// actor as a *Received wrapped in a pre-allocated envelope, so that the
// path allocates nothing per frame. A receiver middleware on the
// application marks each frame handled however Receive ends; the last
// frame of a delivery releases the batch, and the count of unhandled
// frames drives inbound backpressure (netpoll's PauseRead/ResumeRead).
//
// Writes bypass the actors: Stream.Send and StreamList broadcasts append
// to netpoll's outbound queues directly, a broadcast encoding its frame
// once and sharing the bytes.
//
// Supervision: application actors are children of a supervisor (the
// connection actor for per-stream applications) whose strategy restarts
// them after every panic, with no failure history kept.
//
// Concurrency: Runtime, Stream and StreamList methods are safe for
// concurrent use. The netpoll.Handler methods are called by the loops.
package actors
