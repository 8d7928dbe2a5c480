package cluster

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Interest: a group frame goes only to the nodes that have members of
// its group.
//
// Every node keeps the set of groups with members on it (SetInterest) and
// a version that counts its changes. It tells each peer that admitted it,
// and whose views say it understands (capInterest), the whole set first,
// then what changed since the version the peer has; the peer acknowledges
// every version it takes. A peer whose version does not match a change
// asks for the whole set again; a version unacknowledged for
// interestResend is sent again, whole. A node filters its batches for a
// peer by what the peer told it: group frames for groups the peer has no
// members of are left out. Until a peer has told it anything, the peer
// gets every group frame, and a message that cannot be taken makes the
// receiver forget what it knew: a peer is only ever spared a group's
// frames on its own word.
//
// What a change costs is the moment before the others have taken it: a
// stream that joins a group here is not reached by the frames the other
// nodes publish before they have (a quarter of a second more when a
// message was lost). WhenKnown closes that window for callers that can
// wait: it calls back once every such peer has acknowledged the version
// that gave this node the group (see the pubsub application's SUB,
// answered then).
//
// One direction matters for the guarantee: the peers whose batches this
// node takes must know its groups. WhenKnown waits for the peers that
// take this node's batches (admitted); the two sets are the same but for
// a moment while a peer joins, and a peer that has not heard this node's
// groups yet sends it every group frame anyway.
const (
	// maxInterestBytes and maxInterestNames bound the group names a node
	// tells and keeps of a peer: past either, the whole set is sent as
	// "every group", and a peer whose set grows past them is taken to
	// want every group frame. Both sides use the same bounds.
	maxInterestBytes = 1 << 20
	maxInterestNames = 1 << 16
	// maxDeltaBytes bounds a message of changes; past it the whole set
	// goes instead.
	maxDeltaBytes = 64 << 10
	// maxInterestLog bounds the changes kept to tell peers as deltas; a
	// peer further behind is told the whole set.
	maxInterestLog = 4096
	// interestResend: a version unacknowledged this long is sent again,
	// whole; a peer that asks for the whole set gets it at most this
	// often.
	interestResend = 250 * time.Millisecond
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
// to the peers. Its own lock, so that SetInterest, which the broker calls
// under its registry's lock, never waits for the node's; mu is taken
// alone or inside n.mu, never the other way round.
type localInterest struct {
	mu     sync.Mutex
	groups map[string]uint64 // group → the version that added it
	bytes  int               // of the names, together
	v      uint64            // changes so far; version 1 is no groups
	log    []change          // the latest changes, oldest first, up to v
	whole  []byte            // the whole-set message at wholeV, made once for every peer
	wholeV uint64
}

type change struct {
	v    uint64
	name string
	on   bool
}

// tooMany reports whether the set is past the bounds: it is told as
// every group. li.mu is held.
func (li *localInterest) tooMany() bool {
	return li.bytes > maxInterestBytes || len(li.groups) > maxInterestNames
}

// wholeMsg is the whole-set message at the current version; li.mu is held.
func (li *localInterest) wholeMsg() []byte {
	if li.wholeV != li.v || li.whole == nil {
		if li.tooMany() {
			li.whole = appendInterestWhole[uint64](nil, li.v, nil, true)
		} else {
			li.whole = appendInterestWhole(make([]byte, 0, 8+li.bytes+3*len(li.groups)), li.v, li.groups, false)
		}
		li.wholeV = li.v
	}
	return li.whole
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

// add adds a group to a peer's set; past the bounds the set becomes
// every group.
func (s *interestSet) add(g string) {
	if s.all {
		return
	}
	if _, ok := s.groups[g]; ok {
		return
	}
	if s.bytes+len(g) > maxInterestBytes || len(s.groups) >= maxInterestNames {
		s.all, s.groups, s.bytes = true, nil, 0
		return
	}
	s.groups[g] = struct{}{}
	s.bytes += len(g)
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
	li.mu.Lock()
	if li.groups == nil {
		li.groups = map[string]uint64{}
	}
	_, had := li.groups[group]
	if had == on {
		li.mu.Unlock()
		return
	}
	li.v++
	if on {
		li.groups[group] = li.v
		li.bytes += len(group)
	} else {
		delete(li.groups, group)
		li.bytes -= len(group)
	}
	if len(li.log) == maxInterestLog {
		li.log = slices.Delete(li.log, 0, maxInterestLog/2)
	}
	li.log = append(li.log, change{li.v, group, on})
	li.mu.Unlock()
	n.wake()
}

// InterestKnown reports whether every peer whose batches reach this node
// knows that it has members of group (see WhenKnown); true when it has
// none.
func (n *Node) InterestKnown(group string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.interestKnownLocked(n.versionOf(group))
}

// versionOf is the version that gave this node group; 0 if it has no
// members of it.
func (n *Node) versionOf(group string) uint64 {
	li := &n.interest
	li.mu.Lock()
	defer li.mu.Unlock()
	return li.groups[group]
}

// WhenKnown calls fn once every peer that takes this node's batches (and
// speaks Interest) has acknowledged that this node has members of group:
// from then on a frame of the group published on any of them reaches this
// node. fn runs at once, on the caller's goroutine, when that is already
// so (when no such peer is waiting on it, and when this node has no
// members of group); otherwise later, on a goroutine of the node's, with
// known false if a peer did not answer within InterestTimeout. Once the
// node has shut down, fn runs at once with false. fn must not block.
func (n *Node) WhenKnown(group string, fn func(known bool)) {
	v := n.versionOf(group)
	n.mu.Lock()
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
	n.wakeAfter(&n.waitTimer, InterestTimeout)
	n.wake()
}

// wakeAfter wakes the sender after d, unless a wake on armed is already
// due.
func (n *Node) wakeAfter(armed *atomic.Bool, d time.Duration) {
	if armed.CompareAndSwap(false, true) {
		time.AfterFunc(d, func() {
			armed.Store(false)
			n.wake()
		})
	}
}

// speaksInterest reports whether peer p takes this node's batches and
// understands Interest messages; n.mu is held.
func (n *Node) speaksInterest(p *peer) bool {
	if !p.admitted {
		return false
	}
	st := n.status[p.addr]
	return st != nil && st.id == p.id && st.caps&capInterest != 0
}

// interestKnownLocked reports whether every peer that takes this node's batches
// and speaks Interest has acknowledged version v of its interest; n.mu is
// held.
func (n *Node) interestKnownLocked(v uint64) bool {
	return v == 0 || n.ackedLocked() >= v
}

// ackedLocked is the least version acknowledged by the peers that must
// know this node's interest; n.mu is held.
func (n *Node) ackedLocked() uint64 {
	least := uint64(1<<64 - 1)
	for _, p := range n.peers {
		if !n.speaksInterest(p) {
			continue
		}
		a := p.acked
		if p.toldInc != n.inc {
			a = 0
		}
		least = min(least, a)
	}
	return least
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
	if len(n.waiters) == 0 {
		n.mu.Unlock()
		return
	}
	acked := n.ackedLocked()
	keep := n.waiters[:0]
	late := 0
	for _, w := range n.waiters {
		switch {
		case w.v <= acked:
			calls = append(calls, call{w.fn, true})
		case stopping:
			calls = append(calls, call{w.fn, false})
		case !now.Before(w.until):
			calls = append(calls, call{w.fn, false})
			late++
		default:
			keep = append(keep, w)
		}
	}
	clear(n.waiters[len(keep):])
	n.waiters = keep
	n.interestLate += uint64(late)
	total := n.interestLate
	say := late > 0 && now.Sub(n.lateLog) >= 10*time.Second
	if say {
		n.lateLog = now
	}
	var next time.Duration
	if len(keep) > 0 {
		next = keep[0].until.Sub(now) // deadlines come in order
	}
	n.mu.Unlock()
	for _, c := range calls {
		c.fn(c.known)
	}
	if next > 0 {
		n.wakeAfter(&n.waitTimer, next)
	}
	if say {
		n.log.Warn("cluster: a peer did not acknowledge this node's groups in time; frames it publishes to them may miss this node until it does",
			"timeout", InterestTimeout, "late_total", total)
	}
}

// tellInterest sends each peer what it has not heard of this node's
// interest (see interestFor).
func (n *Node) tellInterest(now time.Time) {
	type out struct {
		pid *actor.PID
		msg []byte
	}
	var outs []out
	waiting := false
	n.mu.Lock()
	inc := n.inc
	for _, p := range n.peers {
		if inc == nil || !n.speaksInterest(p) {
			continue
		}
		if until, q := n.quiet[p.addr]; q && now.Before(until) {
			waiting = true // a resend will find it
			continue
		}
		if msg := n.interestFor(p, inc, now); msg != nil {
			outs = append(outs, out{p.pid, msg})
		}
		waiting = waiting || p.acked < p.told || p.told == 0
	}
	n.mu.Unlock()
	if waiting {
		n.wakeAfter(&n.resendTimer, interestResend)
	}
	if inc == nil {
		return
	}
	for _, o := range outs {
		inc.send(o.pid, &wrapperspb.BytesValue{Value: o.msg}, inc.self)
	}
}

// interestFor is the Interest message peer p is due from incarnation
// inc, if any, and records it as sent; n.mu is held. A peer is told the
// changes since the version last sent it, or the whole set: when it has
// been told nothing, asked for it, is further behind than the changes
// kept, when the changes would be large, while the set is past its
// bounds (told as every group), and again when it has not acknowledged
// for interestResend. It gets a whole set at most once an
// interestResend, however often it asks.
func (n *Node) interestFor(p *peer, inc *incarnation, now time.Time) []byte {
	li := &n.interest
	li.mu.Lock()
	defer li.mu.Unlock()
	if p.toldInc != inc {
		p.toldInc, p.told, p.acked, p.toldAt, p.toldAll = inc, 0, 0, time.Time{}, false
	}
	due := p.toldAt.IsZero() || now.Sub(p.toldAt) >= interestResend
	var msg []byte
	switch {
	case p.told == li.v:
		if p.acked == p.told || !due {
			return nil
		}
	case p.told == 0:
		if !due {
			return nil
		}
	case !p.toldAll && !li.tooMany() && len(li.log) > 0 && li.log[0].v <= p.told+1:
		// Sent on what was sent, acknowledged or not: the connection
		// keeps their order, and a receiver that missed one asks.
		i, _ := slices.BinarySearchFunc(li.log, p.told+1, func(c change, v uint64) int { return cmpU64(c.v, v) })
		if msg = appendInterestDelta(nil, p.told, li.v, li.log[i:]); len(msg) > maxDeltaBytes {
			msg = nil
		}
	}
	if msg == nil {
		msg = li.wholeMsg()
		p.toldAll = li.tooMany()
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
	err := m.unmarshal(b)
	var whole *interestSet
	if err == nil && m.kind == interestWhole {
		whole = &interestSet{v: m.version, all: m.all}
		if !whole.all {
			whole.groups = make(map[string]struct{}, len(m.add))
			for _, g := range m.add {
				whole.add(g)
			}
		}
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
	if err != nil {
		// A member's message this node cannot take: it forgets what the
		// member told it, and sends it every group frame until its next
		// whole set (it resends, unacknowledged).
		p.wants = nil
		n.mu.Unlock()
		n.refuse(from, "malformed interest message")
		return
	}
	if p.wantsInc != inc {
		p.wants, p.wantsInc = nil, inc // told an incarnation that is gone
	}
	s := p.wants
	switch m.kind {
	case interestWhole:
		if s != nil && m.version < s.v {
			break // overtaken by a newer one (an older connection's, late)
		}
		p.wants = whole
		reply = appendInterestAck(nil, m.version)
	case interestDelta:
		switch {
		case s != nil && m.version <= s.v:
			// Late, or again: what it says is known.
		case s == nil || s.all || s.v != m.base:
			// A change it told was lost, or a whole set not yet taken:
			// until the whole set comes, it gets every group frame.
			p.wants = nil
			reply = appendInterestAsk(nil)
		default:
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
		}
	case interestAck:
		if m.version <= p.told && m.version > p.acked {
			p.acked = m.version
		}
	case interestAsk:
		p.told = 0
	}
	if until, q := n.quiet[from.Address]; q && time.Now().Before(until) {
		reply = nil // nothing goes there now (see quietFor); it sends again
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

// interest is what p told incarnation inc of its groups; nil when it has
// told it nothing (then it gets every group frame).
func (p *peer) interest(inc *incarnation) *interestSet {
	if p.wantsInc != inc {
		return nil
	}
	return p.wants
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

func appendInterestWhole[V any](b []byte, version uint64, groups map[string]V, all bool) []byte {
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

// unmarshal decodes an Interest message, within the bounds an honest
// sender keeps (maxInterestNames names, maxInterestBytes of them).
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
			if bytes += len(v); bytes > maxInterestBytes {
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

// filterBatch is b as a peer should get it: without the group frames of
// groups it has told this node it has no members of (wants; nil while
// unknown), and saying how many batches were skipped for it just before.
// It returns b itself when nothing changes, and nil when no frame is left
// (the caller counts the batch as skipped). spared counts the group
// frames left out.
func filterBatch(b *batch, wants *interestSet, skipped uint64) (out *batch, spared int) {
	filter := b.groups && wants != nil && !wants.all
	src := b.msg.Value
	kept := b.frames
	if filter {
		kept = 0
		eachField(src, func(num protowire.Number, field []byte, n int) {
			switch {
			case num == fieldGroupFrames && !wants.wants(groupOf(field[n:])):
				spared++
			case num == fieldGroupFrames || num == fieldFrames:
				kept++
			}
		})
		if kept == 0 {
			return nil, spared
		}
	}
	if spared == 0 && skipped == 0 {
		return b, 0
	}
	dst := make([]byte, 0, len(src)+12)
	if spared == 0 {
		dst = append(dst, src...)
	} else {
		eachField(src, func(num protowire.Number, field []byte, n int) {
			if num != fieldGroupFrames || wants.wants(groupOf(field[n:])) {
				dst = append(dst, field...)
			}
		})
	}
	if skipped > 0 {
		dst = protowire.AppendTag(dst, fieldSkipped, protowire.VarintType)
		dst = protowire.AppendVarint(dst, skipped)
	}
	return &batch{msg: &wrapperspb.BytesValue{Value: dst}, frames: kept, size: b.size, groups: b.groups}, spared
}

// eachField calls fn for every field of a message this node encoded:
// its number, its bytes (tag included) and the tag's length.
func eachField(b []byte, fn func(num protowire.Number, field []byte, tagLen int)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return
		}
		fn(num, b[:n+m], n)
		b = b[n+m:]
	}
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
