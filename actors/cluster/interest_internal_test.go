package cluster

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func wrap(b []byte) *wrapperspb.BytesValue { return &wrapperspb.BytesValue{Value: b} }

// member is the receiver pid of the bare node's member m1.
var member = actor.NewPID("10.0.0.1:7000", receiverName+"m1")

func decodeInterest(t *testing.T, b []byte) interestMsg {
	t.Helper()
	var m interestMsg
	if err := m.unmarshal(b); err != nil {
		t.Fatalf("%v: % x", err, b)
	}
	slices.Sort(m.add)
	slices.Sort(m.remove)
	return m
}

// speaker makes the bare node's member m1 a peer that admitted it and
// says it speaks Interest.
func speaker(b *bareNode) *peer {
	b.addPeer("m1", "10.0.0.1:7000")
	p := b.peers["m1"]
	p.admitted = true
	b.status["10.0.0.1:7000"] = &peerStatus{id: "m1", caps: capInterest}
	return p
}

// TestInterestTold: a peer is told the whole set first, then the changes
// on what it was sent; the whole set again when it asks (not more often
// than interestResend), when it has not acknowledged for interestResend,
// when it is too far behind or the changes are large, and while this node
// has too many names to tell ("every group", at each version).
func TestInterestTold(t *testing.T) {
	b := newBareNode(t)
	p := speaker(b)
	now := time.Now()
	// Even with no groups, a peer is told so: until then it would send
	// every group frame.
	m := decodeInterest(t, b.interestFor(p, b.inc, now))
	if m.kind != interestWhole || m.version != 1 || len(m.add) != 0 {
		t.Fatalf("first message %+v, want the empty set at version 1", m)
	}
	if msg := b.interestFor(p, b.inc, now); msg != nil {
		t.Fatal("unacknowledged, told again at once")
	}
	b.SetInterest("a", true)
	b.SetInterest("b", true)
	// Changes go at once, on what was sent, acknowledged or not.
	m = decodeInterest(t, b.interestFor(p, b.inc, now))
	if m.kind != interestDelta || m.base != 1 || m.version != 3 || !slices.Equal(m.add, []string{"a", "b"}) {
		t.Fatalf("changes %+v", m)
	}
	if msg := b.interestFor(p, b.inc, now); msg != nil {
		t.Fatal("told twice")
	}
	b.onInterest(b.inc, member, appendInterestAck(nil, 3))
	if p.acked != 3 {
		t.Fatalf("acked %d", p.acked)
	}
	b.SetInterest("a", false)
	b.SetInterest("c", true)
	b.SetInterest("c", false)
	b.SetInterest("d", true)
	m = decodeInterest(t, b.interestFor(p, b.inc, now))
	if m.kind != interestDelta || m.base != 3 || m.version != 7 || !slices.Equal(m.add, []string{"d"}) || !slices.Equal(m.remove, []string{"a", "c"}) {
		t.Fatalf("delta %+v", m)
	}
	// Unacknowledged: sent again, whole, once interestResend has passed.
	if msg := b.interestFor(p, b.inc, now.Add(interestResend/2)); msg != nil {
		t.Fatal("resent too soon")
	}
	now = now.Add(interestResend)
	m = decodeInterest(t, b.interestFor(p, b.inc, now))
	if m.kind != interestWhole || m.version != 7 || !slices.Equal(m.add, []string{"b", "d"}) {
		t.Fatalf("resent %+v", m)
	}
	// An ack of a version never told is ignored; asking gets the whole
	// set, but not more often than interestResend.
	b.onInterest(b.inc, member, appendInterestAck(nil, 99))
	if p.acked != 3 {
		t.Fatalf("acked %d after an ack of a version never told", p.acked)
	}
	b.onInterest(b.inc, member, appendInterestAsk(nil))
	if msg := b.interestFor(p, b.inc, now); msg != nil {
		t.Fatal("an ask right after a whole set got another at once")
	}
	now = now.Add(interestResend)
	if m = decodeInterest(t, b.interestFor(p, b.inc, now)); m.kind != interestWhole {
		t.Fatalf("after an ask: %+v", m)
	}
	b.onInterest(b.inc, member, appendInterestAck(nil, 7))
	// Too far behind the log: whole.
	for i := range maxInterestLog + 10 {
		b.SetInterest("x", i%2 == 0)
	}
	if m = decodeInterest(t, b.interestFor(p, b.inc, now)); m.kind != interestWhole {
		t.Fatalf("behind the log: %+v", m)
	}
	b.onInterest(b.inc, member, appendInterestAck(nil, b.interest.v))
	// Changes too large for one message: whole.
	b.SetInterest(strings.Repeat("L", maxDeltaBytes), true)
	if m = decodeInterest(t, b.interestFor(p, b.inc, now)); m.kind != interestWhole {
		t.Fatalf("a large change: %+v", m)
	}
	b.SetInterest(strings.Repeat("L", maxDeltaBytes), false)
	b.interestFor(p, b.inc, now)
	b.onInterest(b.inc, member, appendInterestAck(nil, b.interest.v))
	// Past the bound: every group, told (and acknowledged) at each
	// version; back under it, the set.
	long := strings.Repeat("n", 1000)
	name := func(i int) string { return fmt.Sprintf("%s%d", long, i) }
	for i := range maxInterestBytes/1000 + 1 {
		b.SetInterest(name(i), true)
	}
	if m = decodeInterest(t, b.interestFor(p, b.inc, now)); m.kind != interestWhole || !m.all || len(m.add) != 0 {
		t.Fatalf("past the bound: %+v", m)
	}
	b.onInterest(b.inc, member, appendInterestAck(nil, b.interest.v))
	b.SetInterest("y", true)
	if m = decodeInterest(t, b.interestFor(p, b.inc, now)); m.kind != interestWhole || !m.all || m.version != b.interest.v {
		t.Fatalf("still every group, a change: %+v", m)
	}
	b.onInterest(b.inc, member, appendInterestAck(nil, b.interest.v))
	if !b.InterestKnown("y") {
		t.Error("a change past the bound is never acknowledged")
	}
	for i := range maxInterestBytes/1000 + 1 {
		b.SetInterest(name(i), false)
	}
	if m = decodeInterest(t, b.interestFor(p, b.inc, now)); m.kind != interestWhole || m.all || len(m.add) != 3 {
		t.Fatalf("back under the bound: %+v", m)
	}
	// A new incarnation tells everything again.
	inc2 := &incarnation{n: b.Node, id: "self2", retired: true}
	if m = decodeInterest(t, b.interestFor(p, inc2, now)); m.kind != interestWhole || p.acked != 0 {
		t.Fatalf("new incarnation: %+v, acked %d", m, p.acked)
	}
	// Many short names: every group too, as the receiver would take it.
	b2 := newBareNode(t)
	p2 := speaker(b2)
	for i := range maxInterestNames + 1 {
		b2.SetInterest(strconv.Itoa(i), true)
	}
	if m = decodeInterest(t, b2.interestFor(p2, b2.inc, now)); !m.all {
		t.Fatalf("%d names told as %d", maxInterestNames+1, len(m.add))
	}
}

// TestInterestOnlyToThoseWhoSpeakIt: a peer whose views do not say it
// understands Interest messages (a node of an older version) is told
// nothing and waited for by nobody; it gets every group frame.
func TestInterestOnlyToThoseWhoSpeakIt(t *testing.T) {
	b := newBareNode(t)
	p := speaker(b)
	b.status["10.0.0.1:7000"].caps = 0
	b.SetInterest("g", true)
	if !b.InterestKnown("g") {
		t.Error("waits for a peer that does not speak Interest")
	}
	b.tellInterest(time.Now())
	if p.told != 0 {
		t.Errorf("told a peer that does not speak Interest (version %d)", p.told)
	}
	b.status["10.0.0.1:7000"].caps = capInterest
	if b.InterestKnown("g") {
		t.Error("does not wait for a peer that speaks it")
	}
}

// TestInterestTaken: what a peer tells is kept only from a member, only
// in sequence; a late whole set does not overwrite a newer one; a delta
// on another base, or a message this node cannot take, forgets what was
// known (the peer gets every group frame until it sends its whole set
// again).
func TestInterestTaken(t *testing.T) {
	b := newBareNode(t)
	b.addPeer("m1", "10.0.0.1:7000")
	p := b.peers["m1"]
	groups := func() []string {
		if p.wants == nil {
			return nil
		}
		var g []string
		for k := range p.wants.groups {
			g = append(g, k)
		}
		slices.Sort(g)
		return g
	}
	set := func(names ...string) map[string]struct{} {
		m := map[string]struct{}{}
		for _, n := range names {
			m[n] = struct{}{}
		}
		return m
	}
	b.onInterest(b.inc, member, appendInterestWhole(nil, 3, set("a", "b"), false))
	if p.wants == nil || p.wants.v != 3 || !slices.Equal(groups(), []string{"a", "b"}) {
		t.Fatalf("whole not taken: %+v", p.wants)
	}
	b.onInterest(b.inc, member, appendInterestDelta(nil, 3, 5, []change{{4, "a", false}, {5, "c", true}}))
	if p.wants.v != 5 || !slices.Equal(groups(), []string{"b", "c"}) {
		t.Fatalf("delta not applied: %+v", p.wants)
	}
	// Late: an older connection's whole set, a delta again.
	b.onInterest(b.inc, member, appendInterestWhole(nil, 2, set(), false))
	b.onInterest(b.inc, member, appendInterestDelta(nil, 3, 5, []change{{4, "a", false}, {5, "c", true}}))
	if p.wants == nil || p.wants.v != 5 || !slices.Equal(groups(), []string{"b", "c"}) {
		t.Fatalf("a late message overwrote a newer set: %+v", p.wants)
	}
	// What it told an incarnation that is gone is not used, nor added to.
	inc2 := &incarnation{n: b.Node, id: "self2", retired: true}
	if p.interest(inc2) != nil || p.interest(b.inc) == nil {
		t.Fatal("what a peer told another incarnation is used")
	}
	old := b.inc
	b.inc = inc2
	b.onInterest(inc2, member, appendInterestDelta(nil, 5, 6, []change{{6, "e", true}}))
	if p.interest(inc2) != nil {
		t.Fatalf("a delta on what another incarnation was told was applied: %+v", p.wants)
	}
	b.inc = old
	b.onInterest(b.inc, member, appendInterestWhole(nil, 8, set("b", "c"), false))
	b.onInterest(b.inc, member, appendInterestDelta(nil, 9, 10, []change{{10, "d", true}}))
	if p.wants != nil {
		t.Fatalf("a delta on an unknown base kept %+v", p.wants)
	}
	// Strangers and garbage are refused; a member's garbage forgets.
	b.onInterest(b.inc, member, appendInterestWhole(nil, 11, set("b"), false))
	for _, from := range []*actor.PID{actor.NewPID("10.0.0.66:7000", receiverName+"m1"), nil} {
		b.onInterest(b.inc, from, appendInterestWhole[struct{}](nil, 12, nil, true))
	}
	if s := b.Stats(); s.Refused != 2 || !slices.Equal(groups(), []string{"b"}) || p.wants.all {
		t.Fatalf("strangers: refused %d, wants %+v", s.Refused, p.wants)
	}
	tooMany := appendInterestHead(nil, interestWhole, 13)
	for i := range maxInterestNames + 1 {
		tooMany = protowire.AppendString(protowire.AppendTag(tooMany, fieldIAdd, protowire.BytesType), strconv.Itoa(i))
	}
	for i, msg := range [][]byte{
		{0x80, 0x01, 0x09},                        // kind 9
		appendInterestHead(nil, interestWhole, 0), // no version
		append(appendInterestHead(nil, interestWhole, 12), 0x9a, 0x01, 0x00), // an empty name
		append(appendInterestHead(nil, interestDelta, 12), 0xff),             // cut short
		tooMany,
	} {
		b.onInterest(b.inc, member, appendInterestWhole(nil, 11, set("b"), false))
		b.onInterest(b.inc, member, msg)
		if p.wants != nil {
			t.Errorf("message %d: a member's malformed message kept %+v", i, p.wants)
		}
	}
	if s := b.Stats(); s.Refused != 7 {
		t.Fatalf("refused %d, want 7", s.Refused)
	}
	// A set that grows past the bound means every group.
	big := map[string]struct{}{}
	name := func(i int) string { return fmt.Sprintf("%s%04d", strings.Repeat("n", 996), i) }
	for i := range 1040 {
		big[name(i)] = struct{}{}
	}
	b.onInterest(b.inc, member, appendInterestWhole(nil, 20, big, false))
	if p.wants == nil || p.wants.all || len(p.wants.groups) != 1040 {
		t.Fatalf("under the bound: %+v", p.wants != nil && p.wants.all)
	}
	var more []change
	for i := range 20 {
		more = append(more, change{uint64(21 + i), name(1040 + i), true})
	}
	b.onInterest(b.inc, member, appendInterestDelta(nil, 20, 40, more))
	if p.wants == nil || !p.wants.all || p.wants.groups != nil || p.wants.v != 40 {
		t.Fatalf("past the bound: all %v, %d names kept", p.wants != nil && p.wants.all, len(groups()))
	}
}

// TestFilterBatch: a peer gets a batch without the group frames it has
// no members of, in order, with the batches skipped for it counted in
// the header; a batch with nothing for it is not sent at all.
func TestFilterBatch(t *testing.T) {
	var raw []byte
	raw = appendFrame(raw, 1, "", []byte("all-1"))
	raw = appendFrame(raw, 1, "room", []byte("room-1"))
	raw = appendFrame(raw, 1, "hall", []byte("hall-1"))
	raw = appendFrame(raw, 2, "", []byte("all-2"))
	raw = appendFrame(raw, 1, "room", []byte("room-2"))
	raw = appendHeader(raw, 7, 42, 0)
	b := &batch{frames: 5, groups: true}
	b.msg = wrap(raw)
	read := func(x *batch) (got []string, skipped uint64) {
		if err := eachFrame(x.msg.Value, func(_ uint64, g, p []byte) { got = append(got, string(g)+":"+string(p)) }); err != nil {
			t.Fatal(err)
		}
		node, seq, skipped, err := batchHeader(x.msg.Value)
		if err != nil || node != 7 || seq != 42 {
			t.Fatalf("header %d %d %v", node, seq, err)
		}
		return got, skipped
	}
	wants := &interestSet{v: 1, groups: map[string]struct{}{"room": {}}}
	out, spared := filterBatch(b, wants, 3)
	got, skipped := read(out)
	if !slices.Equal(got, []string{":all-1", "room:room-1", ":all-2", "room:room-2"}) || skipped != 3 || spared != 1 || out.frames != 4 {
		t.Fatalf("filtered: %v, skipped %d, spared %d, frames %d", got, skipped, spared, out.frames)
	}
	if !bytes.Equal(b.msg.Value, raw) {
		t.Fatal("the shared batch changed")
	}
	// Unknown or every group: the batch itself, or a copy when batches
	// were skipped before it.
	for _, w := range []*interestSet{nil, {all: true}} {
		if out, _ := filterBatch(b, w, 0); out != b {
			t.Error("copied a batch that needs no change")
		}
		if got, skipped := read(must(filterBatch(b, w, 2))); len(got) != 5 || skipped != 2 {
			t.Errorf("%v skipped %d", got, skipped)
		}
	}
	// Wants every group frame in it: the batch itself.
	if out, spared := filterBatch(b, &interestSet{v: 1, groups: map[string]struct{}{"room": {}, "hall": {}}}, 0); out != b || spared != 0 {
		t.Errorf("a batch with nothing to leave out was copied (spared %d)", spared)
	}
	// Nothing for it.
	groupsOnly := appendHeader(appendFrame(nil, 1, "hall", []byte("x")), 7, 43, 0)
	if out, spared := filterBatch(&batch{msg: wrap(groupsOnly), frames: 1, groups: true}, wants, 0); out != nil || spared != 1 {
		t.Errorf("a batch with nothing for the peer: %v, spared %d", out, spared)
	}
}

func must(b *batch, _ int) *batch { return b }

// FuzzInterestMessage: any bytes decode to an error or a message within
// the bounds, never a panic.
func FuzzInterestMessage(f *testing.F) {
	f.Add(appendInterestWhole(nil, 3, map[string]struct{}{"a": {}, "room": {}}, false))
	f.Add(appendInterestWhole[struct{}](nil, 3, nil, true))
	f.Add(appendInterestDelta(nil, 1, 3, []change{{2, "a", true}, {3, "b", false}}))
	f.Add(appendInterestAck(nil, 9))
	f.Add(appendInterestAsk(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m interestMsg
		if err := m.unmarshal(b); err != nil {
			return
		}
		if len(m.add)+len(m.remove) > maxInterestNames {
			t.Fatalf("%d names", len(m.add)+len(m.remove))
		}
		if m.kind < interestWhole || m.kind > interestAsk || (m.kind != interestAsk && m.version == 0) {
			t.Fatalf("took %+v", m)
		}
		for _, g := range append(m.add, m.remove...) {
			if g == "" {
				t.Fatal("an empty name")
			}
		}
	})
}

// TestWhenKnownWaits: WhenKnown waits for every peer that takes this
// node's batches and speaks Interest to acknowledge the version that
// gave this node the group, says false once InterestTimeout has passed
// without it (counted, logged), and false to every wait when the node
// stops (not counted).
func TestWhenKnownWaits(t *testing.T) {
	b := newBareNode(t)
	b.addPeer("m2", "10.0.0.2:7000") // not admitted: not waited for
	p := speaker(b)
	b.SetInterest("g", true)
	var got []string
	call := func(name string) func(bool) {
		return func(ok bool) { got = append(got, fmt.Sprint(name, ok)) }
	}
	b.WhenKnown("g", call("first"))
	b.interestFor(p, b.inc, time.Now())
	b.SetInterest("h", true)
	b.WhenKnown("h", call("second"))
	if len(got) != 0 {
		t.Fatalf("called back before any ack: %v", got)
	}
	b.onInterest(b.inc, member, appendInterestAck(nil, 2))
	if !slices.Equal(got, []string{"firsttrue"}) {
		t.Fatalf("after g's version's ack: %v", got)
	}
	b.settleWaiters(time.Now().Add(InterestTimeout+time.Millisecond), false)
	if !slices.Equal(got, []string{"firsttrue", "secondfalse"}) || b.Stats().InterestLate != 1 {
		t.Fatalf("after the timeout: %v, late %d", got, b.Stats().InterestLate)
	}
	if !strings.Contains(b.logs.String(), "did not acknowledge") {
		t.Error("a late acknowledgement was not logged")
	}
	b.SetInterest("i", true)
	b.WhenKnown("i", call("third"))
	b.settleWaiters(time.Now(), true)
	if got[len(got)-1] != "thirdfalse" || b.Stats().InterestLate != 1 {
		t.Fatalf("at shutdown: %v, late %d", got, b.Stats().InterestLate)
	}
}
