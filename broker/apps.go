package broker

import "github.com/asynkron/protoactor-go/actor"

// Echo is the built-in application that replies to each frame with the
// same payload, to its sender alone. Run it per stream
// (HandlePerStream), so that streams are echoed in parallel; it never
// blocks, so it may run on the event loops (OnEventLoop).
func Echo() *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			_ = m.Stream.Send(m.Payload)
		}
	})
}

// Broadcast is the built-in application that sends each frame to every
// other open stream. Run it per stream (HandlePerStream): each stream's
// frames then reach the others in the order sent, and streams publish in
// parallel. It never blocks, so it may run on the event loops
// (OnEventLoop). A frame from an identity that may not publish is
// refused (Stream.Refuse) and reaches nobody.
func Broadcast() *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			if !m.Stream.Identity().MayPublish() {
				_ = m.Stream.Refuse("not allowed to publish")
				return
			}
			_, _ = m.Streams.BroadcastExcept(m.Stream, m.Payload)
		}
	})
}
