package client_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// BenchmarkEcho measures round trips of 64-byte payloads with the test
// server: Send, then Recv of the echo. The conn sub-benchmark is the
// baseline, the same round trip over a bare net.Conn with package wire, so
// the client's own cost is the difference.
func BenchmarkEcho(b *testing.B) {
	payload := make([]byte, 64)
	srv := serve(b, echoAndStats(statsReply))

	b.Run("client", func(b *testing.B) {
		c := dial(b, srv)
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			if err := c.Send(payload); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Recv(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("conn", func(b *testing.B) {
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		frame, _ := wire.Encode(payload)
		dec := wire.NewDecoder(wire.MaxPayload)
		buf := make([]byte, 64<<10)
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			if _, err := conn.Write(frame); err != nil {
				b.Fatal(err)
			}
			for got := false; !got; {
				n, err := conn.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				dec.Feed(buf[:n])
				for {
					_, ok, err := dec.Next()
					if err != nil {
						b.Fatal(err)
					}
					if !ok {
						break
					}
					got = true
				}
			}
		}
	})
}

// BenchmarkSendParallel measures Send from many goroutines at once to a
// server that only counts frames: the path load tools take.
func BenchmarkSendParallel(b *testing.B) {
	var frames atomic.Int64
	srv := serve(b, func(*serverConn, []byte) { frames.Add(1) })
	c := dial(b, srv)
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Send(payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRecv measures receiving a stream of 64-byte frames that the
// server writes in batches, with Recv and with a handler.
func BenchmarkRecv(b *testing.B) {
	payload := make([]byte, 64)
	const batch = 256
	var burst []byte
	for range batch {
		burst, _ = wire.AppendFrame(burst, payload)
	}
	// Each "more" asks for another burst.
	srv := serve(b, func(sc *serverConn, p []byte) { sc.writeRaw(burst) })

	b.Run("Recv", func(b *testing.B) {
		c := dial(b, srv)
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		n := 0
		for b.Loop() {
			if n%batch == 0 {
				if err := c.Send([]byte("more")); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := c.Recv(ctx); err != nil {
				b.Fatal(err)
			}
			n++
		}
	})

	b.Run("handler", func(b *testing.B) {
		got := make(chan struct{}, 1)
		var seen atomic.Int64
		c := dial(b, srv, client.WithHandler(func([]byte) {
			if seen.Add(1)%batch == 0 {
				got <- struct{}{}
			}
		}))
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		n := 0
		for b.Loop() {
			if n%batch == 0 {
				if n > 0 {
					<-got
				}
				if err := c.Send([]byte("more")); err != nil {
					b.Fatal(err)
				}
			}
			n++
		}
		if n > 0 {
			<-got // the last burst
		}
	})
}
