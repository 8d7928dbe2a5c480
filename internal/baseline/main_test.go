package baseline_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// TestMain fails the package if a test leaves a goroutine behind: Close
// must stop everything a Server started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func serve(t testing.TB, mode baseline.Mode) *baseline.Server {
	t.Helper()
	s, err := baseline.Listen("127.0.0.1:0", mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func dial(t testing.TB, s *baseline.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or the deadline passes. The server's
// counters have no change notification; polling with a deadline is the
// honest wait.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func frame(t testing.TB, payload []byte) []byte {
	t.Helper()
	f, err := wire.AppendFrame(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// readFrames reads n frames from c and returns their payloads, failing t
// after a deadline.
func readFrames(t testing.TB, c net.Conn, n int) [][]byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	dec := wire.NewDecoder(wire.MaxPayload)
	buf := make([]byte, 4096)
	var got [][]byte
	for len(got) < n {
		k, err := c.Read(buf)
		dec.Feed(buf[:k])
		for {
			p, ok, derr := dec.Next()
			if derr != nil {
				t.Fatalf("decoding: %v", derr)
			}
			if !ok {
				break
			}
			got = append(got, bytes.Clone(p))
		}
		if err != nil && len(got) < n {
			t.Fatalf("read %d of %d frames: %v", len(got), n, err)
		}
	}
	if len(got) > n {
		t.Fatalf("read %d frames, want %d", len(got), n)
	}
	return got
}

// expectEOF reads c until the server closes it, failing t if it does not
// within the deadline. What arrives before the close is discarded.
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("want the server to close the connection: %v", err)
	}
}
