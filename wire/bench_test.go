package wire_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// benchStream returns as many whole frames of payloadSize bytes as fit in
// size bytes, and how many that is.
func benchStream(payloadSize, size int) (s []byte, n int) {
	payload := fill('x', payloadSize)
	for len(s)+wire.FrameSize(payloadSize) <= size {
		s = append(s, frame(payload)...)
		n++
	}
	return s, n
}

// drain calls Next until it reports no frame and returns how many frames
// it gave; counting them also keeps the loop from being optimised away.
func drain(b *testing.B, d *wire.Decoder) int {
	n := 0
	for {
		_, ok, err := d.Next()
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			return n
		}
		n++
	}
}

// verifyStream decodes s as the benchmarks do, fed in pieces of read
// bytes, and fails b unless it gives exactly frames payloads of
// payloadSize bytes of 'x', and nothing buffered: the check of what the
// timed loop decodes (the decoder is deterministic), made outside it.
func verifyStream(b *testing.B, s []byte, read, payloadSize, frames int) {
	b.Helper()
	want := fill('x', payloadSize)
	d := wire.NewDecoder(wire.MaxPayload)
	n := 0
	for rest := s; len(rest) > 0; {
		k := min(read, len(rest))
		d.Feed(rest[:k])
		rest = rest[k:]
		for {
			p, ok, err := d.Next()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			if !bytes.Equal(p, want) {
				b.Fatalf("frame %d: %d bytes %q..., want %d bytes of 'x'", n, len(p), p[:min(len(p), 8)], payloadSize)
			}
			n++
		}
	}
	if n != frames || d.Buffered() != 0 {
		b.Fatalf("decoded %d frames with %d bytes left, want %d and none", n, d.Buffered(), frames)
	}
}

// A 64 KiB read is what the broker's loops read at once; 64-byte payloads
// are small messages, where per-frame cost dominates.
const (
	benchRead    = 64 << 10
	benchPayload = 64
)

func BenchmarkDecode(b *testing.B) {
	s, frames := benchStream(benchPayload, benchRead)
	d := wire.NewDecoder(wire.MaxPayload)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		d.Feed(s)
		if n := drain(b, d); n != frames {
			b.Fatalf("decoded %d frames, want %d", n, frames)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
	verifyStream(b, s, len(s), benchPayload, frames)
}

// BenchmarkDecodeSplit feeds the same stream in reads that end inside
// frames: 1500 bytes, one Ethernet segment, splits one frame in 22; 61
// bytes, less than a frame, carries every frame over at least once.
func BenchmarkDecodeSplit(b *testing.B) {
	s, frames := benchStream(benchPayload, benchRead)
	for _, read := range []int{1500, 61} {
		b.Run(fmt.Sprintf("read=%d", read), func(b *testing.B) {
			var pieces [][]byte
			for rest := s; len(rest) > 0; {
				n := min(read, len(rest))
				pieces = append(pieces, rest[:n])
				rest = rest[n:]
			}
			d := wire.NewDecoder(wire.MaxPayload)
			b.SetBytes(int64(len(s)))
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				for _, p := range pieces {
					d.Feed(p)
					n += drain(b, d)
				}
				if n != frames {
					b.Fatalf("decoded %d frames, want %d", n, frames)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
			verifyStream(b, s, read, benchPayload, frames)
		})
	}
}

// BenchmarkCopyBaseline copies the stream BenchmarkDecode decodes: the
// price of touching those bytes once, to read the decoder's MB/s against.
func BenchmarkCopyBaseline(b *testing.B) {
	s, _ := benchStream(benchPayload, benchRead)
	dst := make([]byte, len(s))
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		copy(dst, s)
	}
	if !bytes.Equal(dst, s) {
		b.Fatal("the copy differs from the stream")
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, size := range []int{0, benchPayload, wire.MaxPayload} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			payload := fill('x', size)
			buf := make([]byte, 0, wire.FrameSize(size))
			b.SetBytes(int64(wire.FrameSize(size)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = wire.AppendFrame(buf[:0], payload); err != nil {
					b.Fatal(err)
				}
			}
			// 0x01, the length big-endian, the payload, 0x17.
			want := append([]byte{0x01, byte(size >> 8), byte(size)}, payload...)
			if want = append(want, 0x17); !bytes.Equal(buf, want) {
				b.Fatalf("AppendFrame made %d bytes %x..., want %d bytes %x...", len(buf), buf[:min(len(buf), 8)], len(want), want[:min(len(want), 8)])
			}
		})
	}
}
