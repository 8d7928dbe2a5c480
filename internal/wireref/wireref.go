// Package wireref is the test oracle for the frame format: a decoder read
// straight off docs/PROTOCOL.md §1, over a whole stream at once, with none
// of wire.Decoder's carry-over machinery, so that the two cannot share a
// bug. The Decoder's tests and the fuzzing of netpoll's read path both
// judge against it.
package wireref

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// Decode returns the payloads of s up to its first protocol error, that
// error (with the offset and fields wire.ProtocolError documents), and the
// length of a trailing incomplete frame. limit is the largest payload.
func Decode(s []byte, limit int) (payloads [][]byte, buffered int, err *wire.ProtocolError) {
	i := 0
	for i < len(s) {
		if s[i] != wire.Start {
			return payloads, 0, &wire.ProtocolError{Err: wire.ErrBadStart, Offset: int64(i), Byte: s[i]}
		}
		if len(s)-i < wire.HeaderSize {
			break
		}
		n := int(binary.BigEndian.Uint16(s[i+1:]))
		if n > limit {
			return payloads, 0, &wire.ProtocolError{Err: wire.ErrTooLarge, Offset: int64(i + 1), Length: n, Max: limit}
		}
		end := i + wire.HeaderSize + n
		if end >= len(s) {
			break
		}
		if s[end] != wire.End {
			return payloads, 0, &wire.ProtocolError{Err: wire.ErrBadEnd, Offset: int64(end), Byte: s[end]}
		}
		payloads = append(payloads, s[i+wire.HeaderSize:end])
		i = end + 1
	}
	return payloads, len(s) - i, nil
}

// Equal reports whether two lists of payloads are the same.
func Equal(got, want [][]byte) bool { return slices.EqualFunc(got, want, bytes.Equal) }

// Describe summarises payloads for a failure message: the count and the
// first few, long ones cut.
func Describe(payloads [][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d payloads", len(payloads))
	for i, p := range payloads {
		if i == 8 {
			b.WriteString(" ...")
			break
		}
		if len(p) <= 16 {
			fmt.Fprintf(&b, " %q", p)
		} else {
			fmt.Fprintf(&b, " [%d bytes %q...]", len(p), p[:16])
		}
	}
	return b.String()
}
