package actors

import (
	"context"
	"log/slog"
	"testing"
)

// levels records the level of each record it handles.
type levels struct{ got *[]slog.Level }

func (h levels) Enabled(context.Context, slog.Level) bool { return true }
func (h levels) Handle(_ context.Context, r slog.Record) error {
	*h.got = append(*h.got, r.Level)
	return nil
}
func (h levels) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h levels) WithGroup(string) slog.Handler      { return h }

// TestQuietHandlerDemotesChatter: protoactor's own info lines (actor
// system started, restarts) go to debug; warnings and errors stay.
func TestQuietHandlerDemotesChatter(t *testing.T) {
	var got []slog.Level
	log := slog.New(quietHandler{levels{&got}})
	log.Debug("d")
	log.Info("i")
	log.Log(context.Background(), slog.LevelInfo+1, "just over info")
	log.Warn("w")
	log.Error("e")
	want := []slog.Level{slog.LevelDebug, slog.LevelDebug, slog.LevelInfo + 1, slog.LevelWarn, slog.LevelError}
	if len(got) != len(want) {
		t.Fatalf("levels %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("levels %v, want %v", got, want)
		}
	}
}
