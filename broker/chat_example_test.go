package broker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/client"
)

// chatNick is each stream's name in the room: a value of the stream.
var chatNick = broker.NewKey[string]("nick")

// A stateful chat room: the nickname is a value of the stream (it
// survives a restart of the actor and is still there in Closed), the room
// is a group, "/who" walks it. examples/chat is the same room as a
// program.
func Example_chatRoom() {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	b.HandlePerStream(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *broker.Connected:
			chatNick.Set(m.Stream, "guest")
			m.Streams.Group("lobby").Join(m.Stream)
		case *broker.Received:
			lobby := m.Streams.Group("lobby")
			text := string(m.Payload)
			name, _ := chatNick.Get(m.Stream)
			switch {
			case strings.HasPrefix(text, "/nick "):
				chatNick.Set(m.Stream, strings.TrimPrefix(text, "/nick "))
				m.Stream.Send([]byte("ok"))
			case text == "/who":
				var names []string
				lobby.Each(func(s *broker.Stream) bool {
					n, _ := chatNick.Get(s)
					names = append(names, n)
					return true
				})
				slices.Sort(names)
				m.Stream.Send([]byte("in the room: " + strings.Join(names, ", ")))
			default:
				lobby.BroadcastExcept(m.Stream, []byte(name+": "+text))
			}
		case *broker.Closed:
			name, _ := chatNick.Get(m.Stream) // it has left the group already
			m.Streams.Group("lobby").Broadcast([]byte(name + " left"))
		}
	}), broker.OnEventLoop())
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx) }()

	tctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	say := func(c *client.Client, text string) string {
		c.Send([]byte(text))
		p, _ := c.Recv(tctx)
		return string(p)
	}
	ada, _ := client.Dial(tctx, b.Addr().String())
	linus, _ := client.Dial(tctx, b.Addr().String())
	// A round trip each before anything is said: a client is in the room
	// once the broker has accepted its connection, and a broadcast made
	// before that does not reach it.
	say(ada, "/nick ada")
	say(linus, "/nick linus")

	fmt.Println(say(linus, "/who"))
	ada.Send([]byte("hello"))
	p, _ := linus.Recv(tctx)
	fmt.Println(string(p))
	linus.Close()
	p, _ = ada.Recv(tctx)
	fmt.Println(string(p))

	ada.Close()
	stop()
	<-served
	// Output:
	// in the room: ada, linus
	// ada: hello
	// linus left
}
