package wire

import (
	"errors"
	"fmt"
	"sync"
)

// Sentinel protocol errors. A Decoder returns them wrapped in a
// *ProtocolError that says where in the stream they happened; test with
// errors.Is.
var (
	ErrBadStart = errors.New("wire: bad start byte")
	ErrBadEnd   = errors.New("wire: bad end byte")
	ErrTooLarge = errors.New("wire: frame length over the maximum")
)

// ProtocolError is a violation of the frame format at a known place.
type ProtocolError struct {
	Err    error // ErrBadStart, ErrBadEnd or ErrTooLarge
	Offset int64 // stream offset of the offending byte (of the length field for ErrTooLarge)
	Byte   byte  // the offending byte, for ErrBadStart and ErrBadEnd
	Length int   // the declared payload length, for ErrTooLarge
	Max    int   // the decoder's maximum payload, for ErrTooLarge
}

func (e *ProtocolError) Error() string {
	switch e.Err {
	case ErrTooLarge:
		return fmt.Sprintf("%v at offset %d: length %d, maximum %d", e.Err, e.Offset, e.Length, e.Max)
	default:
		return fmt.Sprintf("%v at offset %d: 0x%02x", e.Err, e.Offset, e.Byte)
	}
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// Decoder cuts frames out of a byte stream delivered in arbitrary pieces.
//
// Use it as: Feed the bytes of one read, then call Next until it reports no
// frame. A frame split across reads is carried over in a buffer sized for
// that frame, taken from a pool shared by all decoders and given back as
// soon as the frame has been returned, so a decoder between frames holds
// no buffer at all (Held reports what it holds) and the steady state
// allocates nothing.
//
// The first protocol error is sticky: Next keeps returning it until Reset.
// A broker closes the connection on it; it never guesses at the next frame
// boundary inside an opaque payload.
type Decoder struct {
	max  int
	in   []byte  // unread part of the fed bytes
	part []byte  // an incomplete frame carried over from earlier reads
	box  *[]byte // part's buffer, borrowed from carryPools; nil between frames
	done bool    // part holds a frame already returned; give it back on the next call
	off  int64   // stream offset of in[0]
	err  error
}

// NewDecoder returns a Decoder that rejects payloads longer than
// maxPayload bytes. A maxPayload outside [0, MaxPayload] means MaxPayload.
func NewDecoder(maxPayload int) *Decoder {
	d := &Decoder{}
	d.Init(maxPayload)
	return d
}

// Init prepares a Decoder value in place, as NewDecoder does; it lets a
// Decoder be embedded in another struct without a separate allocation.
func (d *Decoder) Init(maxPayload int) {
	if maxPayload < 0 || maxPayload > MaxPayload {
		maxPayload = MaxPayload
	}
	putCarry(d.box)
	*d = Decoder{max: maxPayload}
}

// Reset clears the stream state and any error, keeping the configured
// maximum. The carry buffer goes back to the pool.
func (d *Decoder) Reset() { d.Init(d.max) }

// Held reports the bytes of carry buffer the decoder holds: the capacity
// of the buffer of an incomplete frame, or 0 between frames. It is what a
// connection costs beyond its fixed state while a frame is split across
// reads, for callers that keep a memory budget.
func (d *Decoder) Held() int { return cap(d.part) }

// Feed hands the decoder the next bytes of the stream. The decoder reads
// p until Next reports no frame; the caller must not modify p until then.
// Any bytes of an earlier Feed not yet consumed by Next are lost, so call
// Next until it returns false before feeding again.
func (d *Decoder) Feed(p []byte) { d.in = p }

// Buffered reports how many bytes of an incomplete frame the decoder is
// holding, waiting for the rest.
func (d *Decoder) Buffered() int {
	if d.done {
		return 0
	}
	return len(d.part)
}

// Next returns the next complete frame's payload. ok is false when the fed
// bytes hold no further complete frame (the rest, if any, is carried over)
// or on error. The payload aliases the fed bytes or the decoder's carry
// buffer and is valid only until the next call to Next, Feed or Reset;
// copy it to keep it.
func (d *Decoder) Next() (payload []byte, ok bool, err error) {
	if d.err != nil {
		return nil, false, d.err
	}
	if d.done {
		d.release()
		d.done = false
	}
	if len(d.part) > 0 {
		return d.continuePart()
	}
	in := d.in
	if len(in) == 0 {
		return nil, false, nil
	}
	if in[0] != Start {
		return nil, false, d.fail(ErrBadStart, d.off, in[0], 0)
	}
	if len(in) >= HeaderSize {
		n := int(in[1])<<8 | int(in[2])
		if n > d.max {
			return nil, false, d.fail(ErrTooLarge, d.off+1, 0, n)
		}
		if len(in) >= n+Overhead {
			if in[HeaderSize+n] != End {
				return nil, false, d.fail(ErrBadEnd, d.off+int64(HeaderSize+n), in[HeaderSize+n], 0)
			}
			d.in = in[n+Overhead:]
			d.off += int64(n + Overhead)
			return in[HeaderSize : HeaderSize+n : HeaderSize+n], true, nil
		}
	}
	// An incomplete frame: carry it over. Its start byte (and length, if
	// present) were validated above, so errors are reported as early as the
	// bytes allow. With the length known the buffer fits the whole frame;
	// without it, the smallest one, replaced once the length arrives.
	need := HeaderSize
	if len(in) >= HeaderSize {
		need = int(in[1])<<8 | int(in[2]) + Overhead
	}
	d.box = getCarry(need)
	d.part = append(*d.box, in...)
	d.off += int64(len(in))
	d.in = nil
	return nil, false, nil
}

// continuePart completes the carried-over frame from the fed bytes.
func (d *Decoder) continuePart() ([]byte, bool, error) {
	for {
		have := len(d.part)
		var need int
		if have < HeaderSize {
			need = HeaderSize - have
		} else {
			need = d.partLen() + Overhead - have
		}
		if need == 0 {
			n := d.partLen()
			// d.off is the offset just past the carried bytes.
			if b := d.part[HeaderSize+n]; b != End {
				return nil, false, d.fail(ErrBadEnd, d.off-1, b, 0)
			}
			d.done = true
			return d.part[HeaderSize : HeaderSize+n : HeaderSize+n], true, nil
		}
		if len(d.in) == 0 {
			return nil, false, nil
		}
		take := min(need, len(d.in))
		d.part = append(d.part, d.in[:take]...)
		d.in = d.in[take:]
		d.off += int64(take)
		if have < HeaderSize && len(d.part) >= HeaderSize {
			n := d.partLen()
			if n > d.max {
				return nil, false, d.fail(ErrTooLarge, d.off-int64(len(d.part))+1, 0, n)
			}
			if size := n + Overhead; size > cap(d.part) {
				box := getCarry(size)
				grown := append(*box, d.part...)
				d.release()
				d.box, d.part = box, grown
			}
		}
	}
}

// release gives the carry buffer back to its pool.
func (d *Decoder) release() {
	putCarry(d.box)
	d.box, d.part = nil, nil
}

func (d *Decoder) partLen() int { return int(d.part[1])<<8 | int(d.part[2]) }

func (d *Decoder) fail(sentinel error, off int64, b byte, n int) error {
	d.err = &ProtocolError{Err: sentinel, Offset: off, Byte: b, Length: n, Max: d.max}
	d.in = nil
	return d.err
}

// Carry buffers come in a few sizes, each size with a pool shared by every
// decoder. A frame split across reads borrows the smallest buffer that
// holds it whole and gives it back once returned, so that what a split
// 64 KiB frame needed is not kept by an idle connection for the rest of
// its life, and a busy one does not allocate per split frame. The pools
// hold pointers to the buffers (the box), which the decoder keeps while it
// borrows one, so that giving a buffer back allocates nothing.
var carrySizes = [...]int{256, 4 << 10, 16 << 10, MaxPayload + Overhead}

var carryPools [len(carrySizes)]sync.Pool

// getCarry returns the box of an empty buffer with room for n bytes.
func getCarry(n int) *[]byte {
	for i, size := range carrySizes {
		if n <= size {
			if b, ok := carryPools[i].Get().(*[]byte); ok {
				*b = (*b)[:0]
				return b
			}
			b := make([]byte, 0, size)
			return &b
		}
	}
	panic("wire: carry buffer for a frame over the maximum")
}

// putCarry gives a box from getCarry back; nil is ignored.
func putCarry(b *[]byte) {
	if b == nil {
		return
	}
	for i, size := range carrySizes {
		if cap(*b) == size {
			carryPools[i].Put(b)
			return
		}
	}
}
