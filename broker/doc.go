// Package broker is the public Go API of hydrogen: configure a broker,
// give it an application written as protoactor-go actors, and serve.
//
// An application actor receives three messages per stream: Connected when
// the stream opens, Received for each frame it sends (the Go form of
// hydrogen's on_data_received(sockets, socket, buffer): the stream, the
// StreamList of every open stream, and the payload), and Closed with the
// reason when it closes. It replies with Stream.Send, or reaches every
// stream with StreamList.Broadcast and BroadcastExcept; both only queue
// bytes and never block on a slow client.
//
//	b, err := broker.New(broker.Config{Addr: "127.0.0.1:1337"})
//	...
//	b.HandlePerStream(actor.PropsFromFunc(func(ctx actor.Context) {
//		if m, ok := ctx.Message().(*broker.Received); ok && string(m.Payload) == "ping" {
//			m.Stream.Send([]byte("pong"))
//		}
//	}))
//	err = b.Serve(ctx)
//
// Handle runs one shared application actor for all streams; HandlePerStream
// runs one per stream, in parallel across streams. Application actors run
// on a pool of worker goroutines, so a handler may block; a per-stream
// handler that never blocks can run on its stream's event loop instead
// (HandlePerStream(props, OnEventLoop())), the fastest way, with no
// goroutine handoff per frame. Either way, the frames of one stream arrive
// in the order sent, and the frames one actor sends to a stream are
// written in the order sent.
//
// A stream's actors (its connection actor, and its own application actor
// per stream) cost some 2.4 KB of protoactor state. With
// SpawnOnFirstFrame they are made at the stream's first frame, so a
// stream that never speaks has none; with ReleaseWhenQuiet they are
// stopped once the stream has gone quiet and made again at its next
// frame, so one that spoke and went idle has none either. Both are for
// handlers that do nothing on Connected and keep no state in the actor
// (values and groups are the stream's, and stay); the broker binary runs
// its built-in applications with both.
//
// On the event loop, what a handler broadcasts while it handles one read's
// frames is queued to each stream in one piece when it is done — one
// append and one write per stream for the read, not one per frame — which
// is what makes a broadcast cheap per delivery. Order holds: anything the
// handler sends or closes after a broadcast queues the broadcast first.
//
// With Config.Cluster set, the broker joins a cluster of brokers
// (package actors/cluster): Broadcast and BroadcastExcept then reach the
// streams of every node, and a Group's the group's members on every node,
// with no change to handler code (a group's frames go only to the nodes
// that have members of it; Group.WhenReachable says when a new member's
// node has been heard of by all). Stream.Send stays on its node.
//
// A Received payload is valid until Receive returns; copy it to keep it.
// A panic in an application actor is logged with its stack and the actor
// restarts; the frame that panicked is dropped, and every other stream
// carries on. Telemetry requests (0x0D frames) are answered by the broker
// and never reach the application.
//
// Close reasons: Closed.Reason is one of the Err variables of this
// package (ErrPeerClosed, ErrSlowConsumer, ErrIdle, ErrHandshake and the
// others), wrapped where there is more to say; compare with errors.Is.
//
// Flow control: a stream whose unhandled frames pass Config.MaxInbound
// stops being read until the application catches up; a stream whose
// outbound queue passes Config.MaxPending, or does not drain within
// Config.WriteTimeout, is closed as a slow consumer.
//
// Concurrency: Broker, Stream and StreamList methods are safe for
// concurrent use.
//
// # Inside
//
// A handler needs this package alone (and protoactor's actor package for
// Props and Context). So every type it meets is defined here, together
// with the code that needs their insides: the runtime that is the event
// loops' netpoll.Handler (runtime.go), the connection actor (conn.go), the
// StreamList, its groups and the batching of an on-loop handler's
// broadcasts (stream.go, group.go, batch.go), the pooled messages of the
// frame path (messages.go), the application middleware (middleware.go)
// and the authentication pool (authpool.go). What handlers must not call
// is unexported: the runtime's type, and the StreamList's cluster hooks.
//
// The actor machinery that does not depend on what a stream is lives in
// package actors: the dispatcher, the on-loop mailbox, the supervision
// and the telemetry actor, which broker drives through small interfaces
// (actors.RunHooks, actors.TelemetryPeer) implemented by unexported
// views of a Stream; and package actors/cluster, the clustering. Package
// netpoll carries the bytes, wire is the frame format, telemetry the
// figures of the 0x0D reply. Imports go one way: broker imports those,
// none of them imports broker.
package broker
