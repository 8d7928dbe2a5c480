// Command clusterscale is the load generator of scripts/scale-cluster: it
// opens many connections to one broker run with --app broadcast, verifies
// each with a round trip (a 0x0D telemetry request, which the broker
// answers to the sender whatever the application), then waits for one
// broadcast to reach every connection and reports when the last one got
// it. With -publish it also sends that broadcast, stamped with the time.
//
// It prints JSON lines on stdout: {"event":"ready",...} once every
// connection is verified, {"event":"received",...} once the broadcast has
// reached all of them (or -timeout passed).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1337", "broker address")
	n := flag.Int("n", 1000, "connections")
	src := flag.String("src", "", "local IP to connect from (e.g. 127.0.0.2), for more source ports")
	conc := flag.Int("conc", 64, "connections being opened and verified at once")
	goFile := flag.String("go", "", "publish the broadcast once this file exists")
	publish := flag.Bool("publish", false, "send the broadcast (from one extra connection) once -go exists")
	timeout := flag.Duration("timeout", 120*time.Second, "give up waiting for the broadcast after this long")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d := net.Dialer{Timeout: 10 * time.Second}
	if *src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(*src)}
	}

	conns := make([]net.Conn, *n)
	var next, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n || ctx.Err() != nil {
					return
				}
				c, err := d.DialContext(ctx, "tcp", *addr)
				if err == nil {
					err = roundTrip(c)
					if err != nil {
						c.Close()
					}
				}
				if err != nil {
					if failed.Add(1) <= 5 {
						fmt.Fprintf(os.Stderr, "clusterscale: connection %d: %v\n", i, err)
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	verified := 0
	for _, c := range conns {
		if c != nil {
			verified++
		}
	}
	emit(map[string]any{"event": "ready", "addr": *addr, "verified": verified, "failed": failed.Load(), "seconds": time.Since(start).Seconds()})

	// Every connection waits for the broadcast.
	var got atomic.Int64
	var lastNano atomic.Int64
	var sentNano atomic.Int64
	all := make(chan struct{})
	for _, c := range conns {
		if c == nil {
			continue
		}
		go func() {
			var dec wire.Decoder
			dec.Init(wire.MaxPayload)
			buf := make([]byte, 512)
			for {
				k, err := c.Read(buf)
				if k > 0 {
					dec.Feed(buf[:k])
					for {
						p, ok, perr := dec.Next()
						if perr != nil || !ok {
							break
						}
						if len(p) == 12 && string(p[:4]) == "scl!" {
							now := time.Now().UnixNano()
							sentNano.Store(int64(binary.BigEndian.Uint64(p[4:])))
							for {
								l := lastNano.Load()
								if now <= l || lastNano.CompareAndSwap(l, now) {
									break
								}
							}
							if got.Add(1) == int64(verified) {
								close(all)
							}
						}
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}

	if *publish {
		for *goFile != "" {
			if _, err := os.Stat(*goFile); err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		c, err := d.DialContext(ctx, "tcp", *addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "clusterscale: publisher:", err)
			os.Exit(1)
		}
		p := make([]byte, 12)
		copy(p, "scl!")
		binary.BigEndian.PutUint64(p[4:], uint64(time.Now().UnixNano()))
		f, _ := wire.Encode(p)
		if _, err := c.Write(f); err != nil {
			fmt.Fprintln(os.Stderr, "clusterscale: publishing:", err)
			os.Exit(1)
		}
		emit(map[string]any{"event": "published", "addr": *addr})
		defer c.Close()
	}

	select {
	case <-all:
	case <-time.After(*timeout):
	case <-ctx.Done():
	}
	res := map[string]any{"event": "received", "addr": *addr, "received": got.Load(), "of": verified}
	if s, l := sentNano.Load(), lastNano.Load(); s > 0 && l > 0 {
		res["last_after_ms"] = math.Round(float64(l-s)/1e4) / 100
	}
	emit(res)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// roundTrip sends a telemetry request for the shortest span and waits
// for its reply.
func roundTrip(c net.Conn) error {
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	f, _ := wire.AppendFrame(nil, wire.AppendTelemetryRequest(nil, 0.001))
	if _, err := c.Write(f); err != nil {
		return err
	}
	var dec wire.Decoder
	dec.Init(wire.MaxPayload)
	buf := make([]byte, 4096)
	for {
		k, err := c.Read(buf)
		if k > 0 {
			dec.Feed(buf[:k])
			p, ok, perr := dec.Next()
			if perr != nil {
				return perr
			}
			if ok {
				if len(p) == 0 || p[0] != '{' {
					return fmt.Errorf("unexpected reply %q", p)
				}
				return c.SetDeadline(time.Time{})
			}
		}
		if err != nil {
			return err
		}
	}
}

var outMu sync.Mutex

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}
