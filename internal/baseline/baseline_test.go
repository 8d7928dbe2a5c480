package baseline_test

import (
	"bytes"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
)

// payloads include the protocol's own bytes, an empty message and the
// largest, so a server that scans for delimiters or mishandles lengths
// fails.
var payloads = [][]byte{
	[]byte("hello"), {}, {0x01, 0x17, 0x0D}, bytes.Repeat([]byte{0x17}, 0x0117),
	bytes.Repeat([]byte("x"), 65535), []byte("last"),
}

func TestEcho(t *testing.T) {
	s := serve(t, baseline.Echo)
	c := dial(t, s)
	var stream []byte
	for _, p := range payloads {
		stream = append(stream, frame(t, p)...)
	}
	// Written in pieces of 7 bytes: frames split everywhere, several in
	// one write.
	for i := 0; i < len(stream); i += 7 {
		if _, err := c.Write(stream[i:min(i+7, len(stream))]); err != nil {
			t.Fatal(err)
		}
	}
	got := readFrames(t, c, len(payloads))
	for i := range payloads {
		if !bytes.Equal(got[i], payloads[i]) {
			t.Errorf("frame %d: got %d bytes %.16q, want %d bytes %.16q", i, len(got[i]), got[i], len(payloads[i]), payloads[i])
		}
	}
}

// A malformed frame closes that connection alone, and is counted.
func TestProtocolError(t *testing.T) {
	for _, mode := range []baseline.Mode{baseline.Echo, baseline.Broadcast} {
		t.Run(mode.String(), func(t *testing.T) {
			for _, bad := range [][]byte{
				{0x02, 0x00, 0x00, 0x17},
				{0x01, 0x00, 0x01, 'x', 0x01},
			} {
				s := serve(t, mode)
				good, evil := dial(t, s), dial(t, s)
				if _, err := evil.Write(bad); err != nil {
					t.Fatal(err)
				}
				expectEOF(t, evil)
				waitFor(t, "the protocol error to be counted", 5*time.Second, func() bool { return s.Stats().ProtocolErrors == 1 })
				if mode == baseline.Echo {
					if _, err := good.Write(frame(t, []byte("still here"))); err != nil {
						t.Fatal(err)
					}
					if got := readFrames(t, good, 1); string(got[0]) != "still here" {
						t.Errorf("after another connection's error: got %q", got[0])
					}
				}
				if st := s.Stats(); st.Conns != 1 {
					t.Errorf("%d connections open, want the good one", st.Conns)
				}
			}
		})
	}
}

// Broadcast sends a frame to every connection but its sender, in order.
func TestBroadcast(t *testing.T) {
	s := serve(t, baseline.Broadcast)
	a, b, c := dial(t, s), dial(t, s), dial(t, s)
	waitFor(t, "3 connections", 5*time.Second, func() bool { return s.Stats().Conns == 3 })
	send := func(c net.Conn, p []byte) {
		t.Helper()
		if _, err := c.Write(frame(t, p)); err != nil {
			t.Fatal(err)
		}
	}
	want := append(slices.Clone(payloads), []byte("mark"))
	for _, p := range want {
		send(a, p)
	}
	for name, conn := range map[string]net.Conn{"b": b, "c": c} {
		got := readFrames(t, conn, len(want))
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: frame %d: got %d bytes %.16q, want %d bytes %.16q", name, i, len(got[i]), got[i], len(want[i]), want[i])
			}
		}
	}
	// b has "mark", so the server has finished with a's earlier frames and
	// queued anything it was going to send a before b's frame below.
	send(b, []byte("from b"))
	if got := readFrames(t, a, 1); string(got[0]) != "from b" {
		t.Errorf("a's first frame is %.16q, want b's: a got its own frames back", got[0])
	}
	if got := readFrames(t, c, 1); string(got[0]) != "from b" {
		t.Errorf("c: got %.16q, want b's frame", got[0])
	}
}

func TestListenErrors(t *testing.T) {
	if _, err := baseline.Listen("127.0.0.1:0", baseline.Mode(7)); err == nil {
		t.Error("Listen with an unknown mode: no error")
	}
	s := serve(t, baseline.Echo)
	if _, err := baseline.Listen(s.Addr(), baseline.Echo); err == nil {
		t.Error("Listen on a port in use: no error")
	}
}

// Close ends every connection and goroutine (TestMain checks the
// goroutines) and may be called again.
func TestClose(t *testing.T) {
	for _, mode := range []baseline.Mode{baseline.Echo, baseline.Broadcast} {
		s, err := baseline.Listen("127.0.0.1:0", mode)
		if err != nil {
			t.Fatal(err)
		}
		conns := []net.Conn{dial(t, s), dial(t, s)}
		waitFor(t, "2 connections", 5*time.Second, func() bool { return s.Stats().Conns == 2 })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			expectEOF(t, c)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := net.Dial("tcp", s.Addr()); err == nil {
			t.Errorf("%v: dial after Close succeeded", mode)
		}
	}
}
