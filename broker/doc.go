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
// On the event loop, what a handler broadcasts while it handles one read's
// frames is queued to each stream in one piece when it is done — one
// append and one write per stream for the read, not one per frame — which
// is what makes a broadcast cheap per delivery. Order holds: anything the
// handler sends or closes after a broadcast queues the broadcast first.
//
// With Config.Cluster set, the broker joins a cluster of brokers
// (package actors/cluster): Broadcast and BroadcastExcept then reach the
// streams of every node, with no change to handler code.
//
// A Received payload is valid until Receive returns; copy it to keep it.
// A panic in an application actor is logged with its stack and the actor
// restarts; the frame that panicked is dropped, and every other stream
// carries on. Telemetry requests (0x0D frames) are answered by the broker
// and never reach the application.
//
// Flow control: a stream whose unhandled frames pass Config.MaxInbound
// stops being read until the application catches up; a stream whose
// outbound queue passes Config.MaxPending, or does not drain within
// Config.WriteTimeout, is closed as a slow consumer.
//
// Concurrency: Broker, Stream and StreamList methods are safe for
// concurrent use.
package broker
