package test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

// clStart runs a broadcast broker that is node addr of a cluster.
func clStart(t testing.TB, addr string, peers []string) *proc {
	t.Helper()
	return startBroker(t, "--app", "broadcast", "--cluster", "e2e", "--cluster-addr", addr, "--peers", strings.Join(peers, ","))
}

// clMembers asks a broker, over the 0x0D request, which members its
// cluster has.
func clMembers(t testing.TB, p *proc) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Stats(ctx, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		Name    string `json:"name"`
		Members []struct {
			Address string `json:"address"`
			Clients *int64 `json:"clients"`
		} `json:"members"`
	}
	raw, ok := st.Extra["cluster"]
	if !ok {
		t.Fatalf("no cluster object in the reply: %s", st.Raw)
	}
	if err := json.Unmarshal(raw, &cl); err != nil {
		t.Fatal(err)
	}
	if cl.Name != "e2e" {
		t.Fatalf("cluster name %q", cl.Name)
	}
	var out []string
	for _, m := range cl.Members {
		out = append(out, m.Address)
	}
	return out
}

// clWaitMembers waits until every broker's cluster is exactly addrs.
func clWaitMembers(t testing.TB, procs []*proc, addrs []string) {
	t.Helper()
	for _, p := range procs {
		waitForEvery(t, fmt.Sprintf("%s to see members %v", p.Addr, addrs), 30*time.Second, 100*time.Millisecond, func() bool {
			ms := clMembers(t, p)
			if len(ms) != len(addrs) {
				return false
			}
			for _, a := range addrs {
				found := false
				for _, m := range ms {
					found = found || m == a
				}
				if !found {
					return false
				}
			}
			return true
		})
	}
}

// clClient is one client of the test: it publishes frames stamped with
// its id and a sequence number, and checks that it receives every other
// client's frames in order, without gaps.
type clClient struct {
	id int
	c  *client.Client

	mu   sync.Mutex
	last map[uint32]uint32 // sender → last sequence number
	errs []string
	done chan struct{}
}

func clDial(t testing.TB, id int, addr string) *clClient {
	t.Helper()
	c := dial(t, addr)
	cc := &clClient{id: id, c: c, last: map[uint32]uint32{}, done: make(chan struct{})}
	go cc.read()
	// Runs before dial's own Close (cleanups run last first); Close may
	// be called twice.
	t.Cleanup(func() { c.Close(); <-cc.done })
	return cc
}

func (cc *clClient) read() {
	defer close(cc.done)
	for {
		p, err := cc.c.Recv(context.Background())
		if err != nil {
			return
		}
		if len(p) < 8 {
			continue // a telemetry reply, or a stranger's frame
		}
		from, seq := binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])
		cc.mu.Lock()
		if int(from) == cc.id && len(cc.errs) < 10 {
			cc.errs = append(cc.errs, fmt.Sprintf("got its own frame %d", seq))
		}
		if last, ok := cc.last[from]; ok && seq != last+1 && len(cc.errs) < 10 {
			cc.errs = append(cc.errs, fmt.Sprintf("from %d: %d after %d", from, seq, last))
		}
		cc.last[from] = seq
		cc.mu.Unlock()
	}
}

// publish sends sequence numbers from to to, stamped with the client's id.
func (cc *clClient) publish(t testing.TB, from, to uint32) {
	p := make([]byte, 64)
	binary.BigEndian.PutUint32(p, uint32(cc.id))
	for seq := from; seq <= to; seq++ {
		binary.BigEndian.PutUint32(p[4:], seq)
		if err := cc.c.Send(p); err != nil {
			t.Errorf("client %d: send %d: %v", cc.id, seq, err)
			return
		}
	}
}

// expect waits until the client has every sender's frames up to to, and
// fails on any reordering or gap seen on the way.
func (cc *clClient) expect(t testing.TB, senders []*clClient, to uint32) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cc.mu.Lock()
		errs := append([]string(nil), cc.errs...)
		missing := ""
		for _, s := range senders {
			if s.id != cc.id && cc.last[uint32(s.id)] != to {
				missing = fmt.Sprintf("from client %d: at %d of %d", s.id, cc.last[uint32(s.id)], to)
				break
			}
		}
		cc.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("client %d: %v", cc.id, errs)
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client %d: %s", cc.id, missing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func clRound(t testing.TB, clients []*clClient, from, to uint32) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.publish(t, from, to)
		}()
	}
	wg.Wait()
	for _, c := range clients {
		c.expect(t, clients, to)
	}
}

// TestClusterOfThree runs three brokers as one cluster: every client, on
// any node, receives every other client's broadcasts gapless and in
// order; a killed node leaves the others serving; restarted, it rejoins
// and receives again.
func TestClusterOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("three brokers forming a cluster: seconds")
	}
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	procs := make([]*proc, 3)
	for i := range procs {
		procs[i] = clStart(t, addrs[i], addrs)
	}
	clWaitMembers(t, procs, addrs)

	// Two clients on every node.
	var clients []*clClient
	for i := range 6 {
		clients = append(clients, clDial(t, i+1, procs[i/2].Addr))
	}
	// Every stream must be registered before the first frame, or it
	// misses the start of the round.
	time.Sleep(200 * time.Millisecond)
	const n = 2000
	clRound(t, clients, 1, n)

	// Kill the third node: the others carry on between them.
	procs[2].Stop(syscall.SIGKILL, 10*time.Second)
	clRound(t, clients[:4], n+1, 2*n)
	clWaitMembers(t, procs[:2], addrs[:2])
	clRound(t, clients[:4], 2*n+1, 3*n)

	// Restart it at the same cluster address: it rejoins and receives.
	procs[2] = clStart(t, addrs[2], addrs)
	clWaitMembers(t, procs, addrs)
	restarted := []*clClient{clDial(t, 7, procs[2].Addr), clDial(t, 8, procs[2].Addr)}
	time.Sleep(200 * time.Millisecond)
	for _, c := range restarted {
		c.publish(t, 1, 3*n) // catch up to the others' numbering
	}
	all := append(clients[:4:4], restarted...)
	for _, c := range clients[:4] {
		c.expect(t, restarted, 3*n)
	}
	clRound(t, all, 3*n+1, 4*n)
}

// BenchmarkClusterFanout measures broadcast deliveries per second at real
// clients: one publisher on the first node sends 64-byte frames, ten
// subscribers on each other node count them (on the one node, for the
// single-node figure beside it). The publisher keeps at most clWindow
// frames ahead of the slowest subscriber, so nothing is dropped; every
// broker is its own process, all on this machine.
//
//	go test -run '^$' -bench ClusterFanout -benchtime 200000x ./test/
func BenchmarkClusterFanout(b *testing.B) {
	for _, nodes := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) { clBenchFanout(b, nodes) })
	}
}

const clWindow = 4096

func clBenchFanout(b *testing.B, nodes int) {
	var procs []*proc
	if nodes == 1 {
		procs = []*proc{startBroker(b, "--app", "broadcast")}
	} else {
		addrs := make([]string, nodes)
		for i := range addrs {
			addrs[i] = testnet.ClusterAddr(b)
		}
		for i := range addrs {
			procs = append(procs, clStart(b, addrs[i], addrs))
		}
		clWaitMembers(b, procs, addrs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs []*atomic.Int64
	subNodes := procs[1:]
	if nodes == 1 {
		subNodes = procs
	}
	var wg sync.WaitGroup
	for _, p := range subNodes {
		for range 10 {
			c, err := client.Dial(ctx, p.Addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			n := new(atomic.Int64)
			subs = append(subs, n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, err := c.Recv(ctx); err != nil {
						return
					}
					n.Add(1)
				}
			}()
		}
	}
	pub, err := client.Dial(ctx, procs[0].Addr)
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	time.Sleep(300 * time.Millisecond) // every stream registered
	slowest := func() int64 {
		m := subs[0].Load()
		for _, s := range subs[1:] {
			m = min(m, s.Load())
		}
		return m
	}
	frame := make([]byte, 64)
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = frame
	}
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for sent < b.N {
		for int64(sent)-slowest() > clWindow {
			time.Sleep(20 * time.Microsecond)
		}
		k := min(len(batch), b.N-sent)
		if err := pub.SendBatch(batch[:k]...); err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	deadline := time.Now().Add(60 * time.Second)
	for slowest() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("subscribers stalled at %d of %d", slowest(), b.N)
		}
		time.Sleep(50 * time.Microsecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*len(subs))/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.N)/el.Seconds(), "frames/s")
}
