package broker

import (
	"sync"
	"sync/atomic"

	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// Broadcasts made during one run of an on-loop application's mailbox are
// gathered, encoded back to back in one buffer, and queued to each stream
// once, when the run ends: one append under each receiver's lock and one
// iovec in its writev for a whole read's worth of frames, instead of one
// of each per frame. A run handles the frames of a read together (see
// connActor.forward), so a publisher's read reaches its subscribers as
// one piece, as a hand-written event-loop server would send it.
//
// Order is kept. The frames of a batch keep their order, and a batch is
// queued before anything else that could overtake it: every path that
// queues frames outside a batch (Stream.Send, Refuse, Close, a group's
// broadcast, sendFrameExcept, a broadcast outside a run) first queues
// every batch then pending. A handler that broadcasts and then replies
// has its broadcast queued first, whatever stream it replies to; which
// goroutine calls does not matter, so the rule needs no knowledge of who
// is calling. A batch is also queued when it would pass maxBatch bytes,
// or when the next broadcast leaves out another stream.

// maxBatch bounds one batch's bytes: a run that broadcasts more queues
// what it has and starts again.
const maxBatch = 64 << 10

// minBatch is the first buffer of a stream that has not batched before.
const minBatch = 512

// batch is a stream's broadcasts of the current run, under Stream.bmu.
type batch struct {
	running bool    // an on-loop run of the stream's application is under way
	owing   bool    // the stream owes itself a frame of buf (Conn.Owe)
	buf     []byte  // frames encoded back to back; handed off, never reused
	frames  int     // in buf
	except  *Stream // the stream buf goes to no one of
	hint    int     // bytes of the last batch: the next buffer's size
	slot    int     // index in the runtime's list of pending batches
}

// batches is the stream list's list of streams holding a pending batch.
type batches struct {
	n    atomic.Int32 // len(list), read without the lock on every send
	_    [60]byte     // keep n off the lock's cache line
	mu   sync.Mutex
	list []*Stream
}

func (bs *batches) add(s *Stream) {
	bs.mu.Lock()
	s.batch.slot = len(bs.list)
	bs.list = append(bs.list, s)
	bs.n.Store(int32(len(bs.list)))
	bs.mu.Unlock()
}

func (bs *batches) remove(s *Stream) {
	bs.mu.Lock()
	i, last := s.batch.slot, len(bs.list)-1
	moved := bs.list[last]
	bs.list[i] = moved
	moved.batch.slot = i
	bs.list[last] = nil
	bs.list = bs.list[:last]
	bs.n.Store(int32(last))
	bs.mu.Unlock()
}

// flush queues every pending batch. It is what a send outside a batch
// does first, and costs one atomic load when nothing is pending.
func (bs *batches) flush() {
	if bs.n.Load() == 0 {
		return
	}
	var buf [16]*Stream
	bs.mu.Lock()
	pending := append(buf[:0], bs.list...)
	bs.mu.Unlock()
	for _, s := range pending {
		s.bmu.Lock()
		s.flushLocked()
		s.bmu.Unlock()
	}
}

// beginRun starts gathering s's broadcasts: its on-loop mailbox is about
// to run.
func (s *Stream) beginRun() {
	s.bmu.Lock()
	s.batch.running = true
	s.bmu.Unlock()
}

// endRun queues what the run gathered and stops gathering.
func (s *Stream) endRun() {
	s.bmu.Lock()
	s.batch.running = false
	s.flushLocked()
	s.bmu.Unlock()
}

// streamRun is a stream as its on-loop application's mailbox sees it
// (actors.RunHooks): a type of its own, so that Stream's methods stay
// those of the handler API.
type streamRun Stream

// BeginRun implements actors.RunHooks.
func (r *streamRun) BeginRun() { (*Stream)(r).beginRun() }

// EndRun implements actors.RunHooks.
func (r *streamRun) EndRun() { (*Stream)(r).endRun() }

// gather adds payload to s's batch, going to every stream but except,
// and reports whether it did: not outside a run of s's application.
func (s *Stream) gather(except *Stream, payload []byte) bool {
	size := wire.FrameSize(len(payload))
	s.bmu.Lock()
	b := &s.batch
	if !b.running {
		s.bmu.Unlock()
		return false
	}
	if b.frames > 0 && (b.except != except || len(b.buf)+size > maxBatch) {
		s.flushLocked()
	}
	if b.frames == 0 {
		b.buf = make([]byte, 0, max(b.hint, size, minBatch))
		b.except = except
		if except != s {
			// s is a receiver too: it must not finish (a half-closed
			// peer, once its replies are written) before its copy is
			// queued.
			b.owing = true
			s.conn.Owe()
		}
		s.view.set.batches.add(s)
	}
	b.buf, _ = wire.AppendFrame(b.buf, payload)
	b.frames++
	s.bmu.Unlock()
	return true
}

// flushLocked queues s's batch to every open stream but its except, with
// s.bmu held.
func (s *Stream) flushLocked() {
	b := &s.batch
	if b.frames == 0 {
		return
	}
	f, err := netpoll.NewFrames(b.buf)
	if err != nil {
		panic("actors: a broadcast batch holds bytes that are not frames: " + err.Error())
	}
	s.view.sendFrames(b.except, f)
	b.hint = min(len(b.buf), maxBatch)
	b.buf, b.frames, b.except = nil, 0, nil
	s.view.set.batches.remove(s)
	if b.owing {
		b.owing = false
		s.conn.Settle()
	}
}
