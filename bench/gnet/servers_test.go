package gnet_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// server is a server under test. echo and broadcast start it, in a child
// process (benchproc.Servers), listening on a free port of 127.0.0.1,
// with the application that sends every frame back to its sender or to
// every other connection; it runs until the process exits. The child is
// named name/echo or name/broadcast.
type server struct {
	name            string // its sub-benchmarks' name
	echo, broadcast func() (string, error)
}

// servers are the servers under test, in the order each benchmark runs
// them.
var servers = []server{
	{"broker", serveBroker(broker.Echo), serveBroker(broker.Broadcast)},
	{"gnet", serveGnetEcho, serveGnetBroadcast},
	{"baseline", serveBaseline(baseline.Echo), serveBaseline(baseline.Broadcast)},
}

// serveBroker starts the broker as the binary runs it: app per stream, on
// the event loops, a stream's actors made at its first frame and stopped
// again once it has gone quiet.
//
// Nothing needs raising for BenchmarkIdleConns's 19,000 connections from
// 127.0.0.1: Config.MaxConns and Config.MaxConnsPerIP default to 0, no
// cap, and the memory budget (Config.MaxMemory) bounds queued bytes,
// which idle connections do not have. The broker runs with its defaults
// in every benchmark.
func serveBroker(app func() *actor.Props) func() (string, error) {
	return func() (string, error) {
		b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return "", err
		}
		b.HandlePerStream(app(), broker.OnEventLoop(), broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet())
		go func() {
			// Serve returns only if it fails: nothing stops it in a
			// child, which ends by exiting.
			err := b.Serve(context.Background())
			fmt.Fprintf(os.Stderr, "broker: Serve returned: %v\n", err)
			os.Exit(1)
		}()
		return b.Addr().String(), nil
	}
}

func serveBaseline(mode baseline.Mode) func() (string, error) {
	return func() (string, error) {
		s, err := baseline.Listen("127.0.0.1:0", mode)
		if err != nil {
			return "", err
		}
		return s.Addr(), nil
	}
}

// gnetBoot hands the engine over once gnet has bound the listener,
// before the event loops start: connections made from then on wait in
// the backlog.
type gnetBoot struct {
	gnet.BuiltinEventEngine
	booted chan gnet.Engine
}

func (h *gnetBoot) OnBoot(eng gnet.Engine) gnet.Action {
	h.booted <- eng
	return gnet.None
}

// gnetEcho is gnet's own echo: whatever one read brought, written back
// with one write. The stream is echoed byte for byte, so frames come
// back whole without gnet decoding them.
type gnetEcho struct{ gnetBoot }

func (*gnetEcho) OnTraffic(c gnet.Conn) gnet.Action {
	// Next(-1) takes everything buffered and cannot fail. A failed Write
	// has closed the connection already, and the load generator counts
	// the missing replies.
	buf, _ := c.Next(-1)
	c.Write(buf)
	return gnet.None
}

// gnetBroadcast sends each frame to every other connection, as a skilled
// gnet user would write it: each read's complete frames are cut from the
// inbound buffer (an incomplete last frame stays there for the next
// read), copied once into one buffer, and that buffer goes to every
// other connection with one AsyncWrite each. AsyncWrite queues the write
// to the connection's own event loop, in order, so every connection gets
// a publisher's frames in the order sent. The buffer is shared by all
// the writes and never changed.
type gnetBroadcast struct {
	gnetBoot
	// mu guards conns and index: OnOpen and OnClose run on the event
	// loop of their connection, and OnTraffic reads the set on another.
	mu    sync.RWMutex
	conns []gnet.Conn
	index map[gnet.Conn]int // position in conns
}

func (h *gnetBroadcast) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	h.mu.Lock()
	h.index[c] = len(h.conns)
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	return nil, gnet.None
}

func (h *gnetBroadcast) OnClose(c gnet.Conn, _ error) gnet.Action {
	h.mu.Lock()
	if i, ok := h.index[c]; ok {
		last := len(h.conns) - 1
		h.conns[i] = h.conns[last]
		h.index[h.conns[i]] = i
		h.conns[last] = nil
		h.conns = h.conns[:last]
		delete(h.index, c)
	}
	h.mu.Unlock()
	return gnet.None
}

func (h *gnetBroadcast) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1) // everything buffered; cannot fail
	n, err := completeFrames(buf)
	if n > 0 {
		frames := make([]byte, n)
		copy(frames, buf[:n])
		c.Discard(n)
		h.mu.RLock()
		for _, o := range h.conns {
			if o != c {
				// An error means o is closing; its reader sees the
				// missing frames.
				_ = o.AsyncWrite(frames, nil)
			}
		}
		h.mu.RUnlock()
	}
	if err != nil {
		return gnet.Close // a protocol error closes the connection, as in the broker
	}
	return gnet.None
}

// errFrame is a malformed frame: a wrong START or END byte.
var errFrame = errors.New("malformed frame")

// completeFrames returns the length of the longest prefix of buf made of
// whole frames (docs/PROTOCOL.md: START, a 16-bit big-endian length, the
// payload, END), and errFrame if a malformed frame follows it.
func completeFrames(buf []byte) (int, error) {
	n := 0
	for len(buf)-n >= wire.HeaderSize {
		if buf[n] != wire.Start {
			return n, errFrame
		}
		size := wire.FrameSize(int(buf[n+1])<<8 | int(buf[n+2]))
		if len(buf)-n < size {
			break
		}
		if buf[n+size-1] != wire.End {
			return n, errFrame
		}
		n += size
	}
	return n, nil
}

func serveGnetEcho() (string, error) {
	h := &gnetEcho{gnetBoot{booted: make(chan gnet.Engine, 1)}}
	return serveGnet(h, h.booted)
}

func serveGnetBroadcast() (string, error) {
	h := &gnetBroadcast{gnetBoot: gnetBoot{booted: make(chan gnet.Engine, 1)}, index: make(map[gnet.Conn]int)}
	return serveGnet(h, h.booted)
}

// serveGnet runs h on a multicore gnet engine (one event loop per CPU)
// and returns its address once it has bound it.
func serveGnet(h gnet.EventHandler, booted <-chan gnet.Engine) (string, error) {
	ran := make(chan error, 1)
	go func() {
		ran <- gnet.Run(h, "tcp://127.0.0.1:0", gnet.WithMulticore(true), gnet.WithLogger(new(childLog)))
	}()
	var eng gnet.Engine
	select {
	case eng = <-booted:
	case err := <-ran:
		return "", fmt.Errorf("gnet.Run returned before OnBoot: %v", err)
	}
	go func() {
		// Nothing stops the engine in a child, which ends by exiting.
		err := <-ran
		fmt.Fprintf(os.Stderr, "gnet.Run returned: %v\n", err)
		os.Exit(1)
	}()
	return gnetAddr(eng)
}

// gnetAddr returns the address eng's listener is bound to. Port 0 works
// with gnet, which does not report the port it bound, so it is read from
// a duplicate of the listener's fd.
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

// childLog is gnet's logger in a child. gnet's default logger prints to
// stdout, which in a child carries benchproc's answers to the parent, so
// it must not be used. This one drops gnet's informational lines, prints
// the first few warnings to stderr, and ends the child on an error: gnet
// logs an error only when an event loop or the acceptor gives up, and a
// child that exits fails the benchmark (its next CPU reading, or its
// exit status) instead of carrying on half dead.
type childLog struct{ warnings atomic.Int32 }

// maxWarnings is how many warnings a child prints; the rest are dropped.
const maxWarnings = 10

func (*childLog) Debugf(string, ...any) {}
func (*childLog) Infof(string, ...any)  {}

func (l *childLog) Warnf(format string, args ...any) {
	switch n := l.warnings.Add(1); {
	case n <= maxWarnings:
		fmt.Fprintf(os.Stderr, "gnet warning: "+format+"\n", args...)
	case n == maxWarnings+1:
		fmt.Fprintln(os.Stderr, "gnet: further warnings dropped")
	}
}

func (*childLog) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gnet error: "+format+"\n", args...)
	os.Exit(3)
}

func (l *childLog) Fatalf(format string, args ...any) { l.Errorf(format, args...) }
