package broker_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// The seed's ping → pong handler: an application actor that answers
// "ping" with "pong" on the same stream.
func Example_pingPong() {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	b.HandlePerStream(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*broker.Received); ok && string(m.Payload) == "ping" {
			m.Stream.Send([]byte("pong"))
		}
	}))
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx) }()

	// A client, speaking the wire protocol by hand.
	conn, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	frame, _ := wire.AppendFrame(nil, []byte("ping"))
	conn.Write(frame)

	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	d := wire.NewDecoder(wire.MaxPayload)
	d.Feed(buf[:n])
	reply, _, _ := d.Next()
	fmt.Println(string(reply))

	stop()
	<-served
	// Output: pong
}

// A chat room: every frame goes to every other stream.
func Example_broadcast() {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	b.HandlePerStream(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *broker.Connected:
			m.Streams.BroadcastExcept(m.Stream, []byte("someone joined"))
		case *broker.Received:
			m.Streams.BroadcastExcept(m.Stream, m.Payload)
		}
	}))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go b.Serve(ctx)
	fmt.Println("serving on", b.Addr().(*net.TCPAddr).IP)
	// Output: serving on 127.0.0.1
}
