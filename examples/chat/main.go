// Command chat is a chat room on the hydrogen broker, written as a
// handler author would: one actor per stream on the event loop, the
// nickname a value of the stream, the room a group.
//
//	go run ./examples/chat --addr 127.0.0.1:1337
//
// Clients send text frames: "/nick NAME" to take a name, "/who" for the
// names in the room, anything else to say it to the room. Everyone in the
// room hears "NAME joined", what is said as "NAME: text", and "NAME left".
// Any hydrogen client will do; with the JavaScript client's web chat
// (examples/web-chat), add --ws-addr.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
)

// nick is each stream's name in the room: a value of the stream, so it
// survives the actor's restarts and is there for the "left" message.
var nick = broker.NewKey[string]("nick")

// room handles one stream.
func room(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *broker.Connected:
		nick.Set(m.Stream, fmt.Sprint("guest", m.Stream.ID()))
		lobby := m.Streams.Group("lobby")
		if err := lobby.Join(m.Stream); err != nil {
			return // it closed already
		}
		name, _ := nick.Get(m.Stream)
		lobby.BroadcastExcept(m.Stream, []byte(name+" joined"))
	case *broker.Received:
		lobby := m.Streams.Group("lobby")
		text := string(m.Payload)
		name, _ := nick.Get(m.Stream)
		switch {
		case strings.HasPrefix(text, "/nick "):
			nick.Set(m.Stream, strings.TrimSpace(strings.TrimPrefix(text, "/nick ")))
			newName, _ := nick.Get(m.Stream)
			lobby.Broadcast([]byte(name + " is now " + newName))
		case text == "/who":
			var names []string
			lobby.Each(func(s *broker.Stream) bool {
				n, _ := nick.Get(s)
				names = append(names, n)
				return true
			})
			slices.Sort(names)
			m.Stream.Send([]byte("in the room: " + strings.Join(names, ", ")))
		default:
			lobby.BroadcastExcept(m.Stream, []byte(name+": "+text))
		}
	case *broker.Closed:
		// A closed stream has left every group already: the others hear.
		name, _ := nick.Get(m.Stream)
		m.Streams.Group("lobby").Broadcast([]byte(name + " left"))
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:1337", "TCP `address` to serve on")
	ws := flag.String("ws-addr", "", "also serve WebSocket clients on this `address`")
	flag.Parse()
	b, err := broker.New(broker.Config{Addr: *addr, WebSocketAddr: *ws})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
	b.HandlePerStream(actor.PropsFromFunc(room), broker.OnEventLoop())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	slog.Info("chat room listening", "addr", b.Addr().String())
	if err := b.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}
