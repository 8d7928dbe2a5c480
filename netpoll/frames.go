package netpoll

import (
	"errors"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// Frames is a run of encoded frames, back to back, checked once by
// NewFrames and then shared, without copying, by every connection it is
// sent to (Conn.SendFramesFrom). A broadcast of several frames is queued
// to each connection as one piece: one append under the connection's
// lock, one iovec in its writev, instead of one of each per frame.
type Frames struct {
	b       []byte
	n       int // frames
	payload int // their payload bytes
}

// ErrNotFrames is NewFrames' answer to bytes that are not whole encoded
// frames.
var ErrNotFrames = errors.New("netpoll: bytes that are not whole encoded frames")

// NewFrames checks that b is one or more whole encoded frames (as
// wire.AppendFrame makes them) and wraps it. b must not be modified
// afterwards.
func NewFrames(b []byte) (Frames, error) {
	f := Frames{b: b}
	for rest := b; len(rest) > 0; {
		if len(rest) < wire.Overhead || rest[0] != wire.Start {
			return Frames{}, ErrNotFrames
		}
		n := int(rest[1])<<8 | int(rest[2])
		size := wire.FrameSize(n)
		if len(rest) < size || rest[size-1] != wire.End {
			return Frames{}, ErrNotFrames
		}
		rest = rest[size:]
		f.n++
		f.payload += n
	}
	if f.n == 0 {
		return Frames{}, ErrNotFrames
	}
	return f, nil
}

// Len is the number of frames.
func (f Frames) Len() int { return f.n }

// Size is their bytes on the wire.
func (f Frames) Size() int { return len(f.b) }

// SendFramesFrom queues every frame of f, in order, on behalf of producer
// (as SendFrom), sharing f's bytes. The bound and the memory budget count
// them together: when they do not fit, none is queued and the errors are
// those of Send.
func (c *Conn) SendFramesFrom(producer *Conn, f Frames) error {
	if f.n == 0 {
		panic("netpoll: SendFramesFrom given a zero Frames; use NewFrames")
	}
	return c.enqueue(producer, nil, f.b, f.n, f.payload)
}
