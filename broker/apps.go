package broker

import (
	"bytes"

	"github.com/asynkron/protoactor-go/actor"
)

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

// PubSub is the built-in publish/subscribe application: topics are
// groups (StreamList.Group), and clients speak a small text protocol in
// their frames (docs/PROTOCOL.md, The pubsub application):
//
//	SUB <topic>              subscribe            → +OK or -ERR <reason>
//	UNSUB <topic>            unsubscribe          → +OK
//	PUB <topic> <payload>    publish              → +OK or -ERR <reason>
//	                         every subscriber gets  MSG <topic> <payload>
//
// A topic is 1 to 255 bytes with no space, tab, CR or LF. A subscriber
// receives each PUB to its topic once, in the order its publisher sent
// them, its own included; a publisher that is subscribed gets its MSG
// before its +OK. With authentication, an identity subscribes to and
// publishes on the topics its Groups allow, and publishes only if it may
// publish. On a clustered broker a PUB reaches the subscribers of every
// node. Run it per stream (HandlePerStream); it never blocks, so it may
// run on the event loops (OnEventLoop).
func PubSub() *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			_ = m.Stream.Send(pubsub(m))
		}
	})
}

// Answers of the pubsub protocol.
var (
	pubsubOK = []byte("+OK")
)

// maxTopic is the longest topic, in bytes.
const maxTopic = 255

// pubsub handles one command and returns the answer to its sender.
func pubsub(m *Received) []byte {
	cmd, rest, _ := bytes.Cut(m.Payload, []byte{' '})
	id := m.Stream.Identity()
	switch string(cmd) {
	case "SUB", "UNSUB":
		topic := rest
		if !validTopic(topic) {
			return pubsubErr("topic must be 1 to 255 bytes without spaces")
		}
		g := m.Streams.Group(string(topic))
		if string(cmd) == "UNSUB" {
			g.Leave(m.Stream)
			return pubsubOK
		}
		if !id.MayUse(string(topic)) {
			return pubsubErr("not allowed to subscribe to " + string(topic))
		}
		if err := g.Join(m.Stream); err != nil {
			return pubsubErr(err.Error())
		}
		return pubsubOK
	case "PUB":
		topic, body, ok := bytes.Cut(rest, []byte{' '})
		switch {
		case !ok:
			return pubsubErr("want PUB <topic> <payload>")
		case !validTopic(topic):
			return pubsubErr("topic must be 1 to 255 bytes without spaces")
		case !id.MayPublish() || !id.MayUse(string(topic)):
			return pubsubErr("not allowed to publish to " + string(topic))
		}
		// MSG and PUB are the same length: the message fits a frame.
		msg := make([]byte, 0, len(m.Payload))
		msg = append(append(append(append(msg, "MSG "...), topic...), ' '), body...)
		if _, err := m.Streams.Group(string(topic)).Broadcast(msg); err != nil {
			return pubsubErr(err.Error())
		}
		return pubsubOK
	}
	return pubsubErr("unknown command; want SUB, UNSUB or PUB")
}

func pubsubErr(reason string) []byte { return []byte("-ERR " + reason) }

// validTopic: 1 to maxTopic bytes, none of them space, tab, CR or LF.
func validTopic(t []byte) bool {
	return len(t) > 0 && len(t) <= maxTopic && !bytes.ContainsAny(t, " \t\r\n")
}
