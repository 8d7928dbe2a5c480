package gnet_test

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// TestWSServers checks the WebSocket harness: every server, driven by a
// plain WebSocket client (gobwas/ws), sends each message back intact, in
// order and as one binary message, of every size from empty to 65,535
// bytes, pipelined; answers a ping; refuses a message over 65,535 bytes
// (closing with 1009); and under the load generator's WebSocket
// connections (loadgen checks each reply's connection, order and bytes)
// echoes in both of its modes. Every child stops cleanly: it exits with
// status 0 when told to (benchproc fails the subtest otherwise) and its
// port is free after.
func TestWSServers(t *testing.T) {
	for _, s := range wsServers {
		var addr string
		t.Run(s.name, func(t *testing.T) {
			p := benchproc.Start(t, "ws/"+s.name)
			addr = p.Addr
			checkWSEcho(t, p.Addr)
			checkWSTooBig(t, p.Addr)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, cfg := range []loadgen.EchoConfig{
				{Conns: 2, InFlight: 8, PayloadSize: 64, Count: 2_000},
				{Conns: 2, InFlight: 64, PayloadSize: 4096, Count: 1_000}, // a reader and a writer per connection
			} {
				cfg.Addr, cfg.Connect = p.Addr, wsConnect
				res, err := loadgen.Echo(ctx, cfg)
				if err != nil || res.Errors != 0 || res.Messages != cfg.Count {
					t.Fatalf("Echo %d × %d, %d B: %v; %v", cfg.Conns, cfg.InFlight, cfg.PayloadSize, err, res)
				}
			}
		})
		if addr == "" {
			continue
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s: %s still accepts connections after its process was stopped", s.name, addr)
		}
	}
}

func wsClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, br, _, err := ws.Dial(ctx, "ws://"+addr+"/some/path")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if br != nil {
		t.Fatal("the server sent bytes before the client spoke")
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

func checkWSEcho(t *testing.T, addr string) {
	c := wsClient(t, addr)
	wrote := make(chan error, 1)
	go func() {
		for _, p := range payloads {
			if err := wsutil.WriteClientBinary(c, p); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- ws.WriteFrame(c, ws.MaskFrame(ws.NewPingFrame([]byte("ping!"))))
	}()
	// A pong may come before echoes the server has not written yet: a
	// control frame may go ahead of data (RFC 6455, 5.4).
	var pong []byte
	next := func() ws.Frame {
		for {
			f, err := ws.ReadFrame(c)
			if err != nil {
				t.Fatal(err)
			}
			if f.Header.OpCode != ws.OpPong {
				return f
			}
			if pong != nil {
				t.Fatal("two pongs for one ping")
			}
			pong = f.Payload
		}
	}
	for i, want := range payloads {
		f := next()
		if f.Header.OpCode != ws.OpBinary || !f.Header.Fin {
			t.Fatalf("echo %d: opcode %d, fin %v; want one binary frame", i, f.Header.OpCode, f.Header.Fin)
		}
		if !bytes.Equal(f.Payload, want) {
			t.Fatalf("echo %d: got %d bytes %.16q, want %d bytes %.16q", i, len(f.Payload), f.Payload, len(want), want)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if pong == nil {
		f, err := ws.ReadFrame(c)
		if err != nil || f.Header.OpCode != ws.OpPong {
			t.Fatalf("after the ping: opcode %v, %v; want its pong", f.Header.OpCode, err)
		}
		pong = f.Payload
	}
	if string(pong) != "ping!" {
		t.Fatalf("pong %q, want the ping's payload", pong)
	}
}

func checkWSTooBig(t *testing.T, addr string) {
	c := wsClient(t, addr)
	if err := wsutil.WriteClientBinary(c, make([]byte, wire.MaxPayload+1)); err != nil {
		// The server may close before it has read it all.
		t.Logf("writing the message: %v", err)
	}
	f, err := ws.ReadFrame(c)
	if err != nil {
		t.Fatalf("want a close frame with 1009: %v", err)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != ws.StatusMessageTooBig {
		t.Fatalf("got opcode %d, status %d; want a close with 1009", f.Header.OpCode, code)
	}
}
