package loadgen_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

func TestConns(t *testing.T) {
	srv := serve(t, baseline.Echo)
	const n = 500
	res, err := loadgen.Conns(context.Background(), loadgen.ConnsConfig{Addr: srv.Addr(), N: n, DialConcurrency: 50})
	if err != nil {
		t.Fatalf("Conns: %v", err)
	}
	if res.Requested != n || res.Opened != n || res.Verified != n || res.Failed != 0 || res.Held != n || len(res.Causes) != 0 {
		t.Fatalf("%v: want all %d opened, verified and held", res, n)
	}
	if res.Elapsed <= 0 || res.ConnsPerSec <= 0 {
		t.Errorf("%v: want a positive elapsed time and rate", res)
	}
	if got := srv.Stats().Accepted; got != n {
		t.Errorf("server accepted %d connections, want %d", got, n)
	}
	waitFor(t, "the server to see every connection close", 10*time.Second, func() bool { return srv.Stats().Conns == 0 })
}

// Open holds the connections until Close.
func TestOpenClose(t *testing.T) {
	srv := serve(t, baseline.Echo)
	const n = 40
	set, err := loadgen.Open(context.Background(), loadgen.ConnsConfig{Addr: srv.Addr(), N: n})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if set.Len() != n || set.Result().Verified != n {
		t.Fatalf("Open: %d held, %v; want %d verified and held", set.Len(), set.Result(), n)
	}
	// Every connection was verified, so the server has registered each.
	if got := srv.Stats().Conns; got != n {
		t.Errorf("server has %d connections while %d are held", got, n)
	}
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to see every connection close", 5*time.Second, func() bool { return srv.Stats().Conns == 0 })
}

// A broadcast server never returns a connection's own frame; it sends it
// the others'. Verification must fail every connection, by a wrong reply or
// by none at all.
func TestConnsWrongReply(t *testing.T) {
	srv := serve(t, baseline.Broadcast)
	const n = 10
	res, err := loadgen.Conns(context.Background(), loadgen.ConnsConfig{
		Addr: srv.Addr(), N: n, VerifyTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Conns: %v", err)
	}
	if res.Opened != n || res.Verified != 0 || res.Failed != n || res.Held != 0 {
		t.Fatalf("%v: want %d opened, none verified", res, n)
	}
	if res.Causes["verify: wrong reply"] == 0 {
		t.Errorf("causes %v: want some wrong replies", res.Causes)
	}
}

func TestConnsRefused(t *testing.T) {
	addr := closedAddr(t)
	res, err := loadgen.Conns(context.Background(), loadgen.ConnsConfig{Addr: addr, N: 5})
	if err != nil {
		t.Fatalf("Conns: %v", err)
	}
	if res.Opened != 0 || res.Failed != 5 || res.Causes["dial: connection refused"] != 5 {
		t.Errorf("%v: want 5 refused dials", res)
	}
}

// Cancelling ends the hold early, and everything is closed.
func TestConnsHoldCancel(t *testing.T) {
	srv := serve(t, baseline.Echo)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 20
	res, err := loadgen.Conns(ctx, loadgen.ConnsConfig{
		Addr: srv.Addr(), N: n, Hold: time.Hour,
		Progress: func(p loadgen.Progress) {
			if p.Received == n {
				cancel()
			}
		},
		ProgressInterval: 10 * time.Millisecond,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Conns: error %v, want context.Canceled", err)
	}
	if res.Verified != n {
		t.Errorf("%v: want %d verified", res, n)
	}
	waitFor(t, "the server to see every connection close", 5*time.Second, func() bool { return srv.Stats().Conns == 0 })
}

func TestConnsConfigErrors(t *testing.T) {
	for _, cfg := range []loadgen.ConnsConfig{
		{N: 1},
		{Addr: "127.0.0.1:1"},
		{Addr: "127.0.0.1:1", N: 1, Hold: -1},
	} {
		if _, err := loadgen.Conns(context.Background(), cfg); !errors.Is(err, loadgen.ErrConfig) {
			t.Errorf("Conns(%+v): error %v, want ErrConfig", cfg, err)
		}
	}
}
