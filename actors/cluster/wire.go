package cluster

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the Batch, Frame and GroupFrame messages (see the
// package documentation for their schema).
const (
	fieldNode        protowire.Number = 1
	fieldSeq         protowire.Number = 2
	fieldFirst       protowire.Number = 3
	fieldFrames      protowire.Number = 4
	fieldGroupFrames protowire.Number = 5
	fieldSkipped     protowire.Number = 6

	fieldPublisher protowire.Number = 1
	fieldPayload   protowire.Number = 2
	fieldGroupName protowire.Number = 3 // GroupFrame only
)

// frameInner is the size of a Frame's fields, or a GroupFrame's.
func frameInner(publisher uint64, group string, n int) int {
	inner := protowire.SizeTag(fieldPublisher) + protowire.SizeVarint(publisher) +
		protowire.SizeTag(fieldPayload) + protowire.SizeBytes(n)
	if group != "" {
		inner += protowire.SizeTag(fieldGroupName) + protowire.SizeBytes(len(group))
	}
	return inner
}

// frameField is the Batch field a frame goes in: a group's frames apart,
// so that a node that does not know them skips them rather than take
// them for frames to every stream.
func frameField(group string) protowire.Number {
	if group != "" {
		return fieldGroupFrames
	}
	return fieldFrames
}

// frameSize is the bytes one frame adds to a batch.
func frameSize(publisher uint64, group string, n int) int {
	return protowire.SizeTag(frameField(group)) + protowire.SizeBytes(frameInner(publisher, group, n))
}

// appendFrame appends one frame to b: a Frame (field 4 of a Batch) for
// every stream when group is "", else a GroupFrame (field 5) for the
// group's members.
func appendFrame(b []byte, publisher uint64, group string, payload []byte) []byte {
	b = protowire.AppendTag(b, frameField(group), protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(frameInner(publisher, group, len(payload))))
	b = protowire.AppendTag(b, fieldPublisher, protowire.VarintType)
	b = protowire.AppendVarint(b, publisher)
	if group != "" {
		b = protowire.AppendTag(b, fieldGroupName, protowire.BytesType)
		b = protowire.AppendString(b, group)
	}
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

// batchHeader reads a Batch's header fields: the sending node, the batch
// number, and how many batches the sender skipped for this receiver just
// before it.
func batchHeader(b []byte) (node, seq, skipped uint64, err error) {
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
			case fieldSkipped:
				skipped = v
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, 0, 0, errBadBatch
		}
		b = b[n:]
	}
	return node, seq, skipped, nil
}

// eachFrame calls fn for every Frame and GroupFrame of a Batch, in the
// order they were appended; group is nil for a Frame. group and payload
// alias b. A GroupFrame without a group, or a Frame with one, makes the
// batch malformed: it is cut short there, never taken as a frame to every
// stream.
func eachFrame(b []byte, fn func(publisher uint64, group, payload []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadBatch
		}
		b = b[n:]
		if (num != fieldFrames && num != fieldGroupFrames) || typ != protowire.BytesType {
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
		var group, payload []byte
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
			case num == fieldGroupName:
				if typ != protowire.BytesType {
					return errBadBatch
				}
				group, n = protowire.ConsumeBytes(f)
			default:
				n = protowire.ConsumeFieldValue(num, typ, f)
			}
			if n < 0 {
				return errBadBatch
			}
			f = f[n:]
		}
		if (num == fieldGroupFrames) != (len(group) > 0) {
			return errBadBatch
		}
		if num == fieldFrames {
			group = nil
		}
		fn(publisher, group, payload)
	}
	return nil
}

// The membership messages travel between the member actors of the
// nodes, each one wrapperspb.BytesValue holding the protobuf encoding of
//
//	message Probe {
//	  uint32 kind = 1;           // probeView or probeBye
//	  string cluster = 2;        // the sender's cluster name
//	  string id = 3;             // the sender's member id
//	  string addr = 4;           // the sender's cluster address
//	  string about = 5;          // the receiver's member id, as the sender knows it
//	  uint32 flags = 6;          // flagBlocked, flagMember, flagSending: about that id; flagAway
//	  repeated string group = 7; // the sender's mutual group
//	  repeated string kinds = 8; // the sender's protoactor cluster kinds
//	  int64 conns = 9;           // the sender's connections; -1 unknown
//	  uint64 seq = 10;           // the sender's views, numbered from 1
//	  uint64 heard = 11;         // the number of the receiver's last view the sender took
//	  uint64 caps = 12;          // what the sender speaks beyond batches: capInterest
//	}
//
// Every node sends every peer its view once a ProbeInterval (and at once
// when something changed): one message each way, which is both the
// heartbeat and the answer to the other's.
const (
	fieldKind    protowire.Number = 1
	fieldCluster protowire.Number = 2
	fieldID      protowire.Number = 3
	fieldAddr    protowire.Number = 4
	fieldAbout   protowire.Number = 5
	fieldFlags   protowire.Number = 6
	fieldGroup   protowire.Number = 7
	fieldKinds   protowire.Number = 8
	fieldConns   protowire.Number = 9
	fieldViewSeq protowire.Number = 10
	fieldHeard   protowire.Number = 11
	fieldCaps    protowire.Number = 12
)

// Capabilities a view announces. A node speaks to a peer only what the
// peer's view says it understands, so nodes of different versions share
// a cluster.
const (
	capInterest = 1 << iota // Interest messages on the receiver (interest.go)
)

// Kinds of membership message.
const (
	probeView = 1 // here I am, and this is what I make of you
	probeBye  = 2 // the sender is leaving the cluster
)

// Flags of a view, about the member it is sent to.
const (
	flagBlocked = 1 << iota // its member id is on the sender's block list
	flagMember              // it is in the sender's member list
	flagSending             // the sender sends it its broadcasts
	flagAway                // the sender itself was stopped lately (its prober did not run)
)

// probe is one membership message.
type probe struct {
	kind    uint64
	cluster string
	id      string
	addr    string
	about   string
	flags   uint64
	group   []string
	kinds   []string
	conns   int64
	seq     uint64
	heard   uint64
	caps    uint64
}

func (p *probe) marshal() []byte {
	size := 64 + len(p.cluster) + len(p.id) + len(p.addr) + len(p.about)
	for _, s := range p.group {
		size += 2 + len(s)
	}
	for _, s := range p.kinds {
		size += 2 + len(s)
	}
	b := make([]byte, 0, size)
	b = protowire.AppendTag(b, fieldKind, protowire.VarintType)
	b = protowire.AppendVarint(b, p.kind)
	for _, f := range []struct {
		num protowire.Number
		s   string
	}{{fieldCluster, p.cluster}, {fieldID, p.id}, {fieldAddr, p.addr}, {fieldAbout, p.about}} {
		if f.s != "" {
			b = protowire.AppendTag(b, f.num, protowire.BytesType)
			b = protowire.AppendString(b, f.s)
		}
	}
	if p.flags != 0 {
		b = protowire.AppendTag(b, fieldFlags, protowire.VarintType)
		b = protowire.AppendVarint(b, p.flags)
	}
	for _, g := range p.group {
		b = protowire.AppendTag(b, fieldGroup, protowire.BytesType)
		b = protowire.AppendString(b, g)
	}
	for _, k := range p.kinds {
		b = protowire.AppendTag(b, fieldKinds, protowire.BytesType)
		b = protowire.AppendString(b, k)
	}
	b = protowire.AppendTag(b, fieldViewSeq, protowire.VarintType)
	b = protowire.AppendVarint(b, p.seq)
	b = protowire.AppendTag(b, fieldHeard, protowire.VarintType)
	b = protowire.AppendVarint(b, p.heard)
	if p.caps != 0 {
		b = protowire.AppendTag(b, fieldCaps, protowire.VarintType)
		b = protowire.AppendVarint(b, p.caps)
	}
	b = protowire.AppendTag(b, fieldConns, protowire.VarintType)
	return protowire.AppendVarint(b, protowire.EncodeZigZag(p.conns))
}

var errBadProbe = errors.New("cluster: malformed membership message")

// maxProbeStrings bounds the repeated fields of a membership message, so
// that a malformed or hostile one cannot make the node hold much.
const maxProbeStrings = 256

func (p *probe) unmarshal(b []byte) error {
	*p = probe{conns: -1}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadProbe
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errBadProbe
			}
			b = b[n:]
			switch num {
			case fieldKind:
				p.kind = v
			case fieldFlags:
				p.flags = v
			case fieldConns:
				p.conns = protowire.DecodeZigZag(v)
			case fieldViewSeq:
				p.seq = v
			case fieldHeard:
				p.heard = v
			case fieldCaps:
				p.caps = v
			}
		case typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return errBadProbe
			}
			b = b[n:]
			switch num {
			case fieldCluster:
				p.cluster = v
			case fieldID:
				p.id = v
			case fieldAddr:
				p.addr = v
			case fieldAbout:
				p.about = v
			case fieldGroup:
				if len(p.group) >= maxProbeStrings {
					return errBadProbe
				}
				p.group = append(p.group, v)
			case fieldKinds:
				if len(p.kinds) >= maxProbeStrings {
					return errBadProbe
				}
				p.kinds = append(p.kinds, v)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errBadProbe
			}
			b = b[n:]
		}
	}
	if p.kind < probeView || p.kind > probeBye || p.id == "" || p.addr == "" {
		return errBadProbe
	}
	return nil
}
