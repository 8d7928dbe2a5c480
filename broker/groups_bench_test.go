package broker_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
)

// BenchmarkGroupBroadcast: 1,000 streams, 100 of them in a group; one op
// sends a 64-byte payload to the 100, by a group broadcast (encoded once,
// the bytes shared) or by a loop of Send (a copy and an encoding each).
// The clients read everything as it comes; the figure is the sender's
// time per op.
func BenchmarkGroupBroadcast(b *testing.B) {
	const streams, members = 1000, 100
	var mu sync.Mutex
	var all []*broker.Stream
	props := actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*broker.Connected); ok {
			mu.Lock()
			all = append(all, m.Stream)
			mu.Unlock()
		}
	})
	br := start(b, broker.Config{}, props, true, broker.OnEventLoop())
	var readers sync.WaitGroup
	conns := make([]net.Conn, 0, streams)
	for range streams {
		c, err := net.Dial("tcp", br.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		readers.Go(func() { _, _ = io.Copy(io.Discard, c) })
	}
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	})
	waitFor(b, "every stream connected", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(all) == streams })
	g := br.Streams().Group("bench")
	mu.Lock()
	group := all[:members]
	mu.Unlock()
	for _, s := range group {
		if err := g.Join(s); err != nil {
			b.Fatal(err)
		}
	}
	payload := make([]byte, 64)
	b.Run("group", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n, err := g.Broadcast(payload); err != nil || n != members {
				b.Fatalf("reached %d, %v", n, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
	})
	b.Run("send-loop", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, s := range group {
				if err := s.Send(payload); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
	})
}
