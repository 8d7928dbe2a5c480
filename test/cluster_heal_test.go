package test

import (
	"fmt"

	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

// clHealBound is how long after a stall or a cut ends the cluster must be
// OK again. By design the node that was away hears its peers within a
// round trip (a node sends its view at once when something changed),
// decides at once, retires its incarnation and starts another (a few
// ms), and every peer admits the new member id at its first view: well
// under a second (0.2-0.6 s measured). A dial that finds the port closed
// between two incarnations retries for up to 2 s, and one that failed
// sleeps 2 s in protoactor; 10 s leaves room for that and for this shared
// two-core machine.
const clHealBound = 10 * time.Second

// clRig is a cluster of three brokers under numbered traffic: on every
// node one publisher, sending a frame every 2 ms, and two subscribers.
type clRig struct {
	nodes []*clNode
	pubs  []*clClient // pubs[i] on nodes[i]
	subs  []*clClient // subs[2i], subs[2i+1] on nodes[i]
}

func newClRig(t *testing.T, nodes []*clNode) *clRig {
	t.Helper()
	r := &clRig{nodes: nodes}
	t.Cleanup(func() {
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("node %d:\n%s", i, n.Log())
			}
		}
	})
	clWaitOK(t, nodes, 30*time.Second)
	for i, n := range nodes {
		r.pubs = append(r.pubs, clDial(t, 100+i, n.Addr))
		r.subs = append(r.subs, clDial(t, 200+2*i, n.Addr), clDial(t, 201+2*i, n.Addr))
	}
	for _, p := range r.pubs {
		p.run(2 * time.Millisecond)
	}
	// Every node is OK and every client registered: from the next frame
	// on, every frame is due everywhere.
	r.due(t)
	return r
}

// due says that, from the next frame of every publisher on, every
// subscriber must get every frame; it waits for some to be sent, and
// until every subscriber has them all. It returns when they had.
func (r *clRig) due(t *testing.T) time.Time {
	t.Helper()
	from := map[uint32]uint32{}
	for _, p := range r.pubs {
		from[p.id] = p.sent.Load() + 1
		for _, s := range r.subs {
			s.expect(p.id, from[p.id])
		}
	}
	// 50 frames of each (100 ms at 2 ms a frame), then all of them.
	deadline := time.Now().Add(30 * time.Second)
	upTo := map[uint32]uint32{}
	for _, p := range r.pubs {
		for p.sent.Load() < from[p.id]+50 {
			if time.Now().After(deadline) {
				t.Fatalf("publisher %d stuck at %d", p.id, p.sent.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
		upTo[p.id] = p.sent.Load()
	}
	for _, s := range r.subs {
		s.waitFor(t, upTo, 30*time.Second)
	}
	return time.Now()
}

// cutting says that frames may go missing from now on: a node is about to
// be cut off. (report checks that the majority missed none.)
func (r *clRig) cutting() {
	for _, s := range r.subs {
		s.mu.Lock()
		clear(s.due)
		s.mu.Unlock()
	}
}

// skipped is, per subscriber and publisher, the frames that never came.
func (r *clRig) skipped() map[[2]uint32]uint64 {
	out := map[[2]uint32]uint64{}
	for _, s := range r.subs {
		for _, p := range r.pubs {
			out[[2]uint32{s.id, p.id}] = s.skippedFrom(p.id)
		}
	}
	return out
}

// report logs what each subscriber missed since before, and checks that
// the subscribers of nodes 0 and 1 missed nothing of each other's
// publishers: the majority carries on undisturbed.
func (r *clRig) report(t *testing.T, before map[[2]uint32]uint64, what string) (total uint64) {
	t.Helper()
	after := r.skipped()
	var b strings.Builder
	for _, s := range r.subs {
		fmt.Fprintf(&b, " sub %d:", s.id)
		for i, p := range r.pubs {
			k := after[[2]uint32{s.id, p.id}] - before[[2]uint32{s.id, p.id}]
			total += k
			fmt.Fprintf(&b, " %d", k)
			if k != 0 && i < 2 && s.id < 204 {
				t.Errorf("%s: subscriber %d (node %d) missed %d frames of publisher %d (node %d)", what, s.id, (s.id-200)/2, k, p.id, i)
			}
		}
	}
	t.Logf("%s: frames missed per subscriber (of the publishers of nodes 0, 1, 2):%s", what, b.String())
	return total
}

// clSignal sends sig to a node's process.
func clSignal(t *testing.T, n *clNode, sig syscall.Signal) {
	t.Helper()
	if err := n.Cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// TestClusterHealsAfterStall stops one node of three with SIGSTOP for 1, 3
// and 10 s (HYDROGEN_LONG=1: also 30 s, then all four again) under
// numbered traffic, and resumes it. Within clHealBound every node is OK
// again, and from then on every subscriber on every node receives every
// publisher's frames, in order; the two nodes that ran on lose nothing
// between them, and a 1 s stall, shorter than a peer waits before it drops
// a node (DeadAfter, 3 s), loses nothing at all.
func TestClusterHealsAfterStall(t *testing.T) {
	if testing.Short() {
		t.Skip("stalls a node of a cluster: a minute")
	}
	stalls := []time.Duration{time.Second, 3 * time.Second, 10 * time.Second}
	if os.Getenv("HYDROGEN_LONG") == "1" {
		stalls = append(stalls, 30*time.Second, time.Second, 3*time.Second, 10*time.Second, 30*time.Second)
	}
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	var nodes []*clNode
	for _, a := range addrs {
		nodes = append(nodes, clStart(t, a, addrs))
	}
	// Resume a stopped node before it is stopped for good.
	t.Cleanup(func() { nodes[2].Cmd.Process.Signal(syscall.SIGCONT) })
	r := newClRig(t, nodes)
	rejoins := `hydrogen_cluster_rejoins_total{cluster="e2e"}`
	for _, d := range stalls {
		before, rejoined := r.skipped(), nodes[2].metric(rejoins)
		r.cutting()
		clSignal(t, nodes[2], syscall.SIGSTOP)
		time.Sleep(d) // the stall itself
		clSignal(t, nodes[2], syscall.SIGCONT)
		resumed := time.Now()
		ok := clWaitOK(t, nodes, clHealBound+20*time.Second)
		delivered := r.due(t)
		heal := ok.Sub(resumed)
		missed := r.report(t, before, fmt.Sprintf("stall %v", d))
		again := nodes[2].metric(rejoins) - rejoined
		t.Logf("stall %v: OK again %v after SIGCONT, every frame due delivered %v after; node 2 rejoined %v times",
			d, heal.Round(time.Millisecond), delivered.Sub(resumed).Round(time.Millisecond), again)
		if heal > clHealBound {
			t.Errorf("stall %v: the cluster was OK again only %v after SIGCONT; want %v at most", d, heal, clHealBound)
		}
		if d < 3*time.Second && (missed != 0 || again != 0) {
			t.Errorf("stall %v, under DeadAfter: %d frames missed, %v rejoins; want none", d, missed, again)
		}
		if d >= 10*time.Second && again < 1 {
			t.Errorf("stall %v, past DeadAfter: node 2 did not rejoin", d)
		}
	}
	if nodes[2].countLogged("cluster: the cluster no longer admits this node; rejoining as a new member") == 0 {
		t.Errorf("node 2 never said it rejoined:\n%s", nodes[2].Log())
	}
}

// tcpProxy forwards connections to a target, and can cut them: hold
// (forward nothing, either way, until healed, as a network that drops
// every packet does to TCP) or drop (close every connection, and every
// new one at once).
type tcpProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cond    *sync.Cond
	held    bool
	refuse  bool
	closed  bool
	conns   map[net.Conn]bool
	workers sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	p.workers.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.workers.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse || p.closed
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			continue
		}
		p.conns[c], p.conns[u] = true, true
		p.workers.Add(2)
		p.mu.Unlock()
		go p.pump(u, c)
		go p.pump(c, u)
	}
}

// pump copies src to dst, holding each chunk while the proxy holds.
func (p *tcpProxy) pump(dst, src net.Conn) {
	defer p.workers.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
		src.Close()
		dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.held && !p.closed {
				p.cond.Wait()
			}
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut cuts the node off: "hold" or "drop".
func (p *tcpProxy) cut(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if mode == "hold" {
		p.held = true
		return
	}
	p.refuse = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) heal() {
	p.mu.Lock()
	p.held, p.refuse = false, false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.workers.Wait()
}

// TestClusterHealsAfterPartition cuts a running node off, without
// stopping it: every node is reached through a TCP proxy the test holds
// (--cluster-advertise), and the cut proxy forwards nothing to its node
// ("hold") or closes every connection ("drop"). So the node hears nobody,
// while the others still hear it. While cut off it says so (a warning,
// /healthz 503 "cluster isolated", cluster.state "isolated",
// hydrogen_cluster_state{state="isolated"}), the others stay OK and lose
// nothing between them; healed, it rejoins within clHealBound, and every
// frame due from then on arrives everywhere.
func TestClusterHealsAfterPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("cuts a node of a cluster off: 30 s")
	}
	for _, mode := range []string{"hold", "drop"} {
		t.Run(mode, func(t *testing.T) {
			listen := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
			var proxies []*tcpProxy
			var advertised []string
			for _, l := range listen {
				p := newTCPProxy(t, l)
				proxies = append(proxies, p)
				advertised = append(advertised, p.addr())
			}
			var nodes []*clNode
			for i, l := range listen {
				nodes = append(nodes, clStart(t, l, advertised, "--cluster-advertise", advertised[i]))
			}
			r := newClRig(t, nodes)
			before := r.skipped()

			r.cutting()
			proxies[2].cut(mode)
			cut := time.Now()
			deadline := cut.Add(3*time.Second + clHealBound)
			for {
				code, body := nodes[2].get("/healthz")
				if code == http.StatusServiceUnavailable && body == "cluster isolated" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the cut-off node's /healthz is %d %q %v after the cut", code, body, time.Since(cut))
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("%s: the node knew it was cut off %v after the cut", mode, time.Since(cut).Round(time.Millisecond))
			for i, n := range nodes[:2] {
				if code, body := n.get("/healthz"); code != http.StatusOK {
					t.Errorf("node %d, not cut off: /healthz %d %q", i, code, body)
				}
			}
			if v, err := nodes[2].view(); err != nil || v.State != "isolated" {
				t.Errorf("the cut-off node's cluster object: %+v %v", v, err)
			}
			if v := nodes[2].metric(`hydrogen_cluster_state{cluster="e2e",state="isolated"}`); v != 1 {
				t.Errorf(`hydrogen_cluster_state{state="isolated"} is %v`, v)
			}
			if v := nodes[2].metric(`hydrogen_cluster_state{cluster="e2e",state="ok"}`); v != 0 {
				t.Errorf(`hydrogen_cluster_state{state="ok"} is %v`, v)
			}
			nodes[2].logged(t, "cluster: cut off from most of the cluster; this node's clients get only its own broadcasts", time.Second)
			// The majority is undisturbed all along.
			time.Sleep(time.Second)

			proxies[2].heal()
			healed := time.Now()
			ok := clWaitOK(t, nodes, clHealBound+20*time.Second)
			delivered := r.due(t)
			r.report(t, before, mode)
			t.Logf("%s: OK again %v after the cut healed, every frame due delivered %v after; node 2 rejoined %v times", mode,
				ok.Sub(healed).Round(time.Millisecond), delivered.Sub(healed).Round(time.Millisecond),
				nodes[2].metric(`hydrogen_cluster_rejoins_total{cluster="e2e"}`))
			if d := ok.Sub(healed); d > clHealBound {
				t.Errorf("OK again only %v after the cut healed; want %v at most", d, clHealBound)
			}
			for i, n := range nodes[:2] {
				if v := n.metric(`hydrogen_cluster_rejoins_total{cluster="e2e"}`); v != 0 {
					t.Errorf("node %d, never cut off, rejoined %v times", i, v)
				}
			}
		})
	}
}
