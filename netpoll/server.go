package netpoll

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
	"golang.org/x/sys/unix"
)

// Handler receives a server's connection events. Every method is called
// on the connection's loop goroutine, in order (OnOpen, any number of
// OnFrames, OnClose exactly once), and must not block: hand work to other
// goroutines and return.
type Handler interface {
	OnOpen(c *Conn)
	// OnFrames delivers the frames one read completed. The batch belongs
	// to the handler, which must Release it when done with its payloads.
	OnFrames(c *Conn, b *Batch)
	// OnClose reports why the connection closed; Send fails from now on.
	OnClose(c *Conn, err error)
}

// A QuietHandler is a Handler that is also told when a connection goes
// quiet: it has completed no frame for QuietTicks of its loop's ticks
// (about a second at the default tick; less when a time limit under two
// seconds makes the ticks shorter, see Config). OnQuiet is called on the
// connection's loop, by its tick, between OnOpen and OnClose — not for a
// connection the peer has half-closed, nor once the server is shutting
// down — and must not block. It returns whether it is done with this
// quiet spell: true, and it is not called again for the connection until
// it has completed another frame and gone quiet again; false, and it is
// called again at the next tick.
type QuietHandler interface {
	Handler
	OnQuiet(c *Conn) bool
}

// QuietTicks is how many ticks a connection must complete no frame before
// a QuietHandler hears that it is quiet. It is also how long an empty
// queue keeps its buffers (Conn's outbound arena).
const QuietTicks = quietTicks

// Config configures a Server. The zero value of each field means the
// default in its comment.
type Config struct {
	Addr           string        // "host:port" to listen on; required
	Loops          int           // event loops; default runtime.GOMAXPROCS(0)
	MaxPayload     int           // largest payload accepted from a client; default and maximum 65,535
	MaxConns       int           // connections open at once; default 0, no limit but the fd limit
	MaxConnsPerIP  int           // connections open at once from one IP address; default 0, no limit
	MaxPending     int           // outbound bytes queued per connection (see Overflow); default 4 MiB
	WriteTimeout   time.Duration // a queue that makes no write progress this long is a slow consumer; default 10s
	IdleTimeout    time.Duration // close a connection that completes no frame for this long; default 0, never
	FrameTimeout   time.Duration // a frame begun must be complete within this; default 30s
	TCPKeepAlive   time.Duration // keepalive probes after this idle, every this, 3 unanswered close; default 30s, negative off
	ReadBufferSize int           // bytes per read, per loop; default 64 KiB
	Logger         *slog.Logger  // default slog.Default()

	// MaxMemory bounds the bytes of every connection's outbound queue and
	// read buffers together (see the package documentation); default
	// DefaultMaxMemory().
	MaxMemory int64
	// Overflow is what happens when a connection's queue passes its share
	// of MaxPending: OverflowClose (the default) or OverflowThrottle.
	Overflow Overflow
	// TLS, when set, makes every connection TLS with this configuration
	// (see tls.go); the Handler hears of a connection once its handshake
	// is done. Default nil: plain TCP.
	TLS *tls.Config
	// TLSHandshakeTimeout bounds a TLS handshake, and a WebSocket's
	// upgrade; default 5s.
	TLSHandshakeTimeout time.Duration
	// Listeners are more addresses to serve on, each with its own
	// transport (TLS, WebSocket).
	Listeners []Listener

	// noLinger closes every socket at once (tests that need an fd
	// number back at the close).
	noLinger bool
}

// Defaults, where they are not obvious from Config's comments.
const (
	DefaultMaxPending          = 4 << 20
	DefaultWriteTimeout        = 10 * time.Second
	DefaultFrameTimeout        = 30 * time.Second
	DefaultTCPKeepAlive        = 30 * time.Second
	DefaultReadBufferSize      = 64 << 10
	DefaultTLSHandshakeTimeout = 5 * time.Second
)

// MinMaxMemory is the smallest memory budget: room for the largest queue
// of a few connections, so that a budget cannot be set below what one
// connection may legitimately hold.
const MinMaxMemory = 16 << 20

func (c *Config) setDefaults() error {
	if c.Addr == "" {
		return errors.New("netpoll: Config.Addr is required")
	}
	if c.Loops <= 0 {
		c.Loops = runtime.GOMAXPROCS(0)
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = wire.MaxPayload
	}
	if c.MaxPayload > wire.MaxPayload {
		return fmt.Errorf("netpoll: MaxPayload %d is over the wire's maximum %d", c.MaxPayload, wire.MaxPayload)
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("netpoll: MaxConns %d is negative", c.MaxConns)
	}
	if c.MaxConnsPerIP < 0 {
		return fmt.Errorf("netpoll: MaxConnsPerIP %d is negative", c.MaxConnsPerIP)
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPending < wire.FrameSize(wire.MaxPayload) {
		return fmt.Errorf("netpoll: MaxPending %d is less than one largest frame (%d bytes)", c.MaxPending, wire.FrameSize(wire.MaxPayload))
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("netpoll: IdleTimeout %v is negative", c.IdleTimeout)
	}
	if c.FrameTimeout < 0 {
		return fmt.Errorf("netpoll: FrameTimeout %v is negative", c.FrameTimeout)
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	if c.TCPKeepAlive == 0 {
		c.TCPKeepAlive = DefaultTCPKeepAlive
	}
	if c.TCPKeepAlive > 0 && c.TCPKeepAlive < time.Second {
		return fmt.Errorf("netpoll: TCPKeepAlive %v is under a second, the kernel's unit", c.TCPKeepAlive)
	}
	if c.MaxMemory < 0 {
		return fmt.Errorf("netpoll: MaxMemory %d is negative", c.MaxMemory)
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = DefaultMaxMemory()
	}
	if c.MaxMemory < MinMaxMemory {
		return fmt.Errorf("netpoll: MaxMemory %d is under the minimum %d", c.MaxMemory, MinMaxMemory)
	}
	if c.TLSHandshakeTimeout < 0 {
		return fmt.Errorf("netpoll: TLSHandshakeTimeout %v is negative", c.TLSHandshakeTimeout)
	}
	if c.TLSHandshakeTimeout == 0 {
		c.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	for i := range c.Listeners {
		if w := c.Listeners[i].WebSocket; w != nil {
			cp := *w
			if cp.PingInterval < 0 {
				return fmt.Errorf("netpoll: WebSocket PingInterval %v is negative", cp.PingInterval)
			}
			if cp.PingInterval == 0 {
				cp.PingInterval = DefaultPingInterval
			}
			c.Listeners[i].WebSocket = &cp
		}
	}
	if c.Overflow != OverflowClose && c.Overflow != OverflowThrottle {
		return fmt.Errorf("netpoll: unknown Overflow %d", c.Overflow)
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = DefaultReadBufferSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Server accepts connections and runs the event loops that serve them.
type Server struct {
	cfg   Config
	addr  net.Addr
	loops []*loop
	epoch time.Time // zero of every loop's clock
	mem   *budget

	nextID atomic.Uint64
	open   atomic.Int64 // connections accepted and not yet closed, for MaxConns

	addrs    []net.Addr
	limitLog logLimit
	wsLog    logLimit
	memLog   logLimit
	tlsLog   logLimit

	handshakes sync.WaitGroup // TLS handshake goroutines

	peerMu sync.Mutex
	peers  map[netip.Addr]int // open connections by address, with MaxConnsPerIP

	mu       sync.Mutex
	started  bool
	shutdown bool
	done     chan struct{}
	errs     []error
}

// Listen binds the address and prepares the loops; Serve starts them.
// Connections that arrive before Serve wait in the kernel's queue.
func Listen(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("netpoll: nil Handler")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	lns, err := listenAll(cfg)
	if err != nil {
		return nil, err
	}
	closeAll := func() {
		for _, ln := range lns {
			unix.Close(ln.fd)
		}
	}
	s := &Server{cfg: cfg, addr: lns[0].addr, done: make(chan struct{}), epoch: time.Now(), mem: newBudget(cfg.MaxMemory)}
	for _, ln := range lns {
		s.addrs = append(s.addrs, ln.addr)
	}
	if cfg.MaxConnsPerIP > 0 {
		s.peers = map[netip.Addr]int{}
	}
	// The tick enforces the time limits; it runs often enough that none is
	// overshot by more than an eighth.
	tick := min(cfg.WriteTimeout/8, cfg.FrameTimeout/8, 250*time.Millisecond)
	if cfg.IdleTimeout > 0 {
		tick = min(tick, cfg.IdleTimeout/8)
	}
	tick = max(tick, time.Millisecond)
	for i := range cfg.Loops {
		p, err := openPoller(s.epoch)
		if err != nil {
			for _, l := range s.loops {
				l.p.close()
			}
			closeAll()
			return nil, err
		}
		quiet, _ := h.(QuietHandler)
		s.loops = append(s.loops, &loop{
			idx:          i,
			srv:          s,
			p:            p,
			handler:      h,
			quiet:        quiet,
			log:          cfg.Logger,
			maxPending:   int64(cfg.MaxPending),
			stallMark:    int64(cfg.MaxPending) / 4 * 3,
			resumeMark:   int64(cfg.MaxPending) / 2,
			overflow:     cfg.Overflow,
			maxPayload:   cfg.MaxPayload,
			writeTimeout: int64(cfg.WriteTimeout),
			idleTimeout:  int64(cfg.IdleTimeout),
			frameTimeout: int64(cfg.FrameTimeout),
			tickEvery:    int64(tick),
			noLinger:     cfg.noLinger,
			buf:          make([]byte, cfg.ReadBufferSize),
		})
		if transports(cfg) {
			// TLS plaintext, and a whole WebSocket frame of the largest
			// payload beside a read's worth.
			s.loops[i].plain = make([]byte, max(cfg.ReadBufferSize, 2*wire.FrameSize(wire.MaxPayload)))
		}
	}
	for _, ln := range lns {
		ln.holders.Store(int32(len(s.loops)))
	}
	for _, l := range s.loops {
		l.lns, l.armed = lns, make([]bool, len(lns))
	}
	return s, nil
}

// transports reports whether any listener speaks TLS or WebSocket.
func transports(cfg Config) bool {
	if cfg.TLS != nil {
		return true
	}
	for _, l := range cfg.Listeners {
		if l.TLS != nil || l.WebSocket != nil {
			return true
		}
	}
	return false
}

// listenAll binds Config.Addr and Config.Listeners, or none of them.
func listenAll(cfg Config) ([]*listener, error) {
	specs := append([]Listener{{Addr: cfg.Addr, TLS: cfg.TLS}}, cfg.Listeners...)
	var lns []*listener
	frameRefusal, _ := wire.Encode([]byte(`{"error":"connection limit reached"}`))
	for _, sp := range specs {
		ln, err := listen(sp.Addr, cfg.TCPKeepAlive)
		if err != nil {
			for _, l := range lns {
				unix.Close(l.fd)
			}
			return nil, err
		}
		ln.tls, ln.ws = sp.TLS, sp.WebSocket
		ln.refusal = frameRefusal
		if ln.ws != nil {
			ln.refusal = []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			if ln.tls != nil {
				ln.refusal = nil // nothing readable without a handshake
			}
		} else if ln.tls != nil {
			ln.refusal = nil
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Addrs are the addresses of every listener: Config.Addr's first, then
// Config.Listeners' in order.
func (s *Server) Addrs() []net.Addr { return s.addrs }

// Addr is the address the server listens on, with the port the kernel
// chose when Config.Addr asked for port 0.
func (s *Server) Addr() net.Addr { return s.addr }

// Loops is the number of event loops.
func (s *Server) Loops() int { return len(s.loops) }

// Serve runs the loops and blocks until they have all ended after
// Shutdown, or one failed. It may be called once.
func (s *Server) Serve() error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("netpoll: Serve called twice")
	}
	s.started = true
	if s.shutdown {
		s.mu.Unlock()
		for _, l := range s.loops {
			l.closeListener()
			l.p.close()
		}
		close(s.done)
		return nil
	}
	s.mu.Unlock()
	for _, l := range s.loops {
		l.armListener()
	}
	var wg sync.WaitGroup
	for _, l := range s.loops {
		wg.Go(func() {
			if err := l.run(); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, err)
				s.mu.Unlock()
				// One failed loop takes the server down rather than
				// leaving its connections silently unserved.
				for _, o := range s.loops {
					o.control(ctlQuiesce | ctlDrain | ctlForce)
				}
			}
		})
	}
	wg.Wait()
	// Every connection is closed by now, so every handshake still running
	// fails on its closed pipe.
	s.handshakes.Wait()
	close(s.done)
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Quiesce stops accepting connections and reading from open ones; frames
// already read are still delivered, and Sends are still written. It is the
// first step of a graceful shutdown, letting the layer above finish the
// work in hand before Shutdown drains the queues.
func (s *Server) Quiesce() {
	for _, l := range s.loops {
		l.control(ctlQuiesce)
	}
}

// Shutdown stops accepting and reading, writes what is queued on each
// connection and closes it (reason ErrShutdown), and returns when every
// loop has ended. When ctx ends first, the remaining connections are
// closed at once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	started := s.started
	s.mu.Unlock()
	if !started {
		return nil // Serve will return at once
	}
	for _, l := range s.loops {
		l.control(ctlQuiesce | ctlDrain)
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	for _, l := range s.loops {
		l.control(ctlForce)
	}
	<-s.done
	return ctx.Err()
}

// Done is closed when Serve has returned.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stats sums the loops' counters. It is safe to call at any time.
func (s *Server) Stats() Stats {
	var st Stats
	for _, l := range s.loops {
		l.stats.addTo(&st)
	}
	st.MemoryUsed = s.mem.used.Load()
	st.MemoryLimit = s.mem.limit
	st.MemoryStalls = s.mem.stalls.Load()
	st.MemoryStalled = s.mem.stalled.Load()
	return st
}

// wakeLoops wakes every loop but from, so that each looks at a change of
// server-wide state (the memory budget's) at once.
func (s *Server) wakeLoops(from *loop) {
	for _, l := range s.loops {
		if l != from {
			l.p.trigger()
		}
	}
}

// admitPeer counts a new connection from remote's address, unless it is
// at MaxConnsPerIP. Called by the loop that accepts it.
func (s *Server) admitPeer(remote *net.TCPAddr) bool {
	if s.peers == nil {
		return true
	}
	ip := remote.AddrPort().Addr().Unmap()
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	if s.peers[ip] >= s.cfg.MaxConnsPerIP {
		return false
	}
	s.peers[ip]++
	return true
}

// forgetPeer undoes admitPeer for a connection that closed.
func (s *Server) forgetPeer(c *Conn) {
	if s.peers == nil {
		return
	}
	ip := c.remote.AddrPort().Addr().Unmap()
	s.peerMu.Lock()
	if n := s.peers[ip]; n <= 1 {
		delete(s.peers, ip)
	} else {
		s.peers[ip] = n - 1
	}
	s.peerMu.Unlock()
}
