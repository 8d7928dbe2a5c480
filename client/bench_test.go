package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// Every benchmark here checks what it times: each reply, or each frame
// received, is the one expected, whole and in order, and a frame lost
// fails the benchmark rather than hanging it or going unnoticed.

// BenchmarkEcho measures round trips of 64-byte payloads with the test
// server: Send, then Recv of the echo. The conn sub-benchmark is the
// baseline, the same round trip over a bare net.Conn with package wire, so
// the client's own cost is the difference. Each payload is numbered, and
// each echo must be that payload.
func BenchmarkEcho(b *testing.B) {
	srv := serve(b, echoAndStats(statsReply))

	b.Run("client", func(b *testing.B) {
		c := dial(b, srv)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		payload := make([]byte, 64)
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		var i uint64
		for b.Loop() {
			binary.BigEndian.PutUint64(payload, i)
			i++
			if err := c.Send(payload); err != nil {
				b.Fatal(err)
			}
			got, err := c.Recv(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if !bytes.Equal(got, payload) {
				b.Fatalf("echo %d is %x, want %x", i-1, got, payload)
			}
		}
	})

	b.Run("conn", func(b *testing.B) {
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(time.Minute))
		payload := make([]byte, 64)
		frame, _ := wire.Encode(payload)
		dec := wire.NewDecoder(wire.MaxPayload)
		buf := make([]byte, 64<<10)
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		var i uint64
		for b.Loop() {
			binary.BigEndian.PutUint64(frame[wire.HeaderSize:], i)
			i++
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
					p, ok, err := dec.Next()
					if err != nil {
						b.Fatal(err)
					}
					if !ok {
						break
					}
					if got || !bytes.Equal(p, frame[wire.HeaderSize:len(frame)-1]) {
						b.Fatalf("echo %d is %x, want one %x", i-1, p, frame[wire.HeaderSize:len(frame)-1])
					}
					got = true
				}
			}
		}
	})
}

// BenchmarkSendParallel measures Send from many goroutines at once to a
// server that only counts frames: the path load tools take. The timer
// stops once the server has every frame, each of the size sent.
func BenchmarkSendParallel(b *testing.B) {
	var frames, wrong atomic.Int64
	srv := serve(b, func(_ *serverConn, p []byte) {
		if len(p) != 64 {
			wrong.Add(1)
		}
		frames.Add(1)
	})
	c := dial(b, srv)
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	var sent atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Send(payload); err != nil {
				b.Error(err)
				return
			}
			sent.Add(1)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for frames.Load() < sent.Load() {
		if time.Now().After(deadline) {
			b.Fatalf("the server has %d of the %d frames sent", frames.Load(), sent.Load())
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	if frames.Load() != sent.Load() || sent.Load() != int64(b.N) || wrong.Load() != 0 {
		b.Fatalf("%d sent of %d, %d received, %d of the wrong size", sent.Load(), b.N, frames.Load(), wrong.Load())
	}
}

// BenchmarkRecv measures receiving a stream of 64-byte frames that the
// server writes in batches, with Recv and with a handler. The frames of a
// batch are numbered; each must come in its place.
func BenchmarkRecv(b *testing.B) {
	const batch = 256
	var burst []byte
	for i := range batch {
		payload := make([]byte, 64)
		binary.BigEndian.PutUint64(payload, uint64(i))
		payload[63] = byte(i)
		burst, _ = wire.AppendFrame(burst, payload)
	}
	// check reports whether p is frame n of its batch.
	check := func(p []byte, n int) bool {
		return len(p) == 64 && binary.BigEndian.Uint64(p) == uint64(n%batch) && p[63] == byte(n%batch)
	}
	// Each "more" asks for another burst.
	srv := serve(b, func(sc *serverConn, p []byte) { sc.writeRaw(burst) })

	b.Run("Recv", func(b *testing.B) {
		c := dial(b, srv)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b.ReportAllocs()
		b.SetBytes(64)
		n := 0
		for b.Loop() {
			if n%batch == 0 {
				if err := c.Send([]byte("more")); err != nil {
					b.Fatal(err)
				}
			}
			p, err := c.Recv(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if !check(p, n) {
				b.Fatalf("frame %d is %x", n, p)
			}
			n++
		}
	})

	b.Run("handler", func(b *testing.B) {
		got := make(chan struct{}, 1)
		var seen, bad atomic.Int64
		c := dial(b, srv, client.WithHandler(func(p []byte) {
			n := seen.Add(1) - 1
			if !check(p, int(n)) {
				bad.Add(1)
			}
			if (n+1)%batch == 0 {
				got <- struct{}{}
			}
		}))
		wait := func() {
			select {
			case <-got:
			case <-time.After(time.Minute):
				b.Fatalf("a burst did not arrive: %d frames seen", seen.Load())
			}
		}
		b.ReportAllocs()
		b.SetBytes(64)
		n := 0
		for b.Loop() {
			if n%batch == 0 {
				if n > 0 {
					wait()
				}
				if err := c.Send([]byte("more")); err != nil {
					b.Fatal(err)
				}
			}
			n++
		}
		if n > 0 {
			wait() // the last burst
		}
		b.StopTimer()
		if want := int64((n + batch - 1) / batch * batch); seen.Load() != want || bad.Load() != 0 {
			b.Fatalf("%d frames seen, want %d; %d out of place", seen.Load(), want, bad.Load())
		}
	})
}
