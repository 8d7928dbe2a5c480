package broker

import (
	"bytes"
	"net"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/telemetry"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// TestTelemetryAnsweredByTheRuntime: a bad span is refused at once with
// an error reply, a good one answered with a reading once it has passed,
// and neither reaches the application.
func TestTelemetryAnsweredByTheRuntime(t *testing.T) {
	var appGot atomic.Int32
	rt, srv := serveMode(t, actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*Received); ok {
			appGot.Add(1)
		}
	}), true, false)
	c := dialRaw(t, srv)
	r := newFrameReader(c)
	send := func(span float32) {
		t.Helper()
		f, _ := wire.Encode(wire.AppendTelemetryRequest(nil, span))
		if _, err := c.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	send(-1)
	p, err := r.next(5 * time.Second)
	if err != nil || !bytes.HasPrefix(p, []byte(`{"error":`)) {
		t.Fatalf("a bad span: %q, %v; want an error reply", p, err)
	}
	sent := time.Now()
	send(0.2)
	p, err = r.next(5 * time.Second)
	if err != nil || !bytes.Contains(p, []byte(`"up_time"`)) {
		t.Fatalf("a good span: %q, %v; want a reading", p, err)
	}
	if took := time.Since(sent); took < 200*time.Millisecond {
		t.Fatalf("a reading over 0.2 s answered after %v", took)
	}
	if st := rt.Stats(); st.TelemetryRequests != 2 || st.TelemetryWaiting != 0 || appGot.Load() != 0 {
		t.Fatalf("requests %d, waiting %d, frames to the application %d; want 2, 0, 0", st.TelemetryRequests, st.TelemetryWaiting, appGot.Load())
	}
}

// TestTelemetryPlacesGivenBackOnReset: a stream reset with requests
// waiting gives their places back at once, not when their span ends.
func TestTelemetryPlacesGivenBackOnReset(t *testing.T) {
	rt, srv := serveMode(t, nothing(), true, false)
	c := dialRaw(t, srv)
	var out []byte
	for range 10 {
		out, _ = wire.AppendFrame(out, wire.AppendTelemetryRequest(nil, 30))
	}
	if _, err := c.Write(out); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rt.Stats().TelemetryWaiting != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests waiting, want 10", rt.Stats().TelemetryWaiting)
		}
		time.Sleep(time.Millisecond)
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	deadline = time.Now().Add(5 * time.Second)
	for rt.Stats().TelemetryWaiting != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests of a reset stream still waiting", rt.Stats().TelemetryWaiting)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConfigDefaults: zero and negative values get the documented
// defaults.
func TestConfigDefaults(t *testing.T) {
	for _, cfg := range []runtimeConfig{{}, {MaxInbound: -1, MaxSpan: -1, Shards: -1}} {
		rt, err := newRuntime(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rt.maxInbound != DefaultMaxInbound || rt.resumeAt != DefaultMaxInbound/2 || rt.cfg.MaxSpan != DefaultMaxSpan ||
			len(rt.streams.set.shards) != 1 || rt.log == nil || rt.cfg.Counters == nil || rt.start.IsZero() {
			t.Errorf("%+v: MaxInbound %d, resume at %d, MaxSpan %v, %d shards, logger %v, counters %v, start %v",
				cfg, rt.maxInbound, rt.resumeAt, rt.cfg.MaxSpan, len(rt.streams.set.shards), rt.log != nil, rt.cfg.Counters != nil, rt.start)
		}
		if c := rt.cfg.Counters(); !reflect.DeepEqual(c, telemetry.Counters{}) {
			t.Errorf("default counters %+v, want zero", c)
		}
		rt.Shutdown()
	}
	rt, err := newRuntime(runtimeConfig{MaxInbound: 1, MaxSpan: time.Second, Shards: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown()
	if rt.maxInbound != 1 || rt.resumeAt != 0 || rt.cfg.MaxSpan != time.Second || len(rt.streams.set.shards) != 3 {
		t.Errorf("MaxInbound 1, MaxSpan 1s, 3 shards: got %d (resume at %d), %v, %d", rt.maxInbound, rt.resumeAt, rt.cfg.MaxSpan, len(rt.streams.set.shards))
	}
}
