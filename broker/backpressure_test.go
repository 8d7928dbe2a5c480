package broker

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/netpoll"
)

// oneStream serves a runtime with the given MaxInbound, connects one
// client and returns its Stream.
func oneStream(t *testing.T, maxInbound int, app *actor.Props) (*actorRuntime, *netpoll.Server, *Stream) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := newRuntime(runtimeConfig{Shards: 1, Logger: log, MaxInbound: maxInbound})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(nil, app, false); err != nil {
		t.Fatal(err)
	}
	srv, err := netpoll.Listen(netpoll.Config{Addr: "127.0.0.1:0", Loops: 1, Logger: log}, rt)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		rt.Shutdown()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	dialRaw(t, srv)
	waitLen(t, rt.Streams(), 1)
	var s *Stream
	rt.Streams().Each(func(st *Stream) bool { s = st; return false })
	return rt, srv, s
}

// TestInboundBoundsExactly: reading pauses when more than MaxInbound
// frames are in the actors' hands, not at MaxInbound, and resumes once
// they are down to half of it, not before: the counts framesIn and
// framesDone keep, driven here directly on an idle stream.
func TestInboundBoundsExactly(t *testing.T) {
	_, srv, s := oneStream(t, 16, nothing())
	paused := func() bool {
		s.flowMu.Lock()
		defer s.flowMu.Unlock()
		return s.paused&pauseInbound != 0
	}
	waitPaused := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for srv.Stats().PausedReads != want {
			if time.Now().After(deadline) {
				t.Fatalf("PausedReads %d, want %d", srv.Stats().PausedReads, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	s.framesIn(10)
	s.framesIn(6)
	if paused() {
		t.Fatalf("paused with %d frames in hand, MaxInbound 16", s.pending.Load())
	}
	s.framesIn(1)
	if !paused() {
		t.Fatalf("not paused with %d frames in hand, MaxInbound 16", s.pending.Load())
	}
	waitPaused(1)
	for s.pending.Load() > 9 {
		s.framesDone(1)
	}
	if !paused() {
		t.Fatalf("resumed with %d frames in hand, over half of MaxInbound 16", s.pending.Load())
	}
	s.framesDone(1)
	if got := s.pending.Load(); got != 8 {
		t.Fatalf("pending %d, want 8", got)
	}
	if paused() {
		t.Fatalf("still paused with %d frames in hand, half of MaxInbound 16 being 8", s.pending.Load())
	}
	waitPaused(0)
	// Pause again past the bound; one frame done is not enough to resume.
	s.framesIn(9)
	if !paused() {
		t.Fatalf("not paused with %d frames in hand", s.pending.Load())
	}
	s.framesDone(1)
	if !paused() {
		t.Fatalf("resumed with %d frames in hand", s.pending.Load())
	}
	for s.pending.Load() > 0 {
		s.framesDone(1)
	}
	if paused() {
		t.Fatal("paused with no frame in hand")
	}
	waitPaused(0)
}
