package loadgen_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// corruptServer is an echo (or, with broadcast, a fan-out) server that
// flips the last byte of every payload, past every header the load
// generator stamps: only a check of the whole payload sees it.
func corruptServer(t testing.TB, broadcast bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				dec := wire.NewDecoder(wire.MaxPayload)
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					dec.Feed(buf[:n])
					var out []byte
					for {
						p, ok, err := dec.Next()
						if err != nil || !ok {
							break
						}
						p = append([]byte(nil), p...)
						p[len(p)-1] ^= 0xFF
						out, _ = wire.AppendFrame(out, p)
					}
					mu.Lock()
					for _, o := range conns {
						if (o == c) != broadcast {
							o.Write(out)
						}
					}
					mu.Unlock()
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestEchoCorruptPayload: a reply whose stamp, connection and sequence
// are right but whose later bytes differ is an error, not a round trip.
func TestEchoCorruptPayload(t *testing.T) {
	addr := corruptServer(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Echo(ctx, loadgen.EchoConfig{Addr: addr, Conns: 2, InFlight: 4, Count: 200})
	if err != nil {
		t.Fatalf("Echo: %v", err)
	}
	if res.Errors != 200 || res.Messages != 0 || !strings.Contains(res.FirstError, "corrupt") {
		t.Errorf("%v: want 200 errors naming the corruption and no round trips", res)
	}
}

// TestFanoutCorruptPayload: likewise for deliveries; the warm-up frames
// are corrupted too, so the run fails in its warm-up.
func TestFanoutCorruptPayload(t *testing.T) {
	addr := corruptServer(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{Addr: addr, Publishers: 1, Subscribers: 3, Count: 100})
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Fanout: %v, %v; want a warm-up error naming the corruption", err, res)
	}
}
