package broker

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
)

// appMiddleware wraps every application actor's Receive: it marks each
// frame handled however Receive ends, so that backpressure and buffer
// reuse never wait on a frame that panicked, and it logs a panic with the
// stack of the code that raised it before protoactor's supervision sees
// it. The panicking frame is not retried: after the restart the actor goes
// on with the next message.
func (r *actorRuntime) appMiddleware(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
		switch m := env.Message.(type) {
		case *actor.Restarting:
			// The Started that follows is the new instance's: it is told
			// what it serves before anything else (restartedMessage).
			r.restarting.Store(ctx.Self().Id, true)
		case *actor.Started:
			if _, again := r.restarting.LoadAndDelete(ctx.Self().Id); again {
				next(ctx, env)
				r.tellRestarted(ctx, next)
				return
			}
		case *Closed:
			// The values go once the application has heard of the close.
			defer m.Stream.clearValues()
		case *releaseApp:
			// Its stream went quiet (ReleaseWhenQuiet): the actor stops,
			// and the application is not told. Reaching this message
			// proves it had not stopped on its own first.
			m.done.Store(true)
			ctx.ActorSystem().Root.Stop(ctx.Self())
			return
		}
		rec, _ := env.Message.(*Received)
		defer func() {
			if p := recover(); p != nil {
				r.panics.Add(1)
				if ok, dropped := r.panicLog.Allow(); ok {
					r.log.Error("application actor panicked; restarting it",
						"actor", ctx.Self().String(),
						"message", fmt.Sprintf("%T", env.Message),
						"panic", fmt.Sprint(p),
						"suppressed", dropped,
						"stack", string(debug.Stack()))
				}
				if rec != nil {
					rec.frameDone()
				}
				panic(p)
			}
			if rec != nil {
				if r.cfg.DebugPayloads {
					poison(rec.Payload)
				}
				rec.frameDone()
			}
		}()
		next(ctx, env)
	}
}

// tellRestarted hands a restarted application actor a Restarted message,
// right after its Started and before any queued frame: a per-stream
// actor its stream, the shared actor the list of every stream.
func (r *actorRuntime) tellRestarted(ctx actor.ReceiverContext, next actor.ReceiverFunc) {
	msg := &Restarted{Streams: r.streams}
	if r.perStream {
		// A per-stream application is named "conn-ID/app", or
		// "conn-ID.N/app" once its stream's actors have been made again
		// (spawnConn).
		id, ok := strings.CutPrefix(ctx.Self().Id, "conn-")
		if ok {
			id, _, _ = strings.Cut(id, "/")
			id, _, _ = strings.Cut(id, ".")
		}
		n, err := strconv.ParseUint(id, 10, 64)
		s := r.streams.Get(n)
		if !ok || err != nil || s == nil {
			return // its stream is gone; Closed follows
		}
		msg.Stream, msg.Streams = s, s.list
	}
	next(ctx, &actor.MessageEnvelope{Message: msg})
}

// poison overwrites a payload the handler has returned from, so that a
// slice of it kept by mistake shows garbage at once (Config.DebugPayloads).
func poison(p []byte) {
	for i := range p {
		p[i] = poisonByte
	}
}

// poisonByte fills released payloads under DebugPayloads: '~' stands out
// in text and in hex dumps.
const poisonByte = '~'
