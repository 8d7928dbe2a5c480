//go:build cgo

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/client"
)

// startEcho runs an echoing broker in this process on a loopback port and
// stops it when the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	b.HandlePerStream(broker.Echo())
	served := make(chan error, 1)
	go func() { served <- b.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b.Addr().String()
}

func dialConn(t *testing.T, addr string) *conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newConn(c)
}

func TestConnRecvKeeps(t *testing.T) {
	cn := dialConn(t, startEcho(t))
	for _, p := range []string{"hello, hydrogen", "next"} {
		if err := cn.c.Send([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, capacity := range []int{0, 4, 14} {
		var tooSmall *tooSmallError
		if _, err := cn.recv(ctx, capacity); !errors.As(err, &tooSmall) || tooSmall.need != 15 || tooSmall.cap != capacity {
			t.Fatalf("recv with room for %d: %v; want a *tooSmallError needing 15", capacity, err)
		}
	}
	for _, want := range []string{"hello, hydrogen", "next"} {
		if p, err := cn.recv(ctx, 15); err != nil || string(p) != want {
			t.Fatalf("recv = %q, %v; want %q", p, err, want)
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if p, err := cn.recv(short, 64); !errors.Is(err, errTimeout) {
		t.Fatalf("recv on a quiet connection = %q, %v; want errTimeout", p, err)
	}
}

// TestConnRecvConcurrent has several goroutines receive from one
// connection, with buffers too small for some frames: every frame must
// come out exactly once, and each goroutine's frames in the order sent.
func TestConnRecvConcurrent(t *testing.T) {
	const frames, receivers = 2000, 4
	cn := dialConn(t, startEcho(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	got := make([][]int, receivers)
	var mu sync.Mutex
	taken := 0
	for r := range receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			capacity := 8 + 8*r // the frames are 6 to 40 bytes long
			for {
				mu.Lock()
				if taken == frames {
					mu.Unlock()
					return
				}
				taken++ // claim a frame before waiting for it, so that no receiver waits for one that never comes
				mu.Unlock()
				p, err := cn.recv(ctx, capacity)
				// Kept: whoever receives next gets it, this goroutine or
				// another, which leaves the next frame, maybe longer.
				for room := capacity; ; {
					var tooSmall *tooSmallError
					if !errors.As(err, &tooSmall) {
						break
					}
					room = max(room, tooSmall.need)
					p, err = cn.recv(ctx, room)
				}
				if err != nil {
					t.Errorf("receiver %d: %v", r, err)
					return
				}
				n, err := strconv.Atoi(strings.TrimRight(string(p), "."))
				if err != nil {
					t.Errorf("receiver %d: frame %q", r, p)
					return
				}
				got[r] = append(got[r], n)
			}
		}()
	}
	for i := range frames {
		p := fmt.Sprintf("%d%s", i, strings.Repeat(".", 2+i%37))
		if err := cn.c.Send([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()

	seen := make([]bool, frames)
	for r, ns := range got {
		for k, n := range ns {
			if n < 0 || n >= frames || seen[n] {
				t.Fatalf("receiver %d got frame %d twice or out of range", r, n)
			}
			seen[n] = true
			if k > 0 && n <= ns[k-1] {
				t.Errorf("receiver %d got frame %d after %d", r, n, ns[k-1])
			}
		}
	}
	for n, ok := range seen {
		if !ok {
			t.Errorf("frame %d was not received", n)
		}
	}
}

func TestConnStats(t *testing.T) {
	cn := dialConn(t, startEcho(t))

	// Too small: the reply is kept, and the next call returns it without
	// a new request (so with any span).
	_, err := cn.stats(0.01, 8)
	var tooSmall *tooSmallError
	if !errors.As(err, &tooSmall) || tooSmall.need <= 8 {
		t.Fatalf("stats with room for 8 bytes: %v; want a *tooSmallError", err)
	}
	raw, err := cn.stats(float32(math.NaN()), tooSmall.need)
	if err != nil || len(raw)+1 != tooSmall.need {
		t.Fatalf("stats with room for %d = %d bytes, %v", tooSmall.need, len(raw), err)
	}
	var reply map[string]json.RawMessage
	if err := json.Unmarshal(raw, &reply); err != nil || reply["up_time"] == nil {
		t.Fatalf("kept reply is not a telemetry reply (%v): %s", err, raw)
	}

	// Refused spans, and the connection carries on.
	for _, span := range []float32{float32(math.NaN()), 0, -1, float32(math.Inf(1)), 61} {
		var refused *client.BrokerError
		if _, err := cn.stats(span, 1<<16); !errors.As(err, &refused) || codeOf(err) != codeBroker {
			t.Errorf("stats(%v) = %v; want a *client.BrokerError", span, err)
		}
	}
	if raw, err := cn.stats(0.01, 1<<16); err != nil || !strings.Contains(string(raw), `"up_time"`) {
		t.Errorf("stats after the refusals = %s, %v", raw, err)
	}
}

func TestStatsWait(t *testing.T) {
	tests := []struct {
		seconds float32
		want    time.Duration
	}{
		{0.5, 500*time.Millisecond + statsGrace},
		{60, time.Minute + statsGrace},
		{1e-9, 1 + statsGrace}, // rounded up to whole nanoseconds, as the broker does
		{0, statsGrace},
		{-1, statsGrace},
		{float32(math.NaN()), statsGrace},
		{float32(math.Inf(1)), maxStatsWait + statsGrace},
		{math.MaxFloat32, maxStatsWait + statsGrace},
	}
	for _, tt := range tests {
		if got := statsWait(tt.seconds); got != tt.want {
			t.Errorf("statsWait(%v) = %v, want %v", tt.seconds, got, tt.want)
		}
	}
}

func TestTable(t *testing.T) {
	tb := table{conns: make(map[int64]*conn)}
	a, b := &conn{}, &conn{}
	ha, hb := tb.add(a), tb.add(b)
	if ha != 1 || hb != 2 {
		t.Fatalf("handles %d, %d; want 1, 2", ha, hb)
	}
	if tb.get(ha) != a || tb.get(hb) != b || tb.get(0) != nil || tb.get(-1) != nil || tb.get(3) != nil {
		t.Fatal("get returned the wrong connection")
	}
	if tb.remove(ha) != a || tb.remove(ha) != nil || tb.get(ha) != nil {
		t.Fatal("remove did not take the handle out, once")
	}
	if hc := tb.add(&conn{}); hc == ha || hc == hb {
		t.Fatalf("handle %d was given out again", hc)
	}
}
