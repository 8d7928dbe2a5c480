package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// Expected frames are written out byte by byte, not built with AppendFrame,
// so that the decoder tests, which do build their streams with it, stand on
// a checked encoder.
var appendFrameTests = []struct {
	name    string
	dst     []byte
	payload []byte
	want    []byte
}{
	{"nil payload", nil, nil, []byte{0x01, 0x00, 0x00, 0x17}},
	{"empty payload", nil, []byte{}, []byte{0x01, 0x00, 0x00, 0x17}},
	{"one byte", nil, []byte("a"), []byte{0x01, 0x00, 0x01, 'a', 0x17}},
	{"protocol bytes", nil, []byte{0x01, 0x17, 0x0D}, []byte{0x01, 0x00, 0x03, 0x01, 0x17, 0x0D, 0x17}},
	{"appends to dst", []byte("xy"), []byte("a"), []byte{'x', 'y', 0x01, 0x00, 0x01, 'a', 0x17}},
	{"after a frame", []byte{0x01, 0x00, 0x00, 0x17}, nil, []byte{0x01, 0x00, 0x00, 0x17, 0x01, 0x00, 0x00, 0x17}},
	// Lengths whose high byte is set prove the length is big-endian.
	{"length 256", nil, fill('z', 256), cat([]byte{0x01, 0x01, 0x00}, fill('z', 256), []byte{0x17})},
	{"length 0x0117", nil, fill(0x17, 0x0117), cat([]byte{0x01, 0x01, 0x17}, fill(0x17, 0x0117), []byte{0x17})},
	{"length 65535", nil, fill(0xAB, 65535), cat([]byte{0x01, 0xFF, 0xFF}, fill(0xAB, 65535), []byte{0x17})},
}

func TestAppendFrame(t *testing.T) {
	for _, tt := range appendFrameTests {
		got, err := wire.AppendFrame(bytes.Clone(tt.dst), tt.payload)
		if err != nil {
			t.Errorf("%s: AppendFrame: %v", tt.name, err)
			continue
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("%s: AppendFrame = % x, want % x", tt.name, head(got), head(tt.want))
		}
		if n := len(got) - len(tt.dst); n != wire.FrameSize(len(tt.payload)) {
			t.Errorf("%s: appended %d bytes, FrameSize(%d) = %d", tt.name, n, len(tt.payload), wire.FrameSize(len(tt.payload)))
		}
	}
}

func TestEncode(t *testing.T) {
	for _, tt := range appendFrameTests {
		got, err := wire.Encode(tt.payload)
		if err != nil {
			t.Errorf("%s: Encode: %v", tt.name, err)
			continue
		}
		if want := tt.want[len(tt.dst):]; !bytes.Equal(got, want) {
			t.Errorf("%s: Encode = % x, want % x", tt.name, head(got), head(want))
		}
		// Encode promises a buffer of exactly the frame: a caller may hand
		// it to a writev queue without it pinning spare capacity.
		if n := wire.FrameSize(len(tt.payload)); len(got) != n || cap(got) != n {
			t.Errorf("%s: Encode: len %d, cap %d; want both %d", tt.name, len(got), cap(got), n)
		}
	}
}

func TestAppendFrameTooLarge(t *testing.T) {
	for _, n := range []int{wire.MaxPayload + 1, wire.MaxPayload + 2, 1 << 17, 1 << 20} {
		payload := fill('x', n)
		// dst has spare capacity marked with 0xAA: a failed append must
		// neither lengthen dst nor scribble past its length.
		dst := append(make([]byte, 0, 64), "prefix"...)
		spare := dst[len(dst):cap(dst)]
		for i := range spare {
			spare[i] = 0xAA
		}
		got, err := wire.AppendFrame(dst, payload)
		if !errors.Is(err, wire.ErrPayloadTooLarge) {
			t.Errorf("AppendFrame(%d bytes): error %v, want ErrPayloadTooLarge", n, err)
		}
		if !bytes.Equal(got, []byte("prefix")) || cap(got) != cap(dst) || &got[0] != &dst[0] {
			t.Errorf("AppendFrame(%d bytes) = %q (cap %d), want dst unchanged", n, got, cap(got))
		}
		if !bytes.Equal(spare, fill(0xAA, len(spare))) {
			t.Errorf("AppendFrame(%d bytes) wrote into dst's spare capacity: % x", n, spare)
		}

		if got, err := wire.AppendFrame(nil, payload); got != nil || !errors.Is(err, wire.ErrPayloadTooLarge) {
			t.Errorf("AppendFrame(nil, %d bytes) = %d bytes, %v; want nil, ErrPayloadTooLarge", n, len(got), err)
		}
		if got, err := wire.Encode(payload); got != nil || !errors.Is(err, wire.ErrPayloadTooLarge) {
			t.Errorf("Encode(%d bytes) = %d bytes, %v; want nil, ErrPayloadTooLarge", n, len(got), err)
		}
	}
}

// The broker frames every message it sends; with a reused buffer that must
// cost no allocation.
func TestAppendFrameAllocs(t *testing.T) {
	payload := fill('x', 64)
	buf := make([]byte, 0, wire.FrameSize(len(payload)))
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		buf, err = wire.AppendFrame(buf[:0], payload)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("AppendFrame into a reused buffer allocates %v times, want 0", allocs)
	}
}

// head shortens a frame for a failure message.
func head(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}
