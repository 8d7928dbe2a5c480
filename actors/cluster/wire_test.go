package cluster

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
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
	node, seq, skipped, err := batchHeader(b)
	if err != nil || node != 42 || seq != 3 || skipped != 0 {
		t.Fatalf("header %d %d %d %v", node, seq, skipped, err)
	}
	b2 := protowire.AppendVarint(protowire.AppendTag(bytes.Clone(b), fieldSkipped, protowire.VarintType), 5)
	if _, seq, skipped, err := batchHeader(b2); err != nil || seq != 3 || skipped != 5 {
		t.Fatalf("header with skipped: seq %d skipped %d %v", seq, skipped, err)
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

// TestGroupFramesNeverReachEveryStream: a group's frame is a field of
// its own (a node that does not know it skips it), and a group frame
// without a group, a frame with one, or a group of another wire type cut
// the batch short instead of being taken for a frame to every stream.
func TestGroupFramesNeverReachEveryStream(t *testing.T) {
	g := appendFrame(nil, 1, "room", []byte("p"))
	if num, _, _ := protowire.ConsumeTag(g); num != fieldGroupFrames {
		t.Fatalf("a group's frame is field %d of the batch, want %d", num, fieldGroupFrames)
	}
	// A reader of frames only (field 4), as a node that knows no groups:
	// it finds nothing to deliver.
	for b := appendHeader(g, 1, 1, 0); len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if num == fieldFrames {
			t.Fatal("a group's frame reads as a frame to every stream")
		}
		b = b[n:]
		b = b[protowire.ConsumeFieldValue(num, typ, b):]
	}
	inner := func(fields ...[]byte) []byte { return bytes.Join(fields, nil) }
	pub := protowire.AppendVarint(protowire.AppendTag(nil, fieldPublisher, protowire.VarintType), 7)
	pay := protowire.AppendBytes(protowire.AppendTag(nil, fieldPayload, protowire.BytesType), []byte("x"))
	grp := func(name string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, fieldGroupName, protowire.BytesType), name)
	}
	for name, c := range map[string]struct {
		field protowire.Number
		body  []byte
	}{
		"group frame without a group":   {fieldGroupFrames, inner(pub, pay)},
		"group frame with an empty one": {fieldGroupFrames, inner(pub, grp(""), pay)},
		"frame with a group":            {fieldFrames, inner(pub, grp("room"), pay)},
		"group of another wire type":    {fieldGroupFrames, inner(pub, protowire.AppendVarint(protowire.AppendTag(nil, fieldGroupName, protowire.VarintType), 5), pay)},
	} {
		ok := appendFrame(nil, 1, "", []byte("before"))
		b := protowire.AppendBytes(protowire.AppendTag(ok, c.field, protowire.BytesType), c.body)
		b = appendFrame(b, 1, "", []byte("after"))
		var got []string
		err := eachFrame(b, func(_ uint64, g, p []byte) { got = append(got, string(g)+"/"+string(p)) })
		if err == nil || len(got) != 1 || got[0] != "/before" {
			t.Errorf("%s: delivered %q, error %v; want only the frame before it, and an error", name, got, err)
		}
	}
}
