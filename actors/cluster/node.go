package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Config configures a Node. Zero values mean the defaults in the comments.
type Config struct {
	// Name is the cluster's name; nodes join only a cluster of their own
	// name. Required.
	Name string
	// Addr is the host:port the node listens on for the other nodes
	// (protoactor's remote, gRPC), and where they reach it unless
	// Advertise says otherwise: a host they can reach, not 0.0.0.0.
	// Membership travels over the same port. Required.
	Addr string
	// Advertise is the host:port the other nodes reach this one at, when
	// that is not Addr (a NAT, a port mapping, a proxy in front of the
	// node). Default Addr.
	Advertise string
	// Peers are the cluster addresses (their Advertise) of the other
	// nodes; this node's own may be listed too. The default provider finds
	// members among them, and the node counts them to know whether it is
	// with most of its cluster (see State).
	Peers []string
	// Provider finds the cluster's members. Default: the node's own,
	// which asks every address of Peers over the remote (see the package
	// documentation). Any protoactor ClusterProvider fits (consul, etcd,
	// Kubernetes, zk under github.com/asynkron/protoactor-go/cluster/
	// clusterproviders); it is started again, with a new cluster, each
	// time the node rejoins.
	Provider pacluster.ClusterProvider
	// TLS, when set, makes every connection between nodes mutual TLS: a
	// node presents its certificate and accepts only peers whose
	// certificates chain to the CA. Default nil: plaintext.
	TLS *TLS
	// Logger receives membership changes and drops; protoactor's own logs
	// come one level lower (Info becomes Debug, Error becomes Warn) and
	// repeats of one message at most every 10s. Default slog.Default().
	Logger *slog.Logger
	// MaxPending bounds, in bytes of encoded frames, the frames not yet
	// cut into a batch, and each peer's backlog of batches waiting for
	// its window; default 16 MiB. What does not fit is dropped and
	// counted.
	MaxPending int
	// Window is the number of batches in flight (sent, not acknowledged)
	// to one peer; default 8.
	Window int
	// AckTimeout: a batch unacknowledged this long is taken as lost and
	// frees its place in the window; default 5s.
	AckTimeout time.Duration
	// ProbeInterval is how often the node asks every peer how it stands,
	// when nothing changes; a change (a new member id, an answer that says
	// something new) makes it ask again at once. Default 1s.
	ProbeInterval time.Duration
	// DeadAfter: a peer that has not answered for this long is no longer
	// a member (its member id is then blocked for good, by protoactor's
	// design, and a node that comes back must rejoin as a new member);
	// default 3s.
	DeadAfter time.Duration
	// Conns reports this node's connection count, which it tells the
	// other nodes when it answers them (see Members). Optional.
	Conns func() int
}

// Defaults of Config.
const (
	DefaultMaxPending    = 16 << 20
	DefaultWindow        = 8
	DefaultAckTimeout    = 5 * time.Second
	DefaultProbeInterval = time.Second
	DefaultDeadAfter     = 3 * time.Second

	maxBatchBytes = 64 << 10              // a batch is cut once its frames reach this
	receiverName  = "hydrogen-broadcast-" // + the member id
	memberName    = "hydrogen-member"
	endpointQueue = 4096 // initial size of protoactor's per-peer send queue
	// forgetAfter: a sending address's de-duplication state outlives its
	// node's absence this long, so that a node that comes back (a new
	// incarnation of the same process, or a short partition) is still
	// checked for gaps and duplicates against what it sent before.
	forgetAfter = 10 * time.Minute
	// quietFor: when protoactor drops its connection to an address (the
	// member there left, by address, whoever is there now; or the
	// connection failed), the dropped connection's reader, closing, has
	// the next connection to that address dropped too; and a connection
	// dropped while it was still being made, once made, opens the next.
	// Every message to the address meanwhile is lost with them: a new
	// incarnation there would miss its first batches, or never join. So
	// for quietFor after a connection to an address is dropped the node
	// sends nothing there (views, batches and acks wait), and keeps
	// protoactor from opening one (see endpointConnected); the chain dies
	// out.
	quietFor = 250 * time.Millisecond
	// neutered is the address protoactor is pointed at instead when it
	// would open a connection to a quiet address: it refuses at once.
	neutered = "127.0.0.1:0"
)

// ErrFull is returned by Publish when the frame was dropped because the
// frames waiting to be batched are over Config.MaxPending.
var ErrFull = errors.New("cluster: outbound buffer full, frame dropped")

// ErrClosed is returned by Publish after Shutdown.
var ErrClosed = errors.New("cluster: node shut down")

// Member is one node of the cluster.
type Member struct {
	Address string // cluster address, host:port
	ID      string // protoactor member id, new for every start and every rejoin of a node
	Self    bool   // this node
	Conns   int    // its connection count as it last told this node; -1 when unknown
}

// Stats are a node's counters since Start.
type Stats struct {
	Published       uint64 // frames accepted by Publish while there were peers
	Dropped         uint64 // frame deliveries dropped: one per peer a frame did not go to
	BatchesSent     uint64 // batches sent, counted once per peer
	BatchesLost     uint64 // batches sent and not acknowledged (dead letter, timeout, peer gone)
	Received        uint64 // frames delivered from other nodes
	BatchesReceived uint64
	Gaps            uint64 // batches from other nodes that never arrived (dropped for us or lost)
	Duplicates      uint64 // batches from other nodes refused as already seen
	Refused         uint64 // batches refused because their sender is not a member
	Spared          uint64 // group frames not sent to a peer that has no members of their group, once per peer
	InterestLate    uint64 // waits for the peers to acknowledge this node's groups that timed out (WhenKnown)
	Rejoins         uint64 // times the node left its cluster and joined again as a new member
	Members         int    // members now, this node included
	Backlog         int    // bytes queued now: waiting for a batch, plus the longest peer backlog
	State           State  // where the node stands in its cluster now
}

// Node is this process's member of the cluster. Its membership in
// protoactor's cluster is an incarnation: an actor system, remote and
// member id of its own. When the other members no longer admit the
// incarnation (see the package documentation), the node retires it and
// starts another in its place; Publish, the deliver function and the
// counters carry on across incarnations.
type Node struct {
	cfg       Config
	log       *slog.Logger
	id        uint64 // this process's node, in every batch header, across incarnations
	advertise string
	peerAddrs []string // configured peers but this node
	nodes     int      // configured nodes, this one included
	deliver   func(origin uint64, group string, payload []byte)
	started   time.Time

	mu          sync.Mutex
	inc         *incarnation // current; nil between incarnations
	cur         []byte       // frames of the batch being filled
	curFrames   int
	curFirst    uint64
	ready       []*batch // cut, not yet handed to the peers
	waiting     int      // bytes in cur and ready
	nextFrame   uint64
	nextBatch   uint64
	peers       map[string]*peer // by member id
	sendable    int              // peers that admitted this node: Publish's destinations
	members     []*pacluster.Member
	status      map[string]*peerStatus // by cluster address: their last views
	reached     map[string]time.Time   // by cluster address: when it last accepted a connection
	quiet       map[string]time.Time   // by cluster address: a connection there was dropped; nothing is sent there until then
	tlsLog      map[string]time.Time   // by cluster address: when a failed TLS handshake with it was last logged
	acks        map[string]*pendingAck // by receiver pid: batches taken, not yet acknowledged (its address was quiet)
	acksFrom    *incarnation           // the incarnation that took them
	graceUntil  time.Time              // the node itself stalled: its peers get until then to answer
	okAt        time.Time              // when the node was last found OK
	isolatedLog time.Time              // when it last said it is cut off
	dropLog     time.Time
	dropLogged  uint64

	interest     localInterest    // the groups with members here (interest.go)
	waiters      []interestWaiter // WhenKnown calls waiting
	interestLate uint64           // WhenKnown calls that timed out
	lateLog      time.Time        // when that was last logged
	waitTimer    atomic.Bool      // a wake is due for the first waiter's deadline
	resendTimer  atomic.Bool      // a wake is due to resend what a peer has not acknowledged
	curGroups    bool             // cur has group frames

	dmu  sync.Mutex         // receiver: seen, and delivery in order
	seen map[string]*origin // by sending address

	refLog     atomic.Int64 // unix nanoseconds of the last refusal logged
	refLogged  atomic.Uint64
	state      atomic.Int32 // a State
	evaluated  atomic.Int64 // unix nanoseconds of the last evaluation of the state
	lastTopo   uint64       // the key of the members last handed to protoactor; n.mu guards it
	lastTopoAt time.Time
	everJoined atomic.Bool

	kick    chan struct{}
	probe   chan struct{} // a probe round now
	rejoin  chan string   // why the current incarnation must retire
	stop    chan struct{}
	left    chan struct{} // closed once the node has left and every goroutine ended
	workers sync.WaitGroup
	closed  atomic.Bool
	stopped sync.Once

	published, dropped, sent, lost    atomic.Uint64
	spared                            atomic.Uint64
	received, recvBatches, gaps, dups atomic.Uint64
	refused, rejoins                  atomic.Uint64
}

type batch struct {
	msg    *wrapperspb.BytesValue
	frames int
	size   int  // bytes of its frames, as counted in Node.waiting
	groups bool // it has group frames: a peer may get it filtered
}

type peer struct {
	id, addr string
	pid      *actor.PID // its receiver
	// admitted: it answered that this node is its member, so it takes
	// this node's batches; until then it gets none.
	admitted     bool
	inflight     int
	since        time.Time // last ack, or the send that filled an empty window
	backlog      []*batch
	backlogBytes int
	// This node's interest as told to the peer (interest.go): the
	// version last sent and the one it acknowledged, for toldInc.
	toldInc     *incarnation
	told, acked uint64
	toldAt      time.Time
	toldAll     bool // the last told was "every group"
	// The peer's interest as it told this node's incarnation wantsInc;
	// nil until it has (it then gets every group frame). Told another
	// incarnation, it is not used: what the peer changed meanwhile went
	// to an incarnation that is gone.
	wants    *interestSet
	wantsInc *incarnation
	skipped  uint64 // batches left out for it since the last it was sent
}

type origin struct {
	node, seq uint64
	at        time.Time // last batch
}

// Start validates cfg, checks that the cluster address can be listened
// on, and starts the node. It returns at once: the node joins its cluster
// in the background (State is Joining until it has; a join that fails is
// retried), so the broker serves its own clients meanwhile. deliver is
// handed every frame from another node, one at a time and in order, with
// the group it was published to ("" for a frame to every stream); its
// payload is valid only until it returns.
func Start(cfg Config, deliver func(origin uint64, group string, payload []byte)) (*Node, error) {
	if cfg.Name == "" {
		return nil, errors.New("cluster: a cluster name is required")
	}
	if err := checkAddr("address", cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.Addr
	}
	if err := checkAddr("advertised address", cfg.Advertise); err != nil {
		return nil, err
	}
	if deliver == nil {
		return nil, errors.New("cluster: a deliver function is required")
	}
	var peerAddrs []string
	for _, p := range cfg.Peers {
		if err := checkAddr("peer", p); err != nil {
			return nil, err
		}
		if p != cfg.Advertise && !slices.Contains(peerAddrs, p) {
			peerAddrs = append(peerAddrs, p)
		}
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = DefaultDeadAfter
	}
	if cfg.DeadAfter < 2*cfg.ProbeInterval {
		return nil, fmt.Errorf("cluster: DeadAfter %v is under two ProbeIntervals (%v)", cfg.DeadAfter, cfg.ProbeInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// protoactor panics when it cannot listen: find out first, while
	// the caller can still be told.
	if err := probeListen(cfg.Addr); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger.With("cluster", cfg.Name, "node", cfg.Advertise),
		id:        rand.Uint64() | 1,
		advertise: cfg.Advertise,
		peerAddrs: peerAddrs,
		nodes:     1 + len(peerAddrs),
		deliver:   deliver,
		started:   time.Now(),
		peers:     map[string]*peer{},
		interest:  localInterest{v: 1}, // version 1: no groups; told like any other
		status:    map[string]*peerStatus{},
		reached:   map[string]time.Time{},
		quiet:     map[string]time.Time{},
		tlsLog:    map[string]time.Time{},
		acks:      map[string]*pendingAck{},
		seen:      map[string]*origin{},
		kick:      make(chan struct{}, 1),
		probe:     make(chan struct{}, 1),
		rejoin:    make(chan string, 1),
		stop:      make(chan struct{}),
		left:      make(chan struct{}),
	}
	n.state.Store(int32(Joining))
	n.log.Info("cluster node starting", "addr", cfg.Addr, "peers", cfg.Peers, "tls", cfg.TLS != nil)
	if cfg.TLS == nil && (!loopback(cfg.Addr) || !loopback(cfg.Advertise)) {
		n.log.Warn("cluster: traffic between nodes is plaintext on a non-loopback address: anyone who can reach it can read the broadcasts and pose as a node; set --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca", "addr", cfg.Addr, "advertise", cfg.Advertise)
	}
	n.workers.Add(2)
	go n.sender()
	go n.prober()
	go n.run()
	return n, nil
}

// checkAddr checks a cluster address: host:port with a host the other
// nodes can reach (not a wildcard) and a port from 1 to 65535.
func checkAddr(what, addr string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("cluster: %s %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("cluster: %s %q: port must be 1..65535", what, addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("cluster: %s %q: the host must be one the peers can reach, not a wildcard", what, addr)
	}
	return nil
}

// loopback reports whether addr's host is a loopback address, or a name
// that can only mean one.
func loopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func probeListen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: cannot listen on %s: %w", addr, err)
	}
	return l.Close()
}

// Publish queues payload for every other member of the cluster; it copies
// payload and never blocks. publisher identifies who published it: the
// frames of one publisher, published one after another, reach every other
// node in that order. With no other member it does nothing. When the
// frames waiting for a batch are over MaxPending it drops the frame,
// counts it, and returns ErrFull.
func (n *Node) Publish(publisher uint64, payload []byte) error {
	return n.PublishGroup(publisher, "", payload)
}

// PublishGroup is Publish for the members of a group on the other nodes:
// the frame carries the group's name, and each node hands it to deliver
// with it. Group frames and others of one publisher keep their order
// between them. A member that has told this node it has no members of
// the group does not get it (see SetInterest); one that has not told
// anything yet does.
func (n *Node) PublishGroup(publisher uint64, group string, payload []byte) error {
	if n.closed.Load() {
		return ErrClosed
	}
	size := frameSize(publisher, group, len(payload))
	n.mu.Lock()
	if n.sendable == 0 {
		n.mu.Unlock()
		return nil
	}
	if n.waiting+size > n.cfg.MaxPending {
		peers := uint64(n.sendable)
		n.mu.Unlock()
		n.drop(peers, "")
		return ErrFull
	}
	if n.cur == nil {
		n.cur = make([]byte, 0, min(maxBatchBytes+size+64, 2*maxBatchBytes))
		n.curFirst = n.nextFrame
	}
	n.cur = appendFrame(n.cur, publisher, group, payload)
	n.curGroups = n.curGroups || group != ""
	n.curFrames++
	n.nextFrame++
	n.waiting += size
	if len(n.cur) >= maxBatchBytes {
		n.cut()
	}
	n.mu.Unlock()
	n.published.Add(1)
	n.wake()
	return nil
}

func (n *Node) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// cut closes the current batch; n.mu is held.
func (n *Node) cut() {
	n.nextBatch++
	size := len(n.cur)
	b := appendHeader(n.cur, n.id, n.nextBatch, n.curFirst)
	n.ready = append(n.ready, &batch{msg: &wrapperspb.BytesValue{Value: b}, frames: n.curFrames, size: size, groups: n.curGroups})
	n.cur, n.curFrames, n.curGroups = nil, 0, false
}

// drop counts frame deliveries dropped and logs at most once a second.
func (n *Node) drop(k uint64, peer string) {
	total := n.dropped.Add(k)
	n.mu.Lock()
	now := time.Now()
	if now.Sub(n.dropLog) < time.Second {
		n.mu.Unlock()
		return
	}
	since := total - n.dropLogged
	n.dropLog, n.dropLogged = now, total
	n.mu.Unlock()
	if peer == "" {
		n.log.Warn("cluster: outbound buffer full, dropping broadcasts for every peer", "dropped_since_last_log", since, "dropped_total", total, "max_pending", n.cfg.MaxPending)
	} else {
		n.log.Warn("cluster: a peer is not keeping up, dropping broadcasts for it", "peer", peer, "dropped_since_last_log", since, "dropped_total", total)
	}
}

type send struct {
	pid *actor.PID
	msg *wrapperspb.BytesValue
}

// sender hands batches to the peers: the one goroutine that sends, so
// batches leave for each peer in order.
func (n *Node) sender() {
	defer n.workers.Done()
	tick := time.NewTicker(n.cfg.AckTimeout / 5)
	defer tick.Stop()
	var sends []send
	for {
		select {
		case <-n.stop:
			n.settleWaiters(time.Now(), true)
			return
		case <-n.kick:
		case <-tick.C:
			n.expire()
		}
		var inc *incarnation
		inc, sends = n.distribute(sends[:0])
		if inc != nil && len(sends) > 0 {
			inc.sendBatches(sends)
			n.sent.Add(uint64(len(sends)))
		}
		clear(sends)
		n.flushAcks()
		now := time.Now()
		n.tellInterest(now)
		n.settleWaiters(now, false)
	}
}

// distribute cuts the current batch when a peer has room for it, moves
// the ready batches into the backlogs of the peers that admitted this
// node, and returns what each one's window lets go now, with the
// incarnation to send it from.
func (n *Node) distribute(sends []send) (*incarnation, []send) {
	n.mu.Lock()
	if n.sendable == 0 {
		// Nobody to send to (every peer left, or has not admitted this
		// node yet): what was published for the peers of then goes.
		clear(n.ready)
		n.ready, n.cur, n.curFrames, n.curGroups, n.waiting = nil, nil, 0, false, 0
		inc := n.inc
		n.mu.Unlock()
		return inc, sends
	}
	if n.curFrames > 0 {
		for _, p := range n.peers {
			if p.admitted && p.inflight < n.cfg.Window {
				n.cut()
				break
			}
		}
	}
	// Ready batches move on, in order, while some peer has room for them
	// in its backlog: a peer that cannot keep up loses them, but when
	// none can, they stay here and Publish reports ErrFull.
	type dropped struct {
		addr string
		k    uint64
	}
	var drops []dropped
	take := 0
	for _, b := range n.ready {
		room := false
		for _, p := range n.peers {
			if p.admitted && p.backlogBytes+len(b.msg.Value) <= n.cfg.MaxPending {
				room = true
				break
			}
		}
		if !room {
			break
		}
		take++
		n.waiting -= b.size
		for _, p := range n.peers {
			if !p.admitted {
				continue
			}
			pb, spared := filterBatch(b, p.interest(n.inc), p.skipped)
			n.spared.Add(uint64(spared))
			if pb == nil {
				p.skipped++ // nothing in it is for this peer
				continue
			}
			if p.backlogBytes+len(pb.msg.Value) > n.cfg.MaxPending {
				drops = append(drops, dropped{p.addr, uint64(pb.frames)})
				continue
			}
			p.skipped = 0
			p.backlog = append(p.backlog, pb)
			p.backlogBytes += len(pb.msg.Value)
		}
	}
	clear(n.ready[:take])
	n.ready = n.ready[take:]
	if len(n.ready) == 0 {
		n.ready = nil
	}
	now := time.Now()
	for _, p := range n.peers {
		if until, q := n.quiet[p.addr]; q && now.Before(until) {
			continue // its backlog waits (see quietFor)
		}
		for p.admitted && p.inflight < n.cfg.Window && len(p.backlog) > 0 {
			b := p.backlog[0]
			p.backlog[0] = nil
			p.backlog = p.backlog[1:]
			p.backlogBytes -= len(b.msg.Value)
			if p.inflight == 0 {
				p.since = now
			}
			p.inflight++
			sends = append(sends, send{p.pid, b.msg})
		}
		if len(p.backlog) == 0 {
			p.backlog = nil
		}
	}
	inc := n.inc
	n.mu.Unlock()
	for _, d := range drops {
		n.drop(d.k, d.addr)
	}
	return inc, sends
}

// expire takes batches unacknowledged for AckTimeout as lost.
func (n *Node) expire() {
	now := time.Now()
	n.mu.Lock()
	var late []string
	for _, p := range n.peers {
		if p.inflight > 0 && now.Sub(p.since) > n.cfg.AckTimeout {
			n.lost.Add(uint64(p.inflight))
			p.inflight = 0
			late = append(late, p.addr)
		}
	}
	n.mu.Unlock()
	for _, a := range late {
		n.log.Warn("cluster: batches unacknowledged, taken as lost", "peer", a, "timeout", n.cfg.AckTimeout)
	}
}

// peerOf is the peer whose receiver pid is, or nil; n.mu is held. A
// receiver's name carries its member id, so a pid names one incarnation
// of one node.
func (n *Node) peerOf(pid *actor.PID) *peer {
	if pid == nil {
		return nil
	}
	id, ok := strings.CutPrefix(pid.Id, receiverName)
	if !ok {
		return nil
	}
	p := n.peers[id]
	if p == nil || p.addr != pid.Address {
		return nil
	}
	return p
}

// acked frees k places in the window of the peer whose receiver is from.
func (n *Node) acked(from *actor.PID, k uint64, lost bool) {
	n.mu.Lock()
	p := n.peerOf(from)
	if p != nil && p.inflight > 0 {
		k = min(k, uint64(p.inflight))
		p.inflight -= int(k)
		p.since = time.Now()
		if lost {
			n.lost.Add(k)
		}
	}
	n.mu.Unlock()
	n.wake()
}

// pendingAck is the acknowledgement of k batches to pid, waiting.
type pendingAck struct {
	pid *actor.PID
	k   uint64
}

// ack acknowledges a batch taken from the receiver from: at once, or
// once its address is no longer quiet (see quietFor), several in one.
func (n *Node) ack(inc *incarnation, from *actor.PID) {
	key := from.Address + "/" + from.Id
	n.mu.Lock()
	if n.acksFrom != inc {
		clear(n.acks)
		n.acksFrom = inc
	}
	a := n.acks[key]
	if until, quiet := n.quiet[from.Address]; quiet && time.Now().Before(until) {
		if a == nil {
			a = &pendingAck{pid: from}
			n.acks[key] = a
		}
		a.k++
		n.mu.Unlock()
		return
	}
	k := uint64(1)
	if a != nil {
		k += a.k
		delete(n.acks, key)
	}
	n.mu.Unlock()
	inc.send(from, &wrapperspb.UInt64Value{Value: k}, inc.self)
}

// flushAcks sends the acknowledgements that waited for an address to be
// no longer quiet.
func (n *Node) flushAcks() {
	var out []*pendingAck
	now := time.Now()
	n.mu.Lock()
	inc := n.acksFrom
	for key, a := range n.acks {
		if until, q := n.quiet[a.pid.Address]; !q || !now.Before(until) {
			out = append(out, a)
			delete(n.acks, key)
		}
	}
	n.mu.Unlock()
	for _, a := range out {
		inc.send(a.pid, &wrapperspb.UInt64Value{Value: a.k}, inc.self)
	}
}

// endpointTerminated: protoactor has dropped inc's connection to an
// address; the address is quiet for a while (see quietFor).
func (n *Node) endpointTerminated(inc *incarnation, e *remote.EndpointTerminatedEvent) {
	if e.Address == neutered || e.Address == n.advertise {
		return
	}
	n.mu.Lock()
	if n.inc != inc {
		n.mu.Unlock()
		return // a retired incarnation's: it sends nothing any more
	}
	n.quiet[e.Address] = time.Now().Add(quietFor)
	n.mu.Unlock()
	time.AfterFunc(quietFor, func() {
		n.probeNow()
		n.wake()
	})
}

// endpointConnected: a connection to an address is up. If the address is
// quiet, the connection is one that protoactor dropped while it was
// being made: the event would have it open another, which the dropped
// one's closing would drop in turn; it is pointed at neutered instead, a
// connection of its own that fails at once and is gone in a few seconds.
// It runs before protoactor's endpoint manager sees the event.
func (n *Node) endpointConnected(e *remote.EndpointConnectedEvent) {
	n.mu.Lock()
	until, quiet := n.quiet[e.Address]
	n.mu.Unlock()
	if quiet && time.Now().Before(until) {
		e.Address = neutered
	}
}

// receive is the receiver actor of inc: batches from other nodes, and the
// acknowledgements of this node's batches.
func (n *Node) receive(inc *incarnation, ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *wrapperspb.BytesValue:
		if isInterest(m.Value) {
			n.onInterest(inc, ctx.Sender(), m.Value)
			return
		}
		n.onBatch(inc, ctx.Sender(), m.Value)
	case *wrapperspb.UInt64Value:
		n.acked(ctx.Sender(), m.Value, false)
	case *actor.DeadLetterResponse:
		// Local: the connection to the peer failed. (A remote dead
		// letter comes without a target: the peer's incarnation is gone,
		// and so is its entry here, or soon.)
		if m.Target != nil {
			n.acked(m.Target, 1, true)
		}
	}
}

// onBatch takes a batch sent by from: only from a current member, once,
// in order.
func (n *Node) onBatch(inc *incarnation, from *actor.PID, b []byte) {
	node, seq, skipped, err := batchHeader(b)
	n.mu.Lock()
	member := n.peerOf(from) != nil
	n.mu.Unlock()
	if !member {
		n.refuse(from, "not a member")
		return
	}
	if err != nil || seq == 0 {
		n.refuse(from, "malformed")
		return
	}
	// Ack first: the window is about what is on its way, and this batch
	// has arrived. (Respond would send it without a sender, and the
	// sending node needs to know which peer's window to open.)
	n.ack(inc, from)
	n.take(from.Address, node, seq, skipped, b)
}

// take delivers a batch from the node at addr unless it has been seen:
// batch numbers per sending node must rise; a jump past the batches the
// sender says it skipped (none of their frames was for this node) is
// counted as gaps (the batches in between never came), anything not
// above the last is a duplicate and dropped. Delivery is under dmu, so that the frames of
// two batches never interleave, even across incarnations.
func (n *Node) take(addr string, node, seq, skipped uint64, b []byte) {
	now := time.Now()
	n.dmu.Lock()
	defer n.dmu.Unlock()
	o := n.seen[addr]
	if o == nil {
		// A sender's state outlives its absence for a while (see
		// forgetAfter), then goes, when a new one comes.
		for a, old := range n.seen {
			if now.Sub(old.at) > forgetAfter {
				delete(n.seen, a)
			}
		}
	}
	if o == nil || o.node != node {
		o = &origin{node: node}
		n.seen[addr] = o
	}
	o.at = now
	if seq <= o.seq {
		n.dups.Add(1)
		return
	}
	if o.seq != 0 && seq-o.seq-1 > skipped {
		n.gaps.Add(seq - o.seq - 1 - skipped)
	}
	o.seq = seq
	frames := uint64(0)
	if err := eachFrame(b, func(publisher uint64, group, payload []byte) {
		frames++
		n.deliver(publisher, string(group), payload)
	}); err != nil {
		n.log.Warn("cluster: malformed batch cut short", "from", addr, "err", err)
	}
	n.received.Add(frames)
	n.recvBatches.Add(1)
}

// refuse counts a refused batch and logs, at most once every 10 s.
func (n *Node) refuse(from *actor.PID, why string) {
	total := n.refused.Add(1)
	now := time.Now().UnixNano()
	last := n.refLog.Load()
	if now-last < int64(10*time.Second) || !n.refLog.CompareAndSwap(last, now) {
		return
	}
	since := total - n.refLogged.Swap(total)
	addr, name := "", ""
	if from != nil {
		addr, name = from.Address, from.Id
	}
	n.log.Warn("cluster: refused broadcast batches from a sender that is not a member of this cluster",
		"reason", why, "from", addr, "sender", name, "refused_since_last_log", since, "refused_total", total)
}

// topology follows the member list of inc: peers come and go with it.
func (n *Node) topology(inc *incarnation, t *pacluster.ClusterTopology) {
	n.mu.Lock()
	if n.inc != inc {
		n.mu.Unlock()
		return
	}
	n.members = slices.Clone(t.Members)
	live := map[string]bool{}
	for _, m := range t.Members {
		live[m.Id] = true
	}
	for id, p := range n.peers {
		if !live[id] {
			n.removePeer(id, p)
		}
	}
	for _, m := range t.Members {
		if m.Id == inc.id || n.peers[m.Id] != nil {
			continue
		}
		addr := m.Address()
		// A new member id at an address is a new incarnation there; the
		// old one is gone even if its leave has not been seen yet.
		for id, p := range n.peers {
			if p.addr == addr {
				n.removePeer(id, p)
			}
		}
		p := &peer{id: m.Id, addr: addr, pid: actor.NewPID(addr, receiverName+m.Id)}
		if st := n.status[addr]; st != nil && st.id == m.Id && st.flags&flagMember != 0 && st.flags&flagBlocked == 0 {
			p.admitted = true
			n.sendable++
		}
		n.peers[m.Id] = p
	}
	count := len(t.Members)
	n.mu.Unlock()
	n.wake()

	for _, m := range t.Joined {
		if m.Id != inc.id {
			n.log.Info("cluster member joined", "member", m.Address(), "id", m.Id, "members", count)
		}
	}
	for _, m := range t.Left {
		n.log.Info("cluster member left", "member", m.Address(), "id", m.Id, "members", count)
	}
}

// removePeer forgets a peer; n.mu is held. Its batches in flight are
// counted as lost, its backlog goes.
func (n *Node) removePeer(id string, p *peer) {
	delete(n.peers, id)
	n.lost.Add(uint64(p.inflight))
	if p.admitted {
		n.sendable--
	}
}

// setAdmitted records whether the peer with member id id, at addr, takes
// this node's batches; n.mu is held.
func (n *Node) setAdmitted(id, addr string, ok bool) {
	p := n.peers[id]
	if p == nil || p.addr != addr || p.admitted == ok {
		return
	}
	p.admitted = ok
	p.toldInc = nil // what it was told of this node's interest, it is told again
	if ok {
		n.sendable++
		return
	}
	// It no longer takes them: what waits for it goes, and what is on
	// its way will not be acknowledged.
	n.sendable--
	n.lost.Add(uint64(p.inflight))
	p.inflight, p.backlog, p.backlogBytes = 0, nil, 0
}

// Members are the cluster's members now, this node included, by address.
func (n *Node) Members() []Member {
	n.mu.Lock()
	out := make([]Member, 0, len(n.members))
	self := ""
	if n.inc != nil {
		self = n.inc.id
	}
	for _, m := range n.members {
		c := -1
		if st := n.status[m.Address()]; st != nil && st.id == m.Id && st.conns >= 0 {
			c = int(st.conns)
		}
		out = append(out, Member{Address: m.Address(), ID: m.Id, Self: m.Id == self, Conns: c})
	}
	n.mu.Unlock()
	if n.cfg.Conns != nil {
		for i := range out {
			if out[i].Self {
				out[i].Conns = n.cfg.Conns()
			}
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		if c := strings.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Name is the cluster's name.
func (n *Node) Name() string { return n.cfg.Name }

// Addr is this node's cluster address, as the other nodes reach it.
func (n *Node) Addr() string { return n.advertise }

// Stats reports the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	members := len(n.members)
	backlog := 0
	for _, p := range n.peers {
		backlog = max(backlog, p.backlogBytes)
	}
	backlog += n.waiting
	interestLate := n.interestLate
	n.mu.Unlock()
	return Stats{
		Published:       n.published.Load(),
		Dropped:         n.dropped.Load(),
		BatchesSent:     n.sent.Load(),
		BatchesLost:     n.lost.Load(),
		Received:        n.received.Load(),
		BatchesReceived: n.recvBatches.Load(),
		Gaps:            n.gaps.Load(),
		Duplicates:      n.dups.Load(),
		Refused:         n.refused.Load(),
		Spared:          n.spared.Load(),
		InterestLate:    interestLate,
		Rejoins:         n.rejoins.Load(),
		Members:         members,
		Backlog:         backlog,
		State:           n.State(),
	}
}

// Shutdown leaves the cluster gracefully (the other members are told, and
// drop this one at once) and stops the node's actor system. It waits for
// ctx at most. It may be called more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopped.Do(func() {
		n.closed.Store(true)
		close(n.stop)
	})
	select {
	case <-n.left:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: leaving: %w", ctx.Err())
	}
}
