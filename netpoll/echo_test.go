package netpoll

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// tricky is a payload of n bytes made of the protocol's own marker bytes
// (START, END, the telemetry action), with a serial number in front when it
// fits so that no two payloads of a test are equal.
func tricky(serial, n int) []byte {
	p := make([]byte, n)
	markers := [...]byte{wire.Start, wire.End, wire.ActionTelemetry}
	for i := range p {
		p[i] = markers[i%len(markers)]
	}
	if n >= 4 {
		binary.BigEndian.PutUint32(p, uint32(serial))
	}
	return p
}

// echoConn opens a client connection to an echo server and returns the
// fd its loop serves it on.
func echoConn(t *testing.T, s *Server, h *handler) (*net.TCPConn, int) {
	t.Helper()
	c := dial(t, s.Addr())
	return c, h.nextOpened(t).fd
}

// writePieces writes each piece as its own read of the server: it waits
// for the server's loop to take a piece off its socket before it writes
// the next, so a frame cut between pieces reaches the decoder cut.
func writePieces(t *testing.T, c net.Conn, fd int, pieces ...[]byte) {
	t.Helper()
	for i, p := range pieces {
		write(t, c, p)
		if i == len(pieces)-1 {
			break
		}
		waitFor(t, "the loop to read a piece", func() bool {
			n, err := inq(fd)
			if err != nil {
				t.Fatalf("SIOCINQ: %v", err)
			}
			return n == 0
		})
	}
}

func checkEcho(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d: got %s, want %s", i, brief(got[i]), brief(want[i]))
		}
	}
}

// TestEchoSplit writes streams cut at byte boundaries into separate reads
// of the server and expects every frame echoed intact and in order.
func TestEchoSplit(t *testing.T) {
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{}, h)

	small := [][]byte{
		{},
		{wire.Start},
		{wire.End},
		{wire.ActionTelemetry},
		{wire.Start, wire.End, wire.ActionTelemetry, wire.Start, wire.End},
		// Looks like a telemetry request: netpoll must not care.
		wire.AppendTelemetryRequest(nil, 1),
		{},
		tricky(7, 9),
	}
	big := tricky(1, wire.MaxPayload)
	withBig := [][]byte{{}, big, {wire.End}}
	bigStream := frames(withBig...)
	third := wire.FrameSize(0) + wire.FrameSize(len(big)) // where the last frame starts

	tests := []struct {
		name     string
		payloads [][]byte
		splits   []int // nil: every boundary
	}{
		{"small frames, every boundary", small, nil},
		{"65535-byte payload, its edges", withBig, []int{
			1, 3, 4, // inside and around the empty frame
			5, 6, 7, 8, // the big frame's header and first payload byte
			4 + 3 + 1000, 4 + 3 + wire.MaxPayload/2,
			third - 2, third - 1, third, third + 1, third + 3, len(bigStream) - 1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, fd := echoConn(t, s, h)
			stream := frames(tt.payloads...)
			splits := tt.splits
			if splits == nil {
				for k := 1; k < len(stream); k++ {
					splits = append(splits, k)
				}
			}
			for _, k := range splits {
				writePieces(t, c, fd, stream[:k], stream[k:])
				got := readFrames(t, c, c, len(tt.payloads))
				checkEcho(t, got, tt.payloads)
			}
		})
	}

	t.Run("one byte per read", func(t *testing.T) {
		// This handler also records each batch, which shows the reads
		// were separate: one byte completes at most one frame.
		h := newHandler(t, replyAsync)
		s := startServer(t, Config{}, h)
		c, fd := echoConn(t, s, h)
		stream := frames(small...)
		var pieces [][]byte
		for i := range stream {
			pieces = append(pieces, stream[i:i+1])
		}
		writePieces(t, c, fd, pieces...)
		checkEcho(t, readFrames(t, c, c, len(small)), small)
		for range small {
			if r := <-h.received; len(r.frames) != 1 {
				t.Fatalf("a batch of %d frames: the bytes were not read one by one", len(r.frames))
			}
		}
	})
}

// TestEchoCoalesced writes many frames in one write, so that the server
// reads many frames, and pieces of frames, per read.
func TestEchoCoalesced(t *testing.T) {
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{}, h)
	c := dial(t, s.Addr())

	payloads := [][]byte{{}, tricky(0, wire.MaxPayload), {}}
	for i := range 2000 {
		payloads = append(payloads, tricky(i, i%300))
	}
	payloads = append(payloads, tricky(1, wire.MaxPayload), []byte{wire.End}, []byte{wire.Start})
	var sum uint64
	for _, p := range payloads {
		sum += uint64(len(p))
	}

	// Read while writing: the echo is larger than the socket buffers
	// need be.
	type result struct {
		got [][]byte
		err error
	}
	if err := c.SetReadDeadline(time.Now().Add(waitLong)); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for range payloads {
			p, err := readFrame(c)
			if err != nil {
				r.err = fmt.Errorf("after %d frames: %w", len(r.got), err)
				break
			}
			r.got = append(r.got, p)
		}
		done <- r
	}()
	write(t, c, frames(payloads...))
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	checkEcho(t, r.got, payloads)
	st := s.Stats()
	if st.MsgRecv != uint64(len(payloads)) || st.BytesRecv != sum {
		t.Errorf("received %d frames, %d bytes; want %d, %d", st.MsgRecv, st.BytesRecv, len(payloads), sum)
	}
	if st.MsgSent != uint64(len(payloads)) || st.BytesSent != sum {
		t.Errorf("sent %d frames, %d bytes; want %d, %d", st.MsgSent, st.BytesSent, len(payloads), sum)
	}
}
