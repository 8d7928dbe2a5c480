package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/actors/cluster"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/telemetry"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// Config configures a Broker. The zero value of every field means the
// default in its comment, so Config{} is a broker on 0.0.0.0:1337.
type Config struct {
	// Addr is the TCP address to listen on; default "0.0.0.0:1337". Port
	// 0 picks a free port (see Broker.Addr).
	Addr string
	// Loops is the number of epoll event loops; default one per CPU
	// (runtime.GOMAXPROCS).
	Loops int
	// MaxPayload is the largest frame payload a client may send, in
	// bytes; default and maximum 65,535, minimum 5 (a telemetry request
	// is 5 bytes). A longer frame is a protocol error that closes its
	// connection.
	MaxPayload int
	// MaxConns caps open connections; default 0, no cap but the process's
	// file descriptor limit. A connection past it gets one error frame
	// ({"error":"connection limit reached"}) and is closed.
	MaxConns int
	// MaxConnsPerIP caps the connections open at once from one IP
	// address, refused as at MaxConns; default 0, no cap.
	MaxConnsPerIP int
	// MaxPending bounds the outbound bytes queued for one stream. A send
	// that takes a stream's queue past 3/4 of it stalls the stream that
	// caused it (see Overflow); under OverflowClose a stream whose queue
	// would pass it is closed as a slow consumer. Default 4 MiB.
	MaxPending int
	// WriteTimeout closes a stream as a slow consumer when its outbound
	// queue has made no write progress for this long; default 10s.
	WriteTimeout time.Duration
	// Overflow is what happens when a stream cannot read as fast as it is
	// sent to: OverflowClose (the default) stalls its producers briefly
	// and then closes it; OverflowThrottle stalls its producers for as
	// long as it keeps reading, losing nothing.
	Overflow Overflow
	// MaxMemory bounds the bytes queued for every stream plus the read
	// buffers, for the whole broker (see docs/PROTOCOL.md and the
	// README's Limits section). Default DefaultMaxMemory(): a quarter of
	// the machine's or the cgroup's memory, at most 4 GiB.
	MaxMemory int64
	// FrameTimeout closes a stream that began a frame and has not
	// completed it within this long; default 30s.
	FrameTimeout time.Duration
	// TCPKeepAlive turns on TCP keepalive for every connection: probes
	// after this long idle, every this long, and 3 unanswered close it.
	// Default 30s; negative turns it off.
	TCPKeepAlive time.Duration
	// MaxInbound bounds the frames of one stream handed to actors and not
	// yet handled; past it, reading that stream pauses until half have
	// been handled, so TCP pushes back on the sender. Default 1024.
	MaxInbound int
	// MaxSpan is the longest telemetry span a 0x0D request may ask for;
	// default 60s.
	MaxSpan time.Duration
	// IdleTimeout closes a stream that completes no frame for this long;
	// default 0, never.
	IdleTimeout time.Duration
	// DrainTimeout bounds a graceful shutdown started by cancelling
	// Serve's context; default 10s. Shutdown takes its own context.
	DrainTimeout time.Duration
	// Logger receives the broker's logs, protoactor's included; default
	// slog.Default().
	Logger *slog.Logger
	// Authenticator, when set, makes every stream authenticate: its first
	// frame is its credential, which the Authenticator checks before any
	// other frame of it reaches an application or the telemetry actor,
	// and the broker's first frame to it answers (docs/PROTOCOL.md).
	// NewTokens and NewJWT are the built-in ones; Credentials combines
	// several. Default nil: no authentication.
	Authenticator Authenticator
	// AuthTimeout closes a stream that has not been authenticated this
	// long after it connected; default 5s.
	AuthTimeout time.Duration
	// TLS, when set, makes the client port TLS with this configuration:
	// the event loops drive crypto/tls themselves, so a TLS stream keeps
	// every property of a plain one. With client certificates required
	// (ClientAuth) and no Authenticator, a stream's identity is its
	// certificate's subject. The handshake must be done within
	// TLSHandshakeTimeout (default 5s). Default nil: plain TCP.
	TLS                 *tls.Config
	TLSHandshakeTimeout time.Duration
	// WebSocketAddr, when set, also serves clients over WebSocket on this
	// address (over TLS, wss, when TLS is set): each binary message is one
	// payload, a text message its UTF-8 bytes, and the broker answers in
	// binary messages (docs/PROTOCOL.md). A WebSocket stream is the same
	// Stream to applications as any other. WebSocketOrigins are the Origin
	// patterns allowed to upgrade (default: the request's own host; "*"
	// any); WebSocketPingInterval is how long a silent connection waits
	// before a ping, and an unanswered ping closes it (default 30s).
	WebSocketAddr         string
	WebSocketOrigins      []string
	WebSocketPingInterval time.Duration
	// DebugPayloads overwrites each Received payload with '~' once the
	// application's Receive has returned, so that a slice of it kept by
	// mistake (the payload is valid only during Receive) shows garbage at
	// once instead of another frame's bytes later on. Also set by the
	// environment variable HYDROGEN_DEBUG_PAYLOADS=1. Costs a pass over
	// every payload: for development, not production.
	DebugPayloads bool
	// Cluster, when set, joins this broker to a cluster of brokers (see
	// ClusterConfig): every broadcast through the StreamList also
	// reaches the streams of every other node, a group's broadcast the
	// group's members on every node, and theirs reach this node's. Its
	// Provider chooses how members are found: nil is health checking of
	// Cluster.Peers over the cluster port itself; set a consul, etcd or
	// Kubernetes provider from protoactor-go's cluster/clusterproviders
	// instead. Its Logger defaults to Logger.
	// Default nil: the broker runs alone and pays nothing for clustering.
	Cluster *ClusterConfig
}

// Defaults of Config.
const (
	DefaultAddr         = "0.0.0.0:1337"
	DefaultDrainTimeout = 10 * time.Second
)

// Overflow is the policy for a stream that cannot read as fast as it is
// sent to (Config.Overflow).
type Overflow = netpoll.Overflow

// The overflow policies.
const (
	// OverflowClose stalls the producer that fills a stream's queue past
	// 3/4 of MaxPending for 2 to 5 ms per read, and closes a stream whose
	// queue would pass MaxPending as a slow consumer.
	OverflowClose = netpoll.OverflowClose
	// OverflowThrottle stalls the producer for as long as the queue stays
	// full: lossless for every stream that keeps reading; a stream is
	// closed only when it makes no write progress for WriteTimeout.
	OverflowThrottle = netpoll.OverflowThrottle
)

// DefaultMaxMemory is the memory budget when Config.MaxMemory is 0.
func DefaultMaxMemory() int64 { return netpoll.DefaultMaxMemory() }

// Broker is a hydrogen broker: the event loops that carry frames and the
// actors that handle them.
type Broker struct {
	cfg   Config
	srv   *netpoll.Server
	rt    *actorRuntime
	start time.Time

	mu        sync.Mutex
	shared    *actor.Props
	perStream *actor.Props
	onLoop    bool // run perStream on the event loops
	lazy      bool // spawn a stream's actors at its first frame
	release   bool // stop a quiet stream's actors, spawn them again at its next frame
	serving   bool
	stopOnce  sync.Once
	stopErr   error
	stopped   chan struct{}
	draining  atomic.Bool
	node      *cluster.Node // nil when the broker runs alone
}

// New validates cfg, binds the listening address and starts the actor
// system. Connections wait in the kernel's queue until Serve.
func New(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxPayload != 0 && (cfg.MaxPayload < wire.TelemetryRequestSize || cfg.MaxPayload > wire.MaxPayload) {
		return nil, fmt.Errorf("broker: MaxPayload %d is outside %d..%d (a telemetry request is %d bytes)",
			cfg.MaxPayload, wire.TelemetryRequestSize, wire.MaxPayload, wire.TelemetryRequestSize)
	}
	if cfg.MaxSpan < 0 {
		return nil, fmt.Errorf("broker: MaxSpan %v is negative", cfg.MaxSpan)
	}
	if cfg.MaxInbound < 0 {
		return nil, fmt.Errorf("broker: MaxInbound %d is negative", cfg.MaxInbound)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := &Broker{cfg: cfg, start: time.Now(), stopped: make(chan struct{})}
	if cfg.AuthTimeout < 0 {
		return nil, fmt.Errorf("broker: AuthTimeout %v is negative", cfg.AuthTimeout)
	}
	rt, err := newRuntime(runtimeConfig{
		MaxInbound:    cfg.MaxInbound,
		MaxSpan:       cfg.MaxSpan,
		Shards:        cfg.Loops,
		Logger:        cfg.Logger,
		Counters:      b.ioCounters,
		Cluster:       b.clusterInfo,
		Start:         b.start,
		Authenticator: cfg.Authenticator,
		AuthTimeout:   cfg.AuthTimeout,
		DebugPayloads: cfg.DebugPayloads || os.Getenv("HYDROGEN_DEBUG_PAYLOADS") == "1",
	})
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.rt = rt
	if cfg.Cluster != nil {
		if err := b.joinCluster(*cfg.Cluster); err != nil {
			rt.Shutdown()
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	srv, err := netpoll.Listen(netpoll.Config{
		Addr:          cfg.Addr,
		Loops:         cfg.Loops,
		MaxPayload:    cfg.MaxPayload,
		MaxConns:      cfg.MaxConns,
		MaxConnsPerIP: cfg.MaxConnsPerIP,
		MaxPending:    cfg.MaxPending,
		WriteTimeout:  cfg.WriteTimeout,
		IdleTimeout:   cfg.IdleTimeout,
		FrameTimeout:  cfg.FrameTimeout,
		TCPKeepAlive:  cfg.TCPKeepAlive,
		MaxMemory:     cfg.MaxMemory,
		Overflow:      cfg.Overflow,
		Logger:        cfg.Logger,

		TLS:                 cfg.TLS,
		TLSHandshakeTimeout: cfg.TLSHandshakeTimeout,
		Listeners:           listeners(cfg),
	}, rt)
	if err != nil {
		lctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
		_ = b.leaveCluster(lctx)
		cancel()
		rt.Shutdown()
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.srv = srv
	return b, nil
}

// listeners are the netpoll listeners beyond Config.Addr.
func listeners(cfg Config) []netpoll.Listener {
	if cfg.WebSocketAddr == "" {
		return nil
	}
	return []netpoll.Listener{{
		Addr: cfg.WebSocketAddr,
		TLS:  cfg.TLS,
		WebSocket: &netpoll.WebSocket{
			Origins:      cfg.WebSocketOrigins,
			PingInterval: cfg.WebSocketPingInterval,
		},
	}}
}

// joinCluster starts this broker's cluster node. Broadcasts go out
// through the StreamList's remote hook, published as the stream that
// sent them; what the other nodes publish is encoded once and queued to
// every local stream, without being published again.
func (b *Broker) joinCluster(cc cluster.Config) error {
	if cc.Logger == nil {
		cc.Logger = b.cfg.Logger
	}
	streams := b.rt.Streams()
	if cc.Conns == nil {
		cc.Conns = streams.Len
	}
	node, err := cluster.Start(cc, func(_ uint64, group string, payload []byte) {
		_, _ = streams.deliverRemote(group, payload) // a payload over the limit came from no broker of ours
	})
	if err != nil {
		return err
	}
	b.node = node
	streams.setRemote(func(from *Stream, group string, payload []byte) {
		var id uint64
		if from != nil {
			id = from.ID()
		}
		_ = node.PublishGroup(id, group, payload) // ErrFull is counted and logged by the node
	})
	streams.set.known = node.InterestKnown
	streams.set.whenKnown = node.WhenKnown
	streams.set.groups.setInterest(node.SetInterest)
	return nil
}

// ClusterView shows the broker's node in its cluster: its name, state,
// members and counters. It can neither publish nor stop the node.
type ClusterView struct{ n *cluster.Node }

// Name is the cluster's name.
func (v *ClusterView) Name() string { return v.n.Name() }

// State is where the node stands in its cluster.
func (v *ClusterView) State() ClusterState { return v.n.State() }

// Members are the cluster's members, this node included.
func (v *ClusterView) Members() []ClusterMember { return v.n.Members() }

// Stats are the node's counters.
func (v *ClusterView) Stats() ClusterStats { return v.n.Stats() }

// Cluster shows the broker's cluster node; nil when the broker runs
// alone.
func (b *Broker) Cluster() *ClusterView {
	if b.node == nil {
		return nil
	}
	return &ClusterView{b.node}
}

// clusterInfo is the cluster part of a telemetry reply.
func (b *Broker) clusterInfo() *telemetry.Cluster {
	if b.node == nil {
		return nil
	}
	ms := b.node.Members()
	c := &telemetry.Cluster{Name: b.node.Name(), State: b.node.State().String(), Members: make([]telemetry.Member, len(ms))}
	for i, m := range ms {
		c.Members[i].Address = m.Address
		if m.Conns >= 0 {
			n := int64(m.Conns)
			c.Members[i].Clients = &n
		}
	}
	return c
}

// leaveCluster leaves the cluster, if the broker is in one.
func (b *Broker) leaveCluster(ctx context.Context) error {
	if b.node == nil {
		return nil
	}
	return b.node.Shutdown(ctx)
}

// Handle makes props the application: one actor, spawned when Serve
// starts, that receives Connected, Received and Closed for every stream.
// A panic in it is logged with its stack and the actor restarts; the
// frame that panicked is not retried. If it stops itself, every stream has
// lost its handler: the broker closes them all with ErrAppStopped
// and shuts down; Serve returns ErrAppStopped.
func (b *Broker) Handle(props *actor.Props) {
	b.mu.Lock()
	b.shared, b.perStream, b.onLoop, b.lazy, b.release = props, nil, false, false, false
	b.mu.Unlock()
}

// HandlePerStream makes props the application, spawned once per stream
// (Erlang style): each stream's actor receives only that stream's
// messages and stops after Closed. Streams are then handled in parallel.
// An actor that stops itself (ctx.Stop(ctx.Self())) ends its stream: the
// broker closes it with the reason ErrAppStopped, and frames that
// arrived after the stop are dropped.
func (b *Broker) HandlePerStream(props *actor.Props, opts ...HandleOption) {
	var o handleOptions
	for _, opt := range opts {
		opt(&o)
	}
	b.mu.Lock()
	b.shared, b.perStream, b.onLoop, b.lazy, b.release = nil, props, o.onLoop, o.lazy, o.release
	b.mu.Unlock()
}

// A HandleOption adjusts how HandlePerStream runs the application.
type HandleOption func(*handleOptions)

type handleOptions struct{ onLoop, lazy, release bool }

// OnEventLoop runs each stream's application actor on that stream's event
// loop, where its connection actor runs, instead of on the pool of worker
// goroutines: a frame reaches the handler with no goroutine handoff, and
// the replies to one read leave together in one writev — the fastest way
// to run a handler. The handler must never block (no I/O, no waiting on
// locks, channels or futures), because while it runs no other connection
// on its loop is read or written. The built-in Echo and Broadcast are such
// handlers, and the broker binary runs them so.
func OnEventLoop() HandleOption { return func(o *handleOptions) { o.onLoop = true } }

// SpawnOnFirstFrame makes a stream's actors — its connection actor and its
// application actor — when its first frame arrives instead of when it
// opens, and Connected then reaches the application just before that
// frame's Received. A stream that connects and never sends costs no actor
// at all: a broker holding many quiet connections (subscribers that only
// listen, say) holds a fraction of the memory per connection. Broadcasts
// reach such a stream all the same: the StreamList holds every open
// stream from the start. A stream that closes before its first frame
// never meets the application: no Connected, no Closed. Use it with
// applications that do nothing on Connected; the built-in Echo, Broadcast
// and PubSub are such, and the broker binary runs them so.
func SpawnOnFirstFrame() HandleOption { return func(o *handleOptions) { o.lazy = true } }

// ReleaseWhenQuiet stops a stream's actors — its connection actor and its
// application actor — once the stream has gone quiet, and makes them
// again at its next frame, as SpawnOnFirstFrame makes them at the first:
// the new application actor hears Connected, then that frame's Received.
// A connection that spoke once and went idle then holds no actor, as
// one that never spoke does with SpawnOnFirstFrame (but for what
// protoactor's process registry keeps of a name, about 0.5 KB). What its
// actors held is garbage from then on, and the process's RSS drops only
// once a garbage collection has run.
//
// Quiet is: no frame from the stream for about a second (four of the
// event loops' ticks, which a Config.WriteTimeout, FrameTimeout or
// IdleTimeout under two seconds makes shorter), every frame handed to the
// actors handled, no telemetry request waiting for its span, reading not
// paused by the broker (inbound backpressure, a credential being
// checked; flow-control stalls do not count), and the credential, if the
// broker authenticates, accepted. No
// frame is lost, reordered or handed to a stopping actor: the event loop
// that reads the stream decides the release, and every frame after it
// goes, in order, to the new actors.
//
// What survives a release is the stream's: its *Stream and ID, its
// values (Stream.SetValue), its groups, its identity, and broadcasts to
// it, which never pass through its actors. What goes is the actor's: its
// fields and its PID — the contract of a restart, but for the new
// instance hearing Connected where a restarted one hears Restarted. A
// stream that closes while released has its application actor made once
// more to hear Closed (Closed alone, no Connected before it), so every
// stream that spoke is heard closing, and Closed can read its values —
// unless its application had stopped on its own (the stream closed with
// ErrAppStopped) or the actor cannot be made (logged). A stream that
// never spoke is never heard of, as under SpawnOnFirstFrame.
//
// So use it only with handlers that keep no state in the actor and that
// no other actor sends messages to (a message to a released actor's PID
// is a dead letter); the built-in Echo, Broadcast and PubSub are such,
// and the broker binary runs them so, with SpawnOnFirstFrame. Connected
// comes each time the actors are made, so it marks an actor's start, not
// the stream's. A released actor hears protoactor's Stopping and Stopped
// as it stops, which may be while the new one handles the stream's next
// frame on another goroutine. Stats().Actors.StreamsReleased counts the
// releases.
func ReleaseWhenQuiet() HandleOption { return func(o *handleOptions) { o.release = true } }

// Addr is the address the broker listens on.
func (b *Broker) Addr() net.Addr { return b.srv.Addr() }

// WebSocketAddr is the address the broker serves WebSocket clients on;
// nil without Config.WebSocketAddr.
func (b *Broker) WebSocketAddr() net.Addr {
	if a := b.srv.Addrs(); len(a) > 1 {
		return a[1]
	}
	return nil
}

// Loops is the number of event loops.
func (b *Broker) Loops() int { return b.srv.Loops() }

// Streams is the list of open streams, for broadcasting from outside an
// application actor.
func (b *Broker) Streams() *StreamList { return b.rt.Streams() }

// ActorSystem is the protoactor system the broker runs on, for
// applications that spawn actors of their own.
func (b *Broker) ActorSystem() *actor.ActorSystem { return b.rt.System() }

// Serve starts the application and the event loops and blocks until the
// broker has shut down: after Shutdown, or after ctx ends, in which case
// Serve itself shuts down gracefully within Config.DrainTimeout. It
// returns nil after a clean shutdown. Without Handle or HandlePerStream
// it fails. Should the shared application actor stop itself, Serve shuts
// the broker down and returns an error wrapping ErrAppStopped.
func (b *Broker) Serve(ctx context.Context) error {
	b.mu.Lock()
	if b.serving {
		b.mu.Unlock()
		return errors.New("broker: Serve called twice")
	}
	b.serving = true
	shared, perStream, onLoop, lazy, release := b.shared, b.perStream, b.onLoop, b.lazy, b.release
	b.mu.Unlock()
	if shared == nil && perStream == nil {
		return errors.New("broker: no application: call Handle or HandlePerStream before Serve")
	}
	if lazy {
		b.rt.SpawnOnFirstFrame()
	}
	if release {
		b.rt.ReleaseWhenQuiet()
	}
	if err := b.rt.Start(shared, perStream, onLoop); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- b.srv.Serve() }()
	select {
	case err := <-serveErr:
		// The loops ended on their own: Shutdown ran, or a loop failed.
		lctx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
		_ = b.leaveCluster(lctx)
		cancel()
		b.rt.Shutdown()
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		<-b.stopped
		return b.stopErr
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
		defer cancel()
		err := b.Shutdown(sctx)
		<-serveErr
		return err
	case <-b.rt.AppStopped():
		// The shared application stopped itself and every stream with
		// it: nothing is left to serve. Shut down, so that a supervisor
		// sees the broker end rather than a listener that refuses all.
		sctx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
		defer cancel()
		err := b.Shutdown(sctx)
		<-serveErr
		return errors.Join(fmt.Errorf("broker: %w", ErrAppStopped), err)
	}
}

// Shutdown stops the broker gracefully: it stops accepting and reading,
// lets the actors handle the frames already read, writes every queued
// frame, closes the streams and stops the actors. When ctx ends first,
// the streams are closed at once and ctx's error is returned. It may be
// called more than once and from any goroutine; every call waits for the
// one shutdown.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.stopOnce.Do(func() {
		b.draining.Store(true)
		// Leave the cluster while draining: the other nodes stop sending
		// here, and protoactor's graceful leave takes a couple of seconds.
		left := make(chan error, 1)
		go func() { left <- b.leaveCluster(ctx) }()
		b.srv.Quiesce()
		err := b.rt.Drain(ctx)
		if serr := b.srv.Shutdown(ctx); err == nil {
			err = serr
		}
		if lerr := <-left; err == nil {
			err = lerr
		}
		b.rt.Shutdown()
		if err != nil {
			b.stopErr = fmt.Errorf("broker: shutdown: %w", err)
		}
		close(b.stopped)
	})
	select {
	case <-b.stopped:
		return b.stopErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats are the broker's counters, the same ones the telemetry reply and
// the metrics endpoint report.
type Stats struct {
	IO     IOStats    // frames, bytes and connections
	Actors ActorStats // handler panics and telemetry requests
	UpTime time.Duration
}

// IOStats are the event loops' counters. Totals count since the broker
// started. Bytes are payload bytes, not frame bytes, as the telemetry
// reply defines them.
type IOStats struct {
	BytesRecv uint64 // payload bytes of frames received
	MsgRecv   uint64 // frames received
	BytesSent uint64 // payload bytes of frames handed to the kernel
	MsgSent   uint64 // frames handed to the kernel

	Accepted       uint64 // connections accepted (including ones refused at a limit)
	Open           int64  // connections open now
	PausedReads    int64  // connections whose reading is paused now (the application is behind, or a credential is being checked)
	AcceptBackoffs uint64 // times accept backed off for lack of file descriptors

	// Flow control and the memory budget.
	ProducerStalls uint64 // times a connection's reading stalled because a queue it fed passed 3/4 of Config.MaxPending
	StalledReads   int64  // connections whose reading is stalled so now
	MemoryUsed     int64  // bytes counted against Config.MaxMemory now
	MemoryLimit    int64  // Config.MaxMemory
	MemoryStalls   uint64 // times the memory budget stalled every producer
	MemoryStalled  bool   // the memory budget stalls every producer now

	TLSHandshakes        uint64 // TLS handshakes completed
	TLSHandshakeFailures uint64 // TLS handshakes that failed or timed out
	WebSocketUpgrades    uint64 // WebSocket upgrades accepted
	WebSocketRefused     uint64 // WebSocket upgrade requests refused (malformed, or an origin not allowed)

	// Closed connections by reason (see the Err variables).
	ClosedPeer      uint64 // ErrPeerClosed
	ClosedReset     uint64 // ErrReset
	ClosedProtocol  uint64 // ErrProtocol: protocol errors
	ClosedSlow      uint64 // ErrSlowConsumer: slow consumers (those of the memory budget are ClosedMemory)
	ClosedMemory    uint64 // ErrMemoryLimit: closed by the memory budget
	ClosedIdle      uint64 // ErrIdle
	ClosedFrame     uint64 // ErrFrameTimeout
	ClosedHandshake uint64 // ErrHandshake: a TLS handshake or authentication that failed or timed out
	ClosedLimit     uint64 // ErrLimit: refused at MaxConns or MaxConnsPerIP
	ClosedShutdown  uint64 // ErrShutdown
	ClosedLocal     uint64 // closed by the broker or an application with a reason of its own
}

// Stats reports the broker's counters now. It takes no lock on the frame
// path.
func (b *Broker) Stats() Stats {
	return Stats{IO: IOStats(b.srv.Stats()), Actors: b.rt.Stats(), UpTime: time.Since(b.start)}
}

// StartTime is when the broker was created; up_time counts from it.
func (b *Broker) StartTime() time.Time { return b.start }

// Draining reports whether a shutdown has begun: the broker no longer
// accepts or reads, and is flushing what it queued. A health check should
// fail from this moment, so load balancers stop sending new clients.
func (b *Broker) Draining() bool { return b.draining.Load() }

// QueuedBytes sums the outbound bytes queued and not yet written on every
// open stream. It walks the StreamList, so it suits a metrics scrape, not
// a hot path.
func (b *Broker) QueuedBytes() int64 {
	var n int64
	b.rt.Streams().Each(func(s *Stream) bool {
		n += int64(s.Queued())
		return true
	})
	return n
}

// Counters are the figures of the telemetry reply (the 0x0D frame), read
// now from the same live counters it uses; the metrics endpoint reports
// these too, so both always agree.
func (b *Broker) Counters() telemetry.Counters { return b.rt.Counters() }

// groupCounts is the groups part of the telemetry reply.
func (b *Broker) groupCounts() telemetry.Groups {
	gs := b.rt.Streams().GroupStats()
	g := telemetry.Groups{Count: gs.Groups, Members: gs.Memberships, Largest: make([]telemetry.GroupSize, len(gs.Largest))}
	for i, l := range gs.Largest {
		g.Largest[i] = telemetry.GroupSize{Name: l.Name, Members: l.Members}
	}
	return g
}

// ioCounters feeds the runtime's telemetry counters from the server's.
func (b *Broker) ioCounters() telemetry.Counters {
	s := b.srv.Stats()
	return telemetry.Counters{
		BytesRecv:        s.BytesRecv,
		BytesSent:        s.BytesSent,
		MsgRecv:          s.MsgRecv,
		MsgSent:          s.MsgSent,
		NumClients:       s.Open,
		Accepted:         s.Accepted,
		SlowConsumers:    s.ClosedSlow,
		ProtocolErrors:   s.ClosedProtocol,
		ClosedIdle:       s.ClosedIdle,
		ClosedLimit:      s.ClosedLimit,
		ClosedMemory:     s.ClosedMemory,
		ClosedFrame:      s.ClosedFrame,
		ClosedHandshake:  s.ClosedHandshake,
		WebSocketRefused: s.WebSocketRefused,
		Groups:           b.groupCounts(),
		PausedReads:      s.PausedReads,
		ProducerStalls:   s.ProducerStalls,
		StalledReads:     s.StalledReads,
		Memory: telemetry.Memory{
			Used:    s.MemoryUsed,
			Limit:   s.MemoryLimit,
			Stalls:  s.MemoryStalls,
			Stalled: s.MemoryStalled,
		},
	}
}
