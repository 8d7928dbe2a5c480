package cluster

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the Batch and Frame messages (see the package
// documentation for their schema).
const (
	fieldNode   protowire.Number = 1
	fieldSeq    protowire.Number = 2
	fieldFirst  protowire.Number = 3
	fieldFrames protowire.Number = 4

	fieldPublisher protowire.Number = 1
	fieldPayload   protowire.Number = 2
)

// frameSize is the bytes one frame adds to a batch.
func frameSize(publisher uint64, n int) int {
	inner := protowire.SizeTag(fieldPublisher) + protowire.SizeVarint(publisher) +
		protowire.SizeTag(fieldPayload) + protowire.SizeBytes(n)
	return protowire.SizeTag(fieldFrames) + protowire.SizeBytes(inner)
}

// appendFrame appends one Frame, as field 4 of a Batch, to b.
func appendFrame(b []byte, publisher uint64, payload []byte) []byte {
	inner := protowire.SizeTag(fieldPublisher) + protowire.SizeVarint(publisher) +
		protowire.SizeTag(fieldPayload) + protowire.SizeBytes(len(payload))
	b = protowire.AppendTag(b, fieldFrames, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	b = protowire.AppendTag(b, fieldPublisher, protowire.VarintType)
	b = protowire.AppendVarint(b, publisher)
	b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
	return protowire.AppendBytes(b, payload)
}

// appendHeader appends a Batch's header fields after its frames.
func appendHeader(b []byte, node, seq, first uint64) []byte {
	b = protowire.AppendTag(b, fieldNode, protowire.VarintType)
	b = protowire.AppendVarint(b, node)
	b = protowire.AppendTag(b, fieldSeq, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	b = protowire.AppendTag(b, fieldFirst, protowire.VarintType)
	return protowire.AppendVarint(b, first)
}

var errBadBatch = errors.New("cluster: malformed batch")

// batchHeader reads a Batch's header fields.
func batchHeader(b []byte) (node, seq, first uint64, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, 0, errBadBatch
		}
		b = b[n:]
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, 0, 0, errBadBatch
			}
			b = b[n:]
			switch num {
			case fieldNode:
				node = v
			case fieldSeq:
				seq = v
			case fieldFirst:
				first = v
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, 0, 0, errBadBatch
		}
		b = b[n:]
	}
	return node, seq, first, nil
}

// eachFrame calls fn for every Frame of a Batch, in order. payload
// aliases b.
func eachFrame(b []byte, fn func(publisher uint64, payload []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadBatch
		}
		b = b[n:]
		if num != fieldFrames || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errBadBatch
			}
			b = b[n:]
			continue
		}
		f, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errBadBatch
		}
		b = b[n:]
		var publisher uint64
		var payload []byte
		for len(f) > 0 {
			num, typ, n := protowire.ConsumeTag(f)
			if n < 0 {
				return errBadBatch
			}
			f = f[n:]
			switch {
			case num == fieldPublisher && typ == protowire.VarintType:
				publisher, n = protowire.ConsumeVarint(f)
			case num == fieldPayload && typ == protowire.BytesType:
				payload, n = protowire.ConsumeBytes(f)
			default:
				n = protowire.ConsumeFieldValue(num, typ, f)
			}
			if n < 0 {
				return errBadBatch
			}
			f = f[n:]
		}
		fn(publisher, payload)
	}
	return nil
}
