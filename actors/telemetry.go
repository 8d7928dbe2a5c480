package actors

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/telemetry"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// Limits on telemetry requests waiting for their span, so that a flood
// costs bounded memory and work: beyond them a request is answered at once
// with an error. A stream may hold up to maxTelemetryPerStream while the
// broker's places are free, fewer as they fill (see telemetryShare), so
// that a handful of streams cannot hold them all.
const (
	maxTelemetryPerStream = 64
	maxTelemetryTotal     = 16384
)

// A TelemetryPeer is a stream as the telemetry path sees it: where a
// reply goes. The telemetry actor holds it until the reply is sent, and
// tells one peer from another by ==.
type TelemetryPeer interface {
	// Reply queues payload, an error reply, as one frame.
	Reply(payload []byte) error
	// ReplyFrame queues an encoded frame; its bytes may be shared with
	// other peers and must not be modified.
	ReplyFrame(frame []byte) error
	// Owe says a reply is owed: a peer that half-closes still gets it.
	// Settle says it was queued, or never will be.
	Owe()
	Settle()
	// Waiting counts the peer's requests waiting for their span.
	Waiting() *atomic.Int32
}

// TelemetryConfig configures a Telemetry.
type TelemetryConfig struct {
	MaxSpan    time.Duration             // longest span a request may ask for
	Start      time.Time                 // when the broker started, for up_time
	Counters   func() telemetry.Counters // every counter of the reply
	Cluster    func() *telemetry.Cluster // nil (or returning nil): no cluster
	Logger     *slog.Logger              // required
	Dispatcher actor.Dispatcher          // runs the telemetry actor
	System     *actor.ActorSystem        // where it is spawned, named "telemetry"
}

// Telemetry answers 0x0D requests. Request judges each on the connection
// actor that read it; a good one goes to the telemetry actor, which
// answers once its span has passed. Document assembles the telemetry
// document, for those replies and for anyone else who wants it (HTTP
// /stats).
type Telemetry struct {
	cfg      TelemetryConfig
	pid      *actor.PID
	requests atomic.Uint64 // requests received, refused ones included
	waiting  atomic.Int64  // requests waiting for their span now
}

// StartTelemetry spawns the telemetry actor.
func StartTelemetry(cfg TelemetryConfig) (*Telemetry, error) {
	if cfg.Logger == nil || cfg.System == nil || cfg.Counters == nil {
		return nil, errors.New("actors: telemetry needs a logger, an actor system and counters")
	}
	t := &Telemetry{cfg: cfg}
	opts := []actor.PropsOption{}
	if cfg.Dispatcher != nil {
		opts = append(opts, actor.WithDispatcher(cfg.Dispatcher))
	}
	pid, err := cfg.System.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newTelemetryActor(t) }, opts...), "telemetry")
	if err != nil {
		return nil, fmt.Errorf("actors: spawning the telemetry actor: %w", err)
	}
	t.pid = pid
	return t, nil
}

// Requests is how many 0x0D requests were received, refused ones
// included.
func (t *Telemetry) Requests() uint64 { return t.requests.Load() }

// Waiting is how many requests wait for their span now.
func (t *Telemetry) Waiting() int64 { return t.waiting.Load() }

// Document is one telemetry document but for its CPU figures: the
// figures read at one moment, which every reply due then shares.
type Document struct {
	start, now time.Time
	counters   telemetry.Counters
	cluster    *telemetry.Cluster
	mem        telemetry.MemInfo
}

// Document reads the document's figures now: the counters, the cluster
// and the machine's memory. It fails when the memory cannot be read.
func (t *Telemetry) Document(now time.Time) (*Document, error) {
	mem, err := telemetry.ReadMemInfo()
	if err != nil {
		return nil, err
	}
	d := &Document{start: t.cfg.Start, now: now, counters: t.cfg.Counters(), mem: mem}
	if t.cfg.Cluster != nil {
		d.cluster = t.cfg.Cluster()
	}
	return d, nil
}

// AppendJSON appends the document, with the CPU used between before and
// after, to dst: the JSON of the telemetry reply (docs/PROTOCOL.md). It is
// the one place that document is assembled.
func (d *Document) AppendJSON(dst []byte, before, after telemetry.CPUSample) ([]byte, error) {
	reply := telemetry.BuildReply(d.start, d.now, d.counters, before, after, d.mem)
	reply.Cluster = d.cluster
	return reply.AppendJSON(dst)
}

// telemetryRequest is a valid 0x0D request on its way to the telemetry
// actor.
type telemetryRequest struct {
	peer TelemetryPeer
	span time.Duration
	at   time.Time
}

// telemetryTick wakes the telemetry actor when the earliest waiting
// request is due.
type telemetryTick struct{}

// telemetryGone tells the telemetry actor that a stream with requests
// waiting has closed: its requests can never be answered, and must give
// back their places under the limits now rather than when their spans end
// (up to MaxSpan later), or closed connections could keep every other
// client's requests refused. The connection actor sends it after every
// request of the stream, so it arrives after them.
type telemetryGone struct{ peer TelemetryPeer }

// Request judges a 0x0D frame on the connection actor (ctx) that read it:
// a bad span or a flood is answered at once; a good request goes to the
// telemetry actor, which answers when its span has passed.
func (t *Telemetry) Request(ctx actor.SenderContext, p TelemetryPeer, payload []byte) {
	t.requests.Add(1)
	secs, _ := wire.ParseTelemetryRequest(payload)
	span, err := telemetry.ParseSpan(secs, t.cfg.MaxSpan)
	if err != nil {
		_ = p.Reply(telemetry.ErrorReply(err.Error()))
		return
	}
	w := p.Waiting()
	if w.Add(1) > telemetryShare(t.waiting.Load()) {
		w.Add(-1)
		_ = p.Reply(telemetry.ErrorReply("too many telemetry requests waiting on this connection"))
		return
	}
	if t.waiting.Add(1) > maxTelemetryTotal {
		t.waiting.Add(-1)
		w.Add(-1)
		_ = p.Reply(telemetry.ErrorReply("too many telemetry requests waiting on this broker"))
		return
	}
	// The reply is owed: a client that half-closes after asking still
	// gets it once the span has passed, then the close.
	p.Owe()
	ctx.Send(t.pid, &telemetryRequest{peer: p, span: span, at: time.Now()})
}

// Gone tells the telemetry actor that p closed with requests waiting
// (p.Waiting() above 0); send it after p's last request.
func (t *Telemetry) Gone(ctx actor.SenderContext, p TelemetryPeer) {
	ctx.Send(t.pid, &telemetryGone{peer: p})
}

// telemetryShare is how many requests one stream may have waiting when
// waiting are waiting on the broker in all: maxTelemetryPerStream while
// the places are free, shrinking in proportion as they fill, and never
// below one. k streams asking without end so hold about
// 64·k·C/(C+64·k) of the C places and leave the rest to others — 256
// such streams half of them, instead of all.
func telemetryShare(waiting int64) int32 {
	free := max(maxTelemetryTotal-waiting, 0)
	return int32(max(maxTelemetryPerStream*free/maxTelemetryTotal, 1))
}

// waiting is a request whose span has not passed yet, with the CPU sample
// taken when it arrived.
type waiting struct {
	peer   TelemetryPeer
	due    time.Time
	before telemetry.CPUSample
}

type waitQueue []waiting

func (q waitQueue) Len() int           { return len(q) }
func (q waitQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q waitQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *waitQueue) Push(x any)        { *q = append(*q, x.(waiting)) }
func (q *waitQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = waiting{}
	*q = old[:len(old)-1]
	return w
}

// telemetryActor answers 0x0D requests. It never waits: each request
// records a CPU sample and its due time, and one timer, set for the
// earliest due request, sends the actor a tick. Requests arriving close
// together share samples (the Sampler's granularity), and the replies due
// at one tick that share a starting sample share one encoding, so a flood
// costs bounded work.
type telemetryActor struct {
	t       *Telemetry
	sampler *telemetry.Sampler
	queue   waitQueue
	timer   *time.Timer
	timerAt time.Time
}

func newTelemetryActor(t *Telemetry) *telemetryActor {
	return &telemetryActor{t: t, sampler: telemetry.NewSampler(telemetry.DefaultGranularity)}
}

func (a *telemetryActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *telemetryRequest:
		before, err := a.sampler.Sample()
		if err != nil {
			a.fail(m.peer, err)
			return
		}
		heap.Push(&a.queue, waiting{peer: m.peer, due: m.at.Add(m.span), before: before})
		a.arm(ctx)
	case telemetryTick:
		a.timerAt = time.Time{}
		a.answerDue()
		a.arm(ctx)
	case *telemetryGone:
		a.forget(m.peer)
	case *actor.Stopping:
		if a.timer != nil {
			a.timer.Stop()
		}
	}
}

// forget drops the waiting requests of a closed stream and gives back
// their places. The timer may then fire with nothing due; it re-arms.
func (a *telemetryActor) forget(p TelemetryPeer) {
	kept := a.queue[:0]
	for _, w := range a.queue {
		if w.peer == p {
			a.t.waiting.Add(-1)
			p.Waiting().Add(-1)
			p.Settle()
			continue
		}
		kept = append(kept, w)
	}
	clear(a.queue[len(kept):])
	a.queue = kept
	heap.Init(&a.queue)
}

func (a *telemetryActor) fail(p TelemetryPeer, err error) {
	a.t.waiting.Add(-1)
	p.Waiting().Add(-1)
	a.t.cfg.Logger.Error("telemetry sample", "err", err)
	_ = p.Reply(telemetry.ErrorReply("reading the machine's counters failed: " + err.Error()))
	p.Settle()
}

// arm sets the timer for the earliest due request, if it is not set for
// that already.
func (a *telemetryActor) arm(ctx actor.Context) {
	if len(a.queue) == 0 {
		return
	}
	due := a.queue[0].due
	if !a.timerAt.IsZero() && !due.Before(a.timerAt) {
		return
	}
	if a.timer != nil {
		a.timer.Stop()
	}
	a.timerAt = due
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.timer = time.AfterFunc(time.Until(due), func() { root.Send(self, telemetryTick{}) })
}

func (a *telemetryActor) answerDue() {
	now := time.Now()
	if len(a.queue) == 0 || a.queue[0].due.After(now) {
		return
	}
	after, err := a.sampler.Sample()
	if err != nil {
		for len(a.queue) > 0 && !a.queue[0].due.After(now) {
			a.fail(heap.Pop(&a.queue).(waiting).peer, err)
		}
		return
	}
	doc, docErr := a.t.Document(now)
	var lastBefore telemetry.CPUSample
	var frame []byte
	for len(a.queue) > 0 && !a.queue[0].due.After(now) {
		w := heap.Pop(&a.queue).(waiting)
		a.t.waiting.Add(-1)
		w.peer.Waiting().Add(-1)
		if docErr != nil {
			_ = w.peer.Reply(telemetry.ErrorReply("reading the machine's memory failed: " + docErr.Error()))
			w.peer.Settle()
			continue
		}
		if frame == nil || w.before.Seq != lastBefore.Seq {
			payload, err := doc.AppendJSON(nil, w.before, after)
			if err == nil {
				frame, err = wire.Encode(payload)
			}
			if err != nil {
				a.t.cfg.Logger.Error("encoding a telemetry reply", "err", err)
				frame = nil
				w.peer.Settle()
				continue
			}
			lastBefore = w.before
		}
		_ = w.peer.ReplyFrame(frame)
		w.peer.Settle()
	}
}
