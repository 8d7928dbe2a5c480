package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// protoactor's gossip is not used: membership comes from the provider,
// connection counts travel in the probes' answers. Its loop cannot be
// turned off, so it runs rarely, and its heartbeat expiry, which would
// block members for good on a missed heartbeat of its own, never fires.
// (Every round makes request futures, whose ids pass through protoactor's
// process registry; a 300 ms round was most of an idle node's heap
// growth.)
const (
	gossipInterval      = time.Minute
	heartbeatExpiration = 100 * 365 * 24 * time.Hour
	// byeTimeout bounds the wait for the peers to acknowledge a leave.
	byeTimeout = time.Second
	// retryJoin is the pause before a failed start of an incarnation is
	// tried again.
	retryJoin = time.Second
	// dialTimeout bounds a dial to a peer (see dialOptions).
	dialTimeout = 2 * time.Second
)

// incarnation is one membership of the node in protoactor's cluster: an
// actor system, remote, cluster and member id of its own. The node runs
// one at a time.
type incarnation struct {
	n       *Node
	sys     *actor.ActorSystem
	cl      *pacluster.Cluster
	id      string     // member id, sys.ID
	self    *actor.PID // the receiver actor, as peers address it
	member  *actor.PID // the member actor, as peers address it
	started time.Time
	// up: the remote runs and the provider has started, so the node can
	// probe and answer.
	up       atomic.Bool
	kindList []string      // protoactor's cluster kinds, set before up
	views    atomic.Uint64 // views sent, numbering them
	floor    uint64        // a peer's view counts once it has heard this one's view of this number; n.mu guards it
	wasOK    bool          // it has been OK; n.mu guards it

	// mu guards retired: nothing is sent through a retired incarnation's
	// remote, whose endpoint manager may be gone.
	mu      sync.RWMutex
	retired bool
}

// send sends msg to pid with sender from, unless inc is retired.
func (inc *incarnation) send(pid *actor.PID, msg any, from *actor.PID) {
	inc.mu.RLock()
	if !inc.retired {
		inc.sys.Root.RequestWithCustomSender(pid, msg, from)
	}
	inc.mu.RUnlock()
}

func (inc *incarnation) sendBatches(sends []send) {
	inc.mu.RLock()
	if !inc.retired {
		for _, s := range sends {
			inc.sys.Root.RequestWithCustomSender(s.pid, s.msg, inc.self)
		}
	}
	inc.mu.RUnlock()
}

func (inc *incarnation) kinds() []string { return inc.kindList }

// blocked reports whether protoactor's block list of inc has id: a member
// this incarnation has seen leave, and will never admit again.
func (inc *incarnation) blocked(id string) bool {
	if !inc.up.Load() {
		return false
	}
	return inc.cl.Remote.BlockList().IsBlocked(id)
}

// run owns the node's incarnations: it starts one, and when the node must
// rejoin, retires it and starts the next, until Shutdown; then it leaves,
// waits for the node's other goroutines and closes n.left.
func (n *Node) run() {
	defer close(n.left)
	defer n.workers.Wait()
	for failures := 0; ; {
		inc, err := n.incarnate()
		if err != nil {
			failures++
			if failures == 1 || failures%30 == 0 {
				n.log.Warn("cluster: starting the node's membership failed; retrying", "err", err, "attempts", failures)
			}
			select {
			case <-n.stop:
				return
			case <-time.After(retryJoin):
			}
			continue
		}
		failures = 0
		select {
		case <-n.stop:
			n.retire(inc, true)
			n.log.Info("cluster node left", "addr", n.advertise, "id", inc.id)
			return
		case why := <-n.rejoin:
			n.rejoins.Add(1)
			n.retire(inc, false)
			n.log.Info("cluster: retired a member id that the cluster no longer admits", "id", inc.id, "reason", why)
		}
	}
}

// incarnate starts a new incarnation and makes it the node's current one.
func (n *Node) incarnate() (inc *incarnation, err error) {
	host, portStr, _ := net.SplitHostPort(n.cfg.Addr)
	port, _ := strconv.Atoi(portStr)
	quiet := slog.New(newQuietHandler(n.cfg.Logger.Handler())).With("component", "protoactor")
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet }))
	inc = &incarnation{n: n, sys: sys, id: sys.ID, started: time.Now()}
	inc.self = actor.NewPID(n.advertise, receiverName+inc.id)
	inc.member = actor.NewPID(n.advertise, memberName)
	if _, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) { n.receive(inc, ctx) }), receiverName+inc.id); err != nil {
		return nil, fmt.Errorf("cluster: spawning the receiver: %w", err)
	}
	if _, err := sys.Root.SpawnNamed(actor.PropsFromFunc(func(ctx actor.Context) { n.onProbe(inc, ctx) }), memberName); err != nil {
		return nil, fmt.Errorf("cluster: spawning the member actor: %w", err)
	}
	var provider pacluster.ClusterProvider = &ownProvider{inc: inc}
	if n.cfg.Provider != nil {
		provider = n.cfg.Provider
	}
	var dialCreds credentials.TransportCredentials = insecure.NewCredentials()
	var serverOpts []grpc.ServerOption
	if n.cfg.TLS != nil {
		dialCreds = creds{n.cfg.TLS}
		serverOpts = append(serverOpts, grpc.Creds(creds{n.cfg.TLS}))
	}
	rcfg := remote.Configure(host, port,
		// Advertise exactly cfg.Advertise, so that this node's PIDs,
		// known before remote starts, are the ones its peers see.
		remote.WithAdvertisedHost(n.advertise),
		// protoactor preallocates a ring of a million entries (16 MB) per
		// peer for its endpoint writer's mailbox; the window bounds what
		// this node queues there, and the ring grows if it must.
		remote.WithEndpointWriterQueueSize(endpointQueue),
		remote.WithDialOptions(dialOptions(dialCreds)...),
		remote.WithServerOptions(serverOpts...))
	// A writer that cannot connect sleeps 2 s after each attempt, with
	// everything for its address waiting: one attempt, then the next
	// message makes a new writer. (The prober sends nothing to an
	// address that refuses connections.)
	rcfg.MaxRetryCount = 1
	pcfg := pacluster.Configure(n.cfg.Name, provider, disthash.New(), rcfg,
		pacluster.WithHeartbeatExpiration(heartbeatExpiration))
	pcfg.GossipInterval = gossipInterval
	inc.cl = pacluster.New(sys, pcfg)
	// Subscribed before the remote starts, so that this handler sees the
	// remote's endpoint events before its endpoint manager does.
	topoSub := sys.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *pacluster.ClusterTopology:
			n.topology(inc, e)
		case *remote.EndpointTerminatedEvent:
			n.endpointTerminated(inc, e)
		case *remote.EndpointConnectedEvent:
			n.endpointConnected(e)
		}
	})
	n.mu.Lock()
	n.inc = inc
	clear(n.status)
	clear(n.reached)
	n.mu.Unlock()
	if err := startMember(inc.cl); err != nil {
		sys.EventStream.Unsubscribe(topoSub)
		n.mu.Lock()
		n.inc = nil
		n.mu.Unlock()
		inc.mu.Lock()
		inc.retired = true
		inc.mu.Unlock()
		if inc.cl.Remote != nil {
			stopRemote(inc.cl.Remote)
		}
		sys.Shutdown()
		return nil, err
	}
	if !inc.up.Load() {
		inc.kindList = inc.cl.GetClusterKinds()
		inc.up.Store(true)
	}
	n.log.Info("cluster node started", "addr", n.advertise, "id", inc.id, "peers", n.cfg.Peers)
	n.probeNow()
	return inc, nil
}

// dialOptions are how protoactor's endpoint writer dials a peer. It
// dials once per connection and, when that fails, sleeps 2 s holding
// everything for the peer's address; so the dial itself waits for the
// peer, retrying quickly, for up to dialTimeout: a peer that is rejoining
// (its listener closed for a moment) or has just started is reached as
// soon as it listens.
func dialOptions(c credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(c),
		grpc.WithBlock(),
		grpc.WithReturnConnectionError(),
		// protoactor calls grpc.Dial, not DialContext: a dial option is
		// the only way to bound it.
		//lint:ignore SA1019 see above
		grpc.WithTimeout(dialTimeout),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: dialTimeout,
		}),
	}
}

// startMember is protoactor's StartMember, which panics on failure (a
// port it cannot listen on, a provider that fails).
func startMember(c *pacluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cluster: joining: %v", r)
		}
	}()
	c.StartMember()
	return nil
}

// stopRemote stops a remote that may be half started.
func stopRemote(r *remote.Remote) {
	defer func() { _ = recover() }()
	r.Shutdown(false)
}

// drainRemote is protoactor's graceful remote shutdown, which can panic:
// it signals every inbound connection's reader on a channel that a reader
// whose connection has just failed closes. The server is then stopped
// at once.
func drainRemote(r *remote.Remote) {
	defer func() {
		if recover() != nil {
			stopRemote(r)
		}
	}()
	r.Shutdown(true)
}

// retire ends inc. gracefully is the node leaving for good: the peers are
// told and the remote drains its connections. Otherwise the node is
// rejoining: the listener and every inbound connection close at once, so
// the next incarnation can listen on the same address, and the outbound
// connections close in the background.
func (n *Node) retire(inc *incarnation, gracefully bool) {
	if gracefully {
		n.bye(inc)
	}
	n.mu.Lock()
	if n.inc == inc {
		n.inc = nil
	}
	for id, p := range n.peers {
		n.removePeer(id, p)
	}
	n.members = nil
	clear(n.status)
	clear(n.reached)
	clear(n.quiet)
	clear(n.acks)
	n.mu.Unlock()
	n.state.Store(int32(Joining))
	inc.mu.Lock()
	inc.retired = true
	inc.mu.Unlock()

	c := inc.cl
	if n.cfg.Provider != nil {
		if err := c.Config.ClusterProvider.Shutdown(gracefully); err != nil {
			n.log.Warn("cluster: stopping the membership provider", "err", err)
		}
	}
	c.IdentityLookup.Shutdown()
	c.Gossip.Shutdown()
	if gracefully {
		drainRemote(c.Remote)
		inc.sys.Shutdown()
		return
	}
	stopRemote(c.Remote)
	inc.sys.Shutdown()
	// The endpoint writers (outbound connections) are children of the
	// endpoint supervisor: stopping it closes them. A writer that is
	// blocked sending to a peer that does not read stops when the peer
	// reads again or its connection fails.
	n.workers.Add(1)
	go func() {
		defer n.workers.Done()
		_ = inc.sys.Root.StopFuture(actor.NewPID(inc.sys.Address(), "EndpointSupervisor")).Wait()
		_ = inc.sys.Root.StopFuture(actor.NewPID(inc.sys.Address(), "activator")).Wait()
	}()
}

// bye tells every member that inc is leaving, and waits (byeTimeout at
// most) until they have heard it: they drop it at once, rather than once
// it has not answered for DeadAfter. (A node that rejoins says nothing:
// the members that matter have dropped it already, and the others see a
// new member id at its address at their next probe.)
func (n *Node) bye(inc *incarnation) {
	if !inc.up.Load() {
		return
	}
	n.mu.Lock()
	var to []string
	for _, p := range n.peers {
		to = append(to, p.addr)
	}
	n.mu.Unlock()
	msg := &wrapperspb.BytesValue{Value: (&probe{kind: probeBye, cluster: n.cfg.Name, id: inc.id, addr: n.advertise, conns: -1}).marshal()}
	var futures []*actor.Future
	inc.mu.RLock()
	if !inc.retired {
		for _, a := range to {
			futures = append(futures, inc.sys.Root.RequestFuture(actor.NewPID(a, memberName), msg, byeTimeout))
		}
	}
	inc.mu.RUnlock()
	for _, f := range futures {
		_, _ = f.Result()
	}
}

// ownProvider is the default membership provider (protoactor's
// ClusterProvider): the members of inc's cluster are this node and the
// peers that answer its probes (see prober), over the remote itself, so
// membership needs no port, server or service of its own and travels
// on the same connections, under the same TLS, as the broadcasts.
type ownProvider struct {
	inc *incarnation
}

func (p *ownProvider) StartMember(c *pacluster.Cluster) error {
	// The remote is up: the node can probe and answer from now on.
	p.inc.kindList = c.GetClusterKinds()
	p.inc.up.Store(true)
	p.inc.n.probeNow()
	return nil
}

func (p *ownProvider) StartClient(*pacluster.Cluster) error {
	return errors.New("cluster: the broker's provider has no clients, only members")
}

func (p *ownProvider) Shutdown(bool) error { return nil }

// memberOf is the protoactor member for a node at addr.
func memberOf(id, addr string, kinds []string) *pacluster.Member {
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if strings.Contains(host, ":") {
		// protoactor joins Host and Port with a colon: keep IPv6
		// addresses in their brackets, so Address() is addr again.
		host = "[" + host + "]"
	}
	return &pacluster.Member{Id: id, Host: host, Port: int32(port), Kinds: kinds}
}
