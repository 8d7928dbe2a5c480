package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/actors"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/telemetry"
)

// runtimeConfig configures an actorRuntime. Zero values mean the
// defaults in the comments.
type runtimeConfig struct {
	MaxInbound int           // frames handed to actors and not yet handled, per stream, before its reading pauses; default 1024
	MaxSpan    time.Duration // longest telemetry span; default 60s
	Shards     int           // StreamList shards, normally the number of event loops; default 1
	Logger     *slog.Logger  // default slog.Default()
	Start      time.Time     // when the broker started, for up_time; default when New runs

	// Counters reports the I/O counters for telemetry replies; it is
	// called at most once per reply batch. Default: all zero.
	Counters func() telemetry.Counters

	// Cluster describes the cluster the broker belongs to, for telemetry
	// replies; nil (or returning nil) when it runs alone.
	Cluster func() *telemetry.Cluster

	// Authenticator, when set, checks each stream's credential (its first
	// frame) before anything else of it reaches an actor; nil lets every
	// stream in.
	Authenticator Authenticator
	// AuthTimeout bounds the time from connecting to an accepted
	// credential; default 5s.
	AuthTimeout time.Duration

	// DebugPayloads overwrites each Received payload once the application
	// has returned from it, so that a slice of it kept by mistake shows
	// garbage at once instead of the next frame's bytes some frames later.
	DebugPayloads bool
}

// Defaults of Config.MaxInbound, MaxSpan and AuthTimeout.
const (
	DefaultMaxInbound  = 1024
	DefaultMaxSpan     = 60 * time.Second
	DefaultAuthTimeout = 5 * time.Second
)

// maxWorkers bounds the goroutines running actor mailboxes. Only handlers
// that block need more than one per core; past this many, mailboxes wait
// for a blocked handler to return.
const maxWorkers = 4096

// actorRuntime runs the actors of one broker: a connection actor per
// stream, the application actors and their supervision, and the telemetry
// actor. It is the netpoll.Handler of the broker's server; its type is
// unexported, so that its Handler methods are the loops' alone.
type actorRuntime struct {
	cfg        runtimeConfig
	log        *slog.Logger
	system     *actor.ActorSystem
	streams    *StreamList
	maxInbound int32
	resumeAt   int32
	start      time.Time

	connProps *actor.Props
	appProps  *actor.Props // the application's props with our middleware
	perStream bool
	onLoop    bool // per-stream application actors run on the event loop
	lazy      bool // a stream's actors are made at its first frame (SpawnOnFirstFrame)
	release   bool // a quiet stream's actors are stopped, and made again at its next frame (ReleaseWhenQuiet)

	// An on-loop application's mailbox is made by newAppBox while a
	// connection actor spawns the application under spawnMu: spawning
	// names the stream it is for, spawned is the mailbox made.
	spawnMu   sync.Mutex
	spawning  *Stream
	spawned   *actors.LoopMailbox
	sharedPID *actor.PID
	supPID    *actor.PID
	telem     *actors.Telemetry

	auth     Authenticator // nil: no authentication
	authPool *authPool

	restarting sync.Map // application actor ids between Restarting and Started

	panics       atomic.Uint64
	restarts     actors.RestartAlways // the application actors' supervisor strategy, counting
	authFailures atomic.Uint64
	refused      atomic.Uint64
	releases     atomic.Uint64
	panicLog     actors.RateLimit
	authLog      actors.RateLimit
	stopped      atomic.Bool
	appDone      chan struct{} // closed when the shared application actor stopped itself
	disp         *actors.Dispatcher
}

// ActorStats are the counters of the broker's actors (Stats.Actors).
type ActorStats struct {
	HandlerPanics     uint64 // panics in application actors
	HandlerRestarts   uint64 // application actor restarts
	TelemetryRequests uint64 // 0x0D requests received
	TelemetryWaiting  int64  // 0x0D requests waiting for their span now
	AuthFailures      uint64 // credentials refused (timeouts are netpoll's ClosedHandshake)
	FramesRefused     uint64 // frames answered with Stream.Refuse
	StreamsReleased   uint64 // times a quiet stream's actors were stopped (ReleaseWhenQuiet)
}

// newRuntime starts the actor system and the telemetry actor; Start adds
// the application.
func newRuntime(cfg runtimeConfig) (*actorRuntime, error) {
	if cfg.MaxInbound <= 0 {
		cfg.MaxInbound = DefaultMaxInbound
	}
	if cfg.MaxSpan <= 0 {
		cfg.MaxSpan = DefaultMaxSpan
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = DefaultAuthTimeout
	}
	if cfg.Counters == nil {
		cfg.Counters = func() telemetry.Counters { return telemetry.Counters{} }
	}
	r := &actorRuntime{
		cfg:        cfg,
		log:        cfg.Logger,
		streams:    newStreamList(cfg.Shards),
		maxInbound: int32(cfg.MaxInbound),
		resumeAt:   int32(cfg.MaxInbound / 2),
		start:      cfg.Start,
		appDone:    make(chan struct{}),
	}
	if r.start.IsZero() {
		r.start = time.Now()
	}
	r.panicLog.Every = time.Second
	r.panicLog.Burst = 5
	r.authLog.Every = time.Second
	r.authLog.Burst = 5
	r.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(actors.QuietHandler(cfg.Logger.Handler())).With("component", "protoactor")
	}))

	// Mailboxes handle up to 300 messages before yielding, protoactor's
	// default. As many workers as cores stay awake under load; blocked
	// handlers can add up to maxWorkers in all.
	r.disp = actors.NewDispatcher(runtime.GOMAXPROCS(0), maxWorkers, 300)
	telem, err := actors.StartTelemetry(actors.TelemetryConfig{
		MaxSpan:    cfg.MaxSpan,
		Start:      r.start,
		Counters:   r.Counters,
		Cluster:    cfg.Cluster,
		Logger:     r.log,
		Dispatcher: r.disp,
		System:     r.system,
	})
	if err != nil {
		r.system.Shutdown()
		r.disp.Stop()
		return nil, err
	}
	r.telem = telem
	if cfg.Authenticator != nil {
		r.auth = cfg.Authenticator
		r.authPool = newAuthPool(r, cfg.Authenticator)
	}
	return r, nil
}

// Start adds the application; call it once, before the server delivers
// its first connection. Exactly one of shared and perStream is set: shared
// is one actor that receives every stream's messages; perStream is spawned
// once per stream (Erlang style), as a child of the stream's connection
// actor, and receives only that stream's messages.
//
// onLoop, for a per-stream application only, runs each stream's actor on
// the goroutine that sends to it — for its frames, the stream's event
// loop — as the connection actor runs: no handoff to a worker per read,
// and the replies leave in the read's own writev. Its handler must not
// block, for while it runs its loop serves no other connection. (A shared
// actor cannot run so: the loop that happened to start its mailbox would
// run every other loop's frames too, and could be kept at it forever.)
func (r *actorRuntime) Start(shared, perStream *actor.Props, onLoop bool) error {
	if (shared == nil) == (perStream == nil) {
		return errors.New("actors: exactly one of a shared and a per-stream application must be given")
	}
	if onLoop && perStream == nil {
		return errors.New("actors: only a per-stream application can run on the event loop")
	}
	if r.appProps != nil {
		return errors.New("actors: Start called twice")
	}
	app := shared
	if app == nil {
		app = perStream
	}
	r.perStream = perStream != nil
	// Configure a copy: the caller's Props stay as they were.
	cp := *app
	r.appProps = cp.Configure(actor.WithReceiverMiddleware(r.appMiddleware), actor.WithDispatcher(r.disp))
	r.onLoop = onLoop
	if onLoop {
		r.appProps = r.appProps.Configure(actor.WithDispatcher(actor.NewSynchronizedDispatcher(300)), actor.WithMailbox(r.newAppBox))
	}
	strategy := actor.WithSupervisor(&r.restarts)
	// The connection actor runs on whichever goroutine sends to it, the
	// event loop for its frames: its work per read is a loop of mailbox
	// pushes, cheaper than the goroutine handoff a dispatcher would cost.
	// Its mailbox still serialises it, and a sender that finds it busy
	// only queues.
	r.connProps = actor.PropsFromProducer(func() actor.Actor { return &connActor{rt: r} }, strategy, actor.WithDispatcher(actor.NewSynchronizedDispatcher(300)), actor.WithMailbox(newConnBox))
	if shared == nil {
		return nil
	}
	ready := make(chan *actor.PID, 1)
	sup, err := r.system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &actors.SharedSupervisor{Props: r.appProps, Ready: ready, Log: r.log, Stopped: r.sharedStopped}
	}, strategy, actor.WithDispatcher(r.disp)), "app")
	if err != nil {
		return fmt.Errorf("actors: spawning the application supervisor: %w", err)
	}
	r.supPID = sup
	select {
	case r.sharedPID = <-ready:
	case <-time.After(10 * time.Second):
		return errors.New("actors: the application actor did not start")
	}
	if r.sharedPID == nil {
		return errors.New("actors: the application actor failed to spawn")
	}
	return nil
}

// AppStopped is closed when the shared application actor has stopped
// itself. Its streams are closed by then and new ones are refused; the
// broker has nothing left to serve.
func (r *actorRuntime) AppStopped() <-chan struct{} { return r.appDone }

// System is the protoactor actor system, for applications that spawn
// actors of their own.
func (r *actorRuntime) System() *actor.ActorSystem { return r.system }

// Streams is the list of open streams.
func (r *actorRuntime) Streams() *StreamList { return r.streams }

// Stats reports the runtime's counters.
func (r *actorRuntime) Stats() ActorStats {
	return ActorStats{
		HandlerPanics:     r.panics.Load(),
		HandlerRestarts:   r.restarts.Restarts(),
		TelemetryRequests: r.telem.Requests(),
		TelemetryWaiting:  r.telem.Waiting(),
		AuthFailures:      r.authFailures.Load(),
		FramesRefused:     r.refused.Load(),
		StreamsReleased:   r.releases.Load(),
	}
}

// Counters gathers the figures of a telemetry reply: the I/O counters
// (runtimeConfig.Counters) and the runtime's own.
func (r *actorRuntime) Counters() telemetry.Counters {
	c := r.cfg.Counters()
	st := r.Stats()
	c.HandlerPanics = st.HandlerPanics
	c.TelemetryRequests = st.TelemetryRequests
	c.AuthFailures = st.AuthFailures
	c.FramesRefused = st.FramesRefused
	return c
}

// sharedStopped is told by the shared application's supervisor that the
// application stopped itself. No stream has anyone to handle its frames
// any more, so every stream ends, as a per-stream one does when its own
// actor stops, new ones are refused, and AppStopped tells the broker.
func (r *actorRuntime) sharedStopped() {
	select {
	case <-r.appDone:
		return // told already
	default:
	}
	r.log.Error("the application actor stopped; closing every stream")
	r.streams.Each(func(s *Stream) bool {
		s.Close(ErrAppStopped)
		return true
	})
	close(r.appDone)
}

// plainMessage reports the messages of the frame path, which cannot be an
// actor.MessageBatch nor carry one: a connection actor's delivery, and a
// frame's pre-wrapped envelope. Checked by their concrete type, they are
// spared two interface assertions (an itab lookup each) per message.
func plainMessage(message any) bool {
	switch m := message.(type) {
	case *delivery:
		return true
	case *actor.MessageEnvelope:
		_, ours := m.Message.(*Received)
		return ours
	}
	return false
}

// newConnBox is the mailbox producer of connection actors.
func newConnBox() actor.Mailbox { return actors.NewLoopMailboxOf(plainMessage, nil) }

// newAppBox is the mailbox producer of on-loop applications: a
// LoopMailbox that gathers the stream's broadcasts, handed to the
// connection actor that is spawning it (connActor.startApp).
func (r *actorRuntime) newAppBox() actor.Mailbox {
	var hooks actors.RunHooks
	if r.spawning != nil {
		hooks = (*streamRun)(r.spawning)
	}
	m := actors.NewLoopMailboxOf(plainMessage, hooks)
	r.spawned = m
	return m
}

// SpawnOnFirstFrame makes each stream's actors (its connection actor and,
// per stream, its application actor) when its first frame arrives rather
// than when it opens; Connected then reaches the application just before
// that frame. A stream that opens and never sends costs no actor. Call it
// before Start.
func (r *actorRuntime) SpawnOnFirstFrame() { r.lazy = true }

// ReleaseWhenQuiet stops a per-stream application's actors (the
// stream's connection actor and its application actor) once the stream
// has gone quiet, and makes them again at its next frame, as
// SpawnOnFirstFrame makes them at the first. Call it before Start.
//
// Quiet is the loop's (netpoll.QuietHandler, OnQuiet): no frame
// completed for netpoll.QuietTicks ticks. Then, on the stream's loop, the
// actors are released if they have nothing to do: every frame handed to
// them handled, no telemetry span waiting, reading not paused, the
// credential (if any) accepted. Frames reach the actors only from that
// loop (OnFrames), so none can arrive while it decides; once it has let
// go of the connection actor it sends it nothing more, and the next
// frame goes to actors made for it, under a new name (spawnConn). The
// released actors stop behind whatever their mailboxes still hold: the
// connection actor hands the application releaseApp, which
// appMiddleware takes and stops on.
func (r *actorRuntime) ReleaseWhenQuiet() { r.release = true }

// OnOpen implements netpoll.Handler: it registers the stream and, unless
// its actors wait for its first frame, spawns its connection actor.
func (r *actorRuntime) OnOpen(c *netpoll.Conn) {
	s := &Stream{conn: c, id: c.ID(), rt: r, appPID: r.sharedPID}
	r.streams.setView(s)
	c.SetValue(s)
	r.streams.set.add(s, int(c.ID()))
	if r.connProps == nil {
		c.Close(errors.New("actors: no application started"))
		return
	}
	select {
	case <-r.appDone:
		c.Close(ErrAppStopped)
		return
	default:
	}
	if r.auth != nil {
		// The first frame is the credential; it must come in time.
		c.SetDeadline(r.cfg.AuthTimeout, authFailure(errAuthTimeout))
	}
	if !r.lazy {
		r.spawnConn(s, false)
	}
}

// spawnConn spawns s's connection actor, once per generation: once, or
// again after its actors were released; it reports whether s has one.
// forClose makes it only to tell the application that s closed. The
// first is named conn-ID and those after it conn-ID.N, so that a new one
// never waits for the name of one still stopping.
func (r *actorRuntime) spawnConn(s *Stream, forClose bool) bool {
	if s.spawned {
		return s.connPID != nil
	}
	s.spawned = true
	name := "conn-" + strconv.FormatUint(s.ID(), 10)
	if s.gen > 0 {
		name += "." + strconv.FormatUint(uint64(s.gen), 10)
	}
	s.gen++
	pid, err := r.system.Root.SpawnNamed(r.connProps, name)
	if err != nil {
		r.log.Error("spawning a connection actor", "stream", s.ID(), "err", err)
		s.conn.Close(err)
		return false
	}
	s.connPID = pid
	r.system.Root.Send(pid, &started{stream: s, again: s.released, forClose: forClose})
	s.released = false
	return true
}

// OnFrames implements netpoll.Handler: one message to the connection actor
// carries every frame of the read.
func (r *actorRuntime) OnFrames(c *netpoll.Conn, b *netpoll.Batch) {
	s := c.Value().(*Stream)
	if s.connPID == nil && !((r.lazy || r.release) && r.spawnConn(s, false)) {
		b.Release()
		return
	}
	s.framesIn(len(b.Frames))
	r.system.Root.Send(s.connPID, newDelivery(s, b))
}

// OnQuiet implements netpoll.QuietHandler: with ReleaseWhenQuiet, the
// actors of a quiet stream that have nothing to do are stopped. It runs
// on the stream's loop, as OnFrames does. It reports false, to be asked
// again at the next tick, while the actors still have something to do.
func (r *actorRuntime) OnQuiet(c *netpoll.Conn) bool {
	if !r.release || !r.perStream {
		return true
	}
	s := c.Value().(*Stream)
	if s.connPID == nil || s.appStopped.Load() {
		return true // no actors, or closing with ErrAppStopped
	}
	// ready: the application has been started, so the credential, if
	// any, was accepted — actors made again after a release take the
	// stream as authenticated, so one whose credential has not come must
	// never be released. pending: a frame still being handled would be
	// overtaken by the next, handed to new actors.
	if !s.ready.Load() || s.pending.Load() != 0 || s.telem.Load() != 0 || s.readPaused() {
		return false
	}
	pid := s.connPID
	s.connPID, s.spawned, s.released = nil, false, true
	s.ready.Store(false)
	r.releases.Add(1)
	r.system.Root.Send(pid, &release{})
	return true
}

// OnClose implements netpoll.Handler: the stream leaves the list at once,
// so broadcasts skip it, and its connection actor tells the application
// and stops. A stream whose actors were released while quiet has them
// made once more, for the application to hear Closed.
func (r *actorRuntime) OnClose(c *netpoll.Conn, err error) {
	s := c.Value().(*Stream)
	r.streams.set.remove(s)
	s.leaveAll()
	if s.connPID == nil && s.released && !s.appStopped.Load() {
		r.spawnConn(s, true)
	}
	if s.connPID != nil {
		r.system.Root.Send(s.connPID, &closed{reason: err})
	}
}

// Drain waits until every frame handed to the actors has been handled, or
// ctx ends. Call it after the server stopped reading (netpoll's Quiesce),
// so that replies to the last frames are queued before the queues drain.
func (r *actorRuntime) Drain(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		busy := false
		r.streams.Each(func(s *Stream) bool {
			busy = s.pending.Load() > 0
			return !busy
		})
		// A run's gathered broadcasts are queued when the run ends,
		// after its last frame counted as handled: looked at second.
		busy = busy || r.streams.set.batches.n.Load() > 0
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("actors: draining: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Shutdown stops every actor and the actor system.
func (r *actorRuntime) Shutdown() {
	if r.stopped.Swap(true) {
		return
	}
	if r.authPool != nil {
		r.authPool.stop() // before the system: its verdicts are sent through it
	}
	r.system.Shutdown()
	r.disp.Stop()
}
