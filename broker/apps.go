package broker

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"

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
// A topic is 1 to 255 bytes with no space, tab, CR or LF; a stream
// subscribes to at most 1,024 topics at a time. A subscriber
// receives each PUB to its topic once, in the order its publisher sent
// them, its own included; a publisher that is subscribed gets its MSG
// before its +OK. With authentication, an identity subscribes to and
// publishes on the topics its Groups allow, and publishes only if it may
// publish. On a clustered broker a PUB reaches the subscribers of every
// node. There a SUB that gives this node its topic's first subscriber is
// answered once every other node has heard of it (Group.WhenReachable),
// so that a PUB on any node after the +OK reaches the subscriber; the
// stream's answers after it wait behind it (at most maxHeld of them, or a
// second). Run it per stream (HandlePerStream); it never blocks, so it
// may run on the event loops (OnEventLoop).
func PubSub() *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*Received); ok {
			answer, joined := pubsub(m)
			answerPubSub(m.Stream, answer, joined)
		}
	})
}

// heldAnswers are a stream's pubsub answers held behind a SUB's +OK
// that waits for the cluster (see PubSub).
type heldAnswers struct {
	n     atomic.Int32 // len(queue), read without the lock
	mu    sync.Mutex
	queue []*heldAnswer
}

type heldAnswer struct {
	answer []byte
	ready  bool
}

// maxHeld bounds the answers a stream has held: past it, the SUBs they
// wait behind are answered without waiting any longer.
const maxHeld = 1024

var held = NewKey[*heldAnswers]("pubsub held answers")

// answerPubSub sends answer to s, in order with the answers s has held.
// joined is the group a SUB joined, and its +OK waits until the group is
// reachable from every node.
func answerPubSub(s *Stream, answer []byte, joined *Group) {
	h, _ := held.Get(s)
	wait := joined != nil && !joined.Reachable()
	if !wait && (h == nil || h.n.Load() == 0) {
		_ = s.Send(answer)
		return
	}
	if h == nil {
		h = &heldAnswers{}
		held.Set(s, h)
	}
	e := &heldAnswer{answer: answer, ready: !wait}
	h.mu.Lock()
	h.queue = append(h.queue, e)
	h.n.Store(int32(len(h.queue)))
	if len(h.queue) > maxHeld {
		for _, q := range h.queue {
			q.ready = true
		}
	}
	h.flushLocked(s)
	h.mu.Unlock()
	if wait {
		joined.WhenReachable(func(bool) {
			h.mu.Lock()
			e.ready = true
			h.flushLocked(s)
			h.mu.Unlock()
		})
	}
}

// flushLocked sends the held answers that are ready, up to the first
// that is not; h.mu is held.
func (h *heldAnswers) flushLocked(s *Stream) {
	i := 0
	for ; i < len(h.queue) && h.queue[i].ready; i++ {
		_ = s.Send(h.queue[i].answer)
		h.queue[i] = nil
	}
	h.queue = h.queue[i:]
	if len(h.queue) == 0 {
		h.queue = nil
	}
	h.n.Store(int32(len(h.queue)))
}

// Answers of the pubsub protocol.
var (
	pubsubOK = []byte("+OK")
)

// maxTopic is the longest topic, in bytes.
const maxTopic = 255

// maxSubscriptions bounds the topics one stream subscribes to: what a
// connection can make the broker hold (and tell the other nodes of).
const maxSubscriptions = 1024

// pubsub handles one command and returns the answer to its sender, and
// for a SUB that joined, the group.
func pubsub(m *Received) ([]byte, *Group) {
	cmd, rest, _ := bytes.Cut(m.Payload, []byte{' '})
	id := m.Stream.Identity()
	switch string(cmd) {
	case "SUB", "UNSUB":
		topic := rest
		if !validTopic(topic) {
			return pubsubErr("topic must be 1 to 255 bytes without spaces"), nil
		}
		g := m.Streams.Group(string(topic))
		if string(cmd) == "UNSUB" {
			g.Leave(m.Stream)
			return pubsubOK, nil
		}
		if !id.MayUse(string(topic)) {
			return pubsubErr("not allowed to subscribe to " + string(topic)), nil
		}
		if n, member := m.Stream.memberships(string(topic)); !member && n >= maxSubscriptions {
			return pubsubErr(fmt.Sprintf("too many subscriptions (at most %d a connection)", maxSubscriptions)), nil
		}
		if err := g.Join(m.Stream); err != nil {
			return pubsubErr(err.Error()), nil
		}
		return pubsubOK, &g
	case "PUB":
		topic, body, ok := bytes.Cut(rest, []byte{' '})
		switch {
		case !ok:
			return pubsubErr("want PUB <topic> <payload>"), nil
		case !validTopic(topic):
			return pubsubErr("topic must be 1 to 255 bytes without spaces"), nil
		case !id.MayPublish() || !id.MayUse(string(topic)):
			return pubsubErr("not allowed to publish to " + string(topic)), nil
		}
		// MSG and PUB are the same length: the message fits a frame.
		msg := make([]byte, 0, len(m.Payload))
		msg = append(append(append(append(msg, "MSG "...), topic...), ' '), body...)
		if _, err := m.Streams.Group(string(topic)).Broadcast(msg); err != nil {
			return pubsubErr(err.Error()), nil
		}
		return pubsubOK, nil
	}
	return pubsubErr("unknown command; want SUB, UNSUB or PUB"), nil
}

func pubsubErr(reason string) []byte { return []byte("-ERR " + reason) }

// validTopic: 1 to maxTopic bytes, none of them space, tab, CR or LF.
func validTopic(t []byte) bool {
	return len(t) > 0 && len(t) <= maxTopic && !bytes.ContainsAny(t, " \t\r\n")
}
