package netpoll

import (
	"sync"

	"github.com/hydrogen-mq/hydrogen/wire"
	"golang.org/x/sys/unix"
)

// maxIovecs caps one writev; the kernel's IOV_MAX is 1024.
const maxIovecs = 1024

// maxKeptArena bounds the frame bytes a connection keeps allocated between
// bursts, so that a busy connection does not allocate per burst and an
// idle one stays small whatever it once sent. Larger arenas come from
// arenaPools and go back there once written. A connection's own arena
// starts at minArena bytes and doubles as its bursts need; one that has
// queued nothing for a while gives it up altogether (Conn.shrink).
const (
	minArena     = 256
	maxKeptArena = 4 << 10
)

// Arena sizes above maxKeptArena, each with a pool shared by every
// connection: a burst of replies borrows one and gives it back when
// written, so a busy connection does not allocate per burst and an idle
// one holds none. The pools keep boxes (pointers to the slices), which the
// arena keeps while it borrows one, so that giving one back allocates
// nothing.
var arenaSizes = [...]int{16 << 10, 64 << 10, 256 << 10, 1 << 20}

var arenaPools [len(arenaSizes)]sync.Pool

// growArena returns a with room for n more bytes: a itself if it has the
// room, else a larger arena holding a copy of a (a borrowed one past
// maxKeptArena), a given back.
func growArena(a []byte, box **[]byte, n int) []byte {
	need := len(a) + n
	if need <= cap(a) {
		return a
	}
	if need <= maxKeptArena {
		size := max(minArena, 2*cap(a))
		for size < need {
			size *= 2
		}
		return append(make([]byte, 0, min(size, maxKeptArena)), a...)
	}
	for i, size := range arenaSizes {
		if need <= size {
			b, ok := arenaPools[i].Get().(*[]byte)
			if !ok {
				s := make([]byte, 0, size)
				b = &s
			}
			grown := append((*b)[:0], a...)
			putArena(*box)
			*box = b
			return grown
		}
	}
	// Past the largest size: an ordinary allocation, dropped when written.
	grown := append(make([]byte, 0, need+need/4), a...)
	putArena(*box)
	*box = nil
	return grown
}

// putArena gives a borrowed arena back; nil is ignored.
func putArena(b *[]byte) {
	if b != nil {
		for i, size := range arenaSizes {
			if cap(*b) == size {
				arenaPools[i].Put(b)
				return
			}
		}
	}
}

// seg is one piece of a queue: a shared encoded frame, or (shared == nil)
// the range [lo, hi) of the queue's own arena of copied frames.
type seg struct {
	shared []byte
	lo, hi int
}

// pending is what senders have queued and the loop has not taken yet.
// It is guarded by the Conn's mutex.
type pending struct {
	arena   []byte  // frames copied by Send, back to back
	box     *[]byte // arena's box when it is borrowed from arenaPools
	start   int     // arena offset where the range not yet in segs begins
	segs    []seg
	frames  uint64 // frames queued, for the sent counters
	payload uint64 // their payload bytes
}

func (p *pending) appendFrame(payload []byte) {
	p.arena = growArena(p.arena, &p.box, wire.FrameSize(len(payload)))
	p.arena, _ = wire.AppendFrame(p.arena, payload)
	p.frames++
	p.payload += uint64(len(payload))
}

// appendShared queues frames, n encoded frames carrying payload bytes,
// without copying them.
func (p *pending) appendShared(frames []byte, n, payload int) {
	p.cut()
	p.segs = append(p.segs, seg{shared: frames})
	p.frames += uint64(n)
	p.payload += uint64(payload)
}

// cut closes the arena range written since the last segment.
func (p *pending) cut() {
	if len(p.arena) > p.start {
		p.segs = append(p.segs, seg{lo: p.start, hi: len(p.arena)})
		p.start = len(p.arena)
	}
}

func (p *pending) empty() bool { return len(p.segs) == 0 && len(p.arena) == p.start }

// outbound is the loop's side of a connection's queue: the bytes taken from
// pending and being written. Senders fill one arena while the loop writes
// the other; the two are swapped only when the loop has written all of its
// own, so neither side ever sees the other's bytes change.
type outbound struct {
	arena []byte
	box   *[]byte // arena's box when it is borrowed from arenaPools
	segs  []seg
	head  int // first segment not fully written
	off   int // bytes of segs[head] already written
}

func (o *outbound) empty() bool { return o.head == len(o.segs) }

// take moves p's queue into o, which must be empty, and returns the frame
// and payload counts it moved.
func (o *outbound) take(p *pending) (frames, payload uint64) {
	p.cut()
	o.arena, p.arena = p.arena, o.arena[:0]
	o.box, p.box = p.box, o.box
	o.segs, p.segs = p.segs, o.segs[:0]
	o.head, o.off = 0, 0
	p.start = 0
	frames, payload = p.frames, p.payload
	p.frames, p.payload = 0, 0
	return frames, payload
}

// iovecs fills iov with the unwritten bytes, at most maxIovecs pieces, and
// returns it with the number of bytes it holds.
func (o *outbound) iovecs(iov []unix.Iovec) ([]unix.Iovec, int64) {
	iov = iov[:0]
	var total int64
	for i := o.head; i < len(o.segs) && len(iov) < maxIovecs; i++ {
		b := o.bytes(i)
		if i == o.head {
			b = b[o.off:]
		}
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
		total += int64(len(b))
	}
	return iov, total
}

func (o *outbound) bytes(i int) []byte {
	s := o.segs[i]
	if s.shared != nil {
		return s.shared
	}
	return o.arena[s.lo:s.hi]
}

// gather copies the unwritten bytes into buf, as many as fit, and returns
// how many; advance then marks them taken.
func (o *outbound) gather(buf []byte) int {
	n := 0
	for i := o.head; i < len(o.segs) && n < len(buf); i++ {
		b := o.bytes(i)
		if i == o.head {
			b = b[o.off:]
		}
		n += copy(buf[n:], b)
	}
	return n
}

// advance marks n bytes written.
func (o *outbound) advance(n int) {
	for n > 0 && o.head < len(o.segs) {
		rest := len(o.bytes(o.head)) - o.off
		if n < rest {
			o.off += n
			return
		}
		n -= rest
		o.segs[o.head] = seg{} // drop the reference to a shared frame
		o.head++
		o.off = 0
	}
	if o.empty() {
		o.reset()
	}
}

// reset empties o, keeping small buffers for reuse and dropping large
// ones.
func (o *outbound) reset() {
	clear(o.segs)
	o.segs = o.segs[:0]
	o.head, o.off = 0, 0
	if cap(o.arena) > maxKeptArena {
		putArena(o.box)
		o.arena, o.box = nil, nil
	} else {
		o.arena = o.arena[:0]
	}
	if cap(o.segs) > maxIovecs {
		o.segs = nil
	}
}

// quietTicks is how many ticks a connection's queue must stay empty, with
// nothing taken from it, before the connection gives its buffers up.
const quietTicks = 4

// shrink gives up the buffers of a connection whose queue has been empty
// for quietTicks ticks: an idle connection holds no arena and no segment
// list, however busy it once was. Called by its loop's tick.
func (c *Conn) shrink() {
	if !c.out.empty() {
		c.quiet = 0
		return
	}
	if c.quiet++; c.quiet < quietTicks {
		return
	}
	c.quiet = 0
	c.mu.Lock()
	if c.pend.empty() && cap(c.pend.arena)|cap(c.pend.segs) != 0 {
		putArena(c.pend.box)
		c.pend = pending{}
	}
	c.mu.Unlock()
	if cap(c.out.arena)|cap(c.out.segs) != 0 {
		putArena(c.out.box)
		c.out = outbound{}
	}
	if c.tls != nil {
		c.tls.pipe.release()
	}
}
