package netpoll

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// TestProtocolError: a frame format violation closes that connection
// alone, after the frames before it in the same read are delivered.
func TestProtocolError(t *testing.T) {
	const maxPayload = 16
	good := frames([]byte("first"), []byte{}, []byte{wire.End, wire.Start})
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"bad start", slices.Concat(good, []byte{0x02, 0, 0, wire.End}), wire.ErrBadStart},
		{"bad start first", []byte{0x00, wire.Start}, wire.ErrBadStart},
		{"bad end", slices.Concat(good, []byte{wire.Start, 0, 1, 'x', wire.End + 1}), wire.ErrBadEnd},
		{"bad end of empty", slices.Concat(good, []byte{wire.Start, 0, 0, wire.Start}), wire.ErrBadEnd},
		{"over MaxPayload", slices.Concat(good, []byte{wire.Start, 0, maxPayload + 1}), wire.ErrTooLarge},
		{"far over MaxPayload", slices.Concat(good, []byte{wire.Start, 0xff, 0xff}), wire.ErrTooLarge},
	}
	h := newHandler(t, replyAsync)
	s := startServer(t, Config{MaxPayload: maxPayload}, h)
	other := dial(t, s.Addr())
	otherConn := h.nextOpened(t).c
	roundTrip(t, other, []byte("hello"))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := dial(t, s.Addr())
			sc := h.nextOpened(t).c
			write(t, cl, tt.stream) // one write: very likely one read
			if tt.stream[0] == wire.Start {
				want := [][]byte{[]byte("first"), {}, {wire.End, wire.Start}}
				checkEcho(t, h.receivedFrom(t, sc, len(want)), want)
			}
			err := h.closedFor(t, sc)
			if !errors.Is(err, ErrProtocol) || !errors.Is(err, tt.want) {
				t.Fatalf("OnClose: %v, want ErrProtocol and %v", err, tt.want)
			}
			var pe *wire.ProtocolError
			if !errors.As(err, &pe) {
				t.Errorf("OnClose: %v is not a *wire.ProtocolError", err)
			}
			if st := s.Stats(); st.ClosedProtocol != uint64(i+1) {
				t.Errorf("ClosedProtocol %d, want %d", st.ClosedProtocol, i+1)
			}
			roundTrip(t, other, fmt.Appendf(nil, "after %d", i)) // under maxPayload
		})
	}
	if _, closes := h.counts(otherConn); closes != 0 {
		t.Error("the well-behaved connection was closed")
	}
}
