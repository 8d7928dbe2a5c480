package loadgen_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

func TestEchoCount(t *testing.T) {
	srv := serve(t, baseline.Echo)
	tests := []struct {
		name string
		cfg  loadgen.EchoConfig
	}{
		{"1x1", loadgen.EchoConfig{Conns: 1, InFlight: 1, Count: 300}},
		{"pipelined", loadgen.EchoConfig{Conns: 8, InFlight: 16, Count: 20000}},
		{"stamp only", loadgen.EchoConfig{Conns: 2, InFlight: 4, PayloadSize: 8, Count: 1000}},
		{"empty after stamp and ids", loadgen.EchoConfig{Conns: 2, InFlight: 3, PayloadSize: 16, Count: 999}},
		// 16 × 16 KiB in flight is past what one goroutine may both
		// write and read: a reader and a writer per connection.
		{"reader and writer", loadgen.EchoConfig{Conns: 2, InFlight: 16, PayloadSize: 16 << 10, Count: 2000}},
		{"largest payload", loadgen.EchoConfig{Conns: 1, InFlight: 4, PayloadSize: 65535, Count: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Addr = srv.Addr()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := loadgen.Echo(ctx, cfg)
			if err != nil {
				t.Fatalf("Echo: %v (%v)", err, res)
			}
			if res.Messages != cfg.Count || res.Sent != cfg.Count || res.Errors != 0 {
				t.Fatalf("%v: want %d round trips and sent, no errors", res, cfg.Count)
			}
			if res.Elapsed <= 0 || res.MsgPerSec <= 0 {
				t.Errorf("%v: want a positive elapsed time and rate", res)
			}
			checkLatency(t, res.Latency)
		})
	}
}

func TestEchoDuration(t *testing.T) {
	srv := serve(t, baseline.Echo)
	const d = 200 * time.Millisecond
	var calls int
	res, err := loadgen.Echo(context.Background(), loadgen.EchoConfig{
		Addr: srv.Addr(), Conns: 4, InFlight: 8, Duration: d,
		Progress:         func(loadgen.Progress) { calls++ },
		ProgressInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Echo: %v", err)
	}
	if res.Messages <= 0 || res.Errors != 0 || res.Sent < res.Messages {
		t.Fatalf("%v: want round trips, no errors", res)
	}
	if res.Elapsed < d || res.Elapsed > d+time.Second {
		t.Errorf("elapsed %v, want about %v", res.Elapsed, d)
	}
	if calls == 0 {
		t.Error("Progress never called")
	}
	checkLatency(t, res.Latency)
	// Every connection was closed cleanly once its replies were in.
	waitFor(t, "the server to see every connection close", 5*time.Second, func() bool { return srv.Stats().Conns == 0 })
}

// Cancelling the context ends a long run at once, with what it measured.
func TestEchoCancel(t *testing.T) {
	srv := serve(t, baseline.Echo)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last loadgen.Progress
	start := time.Now()
	res, err := loadgen.Echo(ctx, loadgen.EchoConfig{
		Addr: srv.Addr(), Conns: 4, InFlight: 4, Duration: time.Hour,
		Progress: func(p loadgen.Progress) {
			last = p
			if p.Received > 1000 {
				cancel()
			}
		},
		ProgressInterval: 10 * time.Millisecond,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Echo: error %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Echo took %v after cancel", took)
	}
	if res.Messages < last.Received || res.Elapsed <= 0 || res.Elapsed > time.Minute || res.Errors != 0 {
		t.Errorf("%v after progress %+v: want the round trips so far, no errors", res, last)
	}
}

// Against a server that does not echo but broadcasts, each connection
// receives the other's frames: every one must count as an error, none as
// a round trip.
func TestEchoWrongReplies(t *testing.T) {
	srv := serve(t, baseline.Broadcast)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := loadgen.Echo(ctx, loadgen.EchoConfig{
		Addr: srv.Addr(), Conns: 2, InFlight: 1, Duration: time.Hour,
		Progress: func(p loadgen.Progress) {
			if p.Errors > 10 {
				cancel()
			}
		},
		ProgressInterval: 10 * time.Millisecond,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Echo: error %v, want context.Canceled", err)
	}
	if res.Messages != 0 || res.Errors <= 10 || !strings.Contains(res.FirstError, "reply for connection") {
		t.Errorf("%v: want no round trips, errors naming the other connection", res)
	}
}

func TestEchoConfigErrors(t *testing.T) {
	for _, cfg := range []loadgen.EchoConfig{
		{},
		{Addr: "127.0.0.1:1", PayloadSize: 7},
		{Addr: "127.0.0.1:1", PayloadSize: 65536},
		{Addr: "127.0.0.1:1", Conns: -1},
		{Addr: "127.0.0.1:1", Count: -1},
	} {
		if _, err := loadgen.Echo(context.Background(), cfg); !errors.Is(err, loadgen.ErrConfig) {
			t.Errorf("Echo(%+v): error %v, want ErrConfig", cfg, err)
		}
	}
}

// A failed dial fails the run, naming the address.
func TestEchoDialError(t *testing.T) {
	addr := closedAddr(t)
	_, err := loadgen.Echo(context.Background(), loadgen.EchoConfig{Addr: addr, Count: 1})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("Echo to a closed port: error %v, want a dial error naming %s", err, addr)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	s := serve(t, baseline.Echo)
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestResultJSON(t *testing.T) {
	r := loadgen.Result{Test: "echo", Messages: 3, Elapsed: 2 * time.Second, Latency: loadgen.Latency{P50: 1500}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{"messages": 3, "elapsed_ns": 2e9, "p50_ns": 1500, "errors": 0, "gaps": 0} {
		if got, ok := m[k].(float64); !ok || got != want {
			t.Errorf("%s: %s = %v, want %v", b, k, m[k], want)
		}
	}
	if s := r.String(); !strings.Contains(s, "3 round trips") || !strings.Contains(s, "p50 1.5µs") {
		t.Errorf("String() = %q", s)
	}
}
