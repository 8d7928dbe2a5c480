// Package gnet_test calibrates hydrogen's echo benchmark against gnet, a
// mature epoll framework for Go: the netpoll echo server, the
// goroutine-per-connection baseline and gnet's echo run as sub-benchmarks
// of one run, under the same load generator and the same load as
// BenchmarkEcho in package netpoll. A figure for netpoll is only as good as
// the yardstick beside it; gnet shows what a well-tuned event loop reaches
// on the same machine.
//
// It is a module of its own so that gnet and its dependencies never enter
// the broker's go.mod.
package gnet_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
	"github.com/hydrogen-mq/hydrogen/netpoll"
)

// TestMain fails the run if a server leaves a goroutine behind. gnet starts
// its worker pool's goroutines when its package is initialised, before
// TestMain: they are not a server's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// servers are the echo servers under test, in the order they run. Each
// start function serves on a free loopback port, returns its address and
// stops the server, freeing the port, in tb's cleanup.
var servers = []struct {
	name  string
	start func(testing.TB) string
}{
	{"netpoll", startNetpoll},
	{"baseline", startBaseline},
	{"gnet-multicore", startGnet(gnet.WithMulticore(true))},
	{"gnet-1loop", startGnet(gnet.WithNumEventLoop(1))},
}

// BenchmarkEcho: 50 connections × 16 frames in flight, 64-byte payloads;
// one op is 10,000 round trips, as in package netpoll's BenchmarkEcho.
func BenchmarkEcho(b *testing.B) {
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) { benchecho.Run(b, s.start(b), nil, 50, 16, 10_000) })
	}
}

// TestServersEcho checks the harness: every server echoes frames intact
// and in order (loadgen checks each reply's connection and sequence
// number) and frees its port when stopped.
func TestServersEcho(t *testing.T) {
	for _, s := range servers {
		var addr string
		t.Run(s.name, func(t *testing.T) {
			addr = s.start(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := loadgen.Echo(ctx, loadgen.EchoConfig{
				Addr: addr, Conns: 2, InFlight: 1, PayloadSize: benchecho.Payload, Count: 100,
			})
			if err != nil || res.Errors != 0 || res.Messages != 100 {
				t.Fatalf("Echo: %v; %v", err, res)
			}
		})
		if addr == "" {
			continue // the subtest failed to start the server and said why
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s: %s still accepts connections after the server stopped", s.name, addr)
		}
	}
}

// netpollEcho sends every frame straight back, as package netpoll's
// benchmark handler does.
type netpollEcho struct{}

func (netpollEcho) OnOpen(*netpoll.Conn) {}

func (netpollEcho) OnFrames(c *netpoll.Conn, b *netpoll.Batch) {
	for _, f := range b.Frames {
		c.Send(f)
	}
	b.Release()
}

func (netpollEcho) OnClose(*netpoll.Conn, error) {}

func startNetpoll(tb testing.TB) string {
	s, err := netpoll.Listen(netpoll.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, netpollEcho{})
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	tb.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			tb.Errorf("netpoll Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			tb.Errorf("netpoll Serve: %v", err)
		}
	})
	return s.Addr().String()
}

func startBaseline(tb testing.TB) string {
	s, err := baseline.Listen("127.0.0.1:0", baseline.Echo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("baseline Close: %v", err)
		}
	})
	return s.Addr()
}

// gnetEcho is gnet's own echo: whatever one read brought, written back
// with one write. The stream is echoed byte for byte, so hydrogen's frames
// come back whole without gnet decoding them.
type gnetEcho struct {
	gnet.BuiltinEventEngine
	booted chan gnet.Engine
}

// OnBoot runs once the listener is bound and listening, before the event
// loops start: connections made from now on wait in the backlog.
func (e *gnetEcho) OnBoot(eng gnet.Engine) gnet.Action {
	e.booted <- eng
	return gnet.None
}

func (*gnetEcho) OnTraffic(c gnet.Conn) gnet.Action {
	// Next(-1) takes everything buffered and cannot fail. A failed Write
	// has closed the connection already, and the load generator counts
	// the missing replies.
	buf, _ := c.Next(-1)
	c.Write(buf)
	return gnet.None
}

// startGnet returns a start function for a gnet echo engine with opts.
//
// Port 0 works with gnet, which does not report the port it bound, so the
// address is read from a duplicate of the listener's fd. The engine is
// stopped with Engine.Stop rather than the deprecated gnet.Stop, which
// finds the engine by its address string and does not know it until the
// event loops have started, some time after OnBoot.
func startGnet(opts ...gnet.Option) func(testing.TB) string {
	return func(tb testing.TB) string {
		h := &gnetEcho{booted: make(chan gnet.Engine, 1)}
		log := new(gnetLog)
		ran := make(chan error, 1)
		go func() {
			ran <- gnet.Run(h, "tcp://127.0.0.1:0", append([]gnet.Option{gnet.WithLogger(log)}, opts...)...)
		}()
		var eng gnet.Engine
		select {
		case eng = <-h.booted:
		case err := <-ran:
			tb.Fatalf("gnet.Run returned before OnBoot: %v", err)
		}
		tb.Cleanup(func() {
			// Stop polls for the engine's end every 500 ms: stopping
			// takes up to half a second, outside the measurement.
			if err := eng.Stop(context.Background()); err != nil {
				tb.Errorf("gnet Stop: %v", err)
			}
			if err := <-ran; err != nil {
				tb.Errorf("gnet.Run: %v", err)
			}
			log.report(tb)
		})
		addr, err := gnetAddr(eng)
		if err != nil {
			tb.Fatal(err)
		}
		return addr
	}
}

// gnetAddr returns the address eng's listener is bound to.
func gnetAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", fmt.Errorf("gnet Engine.Dup: %w", err)
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", fmt.Errorf("getsockname of gnet's listener: %w", err)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return "", fmt.Errorf("gnet's listener is bound to a %T, want IPv4", sa)
	}
	return net.JoinHostPort(net.IP(in4.Addr[:]).String(), strconv.Itoa(in4.Port)), nil
}

// gnetLog is the engine's logger. gnet's default logger prints its
// informational lines to stdout, amid the benchmark's results; this one
// drops them and keeps warnings and errors for report, so that an error
// inside gnet fails the run instead of scrolling past.
type gnetLog struct {
	mu       sync.Mutex
	warnings []string
	errors   []string
}

func (*gnetLog) Debugf(string, ...any) {}
func (*gnetLog) Infof(string, ...any)  {}

func (l *gnetLog) Warnf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warnings = append(l.warnings, fmt.Sprintf(format, args...))
}

func (l *gnetLog) Errorf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, fmt.Sprintf(format, args...))
}

// Fatalf is recorded as an error: the run fails in report rather than the
// process exiting with the benchmark half printed.
func (l *gnetLog) Fatalf(format string, args ...any) { l.Errorf(format, args...) }

// report logs the warnings and fails tb with the errors. Call it once
// the engine has stopped.
func (l *gnetLog) report(tb testing.TB) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.warnings {
		tb.Logf("gnet warning: %s", w)
	}
	for _, e := range l.errors {
		tb.Errorf("gnet error: %s", e)
	}
}
