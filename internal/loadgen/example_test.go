package loadgen_test

import (
	"context"
	"fmt"
	"log"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

func ExampleEcho() {
	srv, err := baseline.Listen("127.0.0.1:0", baseline.Echo)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	res, err := loadgen.Echo(context.Background(), loadgen.EchoConfig{
		Addr: srv.Addr(), Conns: 4, InFlight: 8, Count: 10_000,
	})
	if err != nil {
		log.Fatal(err)
	}
	// res.String() has the rate and latency too, which vary run to run.
	fmt.Println(res.Messages, "round trips,", res.Errors, "errors")
	// Output: 10000 round trips, 0 errors
}

func ExampleFanout() {
	srv, err := baseline.Listen("127.0.0.1:0", baseline.Broadcast)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	res, err := loadgen.Fanout(context.Background(), loadgen.FanoutConfig{
		Addr: srv.Addr(), Publishers: 2, Subscribers: 5, Count: 1_000,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Sent, "sent,", res.Deliveries, "delivered,", res.Gaps, "gaps")
	// Output: 1000 sent, 5000 delivered, 0 gaps
}

func ExampleOpen() {
	srv, err := baseline.Listen("127.0.0.1:0", baseline.Echo)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	set, err := loadgen.Open(context.Background(), loadgen.ConnsConfig{Addr: srv.Addr(), N: 100})
	if err != nil {
		log.Fatal(err)
	}
	defer set.Close()
	r := set.Result()
	fmt.Println(r.Opened, "opened,", r.Verified, "verified,", set.Len(), "held")
	// Output: 100 opened, 100 verified, 100 held
}
