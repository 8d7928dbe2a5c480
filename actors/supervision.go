package actors

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// RestartAlways is the supervisor strategy of application actors: it
// restarts a failed child every time, however often it fails, for one bad
// frame must not take the application down for every other stream.
// Unlike protoactor's one-for-one strategy it keeps no failure history,
// which would otherwise grow with every restart. It counts the restarts.
type RestartAlways struct{ restarts atomic.Uint64 }

// HandleFailure implements actor.SupervisorStrategy.
func (s *RestartAlways) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, _ any, _ any) {
	s.restarts.Add(1)
	sup.RestartChildren(child)
}

// Restarts is how many restarts s has made.
func (s *RestartAlways) Restarts() uint64 { return s.restarts.Load() }

// SharedSupervisor is the parent of a shared application actor, so that
// its strategy (RestartAlways) applies to it. When it starts it spawns
// Props as its only child, named "shared", and sends the child's PID to
// Ready (nil if the spawn failed). A restart after a panic sends it no
// Terminated, so when it hears one the child stopped itself (ctx.Stop on
// itself): it calls Stopped, which may be called more than once.
type SharedSupervisor struct {
	Props   *actor.Props
	Ready   chan<- *actor.PID
	Log     *slog.Logger
	Stopped func()
}

// Receive implements actor.Actor.
func (a *SharedSupervisor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		if a.Ready == nil {
			return
		}
		pid, err := ctx.SpawnNamed(a.Props, "shared")
		if err != nil {
			a.Log.Error("spawning the application actor", "err", err)
			pid = nil
		}
		a.Ready <- pid
		a.Ready = nil
	case *actor.Terminated:
		a.Stopped()
	}
}

// RateLimit allows a burst of events per interval and counts the rest, so
// a handler that panics on every frame cannot flood the log. Set Every
// and Burst before its first use.
type RateLimit struct {
	Every   time.Duration
	Burst   int
	mu      sync.Mutex
	start   time.Time
	n       int
	dropped int
}

// Allow reports whether to log now, and how many events were suppressed
// since the last one logged.
func (l *RateLimit) Allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.start) >= l.Every {
		l.start, l.n = now, 0
	}
	if l.n >= l.Burst {
		l.dropped++
		return false, 0
	}
	l.n++
	d := l.dropped
	l.dropped = 0
	return true, d
}

// QuietHandler hands protoactor's log records to h one level lower (see
// quietHandler): what the broker's actor system logs with.
func QuietHandler(h slog.Handler) slog.Handler { return quietHandler{h} }

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
