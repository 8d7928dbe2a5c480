package actors

import (
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// ErrAppStopped is the reason a stream closes when its application actor
// stopped itself (the per-stream one, or the shared one, which ends every
// stream): no one is left to handle its frames.
var ErrAppStopped = errors.New("actors: the stream's application actor stopped")

// Messages between the runtime and a connection actor.
type (
	started struct{ stream *Stream }
	closed  struct{ reason error }
)

// connActor is one stream's connection actor. It receives each read's
// frames in one message, answers telemetry requests through the telemetry
// actor, and forwards every other frame, in order, to the application
// actor: the shared one, or its own child in the per-stream mode.
type connActor struct {
	rt      *Runtime
	s       *Stream
	app     *actor.PID
	closing bool

	// appBox is the mailbox of an application actor that runs on the
	// event loop, as this actor does. A read's frames are queued there
	// together and the actor then handles them in one run of its
	// mailbox, instead of one Send and one run per frame.
	appBox *loopMailbox
	queue  []any // appBox's frames of the current read; reused
}

func (a *connActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *started:
		a.s = m.stream
		a.app = a.rt.sharedPID
		if a.rt.perStream {
			props := a.rt.appProps
			if a.rt.onLoop {
				// A copy of the props whose mailbox producer tells this
				// actor which mailbox it made. A restart keeps the
				// mailbox, so it is made once.
				cp := *props
				props = cp.Configure(actor.WithMailbox(func() actor.Mailbox {
					a.appBox = newLoopMailbox().(*loopMailbox)
					return a.appBox
				}))
			}
			pid, err := ctx.SpawnNamed(props, "app")
			if err != nil {
				a.rt.log.Error("spawning a per-stream application actor", "stream", a.s.ID(), "err", err)
				a.s.Close(err)
				return
			}
			a.app = pid
		}
		ctx.Send(a.app, &Connected{Stream: a.s, Streams: a.s.list})
	case *delivery:
		a.forward(ctx, m)
	case *closed:
		a.closing = true
		if a.s != nil && a.s.telem.Load() > 0 {
			ctx.Send(a.rt.telemPID, &telemetryGone{stream: a.s})
		}
		if a.app != nil {
			ctx.Send(a.app, &Closed{Stream: a.s, Streams: a.s.list, Reason: m.reason})
		}
		if a.rt.perStream && a.app != nil {
			// A poison pill queues behind Closed, so the child handles
			// every frame and the close before it stops; this actor stops
			// when it hears the child terminated.
			ctx.Poison(a.app)
			return
		}
		ctx.Stop(ctx.Self())
	case *actor.Terminated:
		if a.app == nil || !m.Who.Equal(a.app) {
			return
		}
		if a.closing {
			ctx.Stop(ctx.Self())
			return
		}
		// The application actor stopped on its own. Frames sent to it
		// since are lost with it; the stream closes, and this actor stops
		// when it hears of the close.
		a.app, a.appBox = nil, nil
		a.s.Close(ErrAppStopped)
	}
}

func (a *connActor) forward(ctx actor.Context, d *delivery) {
	for i := range d.recs {
		r := &d.recs[i]
		switch {
		case wire.IsTelemetryRequest(r.Payload):
			// The frames before it first, as they would have been had
			// each gone on its own: a bad span is answered at once.
			a.postQueued()
			a.rt.telemetryRequest(ctx, a.s, r.Payload)
			r.frameDone()
		case a.app == nil:
			r.frameDone()
		case a.appBox != nil:
			a.queue = append(a.queue, &d.envs[i])
		default:
			ctx.Send(a.app, &d.envs[i])
		}
	}
	a.postQueued()
}

// maxKeptQueue bounds the frames' slots a connection actor keeps between
// reads: one read of tiny frames can carry thousands.
const maxKeptQueue = 1024

// postQueued hands the frames queued for an on-loop application to its
// mailbox: what ctx.Send would do for each, less the process lookup and
// one run of the mailbox per frame. Should the child have stopped on its
// own, the frames are dropped with it, as they would be as dead letters,
// and Terminated closes the stream.
func (a *connActor) postQueued() {
	if len(a.queue) == 0 {
		return
	}
	a.appBox.postUserMessages(a.queue)
	if cap(a.queue) > maxKeptQueue {
		a.queue = nil
		return
	}
	clear(a.queue)
	a.queue = a.queue[:0]
}
