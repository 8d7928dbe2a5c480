package wireref

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// The expectations here are written out by hand from docs/PROTOCOL.md §1
// (0x01, a big-endian 16-bit length, the payload, 0x17), in literal
// bytes: nothing is computed by package wire, whose decoder this package
// judges. Only the sentinel errors and the error type come from wire,
// since Decode returns them.

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecode(t *testing.T) {
	big := cat([]byte{0x01, 0xFF, 0xFF}, bytes.Repeat([]byte{0x17}, 65535), []byte{0x17})
	for _, tc := range []struct {
		name     string
		in       []byte
		limit    int
		want     []string
		buffered int
		err      *wire.ProtocolError
	}{
		{name: "nothing", in: nil, limit: 10},
		{name: "an empty frame", in: []byte{0x01, 0x00, 0x00, 0x17}, limit: 10, want: []string{""}},
		{name: "one frame", in: []byte{0x01, 0x00, 0x02, 'h', 'i', 0x17}, limit: 10, want: []string{"hi"}},
		{name: "two frames", in: []byte{0x01, 0x00, 0x01, 'a', 0x17, 0x01, 0x00, 0x02, 'b', 'c', 0x17}, limit: 10, want: []string{"a", "bc"}},
		{name: "the marker bytes inside a payload", in: []byte{0x01, 0x00, 0x04, 0x01, 0x17, 0x0D, 0x00, 0x17}, limit: 10, want: []string{"\x01\x17\x0d\x00"}},
		{name: "a length at the limit", in: []byte{0x01, 0x00, 0x03, 'a', 'b', 'c', 0x17}, limit: 3, want: []string{"abc"}},
		{name: "the largest frame", in: big, limit: 65535, want: []string{string(big[3 : 3+65535])}},

		// A trailing incomplete frame is buffered, not an error.
		{name: "a start byte alone", in: []byte{0x01}, limit: 10, buffered: 1},
		{name: "half a header", in: []byte{0x01, 0x00}, limit: 10, buffered: 2},
		{name: "a header alone", in: []byte{0x01, 0x00, 0x02}, limit: 10, buffered: 3},
		{name: "part of a payload", in: []byte{0x01, 0x00, 0x02, 'h'}, limit: 10, buffered: 4},
		{name: "all but the end byte", in: []byte{0x01, 0x00, 0x02, 'h', 'i'}, limit: 10, buffered: 5},
		{name: "a frame and the start of the next", in: []byte{0x01, 0x00, 0x01, 'a', 0x17, 0x01, 0x00}, limit: 10, want: []string{"a"}, buffered: 2},

		// Protocol errors, with what came before them.
		{name: "a bad start byte", in: []byte{'x', 0x00}, limit: 10,
			err: &wire.ProtocolError{Err: wire.ErrBadStart, Offset: 0, Byte: 'x'}},
		{name: "a bad start byte after a frame", in: []byte{0x01, 0x00, 0x00, 0x17, 0x02}, limit: 10, want: []string{""},
			err: &wire.ProtocolError{Err: wire.ErrBadStart, Offset: 4, Byte: 0x02}},
		{name: "a bad end byte", in: []byte{0x01, 0x00, 0x01, 'a', 'b'}, limit: 10,
			err: &wire.ProtocolError{Err: wire.ErrBadEnd, Offset: 4, Byte: 'b'}},
		{name: "a bad end byte in the second frame", in: []byte{0x01, 0x00, 0x01, 'a', 0x17, 0x01, 0x00, 0x00, 0x18}, limit: 10, want: []string{"a"},
			err: &wire.ProtocolError{Err: wire.ErrBadEnd, Offset: 8, Byte: 0x18}},
		{name: "a length over the limit", in: []byte{0x01, 0x00, 0x04, 'a', 'b', 'c', 'd', 0x17}, limit: 3,
			err: &wire.ProtocolError{Err: wire.ErrTooLarge, Offset: 1, Length: 4, Max: 3}},
		{name: "a length over the limit, known from the header alone", in: []byte{0x01, 0x00, 0x00, 0x17, 0x01, 0x00, 0x0B}, limit: 10, want: []string{""},
			err: &wire.ProtocolError{Err: wire.ErrTooLarge, Offset: 5, Length: 11, Max: 10}},
		{name: "the length is big-endian", in: []byte{0x01, 0x01, 0x00}, limit: 255,
			err: &wire.ProtocolError{Err: wire.ErrTooLarge, Offset: 1, Length: 256, Max: 255}},
		{name: "a limit of zero", in: []byte{0x01, 0x00, 0x00, 0x17, 0x01, 0x00, 0x01, 'a', 0x17}, limit: 0, want: []string{""},
			err: &wire.ProtocolError{Err: wire.ErrTooLarge, Offset: 5, Length: 1, Max: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, buffered, err := Decode(tc.in, tc.limit)
			if len(got) != len(tc.want) {
				t.Fatalf("%s, want %d payloads", Describe(got), len(tc.want))
			}
			for i := range got {
				if string(got[i]) != tc.want[i] {
					t.Errorf("payload %d is %q, want %q", i, got[i], tc.want[i])
				}
			}
			if buffered != tc.buffered {
				t.Errorf("buffered %d, want %d", buffered, tc.buffered)
			}
			switch {
			case tc.err == nil && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.err != nil && err == nil:
				t.Errorf("no error, want %v", tc.err)
			case tc.err != nil && *err != *tc.err:
				t.Errorf("error %+v, want %+v", *err, *tc.err)
			}
			if err != nil && !errors.Is(err, tc.err.Err) {
				t.Errorf("errors.Is(%v, %v) is false", err, tc.err.Err)
			}
		})
	}
}

// TestDecodePayloadsAlias: the payloads are the stream's own bytes, as
// the decoders they are compared with hand them out.
func TestDecodePayloadsAlias(t *testing.T) {
	in := []byte{0x01, 0x00, 0x02, 'h', 'i', 0x17}
	got, _, _ := Decode(in, 10)
	if len(got) != 1 || &got[0][0] != &in[3] {
		t.Fatalf("the payload does not point into the stream")
	}
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b [][]byte
		want bool
	}{
		{nil, nil, true},
		{nil, [][]byte{}, true},
		{[][]byte{{}}, [][]byte{nil}, true}, // an empty payload either way
		{[][]byte{[]byte("a"), []byte("bc")}, [][]byte{[]byte("a"), []byte("bc")}, true},
		{[][]byte{[]byte("a")}, [][]byte{[]byte("b")}, false},
		{[][]byte{[]byte("a")}, [][]byte{[]byte("a"), []byte("a")}, false},
		{[][]byte{[]byte("ab")}, [][]byte{[]byte("a"), []byte("b")}, false},
		{[][]byte{[]byte("a"), []byte("b")}, [][]byte{[]byte("b"), []byte("a")}, false},
	} {
		if got := Equal(tc.a, tc.b); got != tc.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	many := make([][]byte, 10)
	for i := range many {
		many[i] = []byte{'0' + byte(i)}
	}
	for _, tc := range []struct {
		in   [][]byte
		want string
	}{
		{nil, "0 payloads"},
		{[][]byte{[]byte("a"), {}}, `2 payloads "a" ""`},
		{[][]byte{[]byte("0123456789abcdef")}, `1 payloads "0123456789abcdef"`},
		{[][]byte{[]byte("0123456789abcdefg")}, `1 payloads [17 bytes "0123456789abcdef"...]`},
		{many, `10 payloads "0" "1" "2" "3" "4" "5" "6" "7" ...`},
	} {
		if got := Describe(tc.in); got != tc.want {
			t.Errorf("Describe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
