package actors

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// appMiddleware wraps every application actor's Receive: it marks each
// frame handled however Receive ends, so that backpressure and buffer
// reuse never wait on a frame that panicked, and it logs a panic with the
// stack of the code that raised it before protoactor's supervision sees
// it. The panicking frame is not retried: after the restart the actor goes
// on with the next message.
func (r *Runtime) appMiddleware(next actor.ReceiverFunc) actor.ReceiverFunc {
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
		}
		rec, _ := env.Message.(*Received)
		defer func() {
			if p := recover(); p != nil {
				r.panics.Add(1)
				if ok, dropped := r.panicLog.allow(); ok {
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
func (r *Runtime) tellRestarted(ctx actor.ReceiverContext, next actor.ReceiverFunc) {
	msg := &Restarted{Streams: r.streams}
	if r.perStream {
		// A per-stream application is named "conn-ID/app".
		id, ok := strings.CutPrefix(ctx.Self().Id, "conn-")
		if ok {
			id, _, _ = strings.Cut(id, "/")
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

// restartAlways restarts a failed application actor every time, however
// often it fails: one bad frame must not take the application down for
// every other stream. Unlike protoactor's one-for-one strategy it keeps
// no failure history, which would otherwise grow with every restart.
type restartAlways struct{ rt *Runtime }

func (s *restartAlways) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, _ any, _ any) {
	s.rt.restarts.Add(1)
	sup.RestartChildren(child)
}

// appSupervisor is the parent of the shared application actor, so that the
// restart strategy above applies to it.
type appSupervisor struct {
	rt    *Runtime
	ready chan<- *actor.PID
}

func (a *appSupervisor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		if a.ready == nil {
			return
		}
		pid, err := ctx.SpawnNamed(a.rt.appProps, "shared")
		if err != nil {
			a.rt.log.Error("spawning the application actor", "err", err)
			pid = nil
		}
		a.ready <- pid
		a.ready = nil
	case *actor.Terminated:
		// The only child is the shared actor, and a restart after a
		// panic sends no Terminated: it stopped itself (ctx.Stop on
		// itself). No stream has anyone to handle its frames any more, so
		// every stream ends, as a per-stream one does when its own actor
		// stops, new ones are refused, and AppStopped tells the broker.
		select {
		case <-a.rt.appDone:
			return // told already
		default:
		}
		a.rt.log.Error("the application actor stopped; closing every stream")
		a.rt.streams.Each(func(s *Stream) bool {
			s.Close(ErrAppStopped)
			return true
		})
		close(a.rt.appDone)
	}
}

// rateLimit allows a burst of events per interval and counts the rest, so
// a handler that panics on every frame cannot flood the log.
type rateLimit struct {
	every   time.Duration
	burst   int
	mu      sync.Mutex
	start   time.Time
	n       int
	dropped int
}

// allow reports whether to log now, and how many events were suppressed
// since the last one logged.
func (l *rateLimit) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.start) >= l.every {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.dropped++
		return false, 0
	}
	l.n++
	d := l.dropped
	l.dropped = 0
	return true, d
}

// quietHandler hands protoactor's log records to the broker's handler one
// level lower: protoactor reports routine events (actor system started,
// an actor recovering) at Info, which is noise in a broker's log, and
// they become Debug; its warnings and errors come through as they are.
type quietHandler struct{ h slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, lower(l))
}

func (q quietHandler) Handle(ctx context.Context, rec slog.Record) error {
	rec.Level = lower(rec.Level)
	return q.h.Handle(ctx, rec)
}

func (q quietHandler) WithAttrs(a []slog.Attr) slog.Handler { return quietHandler{q.h.WithAttrs(a)} }
func (q quietHandler) WithGroup(g string) slog.Handler      { return quietHandler{q.h.WithGroup(g)} }

func lower(l slog.Level) slog.Level {
	if l <= slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}
