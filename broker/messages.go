package broker

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/netpoll"
)

// Connected tells an application actor that a stream opened.
type Connected struct {
	Stream  *Stream
	Streams *StreamList
}

// Received is one frame from a stream: the Go form of hydrogen's
// on_data_received(sockets, socket, buffer).
//
// Payload is valid only until the actor's Receive returns: the broker
// reuses its memory for later frames, which is how the read path stays
// free of allocations. Copy it (bytes.Clone) to keep it. Send and
// Broadcast copy or encode what they are given, so replying with Payload
// needs no copy. The *Received itself is reused likewise.
type Received struct {
	Stream  *Stream
	Streams *StreamList
	Payload []byte

	d *delivery
}

// Restarted tells an application actor that it was restarted after a
// panic, before it gets any other message but protoactor's Started: the
// instance that knew its stream is gone. Stream is the stream a
// per-stream actor serves; nil for the shared actor, which serves every
// stream of Streams. What survives a restart is the stream and its values
// (Stream.Value); the actor's own fields start afresh.
type Restarted struct {
	Stream  *Stream
	Streams *StreamList
}

// Closed tells an application actor that a stream closed, and why: Reason
// is one of the close reasons of this package (ErrPeerClosed,
// ErrSlowConsumer, ErrIdle and the others beside them), wrapped where
// there is more to say, so compare it with errors.Is; or the error the
// application gave Stream.Close. Sends to the stream fail from now on.
type Closed struct {
	Stream  *Stream
	Streams *StreamList
	Reason  error
}

// delivery carries the frames of one read from the event loop through the
// connection actor to the application. It is pooled with everything the
// frames need on the way, so that a read costs no allocation per frame:
// the application's messages are pre-wrapped envelopes pointing into recs,
// which protoactor passes through without wrapping them again.
type delivery struct {
	stream *Stream
	batch  *netpoll.Batch
	recs   []Received
	envs   []actor.MessageEnvelope
	left   atomic.Int32 // frames not yet done
}

var deliveryPool = sync.Pool{New: func() any { return new(delivery) }}

func newDelivery(s *Stream, b *netpoll.Batch) *delivery {
	d := deliveryPool.Get().(*delivery)
	d.stream = s
	d.batch = b
	n := len(b.Frames)
	if cap(d.recs) < n {
		d.recs = make([]Received, n, max(n, 16))
		d.envs = make([]actor.MessageEnvelope, n, max(n, 16))
	}
	d.recs = d.recs[:n]
	d.envs = d.envs[:n]
	for i, p := range b.Frames {
		d.recs[i] = Received{Stream: s, Streams: s.list, Payload: p, d: d}
		d.envs[i] = actor.MessageEnvelope{Message: &d.recs[i]}
	}
	d.left.Store(int32(n))
	return d
}

// done marks one frame of the delivery handled: by the application, by the
// telemetry path, or dropped. The last one returns the delivery and its
// batch for reuse, and counts the read's frames handled for the stream's
// backlog — once per read, not per frame.
func (d *delivery) done() {
	if d.left.Add(-1) != 0 {
		return
	}
	s, n := d.stream, len(d.recs)
	d.batch.Release()
	clear(d.recs)
	clear(d.envs)
	d.stream, d.batch = nil, nil
	if cap(d.recs) <= 1024 {
		deliveryPool.Put(d)
	}
	s.framesDone(n)
}

// dropFrom marks the frames from index i on done without handling them:
// their stream closed, or they came with a refused credential.
func (d *delivery) dropFrom(i int) {
	n := len(d.recs)
	for j := i; j < n; j++ {
		d.recs[j].frameDone() // the last releases d: nothing of it is read after
	}
}

// frameDone is called by the receiver middleware once the application has
// handled r, whether it returned or panicked.
func (r *Received) frameDone() {
	if d := r.d; d != nil {
		r.d = nil
		d.done()
	}
}
