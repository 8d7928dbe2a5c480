package cluster

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// State is where a node stands in its cluster.
type State int32

const (
	// Joining: the node has not yet been admitted by every peer that
	// answers it (it has just started, or is rejoining as a new member),
	// or it does not know where it stands (it was itself stopped and has
	// not heard from its peers since).
	Joining State = iota
	// OK: every peer that answers has admitted this node and sends it
	// its broadcasts, this node sends them its own, and together they
	// are more than half of the configured nodes. From the moment a node
	// is OK, every frame published on any of them reaches its streams.
	OK
	// Isolated: fewer than half of the configured nodes, this one
	// included, answer and admit it: it is cut off from most of its
	// cluster. It serves its own clients, and keeps trying.
	Isolated
)

func (s State) String() string {
	switch s {
	case Joining:
		return "joining"
	case OK:
		return "ok"
	case Isolated:
		return "isolated"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// States are every State, for those who list them (a metric per state).
var States = []State{Joining, OK, Isolated}

// peerStatus is what a peer last answered.
type peerStatus struct {
	id      string // its member id
	seq     uint64 // its view's number
	heard   uint64 // the number of this node's last view it had taken
	cluster string
	at      time.Time // when
	flags   uint64    // about this node's incarnation
	group   []string  // its mutual group, sorted
	kinds   []string
	conns   int64
	caps    uint64 // what it speaks beyond batches (capInterest)
	bye     bool   // it said it is leaving
}

const (
	// isolatedEvery is how often a node that stays cut off says so again.
	isolatedEvery = 30 * time.Second
	// minRound is the least time between two probe rounds.
	minRound = 50 * time.Millisecond
	// topoEvery: the members are handed to protoactor when they change,
	// and at least this often (its block list may have changed them).
	topoEvery = 10 * time.Second
)

// State reports where the node stands now. When the node has not weighed
// its standing lately (its process was stopped, and the prober has not
// run since), it is Joining: not known. "Lately" is shorter than DeadAfter,
// so a node that the others may have dropped never reports a stale OK.
func (n *Node) State() State {
	if time.Since(time.Unix(0, n.evaluated.Load())) > n.cfg.DeadAfter/2+n.cfg.ProbeInterval/2 {
		return Joining
	}
	return State(n.state.Load())
}

func (n *Node) probeNow() {
	select {
	case n.probe <- struct{}{}:
	default:
	}
}

// prober asks every peer, each ProbeInterval, how it stands, and weighs
// the answers (evaluate): the members it reports to protoactor, the
// node's State, and whether it must rejoin.
func (n *Node) prober() {
	defer n.workers.Done()
	t := time.NewTicker(n.cfg.ProbeInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.probe:
			// Something changed: ask now, but not more often than
			// minRound, however much changes.
			if d := minRound - time.Since(last); d > 0 {
				select {
				case <-n.stop:
					return
				case <-time.After(d):
				}
			}
		}
		now := time.Now()
		if now.Sub(last) > n.cfg.DeadAfter/2 {
			// This goroutine has not run for a while: the process was
			// stopped, or starved. The peers' silence meanwhile says
			// nothing about them; give them time to answer before they
			// are dropped.
			// Nor do their views that waited for this node meanwhile
			// tell where it stands now: it counts only views that have
			// heard one of its own sent from now on.
			n.mu.Lock()
			n.graceUntil = now.Add(n.cfg.DeadAfter)
			inc := n.inc
			if inc != nil {
				inc.floor = inc.views.Load() + 1
			}
			n.mu.Unlock()
			n.log.Debug("cluster: the prober did not run for a while; the peers get time to answer", "for", now.Sub(last))
			if away := now.Sub(last); away > n.cfg.DeadAfter && inc != nil && inc.up.Load() {
				// Longer than a peer waits for a member it does not hear
				// from: every peer that ran meanwhile has dropped this
				// node. Rejoin now, rather than once a peer's view says
				// so (which a connection protoactor is waiting to retry
				// can hold up for seconds).
				n.requestRejoin(inc, fmt.Sprintf("this node was stopped for %v, longer than its peers wait for it (%v)", away.Round(time.Millisecond), n.cfg.DeadAfter))
			}
		}
		last = now
		n.round(now)
	}
}

// round sends every peer this node's view of it, and weighs what the
// peers' views say so far.
func (n *Node) round(now time.Time) {
	n.mu.Lock()
	inc := n.inc
	if inc == nil || !inc.up.Load() {
		n.mu.Unlock()
		return
	}
	targets := slices.Clone(n.peerAddrs)
	for _, m := range n.members {
		if a := m.Address(); m.Id != inc.id && !slices.Contains(targets, a) {
			targets = append(targets, a)
		}
	}
	// A peer that has not been heard from lately is sent to only once it
	// answers (see answers): protoactor's endpoint writer, failing to
	// connect, sleeps and holds everything for that address meanwhile,
	// so a node that comes up would wait out those sleeps before it heard
	// from this one.
	var unheard []string
	for a, st := range n.status {
		// Views from addresses no longer sent to go once stale.
		if !slices.Contains(targets, a) && now.Sub(st.at) > n.cfg.DeadAfter {
			delete(n.status, a)
		}
	}
	for a, until := range n.quiet {
		if !now.Before(until) {
			delete(n.quiet, a)
		}
	}
	targets = slices.DeleteFunc(targets, func(a string) bool { _, q := n.quiet[a]; return q })
	for _, a := range targets {
		if st := n.status[a]; st == nil || now.Sub(st.at) > 2*n.cfg.ProbeInterval {
			unheard = append(unheard, a)
		}
	}
	n.mu.Unlock()
	down := n.unreachable(unheard, min(n.cfg.ProbeInterval/2, 250*time.Millisecond))
	n.mu.Lock()
	for _, a := range unheard {
		if !down[a] {
			n.reached[a] = now
		}
	}
	group := n.groupLocked(now)
	n.mu.Unlock()
	for _, a := range targets {
		if v := n.view(inc, a, now, group); v != nil && !down[a] {
			// No sender: nobody answers a view, and a sender costs the
			// remote a lookup table and a copy on every message.
			inc.send(actor.NewPID(a, memberName), &wrapperspb.BytesValue{Value: v.marshal()}, nil)
		}
	}
	n.evaluate(inc, now)
}

// view is what this node tells the peer at addr: who it is, and what it
// makes of the peer's member id as it last heard it; nil while the
// address is quiet (see quietFor).
func (n *Node) view(inc *incarnation, addr string, now time.Time, group []string) *probe {
	conns := int64(-1)
	if n.cfg.Conns != nil {
		conns = int64(n.cfg.Conns())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if until, q := n.quiet[addr]; q && time.Now().Before(until) {
		return nil
	}
	v := &probe{kind: probeView, cluster: n.cfg.Name, id: inc.id, addr: n.advertise, kinds: inc.kinds(), conns: conns, seq: inc.views.Add(1), caps: capInterest}
	v.group = group
	if now.Before(n.graceUntil) {
		v.flags |= flagAway
	}
	st := n.status[addr]
	if st == nil || st.id == "" {
		return v
	}
	v.about = st.id
	v.heard = st.seq
	if inc.blocked(st.id) {
		v.flags |= flagBlocked
	}
	if q := n.peers[st.id]; q != nil && q.addr == addr {
		v.flags |= flagMember
		// Sending, and not about to drop it: it was heard from lately.
		if q.admitted && now.Sub(st.at) < n.cfg.DeadAfter/2 {
			v.flags |= flagSending
		}
	}
	return v
}

// unreachable checks every address, all at once, and returns those whose
// node did not answer within timeout (see answers).
func (n *Node) unreachable(addrs []string, timeout time.Duration) map[string]bool {
	if len(addrs) == 0 {
		return nil
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		down = map[string]bool{}
	)
	for _, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !n.answers(a, timeout) {
				mu.Lock()
				down[a] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return down
}

// tlsFailed says, at most once a minute for an address, that the node
// there answers but the TLS handshake with it fails: a certificate of
// another CA, or one that does not name the host.
func (n *Node) tlsFailed(addr string, err error) {
	now := time.Now()
	n.mu.Lock()
	last, ok := n.tlsLog[addr]
	if ok && now.Sub(last) < time.Minute {
		n.mu.Unlock()
		return
	}
	if len(n.tlsLog) > 1024 {
		clear(n.tlsLog)
	}
	n.tlsLog[addr] = now
	n.mu.Unlock()
	n.log.Warn("cluster: a peer answers, but the TLS handshake with it fails; it cannot be a member", "peer", addr, "err", err)
}

// http2Preface is what a client says first on an HTTP/2 connection: the
// preface and an empty SETTINGS frame.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")

// answers reports whether the node at addr answers at the transport: its
// gRPC server sends its HTTP/2 SETTINGS (with TLS: completes a handshake)
// within timeout. A stopped process accepts connections (the kernel does)
// but answers nothing; handing protoactor such an address would leave its
// connection attempt hanging, then sleeping 2 s once failed, with
// everything for the address waiting, when the node comes back.
func (n *Node) answers(addr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if n.cfg.TLS != nil {
		cfg := n.cfg.TLS.clientConfig()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
		cfg.NextProtos = []string{"h2"}
		err := tls.Client(c, cfg).Handshake()
		if ne, ok := err.(net.Error); err != nil && !(ok && ne.Timeout()) {
			n.tlsFailed(addr, err)
		}
		return err == nil
	}
	if _, err := c.Write(http2Preface); err != nil {
		return false
	}
	var frame [9]byte
	_, err = io.ReadFull(c, frame[:])
	return err == nil && frame[3] == 0x4 // SETTINGS
}

// fresh reports whether st is a current answer from a member of this
// node's cluster; n.mu is held.
func (n *Node) fresh(st *peerStatus, now time.Time) bool {
	return st != nil && !st.bye && st.cluster == n.cfg.Name && now.Sub(st.at) < n.cfg.DeadAfter
}

// current reports whether st is fresh and was sent after its sender had
// heard from this node since this node last resumed from a stop (see
// prober); n.mu is held. Only current views tell this node it is a
// member: one that waited for it while it was stopped may be older than
// its sender's verdict.
func (n *Node) current(st *peerStatus, now time.Time) bool {
	return n.fresh(st, now) && (n.inc == nil || st.heard >= n.inc.floor)
}

// groupLocked is this node's mutual group: itself and the peers that
// answer, that it has as members and that have it as a member, by
// address, sorted; n.mu is held.
func (n *Node) groupLocked(now time.Time) []string {
	g := []string{n.advertise}
	for a, st := range n.status {
		if !n.current(st, now) || st.flags&flagMember == 0 || st.flags&flagBlocked != 0 {
			continue
		}
		if p := n.peers[st.id]; p != nil && p.addr == a {
			g = append(g, a)
		}
	}
	slices.Sort(g)
	return g
}

// evaluate weighs the peers' answers: it hands the members to protoactor
// (the default provider), works out the node's State, and decides whether
// the node must rejoin.
//
// Rejoining: protoactor puts the member id of a member that left on a
// block list for good, so a node that the others dropped (it was stopped,
// or cut off, longer than DeadAfter) is never admitted again under that
// id, even though it is back; one side must join again as a new member,
// whose id nobody has blocked. When a node hears a peer again and one of
// them has blocked the other, the one that was itself stopped rejoins
// (it knows, and says so in its views); otherwise the one whose mutual
// group is the smaller, on a tie the one whose group's lowest address is
// the higher. Both sides weigh the same facts, so exactly one does: after
// a stall or a partition the node or minority that was away rejoins, and
// the rest carries on undisturbed. A cut in one direction only (a node
// that hears nobody, while the others hear it) is the same: the deaf node
// drops the others, and rejoins once it hears them again.
func (n *Node) evaluate(inc *incarnation, now time.Time) {
	n.mu.Lock()
	if n.inc != inc {
		n.mu.Unlock()
		return
	}
	// The members for protoactor (the default provider), handed over
	// when they change and every topoEvery; an idle node builds them
	// only then (what it allocates while idle is garbage its RSS shows).
	var members []*pacluster.Member
	if n.cfg.Provider == nil {
		key := memberKey(inc.id, n.advertise)
		for a, st := range n.status {
			if n.providesLocked(a, st, now) {
				key += memberKey(st.id, a)
			}
		}
		if key != n.lastTopo || now.Sub(n.lastTopoAt) >= topoEvery {
			n.lastTopo, n.lastTopoAt = key, now
			members = append(members, memberOf(inc.id, n.advertise, inc.kinds()))
			for a, st := range n.status {
				if n.providesLocked(a, st, now) {
					members = append(members, memberOf(st.id, a, st.kinds))
				}
			}
		}
	}
	answering, sending := 0, 0
	group := n.groupLocked(now)
	away := now.Before(n.graceUntil)
	why := ""
	for a, st := range n.status {
		if !n.fresh(st, now) {
			continue
		}
		answering++
		if st.flags&flagBlocked != 0 || inc.blocked(st.id) {
			if why == "" && now.Sub(inc.started) > 2*n.cfg.ProbeInterval {
				why = rejoinReason(a, st, group, away)
			}
			continue
		}
		if p := n.peers[st.id]; st.flags&flagSending != 0 && p != nil && p.addr == a && p.admitted && n.current(st, now) {
			sending++
		}
	}
	// A configured peer that accepts connections but has not been heard
	// from yet is waited for, DeadAfter at most (a stopped process
	// accepts connections too): its views may be on their way.
	waiting := 0
	if now.Sub(inc.started) < n.cfg.DeadAfter {
		for _, a := range n.peerAddrs {
			if r, ok := n.reached[a]; ok && now.Sub(r) < 2*n.cfg.ProbeInterval && !n.fresh(n.status[a], now) {
				waiting++
			}
		}
	}
	// The node is with the members of its mutual group; it is OK once
	// every peer that answers also sends to it, and stays OK while others
	// join, as long as its group is most of the configured nodes.
	size := len(group)
	majority := n.nodes/2 + 1
	var state State
	switch {
	case why != "":
		state = Joining
	case size >= majority && ((sending == answering && waiting == 0) || inc.wasOK):
		state = OK
	case size < majority && (inc.wasOK || now.Sub(inc.started) > n.cfg.DeadAfter):
		state = Isolated
	default:
		state = Joining
	}
	prev := State(n.state.Swap(int32(state)))
	n.evaluated.Store(now.UnixNano())
	firstOK := state == OK && !inc.wasOK
	if state == OK {
		inc.wasOK = true
	}
	okAt := n.okAt
	if state == OK {
		n.okAt = now
	}
	logIsolated := state == Isolated && (prev != Isolated || now.Sub(n.isolatedLog) >= isolatedEvery)
	if logIsolated {
		n.isolatedLog = now
	}
	n.mu.Unlock()

	if members != nil {
		inc.mu.RLock()
		if !inc.retired {
			inc.cl.MemberList.UpdateClusterTopology(members)
		}
		inc.mu.RUnlock()
	}
	switch {
	case firstOK && !n.everJoined.Swap(true):
		n.log.Info("cluster joined", "id", inc.id, "members", size, "took", now.Sub(n.started).Round(time.Millisecond))
	case state == OK && prev != OK:
		n.log.Info("cluster: back in the cluster", "id", inc.id, "members", size, "not_ok_for", now.Sub(okAt).Round(time.Millisecond))
	case logIsolated:
		n.log.Warn("cluster: cut off from most of the cluster; this node's clients get only its own broadcasts",
			"reachable", size, "nodes", n.nodes, "id", inc.id)
	}
	if why != "" {
		n.requestRejoin(inc, why)
	}
}

// requestRejoin has the run goroutine retire inc and start another.
func (n *Node) requestRejoin(inc *incarnation, why string) {
	select {
	case n.rejoin <- why:
		n.log.Warn("cluster: the cluster no longer admits this node; rejoining as a new member", "id", inc.id, "reason", why)
	default:
	}
}

// replacedLocked reports whether protoactor's member at addr has another
// id than id; n.mu is held.
func (n *Node) replacedLocked(addr, id string) bool {
	for _, m := range n.members {
		if m.Address() == addr && m.Id != id {
			return true
		}
	}
	return false
}

// memberLocked reports whether id, at addr, is in protoactor's member
// list; n.mu is held.
func (n *Node) memberLocked(addr, id string) bool {
	for _, m := range n.members {
		if m.Address() == addr && m.Id == id {
			return true
		}
	}
	return false
}

// providesLocked reports whether the peer at addr, as st says, is a
// member for protoactor; n.mu is held.
func (n *Node) providesLocked(addr string, st *peerStatus, now time.Time) bool {
	switch {
	case st.bye || st.cluster != n.cfg.Name || st.id == "":
		return false
	case n.replacedLocked(addr, st.id):
		// A new member id at an address: the old one leaves first, and
		// the new one joins once the address is quiet no more (see
		// quietFor).
		return false
	}
	if _, q := n.quiet[addr]; q && !n.memberLocked(addr, st.id) {
		return false
	}
	return now.Sub(st.at) < n.cfg.DeadAfter || now.Before(n.graceUntil)
}

// memberKey is a member's part of the key that tells whether the member
// list changed: a sum of hashes, so the order of the members does not
// matter, and nothing is allocated.
func memberKey(id, addr string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for _, s := range [...]string{id, "@", addr} {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
	}
	return h
}

// rejoinReason says why this node must rejoin, being at odds with the
// peer at addr (one has blocked the other's member id, so neither admits
// the other again), or "" when it is the peer's to do; see evaluate. The
// one that was itself stopped rejoins; else the one with the smaller
// mutual group; on a tie, the one whose group's lowest address is the
// higher.
func rejoinReason(addr string, st *peerStatus, group []string, away bool) string {
	theirAway := st.flags&flagAway != 0
	switch {
	case away && !theirAway:
		return fmt.Sprintf("this node was stopped, and %s no longer admits it", addr)
	case theirAway && !away:
		return ""
	}
	theirs := st.group
	if len(theirs) > len(group) || (len(theirs) == len(group) && len(theirs) > 0 && theirs[0] < group[0]) {
		return fmt.Sprintf("cut off: %s is with %d nodes, this node with %d, and they no longer admit each other", addr, len(theirs), len(group))
	}
	return ""
}

// onProbe is the member actor of inc: it takes the peers' views, and
// their goodbyes.
func (n *Node) onProbe(inc *incarnation, ctx actor.Context) {
	m, ok := ctx.Message().(*wrapperspb.BytesValue)
	if !ok {
		return
	}
	var p probe
	if err := p.unmarshal(m.Value); err != nil {
		n.refuse(ctx.Sender(), "malformed membership message")
		return
	}
	switch p.kind {
	case probeView:
		n.onView(inc, ctx.Sender(), &p)
	case probeBye:
		n.onBye(inc, ctx.Sender(), &p)
	}
}

// knownLocked reports whether addr is a configured peer or a member's
// address; n.mu is held. Nodes heed only those.
func (n *Node) knownLocked(addr string) bool {
	if slices.Contains(n.peerAddrs, addr) {
		return true
	}
	for _, m := range n.members {
		if m.Address() == addr {
			return true
		}
	}
	return false
}

// onView records a peer's view. What it says about this node counts only
// if it is about this incarnation: a peer that has not heard of it yet
// has not admitted it.
func (n *Node) onView(inc *incarnation, from *actor.PID, p *probe) {
	n.mu.Lock()
	if n.inc != inc {
		n.mu.Unlock()
		return
	}
	if !n.knownLocked(p.addr) {
		n.mu.Unlock()
		if from == nil {
			from = actor.NewPID(p.addr, p.id) // as it says it is
		}
		n.refuse(from, "membership message from a node that is not a peer of this cluster")
		return
	}
	st := n.status[p.addr]
	if st != nil && st.id == p.id && p.seq <= st.seq {
		// An older view, overtaken by a newer one: protoactor may deliver
		// a connection's messages after those of the next connection to
		// the same address (see quietFor).
		n.mu.Unlock()
		return
	}
	if p.about != inc.id {
		p.flags &= flagAway
	}
	if st == nil {
		st = &peerStatus{}
		n.status[p.addr] = st
	}
	other := p.cluster != n.cfg.Name && st.cluster != p.cluster
	news := st.id != p.id || st.flags != p.flags || st.bye
	slices.Sort(p.group)
	heard := p.heard
	if p.about != inc.id {
		heard = 0
	}
	*st = peerStatus{id: p.id, seq: p.seq, heard: heard, cluster: p.cluster, at: time.Now(), flags: p.flags, group: p.group, kinds: p.kinds, conns: p.conns, caps: p.caps}
	if p.cluster == n.cfg.Name {
		for id, q := range n.peers {
			if q.addr == p.addr && id != p.id {
				// A new member id speaks from its address: the
				// incarnation this node knew there is gone.
				n.setAdmitted(id, q.addr, false)
			}
		}
		n.setAdmitted(p.id, p.addr, p.flags&flagMember != 0 && p.flags&flagBlocked == 0)
	}
	n.mu.Unlock()
	n.wake()
	if news {
		// Tell it what this node makes of it now, rather than at the
		// next round.
		n.probeNow()
	}
	if other {
		n.log.Warn("cluster: a peer belongs to another cluster; it is not a member", "peer", p.addr, "its_cluster", p.cluster)
	}
}

func (n *Node) onBye(inc *incarnation, from *actor.PID, p *probe) {
	n.mu.Lock()
	if n.inc != inc || p.cluster != n.cfg.Name || !n.knownLocked(p.addr) {
		n.mu.Unlock()
		n.refuse(from, "membership message from a node that is not a peer of this cluster")
		return
	}
	if st := n.status[p.addr]; st != nil && st.id == p.id {
		st.bye = true
	}
	n.setAdmitted(p.id, p.addr, false)
	n.mu.Unlock()
	if from != nil {
		inc.send(from, &wrapperspb.BoolValue{Value: true}, nil)
	}
	n.probeNow()
}
