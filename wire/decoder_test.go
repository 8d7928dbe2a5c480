package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hydrogen-mq/hydrogen/internal/wireref"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// frame returns payload framed for the wire. It panics instead of taking a
// testing.TB so that package-level tables can call it: only a payload over
// MaxPayload fails, and that would be a bug in the table.
func frame(payload []byte) []byte {
	f, err := wire.AppendFrame(nil, payload)
	if err != nil {
		panic(err)
	}
	return f
}

// frames returns the payloads framed back to back, as a peer writes them.
func frames(payloads ...[]byte) []byte {
	var s []byte
	for _, p := range payloads {
		s = append(s, frame(p)...)
	}
	return s
}

// cat joins byte strings, for writing streams in tables.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// fill returns n bytes of b.
func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// bytewise cuts s into one-byte pieces: the worst fragmentation a reader
// can deliver, and every frame split at every boundary at once.
func bytewise(s []byte) [][]byte {
	pieces := make([][]byte, len(s))
	for i := range s {
		pieces[i] = s[i : i+1]
	}
	return pieces
}

// decodePieces feeds the pieces in order, calling Next until it reports no
// frame before each next Feed, as a connection's read loop does. It returns
// copies of the payloads and the first error.
//
// Each piece is fed from one scratch buffer that is overwritten once the
// decoder is done with it, as a reused read buffer is. A decoder that kept
// pointing into fed bytes after Next reported no frame therefore returns
// garbage here instead of passing by luck.
func decodePieces(d *wire.Decoder, pieces ...[]byte) ([][]byte, error) {
	var got [][]byte
	var scratch []byte
	fed := 0
	for _, piece := range pieces {
		scratch = append(scratch[:0], piece...)
		fed += len(piece)
		d.Feed(scratch)
		for {
			p, ok, err := d.Next()
			if err != nil {
				return got, err
			}
			if !ok {
				break
			}
			got = append(got, bytes.Clone(p))
			// A frame just returned is complete, whether it came from the
			// fed bytes or the carry buffer: nothing incomplete is held.
			if n := d.Buffered(); n != 0 {
				return got, fmt.Errorf("Buffered() = %d right after a frame", n)
			}
			// Every frame takes at least Overhead bytes, and at most one
			// began before this call; more frames than that is a decoder
			// stuck returning the same one.
			if (len(got)-1)*wire.Overhead > fed {
				return got, fmt.Errorf("%d frames out of %d bytes", len(got), fed)
			}
		}
		for i := range scratch {
			scratch[i] = 0xEE
		}
	}
	return got, nil
}

// Payloads hold the protocol's own bytes, lengths whose header bytes are
// 0x01 and 0x17, and empty messages, so that a decoder scanning for
// delimiters instead of counting the length cannot pass.
var splitTests = []struct {
	name     string
	stream   []byte // if nil, the payloads framed by AppendFrame
	payloads [][]byte
}{
	{name: "one empty", payloads: [][]byte{{}}},
	{name: "only empty", payloads: [][]byte{{}, {}, {}}},
	{name: "one byte", payloads: [][]byte{{'x'}}},
	{name: "text", payloads: [][]byte{[]byte("hello"), []byte("hydrogen")}},
	{name: "all START", payloads: [][]byte{fill(wire.Start, 7), fill(wire.Start, 1)}},
	{name: "all END", payloads: [][]byte{fill(wire.End, 7), fill(wire.End, 1)}},
	{name: "all 0x0D", payloads: [][]byte{fill(wire.ActionTelemetry, 7), fill(wire.ActionTelemetry, 5)}},
	{name: "protocol bytes mixed", payloads: [][]byte{
		{0x17, 0x01, 0x0D, 0x01, 0x17}, {0x01}, {0x17}, {0x0D}, {0x17, 0x17, 0x01, 0x01},
	}},
	{name: "payloads that look like frames", payloads: [][]byte{
		{0x01, 0x00, 0x00, 0x17}, {0x01, 0x00, 0x01, 0x17, 0x17},
	}},
	{name: "empty between", payloads: [][]byte{[]byte("a"), {}, []byte("b"), {}, {}, []byte("c")}},
	{name: "telemetry request", payloads: [][]byte{{0x0D, 0x3F, 0xC0, 0x00, 0x00}, []byte("after")}},
	{name: "length bytes are START and END", payloads: [][]byte{
		fill(wire.End, 0x0117), fill(wire.Start, 0x17), fill(wire.ActionTelemetry, 0x1701),
	}},
	{
		name:     "hand-written",
		stream:   []byte{0x01, 0x00, 0x02, 0x17, 0x01, 0x17, 0x01, 0x00, 0x00, 0x17, 0x01, 0x01, 0x00},
		payloads: [][]byte{{0x17, 0x01}, {}},
	},
}

func TestDecoderSplit(t *testing.T) {
	for _, tt := range splitTests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.stream
			if s == nil {
				s = frames(tt.payloads...)
			}
			// The hand-written stream ends in an incomplete frame, which
			// must stay buffered, not be lost or reported.
			want := tt.payloads
			buffered := len(s) - len(frames(want...))
			check := func(how string, pieces [][]byte) {
				t.Helper()
				d := wire.NewDecoder(wire.MaxPayload)
				got, err := decodePieces(d, pieces...)
				if err != nil {
					t.Fatalf("%s: error %v after %s", how, err, wireref.Describe(got))
				}
				if !wireref.Equal(got, want) {
					t.Fatalf("%s: got %s, want %s", how, wireref.Describe(got), wireref.Describe(want))
				}
				if n := d.Buffered(); n != buffered {
					t.Fatalf("%s: Buffered() = %d, want %d", how, n, buffered)
				}
				if p, ok, err := d.Next(); p != nil || ok || err != nil {
					t.Fatalf("%s: drained decoder: Next() = %q, %v, %v; want nil, false, nil", how, p, ok, err)
				}
			}
			check("one piece", [][]byte{s})
			for i := range len(s) + 1 {
				check(fmt.Sprintf("split at %d", i), [][]byte{s[:i], s[i:]})
			}
			check("byte at a time", bytewise(s))
		})
	}
}

// TestDecoderMaxPayload cuts the largest frame only around its header and
// END: splitting 64 KiB at every boundary would cost seconds and cover
// nothing that the small frames above do not.
func TestDecoderMaxPayload(t *testing.T) {
	big := make([]byte, wire.MaxPayload)
	for i := range big {
		big[i] = byte(i * 7)
	}
	want := [][]byte{{}, big, []byte("next")}
	s := frames(want...)
	first := wire.FrameSize(0)
	end := first + wire.FrameSize(wire.MaxPayload)
	for _, i := range []int{0, first, first + 1, first + 2, first + 3, first + 4, first + 3 + len(big)/2, end - 2, end - 1, end, end + 1, len(s)} {
		d := wire.NewDecoder(wire.MaxPayload)
		got, err := decodePieces(d, s[:i], s[i:])
		if err != nil || !wireref.Equal(got, want) {
			t.Errorf("split at %d: got %s, %v; want %s", i, wireref.Describe(got), err, wireref.Describe(want))
		}
	}
}

func TestDecoderManyFramesOneFeed(t *testing.T) {
	var want [][]byte
	for i := range 1000 {
		want = append(want, fill(byte(i), i%300))
	}
	s := frames(want...)
	d := wire.NewDecoder(wire.MaxPayload)
	got, err := decodePieces(d, s)
	if err != nil || !wireref.Equal(got, want) {
		t.Fatalf("got %s, %v; want %s", wireref.Describe(got), err, wireref.Describe(want))
	}
	if n := d.Buffered(); n != 0 {
		t.Errorf("Buffered() = %d, want 0", n)
	}
}

// An empty message is a message: ok must be true, or a caller that loops
// "while ok" would stop at it and stall the rest of the read.
func TestDecoderEmptyPayload(t *testing.T) {
	for _, pieces := range [][][]byte{
		{{0x01, 0x00, 0x00, 0x17}},
		{{0x01}, {0x00, 0x00, 0x17}},
		{{0x01, 0x00}, {0x00}, {0x17}},
		{{0x01, 0x00, 0x00}, {0x17}},
	} {
		d := wire.NewDecoder(wire.MaxPayload)
		for _, p := range pieces[:len(pieces)-1] {
			d.Feed(p)
			if payload, ok, err := d.Next(); ok || err != nil {
				t.Fatalf("%q: Next() = %q, %v, %v before the frame is complete", pieces, payload, ok, err)
			}
		}
		d.Feed(pieces[len(pieces)-1])
		payload, ok, err := d.Next()
		if !ok || err != nil || len(payload) != 0 {
			t.Errorf("%q: Next() = %q, %v, %v; want empty, true, nil", pieces, payload, ok, err)
		}
	}
}

var protocolErrorSentinels = []error{wire.ErrBadStart, wire.ErrBadEnd, wire.ErrTooLarge}

// Each stream is decoded whole, split in two at every boundary and one byte
// at a time: the error and its offset must not depend on how the bytes
// arrived. The splits put every offending byte both in the fast path (the
// frame whole in one Feed) and in the carried-over path, and split every
// length field between feeds.
var decoderErrorTests = []struct {
	name   string
	max    int // the decoder's maximum payload; 0 here means MaxPayload
	stream []byte
	frames [][]byte // payloads decoded before the error
	err    error
	off    int64
	b      byte // the offending byte, for ErrBadStart and ErrBadEnd
	length int  // the declared length, for ErrTooLarge
}{
	{name: "bad start", stream: []byte{0x02, 0x00, 0x00, 0x17}, err: wire.ErrBadStart, off: 0, b: 0x02},
	{name: "END where START belongs", stream: []byte{0x17}, err: wire.ErrBadStart, off: 0, b: 0x17},
	{
		name:   "bad start after a frame",
		stream: cat(frame([]byte("ab")), []byte{0x00, 0x01, 0x00, 0x00, 0x17}),
		frames: [][]byte{[]byte("ab")}, err: wire.ErrBadStart, off: 6, b: 0x00,
	},
	{
		// The offset counts every frame before, not only the last.
		name:   "bad start after two frames",
		stream: cat(frame([]byte("ab")), frame([]byte("cde")), []byte{0x02}),
		frames: [][]byte{[]byte("ab"), []byte("cde")}, err: wire.ErrBadStart, off: 13, b: 0x02,
	},
	{
		name:   "bad start after an empty frame",
		stream: []byte{0x01, 0x00, 0x00, 0x17, 0x0D},
		frames: [][]byte{{}}, err: wire.ErrBadStart, off: 4, b: 0x0D,
	},
	{name: "bad end", stream: []byte{0x01, 0x00, 0x02, 'a', 'b', 0x18}, err: wire.ErrBadEnd, off: 5, b: 0x18},
	{
		// A resynchronising decoder would take this for the next START.
		name:   "START where END belongs",
		stream: []byte{0x01, 0x00, 0x02, 'a', 'b', 0x01, 0x00, 0x00, 0x17},
		err:    wire.ErrBadEnd, off: 5, b: 0x01,
	},
	{name: "bad end of an empty frame", stream: []byte{0x01, 0x00, 0x00, 0x00}, err: wire.ErrBadEnd, off: 3, b: 0x00},
	{
		name:   "length shorter than the payload",
		stream: []byte{0x01, 0x00, 0x01, 'a', 'b', 0x17},
		err:    wire.ErrBadEnd, off: 4, b: 'b',
	},
	{
		name:   "bad end after a frame",
		stream: cat(frame([]byte("ab")), []byte{0x01, 0x00, 0x01, 'x', 'y'}),
		frames: [][]byte{[]byte("ab")}, err: wire.ErrBadEnd, off: 10, b: 'y',
	},
	{
		name:   "too large",
		max:    100,
		stream: frame(fill('x', 101)),
		err:    wire.ErrTooLarge, off: 1, length: 101,
	},
	{
		name:   "too large after a frame",
		max:    100,
		stream: cat(frame([]byte("ab")), frame(fill('x', 101))),
		frames: [][]byte{[]byte("ab")}, err: wire.ErrTooLarge, off: 7, length: 101,
	},
	{
		name:   "at the maximum, then over it",
		max:    100,
		stream: cat(frame(fill('x', 100)), frame(fill('y', 101))),
		frames: [][]byte{fill('x', 100)}, err: wire.ErrTooLarge, off: 105, length: 101,
	},
	{
		// The payload never arrives; the header alone must condemn it,
		// or a peer could make the broker wait for 64 KiB it will refuse.
		name:   "too large, header only",
		max:    100,
		stream: []byte{0x01, 0xFF, 0xFF},
		err:    wire.ErrTooLarge, off: 1, length: 0xFFFF,
	},
}

func TestDecoderErrors(t *testing.T) {
	for _, tt := range decoderErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.max
			if limit == 0 {
				limit = wire.MaxPayload
			}
			check := func(how string, pieces ...[]byte) {
				t.Helper()
				d := wire.NewDecoder(limit)
				got, err := decodePieces(d, pieces...)
				if !wireref.Equal(got, tt.frames) {
					t.Errorf("%s: decoded %s before the error, want %s", how, wireref.Describe(got), wireref.Describe(tt.frames))
				}
				if err == nil {
					t.Fatalf("%s: no error, want %v at offset %d", how, tt.err, tt.off)
				}
				for _, sentinel := range protocolErrorSentinels {
					if errors.Is(err, sentinel) != (sentinel == tt.err) {
						t.Errorf("%s: errors.Is(%v, %v) = %v", how, err, sentinel, !(sentinel == tt.err))
					}
				}
				var pe *wire.ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("%s: %v (%T) is not a *ProtocolError", how, err, err)
				}
				if pe.Offset != tt.off {
					t.Errorf("%s: Offset = %d, want %d", how, pe.Offset, tt.off)
				}
				if tt.err == wire.ErrTooLarge {
					if pe.Length != tt.length || pe.Max != limit {
						t.Errorf("%s: Length, Max = %d, %d; want %d, %d", how, pe.Length, pe.Max, tt.length, limit)
					}
				} else if pe.Byte != tt.b {
					t.Errorf("%s: Byte = %#02x, want %#02x", how, pe.Byte, tt.b)
				}
				if want := fmt.Sprintf("at offset %d", tt.off); !strings.Contains(err.Error(), want) {
					t.Errorf("%s: error %q does not say %q", how, err, want)
				}

				// Sticky: a broker that polled again must not see the
				// stream carry on, not even when a valid frame is fed.
				for _, next := range [][]byte{nil, frame([]byte("ok")), {0x02}} {
					d.Feed(next)
					if p, ok, err2 := d.Next(); p != nil || ok || err2 != err {
						t.Fatalf("%s: after the error, Next() = %q, %v, %v; want nil, false, %v", how, p, ok, err2, err)
					}
				}

				// Reset starts a new stream: no error, nothing carried
				// over, offsets from zero again.
				d.Reset()
				if n := d.Buffered(); n != 0 {
					t.Errorf("%s: after Reset, Buffered() = %d", how, n)
				}
				got, err = decodePieces(d, frame([]byte("ok")), []byte{0x02})
				if !wireref.Equal(got, [][]byte{[]byte("ok")}) || !errors.As(err, &pe) || pe.Offset != 6 {
					t.Errorf("%s: after Reset: got %s, %v; want \"ok\" then a bad start at offset 6", how, wireref.Describe(got), err)
				}
			}

			s := tt.stream
			check("one piece", s)
			for i := range len(s) + 1 {
				check(fmt.Sprintf("split at %d", i), s[:i], s[i:])
			}
			check("byte at a time", bytewise(s)...)

			// The error is reported as soon as its bytes are in, without
			// waiting for more, and not before.
			detect := tt.off + 1
			if tt.err == wire.ErrTooLarge {
				detect = tt.off + 2 // both length bytes
			}
			check("cut after the offending bytes", s[:detect])
			d := wire.NewDecoder(limit)
			if got, err := decodePieces(d, s[:tt.off]); err != nil || !wireref.Equal(got, tt.frames) {
				t.Errorf("cut before the offending bytes: got %s, %v; want %s, no error", wireref.Describe(got), err, wireref.Describe(tt.frames))
			}
		})
	}
}

var protocolErrorTests = []struct {
	err  *wire.ProtocolError
	want string
}{
	{&wire.ProtocolError{Err: wire.ErrBadStart, Offset: 0, Byte: 0x02}, "wire: bad start byte at offset 0: 0x02"},
	{&wire.ProtocolError{Err: wire.ErrBadEnd, Offset: 1 << 40, Byte: 0xFF}, "wire: bad end byte at offset 1099511627776: 0xff"},
	{
		&wire.ProtocolError{Err: wire.ErrTooLarge, Offset: 7, Length: 101, Max: 100},
		"wire: frame length over the maximum at offset 7: length 101, maximum 100",
	},
}

// The message is what an operator reads in the broker's log when it closes
// a connection; it must say what, where and, for a length, both numbers.
func TestProtocolErrorMessage(t *testing.T) {
	for _, tt := range protocolErrorTests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, tt.err.Err) {
			t.Errorf("errors.Is(%v, %v) = false", tt.err, tt.err.Err)
		}
	}
}

var decoderMaxTests = []struct {
	in, max int
}{
	{-1, wire.MaxPayload},
	{0, 0},
	{1, 1},
	{100, 100},
	{wire.MaxPayload - 1, wire.MaxPayload - 1},
	{wire.MaxPayload, wire.MaxPayload},
	{wire.MaxPayload + 1, wire.MaxPayload},
	{1 << 40, wire.MaxPayload},
}

// The effective maximum is observed from outside: a payload of exactly max
// bytes decodes, one more is ErrTooLarge.
func TestDecoderMax(t *testing.T) {
	for _, tt := range decoderMaxTests {
		var embedded struct{ d wire.Decoder }
		embedded.d.Init(tt.in)
		for name, d := range map[string]*wire.Decoder{"NewDecoder": wire.NewDecoder(tt.in), "Init": &embedded.d} {
			got, err := decodePieces(d, frame(fill('x', tt.max)))
			if err != nil || len(got) != 1 || len(got[0]) != tt.max {
				t.Errorf("%s(%d): %d-byte payload: got %s, %v", name, tt.in, tt.max, wireref.Describe(got), err)
			}
			if tt.max == wire.MaxPayload {
				continue // no longer length can be written
			}
			// Twice, with a Reset between: Reset keeps the maximum.
			for range 2 {
				_, err = decodePieces(d, frame(fill('x', tt.max+1)))
				var pe *wire.ProtocolError
				if !errors.Is(err, wire.ErrTooLarge) || !errors.As(err, &pe) || pe.Max != tt.max {
					t.Errorf("%s(%d): %d-byte payload: error %v, want ErrTooLarge with Max %d", name, tt.in, tt.max+1, err, tt.max)
				}
				d.Reset()
			}
		}
	}
}

// Buffered is read after Next reports no frame, as a broker does to see a
// peer stuck mid-frame.
var bufferedTests = []struct {
	name     string
	feeds    [][]byte
	buffered []int // after each feed is drained
	frames   int   // payloads decoded in all
}{
	{"nothing fed", [][]byte{nil}, []int{0}, 0},
	{"START only", [][]byte{{0x01}}, []int{1}, 0},
	{
		"header split",
		[][]byte{{0x01, 0x00}, {0x03}, {'a', 'b'}, {'c', 0x17}},
		[]int{2, 3, 5, 0}, 1,
	},
	{"frame then a piece", [][]byte{{0x01, 0x00, 0x00, 0x17, 0x01, 0x00}}, []int{2}, 1},
	{
		"carried frame ends, next begins",
		[][]byte{{0x01, 0x00, 0x01}, {'x', 0x17, 0x01}, {0x00, 0x00, 0x17}},
		[]int{3, 1, 0}, 2,
	},
	{"whole frames", [][]byte{frame([]byte("a")), frame(nil)}, []int{0, 0}, 2},
	{"empty feed keeps the carry", [][]byte{{0x01, 0x00}, nil, {}}, []int{2, 2, 2}, 0},
}

func TestDecoderBuffered(t *testing.T) {
	for _, tt := range bufferedTests {
		d := wire.NewDecoder(wire.MaxPayload)
		if n := d.Buffered(); n != 0 {
			t.Errorf("%s: new decoder: Buffered() = %d", tt.name, n)
		}
		var all [][]byte
		for i, feed := range tt.feeds {
			got, err := decodePieces(d, feed)
			if err != nil {
				t.Fatalf("%s: feed %d: %v", tt.name, i, err)
			}
			all = append(all, got...)
			if n := d.Buffered(); n != tt.buffered[i] {
				t.Errorf("%s: after feed %d: Buffered() = %d, want %d", tt.name, i, n, tt.buffered[i])
			}
		}
		if len(all) != tt.frames {
			t.Errorf("%s: decoded %s, want %d payloads", tt.name, wireref.Describe(all), tt.frames)
		}
	}
}

// The package promises that a Decoder in steady state allocates nothing:
// the broker decodes every byte of every connection through one.
func TestDecoderAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled carry buffers at random; scripts/test runs this without it")
	}
	s := frames(fill('x', 64), fill('y', 1000), nil, fill('z', 64))
	d := wire.NewDecoder(wire.MaxPayload)
	run := func() {
		for rest := s; len(rest) > 0; {
			n := min(len(rest), 61) // shorter than a frame: most are carried over
			d.Feed(rest[:n])
			rest = rest[n:]
			for {
				_, ok, err := d.Next()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
			}
		}
	}
	run() // grow the carry buffer to the largest frame once
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Errorf("decoding allocates %v times per stream, want 0", allocs)
	}
}

// A frame split across reads borrows a carry buffer that fits it and gives
// it back once returned: an idle connection after a large split frame
// holds no more than a fresh one. Held reports the borrowed bytes, which
// the broker counts against its memory budget.
func TestDecoderGivesCarryBack(t *testing.T) {
	tests := []struct {
		name    string
		payload int
		cut     int // bytes of the frame in the first read
		minHeld int // Held() while the frame is incomplete is at least this
		maxHeld int // and at most this
	}{
		{"header split", 10, 2, 14, 256},
		{"small", 100, 50, 104, 256},
		{"4 KiB class", 3000, 10, 3004, 4 << 10},
		{"largest", wire.MaxPayload, 65000, wire.MaxPayload + wire.Overhead, wire.MaxPayload + wire.Overhead},
		{"largest, header split", wire.MaxPayload, 1, wire.MaxPayload + wire.Overhead, wire.MaxPayload + wire.Overhead},
	}
	for _, tt := range tests {
		d := wire.NewDecoder(wire.MaxPayload)
		if h := d.Held(); h != 0 {
			t.Fatalf("%s: a fresh decoder holds %d bytes", tt.name, h)
		}
		s := frame(fill('p', tt.payload))
		d.Feed(s[:tt.cut])
		if _, ok, err := d.Next(); ok || err != nil {
			t.Fatalf("%s: first piece: ok=%v err=%v", tt.name, ok, err)
		}
		rest := s[tt.cut:]
		if tt.cut < wire.HeaderSize {
			// Complete the header first: the buffer grows to the frame.
			d.Feed(rest[:wire.HeaderSize-tt.cut])
			if _, ok, err := d.Next(); ok || err != nil {
				t.Fatalf("%s: header piece: ok=%v err=%v", tt.name, ok, err)
			}
			rest = rest[wire.HeaderSize-tt.cut:]
		}
		if h := d.Held(); h < tt.minHeld || h > tt.maxHeld {
			t.Errorf("%s: incomplete frame: Held() = %d, want %d..%d", tt.name, h, tt.minHeld, tt.maxHeld)
		}
		d.Feed(rest)
		p, ok, err := d.Next()
		if !ok || err != nil || len(p) != tt.payload {
			t.Fatalf("%s: completing piece: %d bytes, ok=%v err=%v", tt.name, len(p), ok, err)
		}
		if _, ok, _ := d.Next(); ok {
			t.Fatalf("%s: a second frame from one", tt.name)
		}
		if h := d.Held(); h != 0 {
			t.Errorf("%s: after the frame: Held() = %d, want 0", tt.name, h)
		}
	}
}

// TestDecoderCarryClass: the carry buffer is the smallest of its sizes
// (256 bytes, 4, 16 and 64 KiB + 4) that holds the whole frame, from the
// moment the length is known, however the header arrived: exactly, at
// each size's edge. (Held is what the broker counts against its memory
// budget, so a buffer of the wrong class is a wrong count.)
func TestDecoderCarryClass(t *testing.T) {
	for _, tt := range []struct {
		name    string
		payload int
		pieces  []int // bytes of the frame in each feed; the frame stays incomplete
		held    int
	}{
		{"a frame of 256 bytes fits the smallest", 252, []int{10}, 256},
		{"one of 257 does not", 253, []int{10}, 4 << 10},
		{"the header alone tells the size", 253, []int{3}, 4 << 10},
		{"the start byte alone: the smallest", 253, []int{1}, 256},
		{"the header completed later grows it", 253, []int{1, 2}, 4 << 10},
		{"the header completed with payload", 253, []int{2, 5}, 4 << 10},
		{"a frame of 4,096 bytes", 4092, []int{3}, 4 << 10},
		{"one of 4,097", 4093, []int{3}, 16 << 10},
		{"one of 16,385", 16381, []int{1, 2}, wire.MaxPayload + wire.Overhead},
	} {
		d := wire.NewDecoder(wire.MaxPayload)
		s := frame(fill('c', tt.payload))
		off := 0
		for _, n := range tt.pieces {
			d.Feed(s[off : off+n])
			off += n
			if p, ok, err := d.Next(); ok || err != nil {
				t.Fatalf("%s: Next() = %q, %v, %v on an incomplete frame", tt.name, p, ok, err)
			}
		}
		if h := d.Held(); h != tt.held {
			t.Errorf("%s: Held() = %d, want %d", tt.name, h, tt.held)
		}
		d.Feed(s[off:])
		if p, ok, err := d.Next(); !ok || err != nil || !bytes.Equal(p, fill('c', tt.payload)) {
			t.Errorf("%s: the rest: Next() = %d bytes, %v, %v", tt.name, len(p), ok, err)
		}
		if h := d.Held(); h != 0 {
			// The buffer goes back on the next call.
			if _, ok, _ := d.Next(); ok || d.Held() != 0 {
				t.Errorf("%s: Held() = %d after the frame", tt.name, d.Held())
			}
		}
	}
}
