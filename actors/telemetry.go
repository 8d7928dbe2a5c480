package actors

import (
	"container/heap"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/telemetry"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// telemetryRequest is a valid 0x0D request on its way to the telemetry
// actor.
type telemetryRequest struct {
	stream *Stream
	span   time.Duration
	at     time.Time
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
type telemetryGone struct{ stream *Stream }

// telemetryRequest judges a 0x0D frame on the connection actor: a bad span
// or a flood is answered at once; a good request goes to the telemetry
// actor, which answers when its span has passed.
func (r *Runtime) telemetryRequest(ctx actor.Context, s *Stream, payload []byte) {
	r.telemReqs.Add(1)
	secs, _ := wire.ParseTelemetryRequest(payload)
	span, err := telemetry.ParseSpan(secs, r.cfg.MaxSpan)
	if err != nil {
		_ = s.Send(telemetry.ErrorReply(err.Error()))
		return
	}
	if s.telem.Add(1) > telemetryShare(r.telemWait.Load()) {
		s.telem.Add(-1)
		_ = s.Send(telemetry.ErrorReply("too many telemetry requests waiting on this connection"))
		return
	}
	if r.telemWait.Add(1) > maxTelemetryTotal {
		r.telemWait.Add(-1)
		s.telem.Add(-1)
		_ = s.Send(telemetry.ErrorReply("too many telemetry requests waiting on this broker"))
		return
	}
	// The reply is owed: a client that half-closes after asking still
	// gets it once the span has passed, then the close.
	s.conn.Owe()
	ctx.Send(r.telemPID, &telemetryRequest{stream: s, span: span, at: time.Now()})
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
	stream *Stream
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
	rt      *Runtime
	sampler *telemetry.Sampler
	queue   waitQueue
	timer   *time.Timer
	timerAt time.Time
}

func newTelemetryActor(rt *Runtime) *telemetryActor {
	return &telemetryActor{rt: rt, sampler: telemetry.NewSampler(telemetry.DefaultGranularity)}
}

func (a *telemetryActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *telemetryRequest:
		before, err := a.sampler.Sample()
		if err != nil {
			a.fail(m.stream, err)
			return
		}
		heap.Push(&a.queue, waiting{stream: m.stream, due: m.at.Add(m.span), before: before})
		a.arm(ctx)
	case telemetryTick:
		a.timerAt = time.Time{}
		a.answerDue()
		a.arm(ctx)
	case *telemetryGone:
		a.forget(m.stream)
	case *actor.Stopping:
		if a.timer != nil {
			a.timer.Stop()
		}
	}
}

// forget drops the waiting requests of a closed stream and gives back
// their places. The timer may then fire with nothing due; it re-arms.
func (a *telemetryActor) forget(s *Stream) {
	kept := a.queue[:0]
	for _, w := range a.queue {
		if w.stream == s {
			a.rt.telemWait.Add(-1)
			s.telem.Add(-1)
			s.conn.Settle()
			continue
		}
		kept = append(kept, w)
	}
	clear(a.queue[len(kept):])
	a.queue = kept
	heap.Init(&a.queue)
}

func (a *telemetryActor) fail(s *Stream, err error) {
	a.rt.telemWait.Add(-1)
	s.telem.Add(-1)
	a.rt.log.Error("telemetry sample", "err", err)
	_ = s.Send(telemetry.ErrorReply("reading the machine's counters failed: " + err.Error()))
	s.conn.Settle()
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
			a.fail(heap.Pop(&a.queue).(waiting).stream, err)
		}
		return
	}
	counters := a.rt.Counters()
	var cluster *telemetry.Cluster
	if a.rt.cfg.Cluster != nil {
		cluster = a.rt.cfg.Cluster()
	}
	mem, memErr := telemetry.ReadMemInfo()
	var lastBefore telemetry.CPUSample
	var frame []byte
	for len(a.queue) > 0 && !a.queue[0].due.After(now) {
		w := heap.Pop(&a.queue).(waiting)
		a.rt.telemWait.Add(-1)
		w.stream.telem.Add(-1)
		if memErr != nil {
			_ = w.stream.Send(telemetry.ErrorReply("reading the machine's memory failed: " + memErr.Error()))
			w.stream.conn.Settle()
			continue
		}
		if frame == nil || w.before.Seq != lastBefore.Seq {
			reply := telemetry.BuildReply(a.rt.start, now, counters, w.before, after, mem)
			reply.Cluster = cluster
			payload, err := reply.AppendJSON(nil)
			if err == nil {
				frame, err = wire.Encode(payload)
			}
			if err != nil {
				a.rt.log.Error("encoding a telemetry reply", "err", err)
				frame = nil
				w.stream.conn.Settle()
				continue
			}
			lastBefore = w.before
		}
		_ = w.stream.conn.SendFrame(frame)
		w.stream.conn.Settle()
	}
}

// Counters gathers the figures of a telemetry reply: the I/O counters
// (Config.Counters) and the runtime's own.
func (r *Runtime) Counters() telemetry.Counters {
	c := r.cfg.Counters()
	st := r.Stats()
	c.HandlerPanics = st.HandlerPanics
	c.TelemetryRequests = st.TelemetryRequests
	c.AuthFailures = st.AuthFailures
	c.FramesRefused = st.FramesRefused
	return c
}
