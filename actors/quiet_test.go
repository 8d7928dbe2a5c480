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

// TestStreamShardGivesMemoryBack: after a wave of disconnects a shard's
// slice of streams shrinks to what is left, and the list stays exact.
func TestStreamShardGivesMemoryBack(t *testing.T) {
	l := newStreamList(1)
	streams := make([]*Stream, 3000)
	for i := range streams {
		streams[i] = &Stream{id: uint64(i + 1)}
		l.set.add(streams[i], 0)
	}
	for _, s := range streams[:2900] {
		l.set.remove(s)
	}
	sh := &l.set.shards[0]
	if len(sh.streams) != 100 || l.Len() != 100 {
		t.Fatalf("%d streams in the shard, Len %d; want 100", len(sh.streams), l.Len())
	}
	if c := cap(sh.streams); c > 1024 {
		t.Fatalf("the shard keeps room for %d streams with 100 left", c)
	}
	for i, s := range sh.streams {
		if s.slot != i || !contains(streams[2900:], s) {
			t.Fatalf("stream at %d has slot %d (or was removed)", i, s.slot)
		}
	}
}

func contains(ss []*Stream, s *Stream) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
