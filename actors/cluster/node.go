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
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Config configures a Node. Zero values mean the defaults in the comments.
type Config struct {
	// Name is the cluster's name; nodes join only a cluster of their own
	// name. Required.
	Name string
	// Addr is host:port for protoactor's remote (gRPC): the node listens
	// there and peers reach it there, so the host must be an address the
	// peers can reach (not 0.0.0.0). Required.
	Addr string
	// Peers are the cluster addresses (their Addr) of the other nodes;
	// this node's own may be listed too. Used by the default provider.
	Peers []string
	// ProviderPort is where the default (automanaged) provider answers
	// its peers' health checks over HTTP, on every interface; default
	// Addr's port + 1. Peers are assumed to follow the same rule.
	ProviderPort int
	// Provider finds the cluster's members. Default: protoactor's
	// automanaged provider over Peers, which needs no external service.
	// Any protoactor ClusterProvider fits (consul, etcd, Kubernetes, zk
	// under github.com/asynkron/protoactor-go/cluster/clusterproviders).
	Provider pacluster.ClusterProvider
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
	// Conns reports this node's connection count, which the node shares
	// with the others through protoactor's gossip (see Members). Optional.
	Conns func() int
}

// Defaults of Config.
const (
	DefaultMaxPending = 16 << 20
	DefaultWindow     = 8
	DefaultAckTimeout = 5 * time.Second

	maxBatchBytes = 64 << 10 // a batch is cut once its frames reach this
	receiverName  = "hydrogen-broadcast"
	connsKey      = "hydrogen.conns"
	refreshTTL    = time.Second // automanaged: how often peers are checked
	endpointQueue = 4096        // initial size of protoactor's per-peer send queue
)

// ErrFull is returned by Publish when the frame was dropped because the
// frames waiting to be batched are over Config.MaxPending.
var ErrFull = errors.New("cluster: outbound buffer full, frame dropped")

// ErrClosed is returned by Publish after Shutdown.
var ErrClosed = errors.New("cluster: node shut down")

// Member is one node of the cluster.
type Member struct {
	Address string // cluster address, host:port
	ID      string // protoactor member id, new for every start of a node
	Self    bool   // this node
	Conns   int    // its connection count as last gossiped; -1 when unknown
}

// Stats are a node's counters since Start.
type Stats struct {
	Published       uint64 // frames accepted by Publish while there were peers
	Dropped         uint64 // frame deliveries dropped: one per peer a frame did not go to
	BatchesSent     uint64 // batches sent, counted once per peer
	BatchesLost     uint64 // batches sent and not acknowledged (dead letter, timeout)
	Received        uint64 // frames delivered from other nodes
	BatchesReceived uint64
	Gaps            uint64 // batches from other nodes that never arrived (dropped for us or lost)
	Duplicates      uint64 // batches from other nodes refused as already seen
	Members         int    // members now, this node included
	Backlog         int    // bytes queued now: waiting for a batch, plus the longest peer backlog
}

// Node is this process's member of the cluster.
type Node struct {
	cfg     Config
	log     *slog.Logger
	id      uint64 // this incarnation, in every batch header
	sys     *actor.ActorSystem
	cl      *pacluster.Cluster
	self    *actor.PID // the receiver actor, as peers address it
	deliver func(origin uint64, payload []byte)
	topoSub *eventstream.Subscription

	mu         sync.Mutex
	cur        []byte // frames of the batch being filled
	curFrames  int
	curFirst   uint64
	ready      []*batch // cut, not yet handed to the peers
	waiting    int      // bytes in cur and ready
	nextFrame  uint64
	nextBatch  uint64
	peers      map[string]*peer // by member id
	members    []*pacluster.Member
	conns      map[string]int // member id → gossiped connections
	dropLog    time.Time
	dropLogged uint64

	rmu  sync.Mutex
	seen map[string]*origin // receiver: by sending address

	kick    chan struct{}
	stop    chan struct{}
	left    chan struct{} // closed once the node has left
	done    sync.WaitGroup
	closed  atomic.Bool
	stopped sync.Once

	published, dropped, sent, lost    atomic.Uint64
	received, recvBatches, gaps, dups atomic.Uint64
}

type batch struct {
	msg    *wrapperspb.BytesValue
	frames int
	size   int // bytes of its frames, as counted in Node.waiting
}

type peer struct {
	id, addr     string
	pid          *actor.PID
	inflight     int
	since        time.Time // last ack, or the send that filled an empty window
	backlog      []*batch
	backlogBytes int
}

type origin struct {
	node, seq uint64
}

// Start starts a node and joins the cluster: its own protoactor actor
// system (protoactor's Cluster.Shutdown ends the system it runs on, so the
// node keeps one of its own), remote on cfg.Addr, the membership provider,
// and the receiver actor that hands every frame from another node to
// deliver, one at a time and in order. deliver's payload is valid only
// until it returns.
func Start(cfg Config, deliver func(origin uint64, payload []byte)) (*Node, error) {
	if cfg.Name == "" {
		return nil, errors.New("cluster: a cluster name is required")
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("cluster: address %q: port must be 1..65535", cfg.Addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return nil, fmt.Errorf("cluster: address %q: the host must be one the peers can reach, not a wildcard", cfg.Addr)
	}
	if cfg.ProviderPort == 0 {
		cfg.ProviderPort = port + 1
	}
	if cfg.ProviderPort <= 0 || cfg.ProviderPort > 65535 {
		return nil, fmt.Errorf("cluster: provider port %d is outside 1..65535", cfg.ProviderPort)
	}
	if deliver == nil {
		return nil, errors.New("cluster: a deliver function is required")
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// protoactor panics when it cannot listen: find out first.
	if err := probe(cfg.Addr); err != nil {
		return nil, err
	}
	provider := cfg.Provider
	if provider == nil {
		if err := probe(":" + strconv.Itoa(cfg.ProviderPort)); err != nil {
			return nil, err
		}
		hosts, err := providerHosts(cfg.Addr, cfg.ProviderPort, cfg.Peers)
		if err != nil {
			return nil, err
		}
		provider = automanaged.NewWithConfig(refreshTTL, cfg.ProviderPort, hosts...)
	}

	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("cluster", cfg.Name, "node", cfg.Addr),
		id:      rand.Uint64() | 1,
		deliver: deliver,
		peers:   map[string]*peer{},
		conns:   map[string]int{},
		seen:    map[string]*origin{},
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		left:    make(chan struct{}),
	}
	quiet := slog.New(newQuietHandler(cfg.Logger.Handler())).With("component", "protoactor")
	n.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	if _, err := n.sys.Root.SpawnNamed(actor.PropsFromFunc(n.receive), receiverName); err != nil {
		n.sys.Shutdown()
		return nil, fmt.Errorf("cluster: spawning the receiver: %w", err)
	}
	// Advertise exactly cfg.Addr, so that this node's PIDs, known before
	// remote starts, are the ones its peers see.
	n.self = actor.NewPID(cfg.Addr, receiverName)
	pcfg := pacluster.Configure(cfg.Name, provider, disthash.New(), remote.Configure(host, port,
		remote.WithAdvertisedHost(cfg.Addr),
		// protoactor preallocates a ring of a million entries (16 MB) per
		// peer for its endpoint writer's mailbox; the window bounds what
		// this node queues there, and the ring grows if it must.
		remote.WithEndpointWriterQueueSize(endpointQueue)))
	n.cl = pacluster.New(n.sys, pcfg)
	n.topoSub = n.sys.EventStream.Subscribe(func(evt any) {
		if t, ok := evt.(*pacluster.ClusterTopology); ok {
			n.topology(t)
		}
	})
	if err := startMember(n.cl); err != nil {
		n.sys.Shutdown()
		return nil, err
	}
	n.done.Add(2)
	go n.sender()
	go n.gossip()
	n.log.Info("cluster node started", "addr", n.sys.Address(), "id", n.sys.ID, "peers", cfg.Peers)
	return n, nil
}

func startMember(c *pacluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cluster: joining: %v", r)
		}
	}()
	c.StartMember()
	return nil
}

func probe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cluster: cannot listen on %s: %w", addr, err)
	}
	return l.Close()
}

// providerHosts are the automanaged provider's health endpoints: every
// peer's, and this node's, at their port + 1 (or this node's ProviderPort).
func providerHosts(self string, selfPort int, peers []string) ([]string, error) {
	h, _, _ := net.SplitHostPort(self)
	hosts := []string{net.JoinHostPort(h, strconv.Itoa(selfPort))}
	for _, p := range peers {
		ph, pp, err := net.SplitHostPort(p)
		if err != nil {
			return nil, fmt.Errorf("cluster: peer %q: %w", p, err)
		}
		port, err := strconv.Atoi(pp)
		if err != nil || port <= 0 || port >= 65535 {
			return nil, fmt.Errorf("cluster: peer %q: port must be 1..65534", p)
		}
		if p == self {
			continue
		}
		hp := net.JoinHostPort(ph, strconv.Itoa(port+1))
		if !slices.Contains(hosts, hp) {
			hosts = append(hosts, hp)
		}
	}
	return hosts, nil
}

// Publish queues payload for every other member of the cluster; it copies
// payload and never blocks. publisher identifies who published it: the
// frames of one publisher, published one after another, reach every other
// node in that order. With no other member it does nothing. When the
// frames waiting for a batch are over MaxPending it drops the frame,
// counts it, and returns ErrFull.
func (n *Node) Publish(publisher uint64, payload []byte) error {
	if n.closed.Load() {
		return ErrClosed
	}
	size := frameSize(publisher, len(payload))
	n.mu.Lock()
	if len(n.peers) == 0 {
		n.mu.Unlock()
		return nil
	}
	if n.waiting+size > n.cfg.MaxPending {
		peers := uint64(len(n.peers))
		n.mu.Unlock()
		n.drop(peers, "")
		return ErrFull
	}
	if n.cur == nil {
		n.cur = make([]byte, 0, min(maxBatchBytes+size+64, 2*maxBatchBytes))
		n.curFirst = n.nextFrame
	}
	n.cur = appendFrame(n.cur, publisher, payload)
	n.curFrames++
	n.nextFrame++
	n.waiting += size
	if len(n.cur) >= maxBatchBytes {
		n.cut()
	}
	n.mu.Unlock()
	n.published.Add(1)
	select {
	case n.kick <- struct{}{}:
	default:
	}
	return nil
}

// cut closes the current batch; n.mu is held.
func (n *Node) cut() {
	n.nextBatch++
	size := len(n.cur)
	b := appendHeader(n.cur, n.id, n.nextBatch, n.curFirst)
	n.ready = append(n.ready, &batch{msg: &wrapperspb.BytesValue{Value: b}, frames: n.curFrames, size: size})
	n.cur, n.curFrames = nil, 0
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
	defer n.done.Done()
	tick := time.NewTicker(n.cfg.AckTimeout / 5)
	defer tick.Stop()
	var sends []send
	for {
		select {
		case <-n.stop:
			return
		case <-n.kick:
		case <-tick.C:
			n.expire()
		}
		sends = n.distribute(sends[:0])
		for _, s := range sends {
			n.sys.Root.RequestWithCustomSender(s.pid, s.msg, n.self)
		}
		n.sent.Add(uint64(len(sends)))
		clear(sends)
	}
}

// distribute cuts the current batch when a peer has room for it, moves
// the ready batches into the peers' backlogs, and returns what each
// peer's window lets go now.
func (n *Node) distribute(sends []send) []send {
	n.mu.Lock()
	if n.curFrames > 0 {
		for _, p := range n.peers {
			if p.inflight < n.cfg.Window {
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
			if p.backlogBytes+len(b.msg.Value) <= n.cfg.MaxPending {
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
			if p.backlogBytes+len(b.msg.Value) > n.cfg.MaxPending {
				drops = append(drops, dropped{p.addr, uint64(b.frames)})
				continue
			}
			p.backlog = append(p.backlog, b)
			p.backlogBytes += len(b.msg.Value)
		}
	}
	clear(n.ready[:take])
	n.ready = n.ready[take:]
	if len(n.ready) == 0 {
		n.ready = nil
	}
	for _, p := range n.peers {
		for p.inflight < n.cfg.Window && len(p.backlog) > 0 {
			b := p.backlog[0]
			p.backlog[0] = nil
			p.backlog = p.backlog[1:]
			p.backlogBytes -= len(b.msg.Value)
			if p.inflight == 0 {
				p.since = time.Now()
			}
			p.inflight++
			sends = append(sends, send{p.pid, b.msg})
		}
		if len(p.backlog) == 0 {
			p.backlog = nil
		}
	}
	n.mu.Unlock()
	for _, d := range drops {
		n.drop(d.k, d.addr)
	}
	return sends
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

// acked frees a place in the window of the peer at addr.
func (n *Node) acked(addr string, lost bool) {
	if lost {
		n.lost.Add(1)
	}
	n.mu.Lock()
	var p *peer
	for _, q := range n.peers {
		if q.addr == addr && (p == nil || q.inflight > p.inflight) {
			p = q
		}
	}
	if p != nil && p.inflight > 0 {
		p.inflight--
		p.since = time.Now()
	}
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// receive is the receiver actor: batches from other nodes, and the
// acknowledgements of this node's batches.
func (n *Node) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *wrapperspb.BytesValue:
		n.onBatch(ctx, m.Value)
	case *wrapperspb.UInt64Value:
		if s := ctx.Sender(); s != nil {
			n.acked(s.Address, false)
		}
	case *actor.DeadLetterResponse:
		if m.Target != nil {
			n.acked(m.Target.Address, true)
		}
	}
}

func (n *Node) onBatch(ctx actor.Context, b []byte) {
	from := ctx.Sender()
	node, seq, _, err := batchHeader(b)
	if err != nil || from == nil {
		n.log.Warn("cluster: malformed batch dropped", "from", from, "err", err)
		return
	}
	// Ack first: the window is about what is on its way, and this batch
	// has arrived.
	// (Respond would send it without a sender, and the sender's node
	// needs to know which peer's window to open.)
	n.sys.Root.RequestWithCustomSender(from, &wrapperspb.UInt64Value{Value: seq}, n.self)
	n.rmu.Lock()
	o := n.seen[from.Address]
	if o == nil || o.node != node {
		o = &origin{node: node}
		n.seen[from.Address] = o
	}
	fresh := seq > o.seq
	if fresh {
		if o.seq != 0 && seq > o.seq+1 {
			n.gaps.Add(seq - o.seq - 1)
		}
		o.seq = seq
	}
	n.rmu.Unlock()
	if !fresh {
		n.dups.Add(1)
		return
	}
	frames := uint64(0)
	if err := eachFrame(b, func(publisher uint64, payload []byte) {
		frames++
		n.deliver(publisher, payload)
	}); err != nil {
		n.log.Warn("cluster: malformed batch cut short", "from", from.Address, "err", err)
	}
	n.received.Add(frames)
	n.recvBatches.Add(1)
}

// topology follows protoactor's member list: peers come and go with it.
func (n *Node) topology(t *pacluster.ClusterTopology) {
	selfID := n.sys.ID
	n.mu.Lock()
	n.members = slices.Clone(t.Members)
	live := map[string]bool{}
	for _, m := range t.Members {
		live[m.Id] = true
		if m.Id == selfID || n.peers[m.Id] != nil {
			continue
		}
		n.peers[m.Id] = &peer{id: m.Id, addr: m.Address(), pid: actor.NewPID(m.Address(), receiverName)}
	}
	for id, p := range n.peers {
		if !live[id] {
			delete(n.peers, id)
			n.lost.Add(uint64(p.inflight))
		}
	}
	for id := range n.conns {
		if !live[id] {
			delete(n.conns, id)
		}
	}
	count := len(t.Members)
	n.mu.Unlock()

	liveAddr := map[string]bool{}
	for _, m := range t.Members {
		liveAddr[m.Address()] = true
	}
	n.rmu.Lock()
	for a := range n.seen {
		if !liveAddr[a] {
			delete(n.seen, a)
		}
	}
	n.rmu.Unlock()

	for _, m := range t.Joined {
		if m.Id != selfID {
			n.log.Info("cluster member joined", "member", m.Address(), "id", m.Id, "members", count)
		}
	}
	for _, m := range t.Left {
		n.log.Info("cluster member left", "member", m.Address(), "id", m.Id, "members", count)
	}
}

// gossip shares this node's connection count through protoactor's gossip
// and reads everybody's, once a second.
func (n *Node) gossip() {
	defer n.done.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := -1
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if n.cfg.Conns != nil {
			if c := n.cfg.Conns(); c != last {
				n.cl.Gossip.SetState(connsKey, wrapperspb.Int64(int64(c)))
				last = c
			}
		}
		state, err := n.cl.Gossip.GetState(connsKey)
		if err != nil {
			continue
		}
		conns := make(map[string]int, len(state))
		for id, kv := range state {
			var v wrapperspb.Int64Value
			if kv.GetValue() != nil && kv.GetValue().UnmarshalTo(&v) == nil {
				conns[id] = int(v.Value)
			}
		}
		n.mu.Lock()
		n.conns = conns
		n.mu.Unlock()
	}
}

// Members are the cluster's members now, this node included, by address.
func (n *Node) Members() []Member {
	n.mu.Lock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		c, ok := n.conns[m.Id]
		if !ok {
			c = -1
		}
		out = append(out, Member{Address: m.Address(), ID: m.Id, Self: m.Id == n.sys.ID, Conns: c})
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
		if a.Address != b.Address {
			if a.Address < b.Address {
				return -1
			}
			return 1
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

// Name is the cluster's name.
func (n *Node) Name() string { return n.cfg.Name }

// Addr is this node's cluster address.
func (n *Node) Addr() string { return n.sys.Address() }

// Stats reports the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	members := len(n.members)
	backlog := 0
	for _, p := range n.peers {
		backlog = max(backlog, p.backlogBytes)
	}
	backlog += n.waiting
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
		Members:         members,
		Backlog:         backlog,
	}
}

// Shutdown leaves the cluster gracefully (the others are told, through
// gossip, that this member left) and stops the node's actor system. It
// waits for ctx at most; protoactor's graceful leave takes about two
// seconds. It may be called more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopped.Do(func() {
		n.closed.Store(true)
		close(n.stop)
		n.done.Wait()
		go func() {
			defer close(n.left)
			n.sys.EventStream.Unsubscribe(n.topoSub)
			n.cl.Shutdown(true)
			n.log.Info("cluster node left", "addr", n.sys.Address())
		}()
	})
	select {
	case <-n.left:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: leaving: %w", ctx.Err())
	}
}
