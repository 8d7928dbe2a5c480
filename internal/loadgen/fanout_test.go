package loadgen_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

func TestFanoutCount(t *testing.T) {
	srv := serve(t, baseline.Broadcast)
	tests := []struct {
		name string
		cfg  loadgen.FanoutConfig
	}{
		{"2 pub 10 sub", loadgen.FanoutConfig{Publishers: 2, Subscribers: 10, Count: 20001}},
		{"1 pub 1 sub, window 1", loadgen.FanoutConfig{Publishers: 1, Subscribers: 1, Window: 1, Count: 500}},
		{"4 pub 3 sub, 4 KiB", loadgen.FanoutConfig{Publishers: 4, Subscribers: 3, PayloadSize: 4096, Window: 64, Count: 4000}},
		{"header only", loadgen.FanoutConfig{Publishers: 1, Subscribers: 5, PayloadSize: 16, Count: 3000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Addr = srv.Addr()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := loadgen.Fanout(ctx, cfg)
			if err != nil {
				t.Fatalf("Fanout: %v (%v)", err, res)
			}
			if res.Sent != cfg.Count || res.Deliveries != res.Sent*int64(cfg.Subscribers) {
				t.Errorf("%v: want %d sent, each delivered to all %d subscribers", res, cfg.Count, cfg.Subscribers)
			}
			if res.Gaps != 0 || res.Lost != 0 || res.Errors != 0 {
				t.Errorf("%v: want no gaps, losses or errors", res)
			}
			if res.Elapsed <= 0 || res.DeliveriesPerSec <= 0 {
				t.Errorf("%v: want a positive elapsed time and rate", res)
			}
			checkLatency(t, res.Latency)
			if srv.Stats().Dropped != 0 {
				t.Errorf("server dropped %d subscribers: pacing let a queue overflow", srv.Stats().Dropped)
			}
		})
	}
}

func TestFanoutDuration(t *testing.T) {
	srv := serve(t, baseline.Broadcast)
	const d = 200 * time.Millisecond
	res, err := loadgen.Fanout(context.Background(), loadgen.FanoutConfig{
		Addr: srv.Addr(), Publishers: 2, Subscribers: 4, Duration: d,
	})
	if err != nil {
		t.Fatalf("Fanout: %v", err)
	}
	if res.Sent == 0 || res.Deliveries != res.Sent*4 || res.Gaps != 0 || res.Lost != 0 || res.Errors != 0 {
		t.Errorf("%v: want every frame sent delivered, no gaps, losses or errors", res)
	}
	if res.Elapsed < d || res.Elapsed > d+time.Second {
		t.Errorf("elapsed %v, want about %v", res.Elapsed, d)
	}
	waitFor(t, "the server to see every connection close", 5*time.Second, func() bool { return srv.Stats().Conns == 0 })
}

func TestFanoutCancel(t *testing.T) {
	srv := serve(t, baseline.Broadcast)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{
		Addr: srv.Addr(), Subscribers: 3, Duration: time.Hour,
		Progress: func(p loadgen.Progress) {
			if p.Received > 1000 {
				cancel()
			}
		},
		ProgressInterval: 10 * time.Millisecond,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fanout: error %v, want context.Canceled", err)
	}
	if res.Deliveries <= 1000 || res.Errors != 0 || res.Gaps != 0 {
		t.Errorf("%v: want the deliveries so far, no errors or gaps", res)
	}
}

// An echo server sends a publisher's warm-up frame back to it alone: the
// subscribers never see it, and the run must say so rather than measure.
func TestFanoutWarmupTimeout(t *testing.T) {
	srv := serve(t, baseline.Echo)
	_, err := loadgen.Fanout(context.Background(), loadgen.FanoutConfig{
		Addr: srv.Addr(), Subscribers: 3, Count: 100, WarmupTimeout: 200 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "publisher 0 seen by 0 of 3 connections") {
		t.Errorf("Fanout against an echo server: error %v, want a warm-up timeout", err)
	}
}

func TestFanoutConfigErrors(t *testing.T) {
	for _, cfg := range []loadgen.FanoutConfig{
		{},
		{Addr: "127.0.0.1:1", PayloadSize: 15},
		{Addr: "127.0.0.1:1", Publishers: 70000},
		{Addr: "127.0.0.1:1", Publishers: 3, Count: 2},
		{Addr: "127.0.0.1:1", Window: -1},
	} {
		if _, err := loadgen.Fanout(context.Background(), cfg); !errors.Is(err, loadgen.ErrConfig) {
			t.Errorf("Fanout(%+v): error %v, want ErrConfig", cfg, err)
		}
	}
}
