package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
)

// The examples run against the test broker of client_test.go, started in
// process on a loopback port; against a real broker, dial its address
// ("localhost:1337" by default).

func Example() {
	broker, err := startServer(echoAndStats(statsReply)) // echoes every frame
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, broker.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.Send([]byte("hello, hydrogen")); err != nil {
		log.Fatal(err)
	}
	reply, err := c.Recv(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", reply)
	// Output: hello, hydrogen
}

func ExampleClient_Stats() {
	broker, err := startServer(echoAndStats(statsReply))
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, broker.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A reading over the next 10 ms: Stats returns once the span has
	// passed.
	s, err := c.Stats(ctx, 0.01)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("up %d s, %d clients, %d frames in, %d out\n", s.UpTime, s.NumClients, s.MsgRecv, s.MsgSent)
	fmt.Printf("CPU %.0f%%, RAM %d of %d bytes\n", s.Resources.CPUOverall*100, s.Resources.RAM.BytesUsed, s.Resources.RAM.BytesAvailable)
	for _, core := range s.Resources.CPUPerCore {
		fmt.Printf("  cpu%d %.0f%%\n", core.Core, core.Using*100)
	}
	fmt.Printf("protocol errors: %s\n", s.Extra["protocol_errors"])
	// Output:
	// up 42 s, 3 clients, 10 frames in, 20 out
	// CPU 50%, RAM 1024 of 4096 bytes
	//   cpu0 75%
	//   cpu1 25%
	// protocol errors: 2
}

func ExampleBrokerError() {
	broker, err := startServer(echoAndStats(statsReply))
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, broker.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Stats(ctx, float32(math.NaN()))
	var refused *client.BrokerError
	if errors.As(err, &refused) {
		fmt.Println("refused:", refused.Reason)
	}
	// Output: refused: span is NaN
}

func ExampleWithHandler() {
	broker, err := startServer(echoAndStats(statsReply))
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()

	// The handler runs on the client's reader goroutine; its payload is
	// valid only during the call, so it is copied (here, by string).
	received := make(chan string, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, broker.Addr(), client.WithHandler(func(payload []byte) {
		received <- string(payload)
	}))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.SendBatch([]byte("one"), []byte("two"), []byte("three")); err != nil {
		log.Fatal(err)
	}
	for range 3 {
		select {
		case msg := <-received:
			fmt.Println(msg)
		case <-c.Done():
			log.Fatal(c.Err())
		case <-ctx.Done():
			log.Fatal(ctx.Err())
		}
	}
	// Output:
	// one
	// two
	// three
}

// A load generator sends from many goroutines at once; the client
// coalesces their frames into few writes. Receiving runs at the same time,
// so that neither direction fills up and stalls the other.
func ExampleClient_Send() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "localhost:1337", client.WithDialTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	go func() {
		for {
			if _, err := c.Recv(ctx); err != nil {
				return // the client was closed
			}
		}
	}()
	msg := make([]byte, 64)
	for range 1000 {
		if err := c.Send(msg); err != nil {
			log.Fatal(err)
		}
	}
}
