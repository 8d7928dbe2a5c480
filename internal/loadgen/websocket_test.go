package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// The adapter against real servers on 127.0.0.1: the WebSocket baseline
// (gobwas/ws, a goroutine per connection) for round trips and the
// workloads, and scripted servers (wsScript) for what a server may do
// that an echo does not: pings, fragments, a close, bytes right behind
// the 101, answers to a credential.

func serveWS(t *testing.T) *baseline.WebSocketServer {
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

// wsDial opens a WebSocket connection to addr as the workloads do.
func wsDial(t *testing.T, addr string, cn Connect) net.Conn {
	t.Helper()
	cn.WebSocket = true
	c, err := cn.dial(context.Background(), &net.Dialer{Timeout: 5 * time.Second}, addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wsPayloads include the protocol's bytes, an empty payload, both sides
// of each WebSocket length encoding and the largest payload.
var wsPayloads = [][]byte{
	[]byte("hello"), {}, {wire.Start, wire.End, 0x0D, 0x82, 0x7e},
	bytes.Repeat([]byte{wire.End}, 125), bytes.Repeat([]byte{wire.Start}, 126),
	bytes.Repeat([]byte{0x7f}, 0x1701), bytes.Repeat([]byte("x"), wire.MaxPayload), []byte("last"),
}

func framed(t *testing.T, payloads [][]byte) []byte {
	t.Helper()
	var b []byte
	for _, p := range payloads {
		var err error
		if b, err = wire.AppendFrame(b, p); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// readPayloads reads n frames from c with reads of readSize bytes.
func readPayloads(t *testing.T, c net.Conn, n, readSize int) [][]byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	dec := wire.NewDecoder(wire.MaxPayload)
	buf := make([]byte, readSize)
	var got [][]byte
	for len(got) < n {
		k, err := c.Read(buf)
		dec.Feed(buf[:k])
		for {
			p, ok, derr := dec.Next()
			if derr != nil {
				t.Fatalf("the adapter returned bytes that are not frames: %v", derr)
			}
			if !ok {
				break
			}
			got = append(got, bytes.Clone(p))
		}
		if err != nil {
			t.Fatalf("read after %d frames: %v", len(got), err)
		}
	}
	return got
}

func checkPayloads(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d: got %d bytes %.16q, want %d bytes %.16q", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

// Frames written whole, several to a write, and split anywhere across
// writes come back intact and in order, through reads of any size.
func TestWebSocketRoundTrips(t *testing.T) {
	s := serveWS(t)
	stream := framed(t, wsPayloads)
	for _, tc := range []struct {
		name            string
		piece, readSize int
	}{
		{"one write, large reads", len(stream), 64 << 10},
		{"7-byte writes, 100-byte reads", 7, 100},
		{"1-byte writes, 3-byte reads", 1, 3},
		{"4099-byte writes, 1-byte reads", 4099, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := wsDial(t, s.Addr(), Connect{})
			wrote := make(chan error, 1)
			go func() {
				for i := 0; i < len(stream); i += tc.piece {
					if _, err := c.Write(stream[i:min(i+tc.piece, len(stream))]); err != nil {
						wrote <- err
						return
					}
				}
				wrote <- nil
			}()
			checkPayloads(t, readPayloads(t, c, len(wsPayloads), tc.readSize), wsPayloads)
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Every workload runs over WebSocket unchanged: Echo in both of its modes
// (one goroutine per connection; a reader and a writer), and Open with
// and without verification.
func TestWebSocketWorkloads(t *testing.T) {
	s := serveWS(t)
	ctx := context.Background()
	cn := Connect{WebSocket: true}
	for _, cfg := range []EchoConfig{
		{Conns: 4, InFlight: 16, Count: 20_000},                           // inline
		{Conns: 2, InFlight: 64, PayloadSize: 4096, Count: 2_000},         // reader and writer
		{Conns: 1, InFlight: 4, PayloadSize: wire.MaxPayload, Count: 200}, // the largest
	} {
		cfg.Addr, cfg.Connect = s.Addr(), cn
		res, err := Echo(ctx, cfg)
		if err != nil || res.Errors != 0 || res.Messages != cfg.Count {
			t.Fatalf("Echo %d × %d, %d B: %v; %v", cfg.Conns, cfg.InFlight, cfg.PayloadSize, err, res)
		}
	}
	for _, skip := range []bool{false, true} {
		set, err := Open(ctx, ConnsConfig{Addr: s.Addr(), N: 100, Connect: cn, SkipVerify: skip})
		if err != nil {
			t.Fatal(err)
		}
		if r := set.Result(); r.Held != 100 || r.Failed != 0 || (!skip && r.Verified != 100) {
			t.Fatalf("Open (skip verify %v): %v", skip, r)
		}
		waitUntil(t, "the server to hold the connections", func() bool { return s.Stats().Conns == 100 })
		if err := set.Close(); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the server to close them", func() bool { return s.Stats().Conns == 0 })
	}
	if n := s.Stats().ProtocolErrors; n != 0 {
		t.Errorf("the server counted %d protocol errors", n)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// wsScript runs a one-connection server: it answers the upgrade (with
// extra bytes behind the 101 if given) and hands the connection, with
// its buffered reader, to script.
func wsScript(t *testing.T, extra []byte, script func(c net.Conn, r *bufio.Reader) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		req, err := http.ReadRequest(r)
		if err != nil {
			done <- err
			return
		}
		if req.Header.Get("Origin") != "" {
			done <- errors.New("the load generator sent an Origin header")
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
		if _, err := c.Write(append([]byte(resp), extra...)); err != nil {
			done <- err
			return
		}
		done <- script(c, r)
	}()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return ln.Addr().String()
}

func serverFrame(t *testing.T, op ws.OpCode, fin bool, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	f := ws.NewFrame(op, fin, p)
	if err := ws.WriteFrame(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readClientFrame reads one frame from the client, which must be masked,
// and returns it unmasked.
func readClientFrame(r io.Reader) (ws.Frame, error) {
	f, err := ws.ReadFrame(r)
	if err != nil {
		return f, err
	}
	if !f.Header.Masked {
		return f, errors.New("an unmasked frame from the client")
	}
	return ws.UnmaskFrameInPlace(f), nil
}

// Pings are answered with their payload, fragments (with a ping between
// them) make one frame, a text message is its bytes, frames sent right
// behind the 101 are not lost, and a close is answered with its status
// and ends reading with io.EOF after what came before it.
func TestWebSocketControlFrames(t *testing.T) {
	var script []byte
	script = append(script, serverFrame(t, ws.OpPing, true, []byte("p1"))...)
	script = append(script, serverFrame(t, ws.OpBinary, false, []byte("frag"))...)
	script = append(script, serverFrame(t, ws.OpPing, true, []byte("p2"))...)
	script = append(script, serverFrame(t, ws.OpContinuation, false, []byte("men"))...)
	script = append(script, serverFrame(t, ws.OpContinuation, true, []byte("ted"))...)
	script = append(script, serverFrame(t, ws.OpText, true, []byte("texte é"))...)
	script = append(script, serverFrame(t, ws.OpPong, true, nil)...)
	script = append(script, serverFrame(t, ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))...)
	script = append(script, serverFrame(t, ws.OpBinary, true, []byte("after the close"))...)

	addr := wsScript(t, script[:9], func(c net.Conn, r *bufio.Reader) error {
		if _, err := c.Write(script[9:]); err != nil {
			return err
		}
		for i, want := range []struct {
			op ws.OpCode
			p  string
		}{
			{ws.OpPong, "p1"}, {ws.OpPong, "p2"},
			{ws.OpClose, string(ws.NewCloseFrameBody(ws.StatusGoingAway, ""))},
		} {
			f, err := readClientFrame(r)
			if err != nil {
				return err
			}
			if f.Header.OpCode != want.op || string(f.Payload) != want.p || !f.Header.Fin {
				return fmt.Errorf("client frame %d: got opcode %d %q, want %d %q", i, f.Header.OpCode, f.Payload, want.op, want.p)
			}
		}
		return nil
	})
	c := wsDial(t, addr, Connect{})
	checkPayloads(t, readPayloads(t, c, 2, 5), [][]byte{[]byte("fragmented"), []byte("texte é")})
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 64)); n != 0 || err != io.EOF {
		t.Fatalf("read after the close: %d, %v; want 0, EOF", n, err)
	}
	if _, err := c.Write(framed(t, [][]byte{[]byte("x")})); err == nil {
		t.Error("a write after the close succeeded")
	}
}

// The credential goes as the first message and its answer is read as a
// frame; what the server sent right behind the answer is the first thing
// a workload reads.
func TestWebSocketCredential(t *testing.T) {
	addr := wsScript(t, nil, func(c net.Conn, r *bufio.Reader) error {
		f, err := readClientFrame(r)
		if err != nil {
			return err
		}
		if f.Header.OpCode != ws.OpBinary || string(f.Payload) != "secret" {
			return errors.New("the first message is not the credential: " + string(f.Payload))
		}
		answer := append(serverFrame(t, ws.OpBinary, true, []byte(`{"auth":"ok","identity":"alice"}`)),
			serverFrame(t, ws.OpBinary, true, []byte("welcome"))...)
		if _, err := c.Write(answer); err != nil {
			return err
		}
		// Then an echo of one message, and the client's close.
		if f, err = readClientFrame(r); err != nil {
			return err
		}
		if _, err := c.Write(serverFrame(t, ws.OpBinary, true, f.Payload)); err != nil {
			return err
		}
		f, err = readClientFrame(r)
		if err != nil {
			return err
		}
		if f.Header.OpCode != ws.OpClose || ws.StatusCode(uint16(f.Payload[0])<<8|uint16(f.Payload[1])) != ws.StatusNormalClosure {
			return errors.New("Close did not send a close frame with 1000")
		}
		return nil
	})
	c := wsDial(t, addr, Connect{Credential: []byte("secret")})
	checkPayloads(t, readPayloads(t, c, 1, 4096), [][]byte{[]byte("welcome")})
	if _, err := c.Write(framed(t, [][]byte{[]byte("echo me")})); err != nil {
		t.Fatal(err)
	}
	checkPayloads(t, readPayloads(t, c, 1, 4096), [][]byte{[]byte("echo me")})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A refused credential fails the dial with the server's reason.
func TestWebSocketCredentialRefused(t *testing.T) {
	addr := wsScript(t, nil, func(c net.Conn, r *bufio.Reader) error {
		if _, err := readClientFrame(r); err != nil {
			return err
		}
		_, err := c.Write(serverFrame(t, ws.OpBinary, true, []byte(`{"error":"auth: unknown token"}`)))
		return err
	})
	_, err := Connect{WebSocket: true, Credential: []byte("wrong")}.dial(context.Background(), &net.Dialer{Timeout: 5 * time.Second}, addr)
	if err == nil || !strings.Contains(err.Error(), "unknown token") {
		t.Fatalf("dial: %v; want the refusal", err)
	}
}

// What a server may not send ends reading with an error: a masked frame,
// a message over the largest payload, a connection cut inside a frame.
func TestWebSocketBadServer(t *testing.T) {
	masked := ws.MaskFrame(ws.NewBinaryFrame([]byte("masked")))
	var mb bytes.Buffer
	ws.WriteFrame(&mb, masked)
	big := serverFrame(t, ws.OpBinary, true, make([]byte, wire.MaxPayload+1))
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  string
	}{
		{"masked", mb.Bytes(), "masked"},
		{"too big", big, "over 65535"},
		{"fragments too big", append(serverFrame(t, ws.OpBinary, false, make([]byte, 40000)), serverFrame(t, ws.OpContinuation, true, make([]byte, 40000))...), "over 65535"},
		{"continuation first", serverFrame(t, ws.OpContinuation, true, []byte("x")), "out of sequence"},
		{"long ping", serverFrame(t, ws.OpPing, true, make([]byte, 126)), "control frame"},
		{"cut", serverFrame(t, ws.OpBinary, true, make([]byte, 1000))[:500], io.ErrUnexpectedEOF.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := wsScript(t, nil, func(c net.Conn, r *bufio.Reader) error {
				_, err := c.Write(tc.bytes)
				return err
			})
			c := wsDial(t, addr, Connect{})
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.ReadAll(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("read: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// Bytes that are not frames are refused by Write, not sent.
func TestWebSocketWriteNotFrames(t *testing.T) {
	s := serveWS(t)
	for _, bad := range [][]byte{{0x02, 0, 1, 'x', wire.End}, {wire.Start, 0, 1, 'x', 0x18}} {
		c := wsDial(t, s.Addr(), Connect{})
		if _, err := c.Write(bad); !errors.Is(err, errNotFrame) {
			t.Errorf("Write(%q): %v, want errNotFrame", bad, err)
		}
	}
}

// An upgrade the server refuses fails the dial.
func TestWebSocketUpgradeRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
	}()
	_, err = Connect{WebSocket: true}.dial(context.Background(), &net.Dialer{Timeout: 5 * time.Second}, ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("dial: %v; want the 403", err)
	}
}

// The baseline's own checks, through the adapter's raw frames: a close
// is answered with its status, and a message over the largest payload
// is refused with 1009.
func TestWebSocketBaselineClose(t *testing.T) {
	s := serveWS(t)
	c, _, _, err := ws.Dial(context.Background(), "ws://"+s.Addr()+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wsutil.WriteClientMessage(c, ws.OpBinary, make([]byte, wire.MaxPayload+1)); err != nil {
		t.Fatal(err)
	}
	f, err := ws.ReadFrame(c)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("got %v, %v; want a close frame", f.Header, err)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusMessageTooBig {
		t.Errorf("close status %d, want %d", code, ws.StatusMessageTooBig)
	}
	if got := s.Stats().ProtocolErrors; got != 1 {
		t.Errorf("protocol errors %d, want 1", got)
	}
}
