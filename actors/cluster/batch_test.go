package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// logBuffer is a slog handler's output, safe to read while written.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// bareNode is a Node with no cluster behind it: enough to hand batches
// to its receiving side and watch what it delivers and counts.
type bareNode struct {
	*Node
	logs *logBuffer
	got  []string // "publisher/payload", in delivery order
}

func newBareNode(t *testing.T) *bareNode {
	t.Helper()
	b := &bareNode{logs: &logBuffer{}}
	log := slog.New(slog.NewTextHandler(b.logs, nil))
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	t.Cleanup(sys.Shutdown)
	b.Node = &Node{
		cfg:      Config{Name: "t", DeadAfter: DefaultDeadAfter, ProbeInterval: DefaultProbeInterval},
		log:      log,
		peers:    map[string]*peer{},
		interest: localInterest{v: 1},
		status:   map[string]*peerStatus{},
		reached:  map[string]time.Time{},
		quiet:    map[string]time.Time{},
		acks:     map[string]*pendingAck{},
		seen:     map[string]*origin{},
		kick:     make(chan struct{}, 1),
		deliver: func(pub uint64, g string, p []byte) {
			if g != "" {
				p = fmt.Appendf(nil, "%s@%s", p, g)
			}
			b.got = append(b.got, fmt.Sprintf("%d/%s", pub, p))
		},
	}
	// Retired: its acks go nowhere (it has no remote to send them with).
	inc := &incarnation{n: b.Node, sys: sys, id: "self", self: actor.NewPID("10.0.0.9:7000", receiverName+"self"), retired: true}
	b.inc = inc
	return b
}

// addPeer makes the node at addr, with member id id, a member.
func (b *bareNode) addPeer(id, addr string) {
	b.peers[id] = &peer{id: id, addr: addr, pid: actor.NewPID(addr, receiverName+id)}
}

// encodeBatch is a batch of node's numbered seq, one frame per payload,
// all from publisher 1.
func encodeBatch(node, seq uint64, payloads ...string) []byte {
	var b []byte
	for _, p := range payloads {
		b = appendFrame(b, 1, "", []byte(p))
	}
	return appendHeader(b, node, seq, 0)
}

// TestReceiverTakesEachBatchOnce feeds the receiving side batches in
// order, repeated, reordered, with holes and from a restarted sender, and
// checks exactly what is delivered and how gaps and duplicates are
// counted.
func TestReceiverTakesEachBatchOnce(t *testing.T) {
	type in struct {
		addr      string
		node, seq uint64
	}
	const a1, a2 = "10.0.0.1:7000", "10.0.0.2:7000"
	tests := []struct {
		name       string
		batches    []in
		want       []string // payloads delivered, "addr#node#seq"
		gaps, dups uint64
	}{
		{"in order", []in{{a1, 5, 1}, {a1, 5, 2}, {a1, 5, 3}}, []string{"a1#5#1", "a1#5#2", "a1#5#3"}, 0, 0},
		{"starts mid-stream", []in{{a1, 5, 40}, {a1, 5, 41}}, []string{"a1#5#40", "a1#5#41"}, 0, 0},
		{"a duplicate", []in{{a1, 5, 1}, {a1, 5, 2}, {a1, 5, 2}, {a1, 5, 3}}, []string{"a1#5#1", "a1#5#2", "a1#5#3"}, 0, 1},
		{"an old batch again", []in{{a1, 5, 1}, {a1, 5, 2}, {a1, 5, 3}, {a1, 5, 1}}, []string{"a1#5#1", "a1#5#2", "a1#5#3"}, 0, 1},
		{"one lost", []in{{a1, 5, 1}, {a1, 5, 3}}, []string{"a1#5#1", "a1#5#3"}, 1, 0},
		{"several lost", []in{{a1, 5, 1}, {a1, 5, 2}, {a1, 5, 7}}, []string{"a1#5#1", "a1#5#2", "a1#5#7"}, 4, 0},
		{"two holes", []in{{a1, 5, 1}, {a1, 5, 4}, {a1, 5, 5}, {a1, 5, 9}}, []string{"a1#5#1", "a1#5#4", "a1#5#5", "a1#5#9"}, 5, 0},
		{"reordered", []in{{a1, 5, 1}, {a1, 5, 3}, {a1, 5, 2}, {a1, 5, 4}}, []string{"a1#5#1", "a1#5#3", "a1#5#4"}, 1, 1},
		{"late after a hole", []in{{a1, 5, 1}, {a1, 5, 4}, {a1, 5, 5}, {a1, 5, 5}, {a1, 5, 3}}, []string{"a1#5#1", "a1#5#4", "a1#5#5"}, 2, 2},
		{"sender restarted", []in{{a1, 5, 1}, {a1, 5, 2}, {a1, 6, 1}, {a1, 6, 2}}, []string{"a1#5#1", "a1#5#2", "a1#6#1", "a1#6#2"}, 0, 0},
		{"two senders", []in{{a1, 5, 1}, {a2, 8, 1}, {a1, 5, 2}, {a2, 8, 3}, {a2, 8, 2}}, []string{"a1#5#1", "a2#8#1", "a1#5#2", "a2#8#3"}, 1, 1},
	}
	names := map[string]string{a1: "a1", a2: "a2"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBareNode(t)
			b.addPeer("m1", a1)
			b.addPeer("m2", a2)
			for _, x := range tc.batches {
				from := actor.NewPID(x.addr, receiverName+map[string]string{a1: "m1", a2: "m2"}[x.addr])
				b.onBatch(b.inc, from, encodeBatch(x.node, x.seq, fmt.Sprintf("%s#%d#%d", names[x.addr], x.node, x.seq)))
			}
			var got []string
			for _, g := range b.got {
				got = append(got, strings.TrimPrefix(g, "1/"))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("delivered %v, want %v", got, tc.want)
			}
			s := b.Stats()
			if s.Gaps != tc.gaps || s.Duplicates != tc.dups {
				t.Errorf("gaps %d, duplicates %d; want %d, %d", s.Gaps, s.Duplicates, tc.gaps, tc.dups)
			}
			if s.BatchesReceived != uint64(len(tc.want)) || s.Received != uint64(len(tc.want)) || s.Refused != 0 {
				t.Errorf("counters %+v", s)
			}
		})
	}
}

// TestReceiverDeliversFramesInOrder checks that a batch's frames reach
// deliver in the order published, with their publishers and groups, the
// group frames and the others interleaved.
func TestReceiverDeliversFramesInOrder(t *testing.T) {
	b := newBareNode(t)
	b.addPeer("m1", "10.0.0.1:7000")
	groupOf := func(i int) string {
		if i%4 == 0 {
			return ""
		}
		return fmt.Sprintf("g%d", i%3)
	}
	var raw []byte
	for i := range 100 {
		p := make([]byte, 8)
		binary.BigEndian.PutUint64(p, uint64(i))
		raw = appendFrame(raw, uint64(i%3), groupOf(i), p)
	}
	raw = appendHeader(raw, 5, 1, 0)
	b.onBatch(b.inc, actor.NewPID("10.0.0.1:7000", receiverName+"m1"), raw)
	if len(b.got) != 100 {
		t.Fatalf("%d frames delivered, want 100", len(b.got))
	}
	for i, g := range b.got {
		var pub uint64
		fmt.Sscanf(g, "%d/", &pub)
		p := g[strings.Index(g, "/")+1:]
		group := ""
		if len(p) > 8 {
			p, group = p[:8], strings.TrimPrefix(p[8:], "@")
		}
		if pub != uint64(i%3) || binary.BigEndian.Uint64([]byte(p)) != uint64(i) || group != groupOf(i) {
			t.Fatalf("frame %d: publisher %d, payload %x, group %q", i, pub, p, group)
		}
	}
}

// TestReceiverRefusesStrangers sends batches from senders that are not
// members, or claim a member's address with another member id, or a
// member id at another address: nothing is delivered, each is counted,
// and the refusal is logged once (rate-limited).
func TestReceiverRefusesStrangers(t *testing.T) {
	b := newBareNode(t)
	b.addPeer("m1", "10.0.0.1:7000")
	for _, from := range []*actor.PID{
		nil,
		actor.NewPID("10.0.0.66:7000", receiverName+"m1"), // a member's id, another address
		actor.NewPID("10.0.0.1:7000", receiverName+"m9"),  // a member's address, another id
		actor.NewPID("10.0.0.1:7000", "hydrogen-broadcast"),
		actor.NewPID("10.0.0.66:7000", "intruder"),
	} {
		b.onBatch(b.inc, from, encodeBatch(5, 1, "injected"))
	}
	if len(b.got) != 0 {
		t.Errorf("delivered %v", b.got)
	}
	s := b.Stats()
	if s.Refused != 5 || s.BatchesReceived != 0 || s.Received != 0 {
		t.Errorf("counters %+v", s)
	}
	if n := strings.Count(b.logs.String(), "refused broadcast batches"); n != 1 {
		t.Errorf("%d refusal lines logged, want 1 (rate-limited):\n%s", n, b.logs)
	}
	// A member's batch still gets through, and so does its malformed one
	// not: it is refused.
	b.onBatch(b.inc, actor.NewPID("10.0.0.1:7000", receiverName+"m1"), encodeBatch(5, 1, "ok"))
	b.onBatch(b.inc, actor.NewPID("10.0.0.1:7000", receiverName+"m1"), []byte{0xff, 0xff})
	if !slices.Equal(b.got, []string{"1/ok"}) || b.Stats().Refused != 6 {
		t.Errorf("delivered %v, stats %+v", b.got, b.Stats())
	}
	// The log says again once its interval has passed.
	b.refLog.Store(time.Now().Add(-time.Minute).UnixNano())
	b.onBatch(b.inc, nil, encodeBatch(5, 2, "x"))
	if n := strings.Count(b.logs.String(), "refused broadcast batches"); n != 2 {
		t.Errorf("%d refusal lines logged, want 2", n)
	}
}
