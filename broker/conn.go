package broker

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/actors"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// Messages between the runtime and a connection actor.
type (
	started struct {
		stream *Stream
		// again: the stream had actors before, released while it was
		// quiet (ReleaseWhenQuiet); it was authenticated then, so this
		// actor starts the application at once. forClose: made only to
		// tell the application the stream closed, so no Connected.
		again, forClose bool
	}
	closed struct{ reason error }
	// release asks the connection actor of a quiet stream to stop, with
	// its application actor; the loop has let go of it, and sends it
	// nothing more.
	release struct{}
)

// releaseApp asks a per-stream application actor to stop because its
// stream went quiet. appMiddleware takes it, sets done and stops the
// actor; the application never sees it. An actor that stopped on its
// own first never gets to it, so done tells its connection actor, when
// it hears the child terminated, which of the two stops it was.
type releaseApp struct{ done atomic.Bool }

// connActor is one stream's connection actor. It receives each read's
// frames in one message, answers telemetry requests through the telemetry
// actor, and forwards every other frame, in order, to the application
// actor: the shared one, or its own child in the per-stream mode.
type connActor struct {
	rt      *actorRuntime
	s       *Stream
	app     *actor.PID
	closing bool
	rel     *releaseApp // sent to app when the stream went quiet; nil until then

	// Authentication: until the credential is accepted, the frames that
	// came with it, and any read already on its way, wait in held, the
	// stream's reading is paused, and no application actor exists.
	authed   bool
	checking bool       // the credential is with the authentication pool
	held     []heldRead // in order

	// appBox is the mailbox of an application actor that runs on the
	// event loop, as this actor does. A read's frames are queued there
	// together and the actor then handles them in one run of its
	// mailbox, instead of one Send and one run per frame.
	appBox *actors.LoopMailbox
	queue  []any // appBox's frames of the current read; reused
}

func (a *connActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *started:
		a.s = m.stream
		if a.rt.auth == nil || m.again {
			a.authed = true
			if st := a.s.conn.TLS(); !m.again && st != nil && len(st.VerifiedChains) > 0 {
				// Mutual TLS and nothing else: the certificate says who.
				a.s.identity.Store(&Identity{Name: st.PeerCertificates[0].Subject.String(), Publish: true})
			}
			a.startApp(ctx, !m.forClose)
			return
		}
		// The first frame is the credential: it waits for it, under the
		// deadline OnOpen set.
	case *delivery:
		if !a.authed {
			a.credential(m)
			return
		}
		a.forward(ctx, m, 0)
	case *authDone:
		a.authenticated(ctx, m)
	case *closed:
		a.closing = true
		a.dropHeld()
		if a.s != nil && a.s.telem.Load() > 0 {
			a.rt.telem.Gone(ctx, a.s.telemetryPeer())
		}
		if a.app != nil {
			ctx.Send(a.app, &Closed{Stream: a.s, Streams: a.s.list, Reason: m.reason})
		}
		if a.rt.perStream && a.app != nil {
			// A poison pill queues behind Closed, so the child handles
			// every frame and the close before it stops; this actor stops
			// when it hears the child terminated.
			ctx.Poison(a.app)
			return
		}
		ctx.Stop(ctx.Self())
	case *release:
		// Every frame handed to the application has been handled (the
		// loop checked), and no more will come this way: the next frame
		// makes new actors. The application stops when it reaches
		// releaseApp; this actor when it hears so.
		a.rel = &releaseApp{}
		if a.app == nil || !a.rt.perStream {
			ctx.Stop(ctx.Self())
			return
		}
		ctx.Send(a.app, a.rel)
	case *actor.Terminated:
		if a.app == nil || !m.Who.Equal(a.app) {
			return
		}
		if a.closing || a.rel != nil && a.rel.done.Load() {
			ctx.Stop(ctx.Self())
			return
		}
		// The application actor stopped on its own. Frames sent to it
		// since are lost with it; the stream closes, and this actor stops
		// when it hears of the close — or now, if the stream was being
		// released: the loop sends it nothing more.
		a.app, a.appBox = nil, nil
		a.s.appStopped.Store(true)
		a.s.Close(ErrAppStopped)
		if a.rel != nil {
			ctx.Stop(ctx.Self())
		}
	}
}

// errAuthTimeout is why a stream that sent no credential in time closes.
var errAuthTimeout = errors.New("no credential within the authentication timeout")

// credential takes the first frame of an unauthenticated stream as its
// credential and hands it to the authentication pool. The frames after it
// wait, and the stream is not read, until the verdict.
func (a *connActor) credential(d *delivery) {
	// The count first: once its last frame is done, d goes back to the
	// pool and may carry another stream's next read.
	n := len(d.recs)
	if a.checking {
		// Reading is paused once the credential is taken, but a read
		// may have been on its way: it waits too, in order.
		a.held = append(a.held, heldRead{d, 0})
		return
	}
	a.checking = true
	a.s.setPause(pauseAuth, true)
	cred := d.recs[0].Payload
	job := authJob{s: a.s, credential: append([]byte(nil), cred...), deadline: time.Now().Add(a.rt.cfg.AuthTimeout)}
	if n > 1 {
		a.held = append(a.held, heldRead{d, 1})
	}
	d.recs[0].frameDone()
	if !a.rt.authPool.submit(job) {
		a.rt.refuseAuth(a.s, errAuthBusy)
	}
}

// heldRead is a read's frames from index from on, waiting for the
// verdict on the stream's credential.
type heldRead struct {
	d    *delivery
	from int
}

// dropHeld marks the frames waiting for the verdict done, unhandled.
func (a *connActor) dropHeld() {
	for _, h := range a.held {
		h.d.dropFrom(h.from)
	}
	a.held = nil
}

// errAuthBusy refuses a credential when too many wait to be checked.
var errAuthBusy = errors.New("too many credentials waiting to be checked; try again")

// authenticated acts on the verdict: the accepted stream is answered,
// meets its application and is read again; a refused one is answered with
// the reason and closed.
func (a *connActor) authenticated(ctx actor.Context, m *authDone) {
	if a.closing || a.authed {
		return
	}
	if m.err != nil {
		a.dropHeld()
		a.rt.refuseAuth(a.s, m.err)
		return
	}
	a.authed = true
	a.s.conn.ClearDeadline()
	a.s.identity.Store(m.id)
	_ = a.s.conn.Send(authAccepted(m.id))
	a.startApp(ctx, true)
	held := a.held
	a.held = nil
	for _, h := range held {
		a.forward(ctx, h.d, h.from)
	}
	a.s.setPause(pauseAuth, false)
}

// startApp gives the stream its application actor and, with connected,
// tells it the stream is connected.
func (a *connActor) startApp(ctx actor.Context, connected bool) {
	a.app = a.rt.sharedPID
	if a.rt.perStream {
		var pid *actor.PID
		var err error
		if a.rt.onLoop {
			// The props' mailbox producer hands over the mailbox it
			// made (newAppBox): one set of props for every stream, not
			// a copy each. A restart keeps the mailbox, so it is made
			// once.
			a.rt.spawnMu.Lock()
			a.rt.spawning = a.s
			pid, err = ctx.SpawnNamed(a.rt.appProps, "app")
			a.appBox, a.rt.spawned = a.rt.spawned, nil
			a.rt.spawning = nil
			a.rt.spawnMu.Unlock()
		} else {
			pid, err = ctx.SpawnNamed(a.rt.appProps, "app")
		}
		if err != nil {
			a.rt.log.Error("spawning a per-stream application actor", "stream", a.s.ID(), "err", err)
			a.s.Close(err)
			return
		}
		a.app = pid
	}
	if connected {
		ctx.Send(a.app, &Connected{Stream: a.s, Streams: a.s.list})
	}
	a.s.ready.Store(true)
}

// forward hands the frames of d from index from on: telemetry requests
// to the telemetry path, the rest to the application.
func (a *connActor) forward(ctx actor.Context, d *delivery, from int) {
	// The count is read once: once its last frame is handed on, d may be
	// done and back in the pool, reused by the next read.
	n := len(d.recs)
	for i := from; i < n; i++ {
		r := &d.recs[i]
		switch {
		case wire.IsTelemetryRequest(r.Payload):
			// The frames before it first, as they would have been had
			// each gone on its own: a bad span is answered at once.
			a.postQueued()
			a.rt.telem.Request(ctx, a.s.telemetryPeer(), r.Payload)
			r.frameDone()
		case a.app == nil:
			r.frameDone()
		case a.appBox != nil:
			a.queue = append(a.queue, &d.envs[i])
		default:
			ctx.Send(a.app, &d.envs[i])
		}
	}
	a.postQueued()
}

// maxKeptQueue bounds the frames' slots a connection actor keeps between
// reads: one read of tiny frames can carry thousands.
const maxKeptQueue = 1024

// postQueued hands the frames queued for an on-loop application to its
// mailbox: what ctx.Send would do for each, less the process lookup and
// one run of the mailbox per frame. Should the child have stopped on its
// own, the frames are dropped with it, as they would be as dead letters,
// and Terminated closes the stream.
func (a *connActor) postQueued() {
	if len(a.queue) == 0 {
		return
	}
	a.appBox.PostUserMessages(a.queue)
	if cap(a.queue) > maxKeptQueue {
		a.queue = nil
		return
	}
	clear(a.queue)
	a.queue = a.queue[:0]
}
