package baseline_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
)

func serveWebSocket(t *testing.T) *baseline.WebSocketServer {
	t.Helper()
	s, err := baseline.ListenWebSocket("127.0.0.1:0")
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

func wsDial(t *testing.T, url string, d ws.Dialer) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, _, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// Each message comes back whole as one binary message: binary or text,
// fragmented (with a ping between the fragments), empty or the largest;
// pings get their pongs, and a close is answered with its status.
func TestWebSocketEcho(t *testing.T) {
	s := serveWebSocket(t)
	c := wsDial(t, "ws://"+s.Addr()+"/any/path", ws.Dialer{})
	for _, p := range payloads {
		if err := wsutil.WriteClientBinary(c, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := wsutil.WriteClientText(c, []byte("texte é")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []ws.Frame{
		ws.NewFrame(ws.OpBinary, false, []byte("frag")),
		ws.NewPingFrame([]byte("between")),
		ws.NewFrame(ws.OpContinuation, true, []byte("mented")),
	} {
		if err := ws.WriteFrame(c, ws.MaskFrame(f)); err != nil {
			t.Fatal(err)
		}
	}
	want := append(append([][]byte(nil), payloads...), []byte("texte é"), []byte("fragmented"))
	var pong []byte
	for i := 0; i < len(want); {
		f, err := ws.ReadFrame(c)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		switch {
		case f.Header.OpCode == ws.OpPong:
			pong = f.Payload
		case f.Header.OpCode != ws.OpBinary || !f.Header.Fin:
			t.Fatalf("message %d: opcode %d, fin %v; want one binary frame", i, f.Header.OpCode, f.Header.Fin)
		case !bytes.Equal(f.Payload, want[i]):
			t.Fatalf("message %d: got %d bytes %.16q, want %d bytes %.16q", i, len(f.Payload), f.Payload, len(want[i]), want[i])
		default:
			i++
		}
	}
	if string(pong) != "between" {
		t.Errorf("pong %q, want the ping's payload", pong)
	}
	if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "bye")))); err != nil {
		t.Fatal(err)
	}
	f, err := ws.ReadFrame(c)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("got %v, %v; want the close answered", f.Header, err)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusGoingAway {
		t.Errorf("close status %d, want %d", code, ws.StatusGoingAway)
	}
	waitConns(t, s, 0)
	if st := s.Stats(); st.Accepted != 1 || st.ProtocolErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A page of another host may not open a WebSocket; one of the server's
// own host (any port) may, and so may a program that sends no Origin.
func TestWebSocketOrigin(t *testing.T) {
	s := serveWebSocket(t)
	_, port, _ := net.SplitHostPort(s.Addr())
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://127.0.0.1:8080", true},
		{"https://evil.example", false},
		{"not a url", false},
	} {
		d := ws.Dialer{}
		if tc.origin != "" {
			d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {tc.origin}})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, _, _, err := d.Dial(ctx, "ws://127.0.0.1:"+port+"/")
		cancel()
		if c != nil {
			c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("Origin %q: dial error %v, want success %v", tc.origin, err, tc.ok)
		}
		if !tc.ok && err != ws.StatusError(403) {
			t.Errorf("Origin %q: %v, want 403", tc.origin, err)
		}
	}
}

// Close ends every connection and goroutine (TestMain checks the
// goroutines).
func TestWebSocketClose(t *testing.T) {
	s, err := baseline.ListenWebSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		wsDial(t, "ws://"+s.Addr()+"/", ws.Dialer{})
	}
	waitConns(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Conns; n != 0 {
		t.Errorf("%d connections after Close", n)
	}
}

func waitConns(t *testing.T, s *baseline.WebSocketServer, n int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); s.Stats().Conns != n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d connections, want %d", s.Stats().Conns, n)
		}
	}
}
