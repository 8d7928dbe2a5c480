package test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
)

// wsAddr is the WebSocket listener's address, from the broker's log.
func wsAddr(t testing.TB, b *relBroker) string {
	t.Helper()
	var addr string
	waitFor(t, "the websocket listening line", 10*time.Second, func() bool {
		for _, line := range strings.Split(b.Log(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "websocket listening" {
				addr = rec.Addr
				return true
			}
		}
		return false
	})
	return addr
}

func wsDialURL(t testing.TB, url string, d ws.Dialer) net.Conn {
	t.Helper()
	c, _, _, err := d.Dial(ctxWithin(t, 10*time.Second), url)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wsRead(t testing.TB, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	p, op, err := wsutil.ReadServerData(c)
	if err != nil || op != ws.OpBinary {
		t.Fatalf("reading a message: op %d, %v", op, err)
	}
	return p
}

// TestWebSocketBinary runs the binary with --ws-addr, TLS and tokens: a
// WebSocket client (wss) authenticates with its first message, exchanges
// broadcasts with a TCP client, asks for telemetry, and a message over
// --max-payload closes it with 1009; a malformed upgrade is answered 400
// and counted.
func TestWebSocketBinary(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "websocket e2e CA")
	cert, key := testpki.Files(t, dir, "server", ca.Issue(t, "broker", "127.0.0.1"))
	tokens := secWrite(t, dir, "tokens", secAlice+" alice\n"+secBob+" bob\n")
	b := relStart(t, "--app", "broadcast", "--ws-addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
		"--auth-token-file", tokens, "--max-payload", "1000")
	addr := wsAddr(t, b)

	c := wsDialURL(t, "wss://"+addr+"/hydrogen", ws.Dialer{TLSConfig: &tls.Config{RootCAs: ca.Pool}})
	if err := wsutil.WriteClientBinary(c, []byte(secAlice)); err != nil {
		t.Fatal(err)
	}
	if got := string(wsRead(t, c)); got != `{"auth":"ok","identity":"alice"}` {
		t.Fatalf("the answer to the credential: %q", got)
	}
	tcp := secDial(t, b.Addr, secTLS(ca), secCred(secBob))
	// A round trip each way, after both have connected.
	if err := tcp.Send([]byte("from TCP")); err != nil {
		t.Fatal(err)
	}
	if got := string(wsRead(t, c)); got != "from TCP" {
		t.Fatalf("over wss: %q", got)
	}
	if err := wsutil.WriteClientText(c, []byte("from the browser")); err != nil {
		t.Fatal(err)
	}
	if p, err := tcp.Recv(ctxWithin(t, 10*time.Second)); err != nil || string(p) != "from the browser" {
		t.Fatalf("over TCP: %q, %v", p, err)
	}
	// Telemetry over WebSocket: the 5-byte request, the JSON reply.
	if err := wsutil.WriteClientBinary(c, relTelemetry(0.05)[3:8]); err != nil {
		t.Fatal(err)
	}
	if got := string(wsRead(t, c)); !strings.Contains(got, `"num_clients":2`) {
		t.Fatalf("telemetry over WebSocket: %q", got)
	}
	// Over the maximum payload: closed with 1009.
	if err := wsutil.WriteClientBinary(c, make([]byte, 1001)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := ws.ReadFrame(c)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("%+v, %v; want a close frame", f.Header, err)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusMessageTooBig {
		t.Errorf("close code %d, want 1009", code)
	}

	// A request that is not an upgrade, over TLS: 400, counted.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("a plain GET: %v, %v", resp, err)
	}
	waitFor(t, "the refusal counted", 10*time.Second, func() bool {
		m := b.metrics(t)
		return m["hydrogen_websocket_refused_total"] == 1 && m["hydrogen_websocket_upgrades_total"] == 1
	})
}
