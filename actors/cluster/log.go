package cluster

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// quietHandler hands protoactor's log records on one level lower (Info
// becomes Debug, Warn Info, Error Warn): protoactor logs routine events at
// Info and a peer that is down at Error every second. A message it repeats
// is let through at most once every repeatEvery.
type quietHandler struct {
	h    slog.Handler
	seen *repeats
}

type repeats struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const repeatEvery = 10 * time.Second

func newQuietHandler(h slog.Handler) quietHandler {
	return quietHandler{h: h, seen: &repeats{last: map[string]time.Time{}}}
}

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, lower(l))
}

// routine are protoactor messages that are a warning or an error to it but
// routine to a broker: the connection to a member that left (logged as
// "cluster member left").
var routine = map[string]bool{
	"EndpointWriter lost connection": true,
	"sendGossipForMember failed":     true,
}

func (q quietHandler) Handle(ctx context.Context, rec slog.Record) error {
	rec.Level = lower(rec.Level)
	if routine[rec.Message] || aboutNeutered(rec) {
		rec.Level = slog.LevelDebug
		if !q.h.Enabled(ctx, rec.Level) {
			return nil
		}
	}
	if rec.Level > slog.LevelDebug && !q.seen.allow(rec.Message, rec.Time) {
		return nil
	}
	return q.h.Handle(ctx, rec)
}

// aboutNeutered reports whether rec is about the connection that the node
// points protoactor at instead of one it must not open (see neutered):
// failing is what it is for.
func aboutNeutered(rec slog.Record) bool {
	found := false
	rec.Attrs(func(a slog.Attr) bool {
		found = a.Key == "address" && a.Value.String() == neutered
		return !found
	})
	return found
}

func (q quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{h: q.h.WithAttrs(a), seen: q.seen}
}

func (q quietHandler) WithGroup(g string) slog.Handler {
	return quietHandler{h: q.h.WithGroup(g), seen: q.seen}
}

func (r *repeats) allow(msg string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.last[msg]; ok && now.Sub(t) < repeatEvery {
		return false
	}
	if len(r.last) >= 1024 {
		clear(r.last)
	}
	r.last[msg] = now
	return true
}

func lower(l slog.Level) slog.Level {
	switch {
	case l <= slog.LevelInfo:
		return slog.LevelDebug
	case l <= slog.LevelWarn:
		return slog.LevelInfo
	default:
		return slog.LevelWarn
	}
}
