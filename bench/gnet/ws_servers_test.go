package gnet_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// wsServer is a WebSocket echo server under test: start runs it, in a
// child process (benchproc.Servers, as "ws/" + name), on a free port of
// 127.0.0.1; it runs until the process exits. Every one takes each
// binary message as one payload and sends it back as one binary
// message, as the broker's WebSocket listener does (docs/PROTOCOL.md),
// accepts the upgrade on any path, refuses messages over 65,535 bytes
// (the protocol's largest payload) and allows an upgrade without an
// Origin header (the load generator sends none) while refusing other
// hosts' pages, each library's default.
type wsServer struct {
	name  string // its sub-benchmarks' name
	start func() (string, error)
}

// wsServers are the WebSocket servers under test, in the order each
// benchmark runs them.
var wsServers = []wsServer{
	{"broker", serveBrokerWS},
	{"gobwas", serveGobwasWS},
	{"gorilla", serveGorillaWS},
	{"coder", serveCoderWS},
}

// serveBrokerWS starts the broker as `broker serve --app echo --ws-addr`
// runs it: Echo per stream on the event loops, a stream's actors made at
// its first frame and stopped again once it has gone quiet, the WebSocket
// listener beside the TCP one, defaults otherwise. The child reports the
// WebSocket address.
func serveBrokerWS() (string, error) {
	b, err := broker.New(broker.Config{
		Addr: "127.0.0.1:0", WebSocketAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return "", err
	}
	b.HandlePerStream(broker.Echo(), broker.OnEventLoop(), broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet())
	go func() {
		err := b.Serve(context.Background())
		fmt.Fprintf(os.Stderr, "broker: Serve returned: %v\n", err)
		os.Exit(1)
	}()
	return b.WebSocketAddr().String(), nil
}

// serveGobwasWS is internal/baseline's WebSocket echo: github.com/gobwas/ws
// and its wsutil over bufio, a goroutine per connection, a flush only
// when no further message is buffered (the TCP baseline's way).
func serveGobwasWS() (string, error) {
	s, err := baseline.ListenWebSocket("127.0.0.1:0")
	if err != nil {
		return "", err
	}
	return s.Addr(), nil
}

// serveHTTP serves h on a free port of 127.0.0.1 with net/http, as
// gorilla's and coder's servers are meant to run: a goroutine per
// connection, the handler upgrading it and echoing on that goroutine.
func serveHTTP(h http.HandlerFunc) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second, // as the broker bounds an upgrade
		ErrorLog:          log.New(os.Stderr, "http: ", 0),
	}
	go func() {
		err := srv.Serve(ln)
		fmt.Fprintf(os.Stderr, "http: Serve returned: %v\n", err)
		os.Exit(1)
	}()
	return ln.Addr().String(), nil
}

// serveGorillaWS is github.com/gorilla/websocket as its documentation
// has an echo: an Upgrader with its defaults (its buffers are the
// hijacked connection's 4 KiB ones; the Origin must be the request's
// host, or absent), then read a message and write it back. The message
// is read with NextReader into a buffer kept for the connection, rather
// than ReadMessage's new slice per message; WriteMessage writes one
// frame, and gorilla flushes it at once: one write per message.
func serveGorillaWS() (string, error) {
	up := websocket.Upgrader{}
	return serveHTTP(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil) // answers a failure itself
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadLimit(wire.MaxPayload)
		var buf bytes.Buffer
		for {
			_, rd, err := c.NextReader()
			if err != nil {
				return // a close was answered by gorilla's handler
			}
			buf.Reset()
			if _, err := buf.ReadFrom(rd); err != nil {
				return
			}
			if err := c.WriteMessage(websocket.BinaryMessage, buf.Bytes()); err != nil {
				return
			}
		}
	})
}

// serveCoderWS is github.com/coder/websocket (formerly
// nhooyr.io/websocket) as its documentation has an echo: Accept with its
// defaults (no compression unless asked for, which the load generator
// does not; the Origin must be the request's host, or absent), then read
// a message and write it back. The message is read with Reader into a
// buffer kept for the connection, and written with Write, one frame (its
// Writer would write each Write as a frame of its own and the end as
// another); coder flushes each message: one write per message. The
// context is Background: a deadline per message would cost a timer each.
func serveCoderWS() (string, error) {
	return serveHTTP(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, nil) // answers a failure itself
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(wire.MaxPayload) // default 32 KiB
		ctx := context.Background()
		var buf bytes.Buffer
		for {
			_, rd, err := c.Reader(ctx)
			if err != nil {
				return // a close was answered by coder's reader
			}
			buf.Reset()
			if _, err := buf.ReadFrom(rd); err != nil {
				return
			}
			if err := c.Write(ctx, coder.MessageBinary, buf.Bytes()); err != nil {
				return
			}
		}
	})
}
