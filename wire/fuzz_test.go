package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/hydrogen-mq/hydrogen/internal/wireref"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// checkAgainstRef fails t unless the Decoder's payloads and error match
// the reference's. Only the fields ProtocolError documents for each
// sentinel are compared.
func checkAgainstRef(t *testing.T, how string, got [][]byte, err error, want [][]byte, wantErr *wire.ProtocolError) {
	t.Helper()
	if !wireref.Equal(got, want) {
		t.Fatalf("%s: got %s, want %s", how, wireref.Describe(got), wireref.Describe(want))
	}
	if wantErr == nil {
		if err != nil {
			t.Fatalf("%s: error %v, want none", how, err)
		}
		return
	}
	var pe *wire.ProtocolError
	if !errors.As(err, &pe) || !errors.Is(err, wantErr.Err) || pe.Offset != wantErr.Offset {
		t.Fatalf("%s: error %v, want %v", how, err, wantErr)
	}
	if wantErr.Err == wire.ErrTooLarge {
		if pe.Length != wantErr.Length || pe.Max != wantErr.Max {
			t.Fatalf("%s: error %v, want %v", how, err, wantErr)
		}
	} else if pe.Byte != wantErr.Byte {
		t.Fatalf("%s: error %v, want %v", how, err, wantErr)
	}
}

// cutByLengths cuts s into pieces whose lengths are the bytes of cuts, the
// rest of s being the last piece. Zero-length pieces are kept: a Feed of
// nothing is something a read loop can do.
func cutByLengths(s, cuts []byte) [][]byte {
	var pieces [][]byte
	for _, c := range cuts {
		n := min(int(c), len(s))
		pieces = append(pieces, s[:n])
		s = s[n:]
	}
	return append(pieces, s)
}

func FuzzDecoder(f *testing.F) {
	f.Add(frames([]byte("hello"), nil, []byte("x")), []byte{1, 2, 3}, uint16(wire.MaxPayload))
	f.Add([]byte{0x02}, []byte(nil), uint16(wire.MaxPayload))
	f.Add([]byte{0x01, 0x00, 0x02, 'a', 'b', 0x18}, []byte{4}, uint16(wire.MaxPayload))
	f.Add(frame(fill('x', 101)), []byte{1, 1}, uint16(100))
	f.Add(frames(nil, nil), []byte{1, 1, 1, 1, 1}, uint16(0))
	f.Add([]byte(nil), []byte(nil), uint16(0))
	f.Fuzz(func(t *testing.T, s, cuts []byte, limit uint16) {
		want, buffered, wantErr := wireref.Decode(s, int(limit))
		d := wire.NewDecoder(int(limit))
		got, err := decodePieces(d, cutByLengths(s, cuts)...)
		checkAgainstRef(t, "cut", got, err, want, wantErr)
		if err == nil {
			if n := d.Buffered(); n != buffered {
				t.Fatalf("Buffered() = %d, want %d", n, buffered)
			}
		} else {
			for _, next := range [][]byte{nil, frame(nil), s} {
				d.Feed(next)
				if p, ok, err2 := d.Next(); p != nil || ok || err2 != err {
					t.Fatalf("after %v: Next() = %q, %v, %v; want the same error again", err, p, ok, err2)
				}
			}
		}

		// Whatever state the first pass left, Reset must leave none of it.
		d.Reset()
		got, err = decodePieces(d, s)
		checkAgainstRef(t, "after Reset", got, err, want, wantErr)
	})
}

// payloadsFrom derives payloads from fuzz input: each pair of bytes of
// lens is a big-endian length, so lengths up to MaxPayload are reachable
// from a small input, and the payload bytes cycle through data (zeros if
// data is empty). Lengths stop once the total passes 1 MiB, which bounds
// the memory one input can take.
func payloadsFrom(data, lens []byte) [][]byte {
	var payloads [][]byte
	total, k := 0, 0
	for ; len(lens) >= 2 && total < 1<<20; lens = lens[2:] {
		p := make([]byte, binary.BigEndian.Uint16(lens))
		if len(data) > 0 {
			for i := range p {
				p[i] = data[k%len(data)]
				k++
			}
		}
		payloads = append(payloads, p)
		total += len(p)
	}
	return payloads
}

// randomCuts cuts s at points drawn from rng, mixing cuts of a few bytes
// (splitting headers, empty feeds) with cuts inside and across payloads.
func randomCuts(rng *rand.Rand, s []byte) [][]byte {
	var pieces [][]byte
	for len(s) > 0 {
		var n int
		switch rng.IntN(3) {
		case 0:
			n = rng.IntN(min(len(s), wire.HeaderSize+1) + 1)
		case 1:
			n = rng.IntN(min(len(s), 300) + 1)
		default:
			n = rng.IntN(len(s) + 1)
		}
		pieces = append(pieces, s[:n])
		s = s[n:]
	}
	return pieces
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), []byte{0, 5, 0, 0, 0, 3}, uint64(1))
	f.Add([]byte{0x01, 0x17, 0x0D}, []byte{0, 7, 0, 1, 0, 0, 0x01, 0x17}, uint64(2))
	f.Add([]byte("x"), []byte{0xFF, 0xFF, 0, 0}, uint64(3))
	f.Add([]byte(nil), []byte(nil), uint64(0))
	f.Fuzz(func(t *testing.T, data, lens []byte, seed uint64) {
		payloads := payloadsFrom(data, lens)
		var s []byte
		longest := 0
		for _, p := range payloads {
			start := len(s)
			var err error
			if s, err = wire.AppendFrame(s, p); err != nil {
				t.Fatal(err)
			}
			if e, err := wire.Encode(p); err != nil || !bytes.Equal(e, s[start:]) {
				t.Fatalf("Encode of %d bytes = % x..., %v; AppendFrame gave % x...", len(p), head(e), err, head(s[start:]))
			}
			longest = max(longest, len(p))
		}

		// The tightest maximum that admits every payload: a length equal
		// to the maximum must pass.
		d := wire.NewDecoder(longest)
		rng := rand.New(rand.NewPCG(seed, seed>>32|seed<<32))
		got, err := decodePieces(d, randomCuts(rng, s)...)
		if err != nil {
			t.Fatalf("decoding %s: %v", wireref.Describe(payloads), err)
		}
		if !wireref.Equal(got, payloads) {
			t.Fatalf("got %s, want %s", wireref.Describe(got), wireref.Describe(payloads))
		}
		if n := d.Buffered(); n != 0 {
			t.Fatalf("Buffered() = %d after whole frames", n)
		}
	})
}
