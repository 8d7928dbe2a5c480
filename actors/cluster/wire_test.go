package cluster

import (
	"bytes"
	"testing"
)

func TestBatchRoundTrip(t *testing.T) {
	type fr struct {
		pub   uint64
		group string
		p     []byte
	}
	in := []fr{{1, "", []byte("a")}, {1 << 60, "room", nil}, {7, "", bytes.Repeat([]byte{0x01, 0x17, 0x0D}, 30000)}, {7, "a topic", []byte("b")}}
	var b []byte
	size := 0
	for _, f := range in {
		b = appendFrame(b, f.pub, f.group, f.p)
		size += frameSize(f.pub, f.group, len(f.p))
	}
	if size != len(b) {
		t.Fatalf("frameSize sums to %d, encoded %d", size, len(b))
	}
	b = appendHeader(b, 42, 3, 99)
	node, seq, first, err := batchHeader(b)
	if err != nil || node != 42 || seq != 3 || first != 99 {
		t.Fatalf("header %d %d %d %v", node, seq, first, err)
	}
	var out []fr
	if err := eachFrame(b, func(pub uint64, g, p []byte) { out = append(out, fr{pub, string(g), bytes.Clone(p)}) }); err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d frames, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i].pub != in[i].pub || out[i].group != in[i].group || !bytes.Equal(out[i].p, in[i].p) {
			t.Errorf("frame %d differs", i)
		}
	}
	if err := eachFrame(b[:len(b)-20], func(uint64, []byte, []byte) {}); err == nil {
		t.Error("a truncated batch parsed")
	}
}
