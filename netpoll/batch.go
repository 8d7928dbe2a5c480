package netpoll

import "sync"

// Batch carries the frames of one read to the Handler. Its payloads are
// copies (the loop's read buffer never escapes) and belong to the receiver
// until it calls Release, after which the batch and its payloads are
// reused: copy a payload to keep it past Release. A batch that is never
// released is simply garbage collected.
//
// Releasing also tells the connection that the receiver is done with
// these frames: a connection whose peer half-closed stays open for
// replies until every batch it delivered has been released and its
// outbound queue has drained.
type Batch struct {
	Frames [][]byte // payloads in the order received

	conn    *Conn
	buf     []byte
	counted int64 // bytes counted against the server's memory budget
}

// maxPooledBatch bounds the payload bytes a pooled batch keeps, so one
// burst of large frames does not pin memory for the life of the process.
const maxPooledBatch = 256 << 10

var batchPool = sync.Pool{New: func() any { return new(Batch) }}

// newBatch returns a batch able to hold size payload bytes without growing,
// so that slices handed out earlier in the same read stay valid. Its
// payload buffer counts against the memory budget until Release.
func newBatch(c *Conn, size int) *Batch {
	b := batchPool.Get().(*Batch)
	b.conn = c
	if cap(b.buf) < size {
		b.buf = make([]byte, 0, max(size, 4096))
	}
	b.counted = int64(size)
	c.loop.srv.mem.used.Add(b.counted)
	return b
}

// add copies payload into the batch.
func (b *Batch) add(payload []byte) {
	s := len(b.buf)
	b.buf = append(b.buf, payload...)
	b.Frames = append(b.Frames, b.buf[s:len(b.buf):len(b.buf)])
}

// Conn returns the connection the frames came from.
func (b *Batch) Conn() *Conn { return b.conn }

// Release returns the batch for reuse. Call it once, from any goroutine,
// when no payload of the batch is referenced any more.
func (b *Batch) Release() {
	c := b.conn
	if c != nil {
		c.loop.srv.mem.release(b.counted)
		b.counted = 0
	}
	clear(b.Frames)
	b.Frames = b.Frames[:0]
	b.buf = b.buf[:0]
	b.conn = nil
	if cap(b.buf) <= maxPooledBatch {
		batchPool.Put(b)
	}
	if c != nil {
		c.batchReleased()
	}
}
