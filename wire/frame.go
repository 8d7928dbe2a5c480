package wire

import (
	"errors"
	"fmt"
)

// Frame layout constants (docs/PROTOCOL.md §1).
const (
	Start      = 0x01  // first byte of every frame
	End        = 0x17  // last byte of every frame
	HeaderSize = 3     // START and the 16-bit length
	Overhead   = 4     // bytes a frame adds around its payload
	MaxPayload = 65535 // largest payload the 16-bit length can carry
)

// ErrPayloadTooLarge is returned when a payload cannot be framed: it is
// longer than MaxPayload.
var ErrPayloadTooLarge = errors.New("wire: payload longer than 65535 bytes")

// FrameSize is the number of bytes a frame with an n-byte payload takes on
// the wire.
func FrameSize(n int) int { return n + Overhead }

// AppendFrame appends payload framed for the wire to dst and returns the
// extended buffer. It fails only when payload is longer than MaxPayload, in
// which case dst is returned unchanged.
func AppendFrame(dst, payload []byte) ([]byte, error) {
	n := len(payload)
	if n > MaxPayload {
		return dst, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, n)
	}
	dst = append(dst, Start, byte(n>>8), byte(n))
	dst = append(dst, payload...)
	return append(dst, End), nil
}

// Encode returns payload framed in a new buffer of exactly FrameSize bytes.
func Encode(payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(payload))
	}
	return AppendFrame(make([]byte, 0, FrameSize(len(payload))), payload)
}
