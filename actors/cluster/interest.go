package cluster

import (
	"errors"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Interest: a group frame goes only to the nodes that have members of
// its group.
//
// Every node keeps the set of groups with members on it (SetInterest) and
// a version that counts its changes. It tells each peer that admitted it
// the whole set first, then what changed since the version the peer has,
// and the peer acknowledges every version it takes. A peer whose version
// does not match a change asks for the whole set again; a version
// unacknowledged for interestResend is sent again, whole. A node filters
// its batches for a peer by what the peer told it: group frames for
// groups the peer has no members of are left out. Until a peer has told
// it anything, the peer gets every group frame. So a mistake or a loss
// costs traffic, never a frame: a peer is only ever spared a group's
// frames on its own word.
//
// The one window is the change itself: a stream that joins a group here
// is not reached by frames the other nodes publish before they have
// heard of the change. WhenKnown closes it for callers that can wait: it
// calls back once every peer that takes this node's batches has
// acknowledged the node's current version (see the pubsub application's
// SUB, answered then).
const (
	// maxInterestBytes bounds the group names a node tells and keeps of
	// a peer: past it the whole set is sent as "every group", and a peer
	// whose set grows past it is taken to want every group frame.
	maxInterestBytes = 1 << 20
	// maxInterestLog bounds the changes kept to tell peers as deltas; a
	// peer further behind is told the whole set.
	maxInterestLog = 4096
	// interestResend: a version unacknowledged this long is sent again,
	// whole.
	interestResend = time.Second
	// InterestTimeout bounds WhenKnown's wait for a peer that does not
	// answer.
	InterestTimeout = time.Second
)

// Fields of the Interest message (see the package documentation). They
// are numbered past a Batch's so that a receiver tells the two apart by
// the first field, kind, which comes first.
const (
	fieldIKind    protowire.Number = 16
	fieldIVersion protowire.Number = 17
	fieldIBase    protowire.Number = 18
	fieldIAdd     protowire.Number = 19
	fieldIRemove  protowire.Number = 20
	fieldIAll     protowire.Number = 21
)

// Kinds of Interest message.
const (
	interestWhole = 1 // the sender's whole set, at version
	interestDelta = 2 // what changed from base to version
	interestAck   = 3 // the sender has taken the receiver's version
	interestAsk   = 4 // the sender cannot apply a delta: send the whole set
)

// localInterest is the set of groups with members on this node, as told
// to the peers; n.mu guards it.
type localInterest struct {
	groups map[string]struct{}
	bytes  int      // of the names, together
	v      uint64   // changes so far
	log    []change // the latest changes, oldest first: versions log[0].v to v
}

type change struct {
	v    uint64
	name string
	on   bool
}

// interestSet is a peer's interest as it told this node.
type interestSet struct {
	v      uint64
	all    bool // every group
	groups map[string]struct{}
	bytes  int
}

// wants reports whether the peer wants group's frames; s is known, and
// not every group.
func (s *interestSet) wants(group []byte) bool {
	_, ok := s.groups[string(group)]
	return ok
}

// interestWaiter is a WhenKnown call waiting for version v.
type interestWaiter struct {
	v     uint64
	until time.Time
	fn    func(known bool)
}

// SetInterest records whether group has members on this node; the peers
// are told in the background. The broker calls it when a group gets its
// first member and when it loses its last.
func (n *Node) SetInterest(group string, on bool) {
	if group == "" {
		return
	}
	li := &n.interest
	n.mu.Lock()
	if li.groups == nil {
		li.groups = map[string]struct{}{}
	}
	_, had := li.groups[group]
	if had == on {
		n.mu.Unlock()
		return
	}
	if on {
		li.groups[group] = struct{}{}
		li.bytes += len(group)
	} else {
		delete(li.groups, group)
		li.bytes -= len(group)
	}
	li.v++
	if len(li.log) == maxInterestLog {
		li.log = slices.Delete(li.log, 0, maxInterestLog/2)
	}
	li.log = append(li.log, change{li.v, group, on})
	n.mu.Unlock()
	n.wake()
}

// WhenKnown calls fn once every peer that takes this node's batches has
// acknowledged the groups this node has members of now: from then on a
// group frame published on any of them reaches this node if it has
// members of the group. fn runs at once, on the caller's goroutine, when
// that is already so (and when the node has no peers); otherwise later,
// on the node's own, with known false if a peer did not answer within
// InterestTimeout or the node shut down. fn must not block.
func (n *Node) WhenKnown(fn func(known bool)) {
	n.mu.Lock()
	v := n.interest.v
	if n.interestKnownLocked(v) {
		n.mu.Unlock()
		fn(true)
		return
	}
	if n.closed.Load() {
		n.mu.Unlock()
		fn(false)
		return
	}
	n.waiters = append(n.waiters, interestWaiter{v: v, until: time.Now().Add(InterestTimeout), fn: fn})
	n.mu.Unlock()
	time.AfterFunc(InterestTimeout, n.wake)
	n.wake()
}

// InterestKnown reports whether every peer that takes this node's batches
// has acknowledged the groups this node has members of now (see
// WhenKnown).
func (n *Node) InterestKnown() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.interestKnownLocked(n.interest.v)
}

// interestKnownLocked reports whether every admitted peer has acknowledged
// version v of this node's interest; n.mu is held.
func (n *Node) interestKnownLocked(v uint64) bool {
	for _, p := range n.peers {
		if p.admitted && (p.toldInc != n.inc || p.acked < v) {
			return false
		}
	}
	return true
}

// settleWaiters calls back the WhenKnown calls whose version every peer
// has, or whose time is up; all of them, unknown, once the node stops.
func (n *Node) settleWaiters(now time.Time, stopping bool) {
	type call struct {
		fn    func(bool)
		known bool
	}
	var calls []call
	n.mu.Lock()
	keep := n.waiters[:0]
	for _, w := range n.waiters {
		switch {
		case n.interestKnownLocked(w.v):
			calls = append(calls, call{w.fn, true})
		case stopping || !now.Before(w.until):
			calls = append(calls, call{w.fn, false})
		default:
			keep = append(keep, w)
		}
	}
	clear(n.waiters[len(keep):])
	n.waiters = keep
	late := 0
	for _, c := range calls {
		if !c.known {
			late++
		}
	}
	n.interestLate += uint64(late)
	total := n.interestLate
	say := late > 0 && !stopping && now.Sub(n.lateLog) >= 10*time.Second
	if say {
		n.lateLog = now
	}
	n.mu.Unlock()
	for _, c := range calls {
		c.fn(c.known)
	}
	if say {
		n.log.Warn("cluster: a peer did not acknowledge this node's groups in time; frames it publishes to them may miss this node until it does",
			"timeout", InterestTimeout, "late_total", total)
	}
}

// tellInterest sends each admitted peer what it has not heard of this
// node's interest: the changes since the version it acknowledged, or the
// whole set when it has none of it, is too far behind, or has not
// answered for interestResend.
func (n *Node) tellInterest(now time.Time) {
	type out struct {
		pid *actor.PID
		msg []byte
	}
	var outs []out
	n.mu.Lock()
	inc := n.inc
	for _, p := range n.peers {
		if !p.admitted || inc == nil {
			continue
		}
		if until, q := n.quiet[p.addr]; q && now.Before(until) {
			continue
		}
		if msg := n.interestFor(p, inc, now); msg != nil {
			outs = append(outs, out{p.pid, msg})
		}
	}
	n.mu.Unlock()
	if inc == nil {
		return
	}
	for _, o := range outs {
		inc.send(o.pid, &wrapperspb.BytesValue{Value: o.msg}, inc.self)
	}
}

// interestFor is the Interest message peer p is due from incarnation
// inc, if any, and records it as sent; n.mu is held.
func (n *Node) interestFor(p *peer, inc *incarnation, now time.Time) []byte {
	li := &n.interest
	if p.toldInc != inc {
		p.toldInc, p.told, p.acked, p.toldAll = inc, 0, 0, false
	}
	stale := p.acked < p.told && now.Sub(p.toldAt) > interestResend
	if p.told == li.v && !stale {
		return nil
	}
	var msg []byte
	switch {
	case li.bytes > maxInterestBytes:
		if p.toldAll && !stale {
			p.told = li.v // still every group: nothing new to say
			return nil
		}
		msg = appendInterestWhole(nil, li.v, nil, true)
		p.toldAll = true
	case p.told == 0 || p.toldAll || stale || len(li.log) == 0 || li.log[0].v > p.told+1:
		msg = appendInterestWhole(nil, li.v, li.groups, false)
		p.toldAll = false
	default:
		i, _ := slices.BinarySearchFunc(li.log, p.told+1, func(c change, v uint64) int { return cmpU64(c.v, v) })
		msg = appendInterestDelta(nil, p.told, li.v, li.log[i:])
	}
	p.told, p.toldAt = li.v, now
	return msg
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// onInterest takes an Interest message from a peer's receiver.
func (n *Node) onInterest(inc *incarnation, from *actor.PID, b []byte) {
	var m interestMsg
	if err := m.unmarshal(b); err != nil {
		n.refuse(from, "malformed interest message")
		return
	}
	var reply []byte
	n.mu.Lock()
	p := n.peerOf(from)
	if p == nil || n.inc != inc {
		n.mu.Unlock()
		if p == nil {
			n.refuse(from, "interest from a sender that is not a member")
		}
		return
	}
	switch m.kind {
	case interestWhole:
		s := &interestSet{v: m.version, all: m.all}
		if !s.all {
			s.groups = make(map[string]struct{}, len(m.add))
			for _, g := range m.add {
				s.add(g)
			}
		}
		p.wants = s
		reply = appendInterestAck(nil, m.version)
	case interestDelta:
		s := p.wants
		if s == nil || s.v != m.base || s.all {
			// A change it told was lost, or a whole set not yet taken:
			// until the whole set comes, it gets every group frame.
			p.wants = nil
			reply = appendInterestAsk(nil)
			break
		}
		for _, g := range m.remove {
			if _, ok := s.groups[g]; ok {
				delete(s.groups, g)
				s.bytes -= len(g)
			}
		}
		for _, g := range m.add {
			s.add(g)
		}
		s.v = m.version
		reply = appendInterestAck(nil, m.version)
	case interestAck:
		if m.version <= p.told && m.version > p.acked {
			p.acked = m.version
		}
	case interestAsk:
		p.told = 0
	}
	n.mu.Unlock()
	if reply != nil {
		inc.send(from, &wrapperspb.BytesValue{Value: reply}, inc.self)
	}
	switch m.kind {
	case interestAck:
		n.settleWaiters(time.Now(), false)
	case interestAsk:
		n.wake()
	}
}

// add adds a group to a peer's set; past maxInterestBytes the set becomes
// every group.
func (s *interestSet) add(g string) {
	if s.all {
		return
	}
	if _, ok := s.groups[g]; ok {
		return
	}
	if s.bytes+len(g) > maxInterestBytes {
		s.all, s.groups, s.bytes = true, nil, 0
		return
	}
	s.groups[g] = struct{}{}
	s.bytes += len(g)
}

// interestMsg is a decoded Interest message.
type interestMsg struct {
	kind, version, base uint64
	all                 bool
	add, remove         []string
}

var errBadInterest = errors.New("cluster: malformed interest message")

// isInterest reports whether a receiver's message is an Interest message
// rather than a Batch: its first field is an Interest's kind.
func isInterest(b []byte) bool {
	num, typ, n := protowire.ConsumeTag(b)
	return n > 0 && num == fieldIKind && typ == protowire.VarintType
}

func appendInterestHead(b []byte, kind, version uint64) []byte {
	b = protowire.AppendTag(b, fieldIKind, protowire.VarintType)
	b = protowire.AppendVarint(b, kind)
	if version != 0 {
		b = protowire.AppendTag(b, fieldIVersion, protowire.VarintType)
		b = protowire.AppendVarint(b, version)
	}
	return b
}

func appendInterestWhole(b []byte, version uint64, groups map[string]struct{}, all bool) []byte {
	b = appendInterestHead(b, interestWhole, version)
	if all {
		b = protowire.AppendTag(b, fieldIAll, protowire.VarintType)
		return protowire.AppendVarint(b, 1)
	}
	for g := range groups {
		b = protowire.AppendTag(b, fieldIAdd, protowire.BytesType)
		b = protowire.AppendString(b, g)
	}
	return b
}

// appendInterestDelta encodes the changes from base to version: for each
// group changed, where it stands at version.
func appendInterestDelta(b []byte, base, version uint64, changes []change) []byte {
	b = appendInterestHead(b, interestDelta, version)
	b = protowire.AppendTag(b, fieldIBase, protowire.VarintType)
	b = protowire.AppendVarint(b, base)
	last := make(map[string]bool, len(changes))
	for _, c := range changes {
		last[c.name] = c.on
	}
	for g, on := range last {
		f := fieldIRemove
		if on {
			f = fieldIAdd
		}
		b = protowire.AppendTag(b, f, protowire.BytesType)
		b = protowire.AppendString(b, g)
	}
	return b
}

func appendInterestAck(b []byte, version uint64) []byte {
	return appendInterestHead(b, interestAck, version)
}

func appendInterestAsk(b []byte) []byte { return appendInterestHead(b, interestAsk, 0) }

// maxInterestNames bounds the names one message may carry, beside the
// bytes bound: a hostile peer cannot make a receiver build a large list
// of empty names.
const maxInterestNames = maxInterestBytes / 4

func (m *interestMsg) unmarshal(b []byte) error {
	*m = interestMsg{}
	names, bytes := 0, 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errBadInterest
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errBadInterest
			}
			b = b[n:]
			switch num {
			case fieldIKind:
				m.kind = v
			case fieldIVersion:
				m.version = v
			case fieldIBase:
				m.base = v
			case fieldIAll:
				m.all = v != 0
			}
		case typ == protowire.BytesType && (num == fieldIAdd || num == fieldIRemove):
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return errBadInterest
			}
			b = b[n:]
			if v == "" {
				return errBadInterest
			}
			if names++; names > maxInterestNames {
				return errBadInterest
			}
			if bytes += len(v); bytes > 2*maxInterestBytes {
				return errBadInterest
			}
			if num == fieldIAdd {
				m.add = append(m.add, v)
			} else {
				m.remove = append(m.remove, v)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errBadInterest
			}
			b = b[n:]
		}
	}
	switch m.kind {
	case interestWhole, interestDelta, interestAck:
		if m.version == 0 {
			return errBadInterest
		}
	case interestAsk:
	default:
		return errBadInterest
	}
	return nil
}

// filterBatch is b as peer p should get it: without the group frames of
// groups it has told this node it has no members of, and saying how many
// batches were skipped for it just before. It returns b itself when
// nothing changes, and nil when no frame is left (the caller counts the
// batch as skipped).
func filterBatch(b *batch, wants *interestSet, skipped uint64) (out *batch, left int) {
	filter := b.groups && wants != nil && !wants.all
	if !filter && skipped == 0 {
		return b, 0
	}
	src := b.msg.Value
	var dst []byte
	if filter {
		dst = make([]byte, 0, len(src)+12)
		kept := 0
		for rest := src; len(rest) > 0; {
			num, typ, n := protowire.ConsumeTag(rest)
			if n < 0 {
				return b, 0 // cannot happen: this node wrote it
			}
			m := protowire.ConsumeFieldValue(num, typ, rest[n:])
			if m < 0 {
				return b, 0
			}
			field := rest[:n+m]
			rest = rest[n+m:]
			switch num {
			case fieldGroupFrames:
				if !wants.wants(groupOf(field[n:])) {
					left++
					continue
				}
				kept++
			case fieldFrames:
				kept++
			}
			dst = append(dst, field...)
		}
		if kept == 0 {
			return nil, left
		}
		b = &batch{frames: kept, size: b.size, groups: true}
	} else {
		dst = append(make([]byte, 0, len(src)+12), src...)
		b = &batch{frames: b.frames, size: b.size, groups: b.groups}
	}
	if skipped > 0 {
		dst = protowire.AppendTag(dst, fieldSkipped, protowire.VarintType)
		dst = protowire.AppendVarint(dst, skipped)
	}
	b.msg = &wrapperspb.BytesValue{Value: dst}
	return b, left
}

// groupOf is the group name of an encoded GroupFrame field's value
// (length-prefixed); nil if it has none.
func groupOf(v []byte) []byte {
	f, n := protowire.ConsumeBytes(v)
	if n < 0 {
		return nil
	}
	for len(f) > 0 {
		num, typ, n := protowire.ConsumeTag(f)
		if n < 0 {
			return nil
		}
		f = f[n:]
		if num == fieldGroupName && typ == protowire.BytesType {
			g, _ := protowire.ConsumeBytes(f)
			return g
		}
		n = protowire.ConsumeFieldValue(num, typ, f)
		if n < 0 {
			return nil
		}
		f = f[n:]
	}
	return nil
}
