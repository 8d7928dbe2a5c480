package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/wire"
)

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
}

func (a *connActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *started:
		a.s = m.stream
		a.app = a.rt.sharedPID
		if a.rt.perStream {
			pid, err := ctx.SpawnNamed(a.rt.appProps, "app")
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
		if a.closing && a.app != nil && m.Who.Equal(a.app) {
			ctx.Stop(ctx.Self())
		}
	}
}

func (a *connActor) forward(ctx actor.Context, d *delivery) {
	for i := range d.recs {
		r := &d.recs[i]
		if wire.IsTelemetryRequest(r.Payload) {
			a.rt.telemetryRequest(ctx, a.s, r.Payload)
			r.frameDone()
			continue
		}
		if a.app == nil {
			r.frameDone()
			continue
		}
		ctx.Send(a.app, &d.envs[i])
	}
}
