package netpoll

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsServer starts a server whose second listener speaks WebSocket, and
// returns it with the WebSocket address.
func wsServer(t testing.TB, h Handler, w *WebSocket, tlsCfg *tls.Config) (*Server, string) {
	t.Helper()
	if w == nil {
		w = &WebSocket{}
	}
	s := startServer(t, Config{Listeners: []Listener{{Addr: "127.0.0.1:0", WebSocket: w, TLS: tlsCfg}}}, h)
	return s, s.Addrs()[1].String()
}

// wsDial upgrades a connection to addr ("ws://..." or "wss://...").
func wsDial(t testing.TB, url string, d ws.Dialer) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c, br, _, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", url, err)
	}
	if br != nil {
		t.Fatal("the server sent bytes before the client spoke")
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readMessage reads one data message from the server.
func readMessage(t testing.TB, c net.Conn) ([]byte, ws.OpCode) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLong))
	p, op, err := wsutil.ReadServerData(c)
	if err != nil {
		t.Fatalf("reading a message: %v", err)
	}
	return p, op
}

// TestWebSocketEcho: each binary message is one payload, a text message
// its UTF-8 bytes, a fragmented message whole, the largest payload too;
// the broker answers in binary messages; pings get pongs; the handler
// sees the connection like any other.
func TestWebSocketEcho(t *testing.T) {
	h := newHandler(t, replyEcho)
	s, addr := wsServer(t, h, nil, nil)
	c := wsDial(t, "ws://"+addr+"/any/path", ws.Dialer{})
	h.nextOpened(t)

	for _, m := range []struct {
		op ws.OpCode
		p  []byte
	}{
		{ws.OpBinary, []byte("binary")},
		{ws.OpText, []byte("texte en UTF-8: é")},
		{ws.OpBinary, nil},
		{ws.OpBinary, bytes.Repeat([]byte{0x17, 0x01, 0x0d}, 65535/3)},
	} {
		if err := wsutil.WriteClientMessage(c, m.op, m.p); err != nil {
			t.Fatal(err)
		}
		got, op := readMessage(t, c)
		if op != ws.OpBinary || !bytes.Equal(got, m.p) {
			t.Fatalf("echo of %s: opcode %d, %s", brief(m.p), op, brief(got))
		}
	}
	// A message in three fragments.
	for i, part := range []string{"frag", "men", "ted"} {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpBinary
		}
		f := ws.NewFrame(op, i == 2, []byte(part))
		if err := ws.WriteFrame(c, ws.MaskFrameInPlace(f)); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := readMessage(t, c); string(got) != "fragmented" {
		t.Fatalf("fragmented message: %q", got)
	}
	// Many messages in one write come back in order.
	var batch bytes.Buffer
	for i := range 1000 {
		wsutil.WriteClientBinary(&batch, tricky(i, 50))
	}
	write(t, c, batch.Bytes())
	for i := range 1000 {
		if got, _ := readMessage(t, c); !bytes.Equal(got, tricky(i, 50)) {
			t.Fatalf("message %d: %s", i, brief(got))
		}
	}
	// A ping is answered with a pong carrying its payload.
	if err := ws.WriteFrame(c, ws.MaskFrameInPlace(ws.NewPingFrame([]byte("are you there")))); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(waitLong))
	f, err := ws.ReadFrame(c)
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "are you there" {
		t.Fatalf("pong: %+v, %v", f.Header, err)
	}
	if st := s.Stats(); st.WebSocketUpgrades != 1 || st.MsgRecv != 1005 {
		t.Errorf("upgrades %d, frames received %d; want 1, 1005", st.WebSocketUpgrades, st.MsgRecv)
	}
}

// TestWebSocketClose: a close from the client is answered and ends the
// connection; a message over the maximum payload closes it with 1009; an
// unmasked frame with 1002.
func TestWebSocketClose(t *testing.T) {
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{MaxPayload: 1000, Listeners: []Listener{{Addr: "127.0.0.1:0", WebSocket: &WebSocket{}}}}, h)
	addr := s.Addrs()[1].String()

	cases := []struct {
		name string
		send func(c net.Conn) error
		code ws.StatusCode
		why  error
	}{
		{"client close", func(c net.Conn) error {
			return ws.WriteFrame(c, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))))
		}, ws.StatusNormalClosure, ErrPeerClosed},
		{"too big", func(c net.Conn) error { return wsutil.WriteClientBinary(c, make([]byte, 1001)) }, ws.StatusMessageTooBig, ErrProtocol},
		{"unmasked", func(c net.Conn) error { return ws.WriteFrame(c, ws.NewBinaryFrame([]byte("x"))) }, ws.StatusProtocolError, ErrProtocol},
		{"bad UTF-8", func(c net.Conn) error { return wsutil.WriteClientText(c, []byte{0xff, 0xfe}) }, ws.StatusInvalidFramePayloadData, ErrProtocol},
	}
	for _, tc := range cases {
		c := wsDial(t, "ws://"+addr+"/", ws.Dialer{})
		sc := h.nextOpened(t).c
		if err := tc.send(c); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(waitLong))
		f, err := ws.ReadFrame(c)
		if err != nil || f.Header.OpCode != ws.OpClose {
			t.Fatalf("%s: %+v, %v; want a close frame", tc.name, f.Header, err)
		}
		if code, _ := ws.ParseCloseFrameData(f.Payload); code != tc.code {
			t.Errorf("%s: close code %d, want %d", tc.name, code, tc.code)
		}
		expectClosed(t, c)
		if err := h.reasonFor(t, sc); !errors.Is(err, tc.why) {
			t.Errorf("%s: OnClose %v, want %v", tc.name, err, tc.why)
		}
	}
}

// rawUpgrade sends an HTTP request to addr and returns the status line of
// the answer.
func rawUpgrade(t testing.TB, addr, request string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLong)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLong))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", request, err)
	}
	resp.Body.Close()
	return resp.Status
}

// TestWebSocketUpgradeRefusals: a request that is not a WebSocket upgrade
// is answered 400, one from an origin not allowed 403, and both are
// counted and closed; the handler never hears of them. Origins: by
// default the request's own host; patterns when configured; a request
// without an Origin (not a browser) is allowed.
func TestWebSocketUpgradeRefusals(t *testing.T) {
	h := newHandler(t, replyEcho)
	s, addr := wsServer(t, h, nil, nil)
	upgrade := func(origin string) string {
		r := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
		if origin != "" {
			r += "Origin: " + origin + "\r\n"
		}
		return r + "\r\n"
	}
	for _, c := range []struct{ name, req, want string }{
		{"not an upgrade", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"hydrogen frames", string(frame([]byte("hello"))) + "\r\n\r\n", "400"},
		{"another origin", upgrade("https://evil.example"), "403"},
		{"the same host", upgrade("http://" + addr), "101"},
		{"the same host, another port", upgrade("http://127.0.0.1:1"), "101"},
		{"another host, the same port", upgrade("http://127.0.0.2" + addr[strings.LastIndex(addr, ":"):]), "403"},
		{"no origin", upgrade(""), "101"},
	} {
		if got := rawUpgrade(t, addr, c.req); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %s", c.name, got, c.want)
		}
	}
	waitStats(t, s, "the refusals counted", func(st Stats) bool { return st.WebSocketRefused == 4 && st.ClosedHandshake == 4 })

	_, patterned := wsServer(t, newHandler(t, replyEcho), &WebSocket{Origins: []string{"https://*.example.com", "localhost:*"}}, nil)
	for _, c := range []struct{ origin, want string }{
		{"https://app.example.com", "101"},
		{"http://app.example.com", "403"},
		{"http://localhost:3000", "101"},
		{"https://example.org", "403"},
	} {
		r := "GET / HTTP/1.1\r\nHost: " + patterned + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: " + c.origin + "\r\n\r\n"
		if got := rawUpgrade(t, patterned, r); !strings.HasPrefix(got, c.want) {
			t.Errorf("origin %s: %q, want %s", c.origin, got, c.want)
		}
	}
}

// TestWebSocketPing: a silent connection is pinged after PingInterval,
// and one that does not answer is closed the interval after.
func TestWebSocketPing(t *testing.T) {
	const every = 200 * time.Millisecond
	h := newHandler(t, replyEcho)
	_, addr := wsServer(t, h, &WebSocket{PingInterval: every}, nil)
	c := wsDial(t, "ws://"+addr+"/", ws.Dialer{})
	sc := h.nextOpened(t).c
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(waitLong))
	f, err := ws.ReadFrame(c)
	if err != nil || f.Header.OpCode != ws.OpPing {
		t.Fatalf("%+v, %v; want a ping", f.Header, err)
	}
	if d := time.Since(start); d < every {
		t.Errorf("pinged after %v, before the interval", d)
	}
	if err := h.reasonFor(t, sc); !errors.Is(err, ErrIdle) {
		t.Fatalf("OnClose: %v, want ErrIdle", err)
	}
	if d := time.Since(start); d > 4*every {
		t.Errorf("closed %v after connecting, want within about two intervals", d)
	}
}

// TestWebSocketOverTLS: wss, and a WebSocket stream and a plain one
// exchange frames as any two streams do.
func TestWebSocketOverTLS(t *testing.T) {
	pki := newPKI(t)
	f := newFanout(t)
	s, addr := wsServer(t, f, nil, pki.serverConfig())
	c := wsDial(t, "wss://"+addr+"/", ws.Dialer{TLSConfig: &tls.Config{RootCAs: pki.Pool, ServerName: "127.0.0.1"}})
	f.next(t)
	tcp := dial(t, s.Addr())
	f.next(t)
	write(t, tcp, frame([]byte("from TCP")))
	if got, _ := readMessage(t, c); string(got) != "from TCP" {
		t.Fatalf("over wss: %q", got)
	}
	if err := wsutil.WriteClientBinary(c, []byte("from wss")); err != nil {
		t.Fatal(err)
	}
	tcp.SetReadDeadline(time.Now().Add(waitLong))
	if got, err := readFrame(tcp); err != nil || string(got) != "from wss" {
		t.Fatalf("over TCP: %q, %v", got, err)
	}
}
