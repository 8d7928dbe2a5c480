package test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

// clNode is one broker of a test cluster, with its monitoring endpoint.
type clNode struct {
	*proc
	t       testing.TB
	cluster string // its cluster address, as the other nodes reach it
	http    string // its monitoring address
}

// clStart runs a broadcast broker that is node addr of the cluster "e2e"
// with the given peers, serving HTTP monitoring on a port of its own.
func clStart(t testing.TB, addr string, peers []string, extra ...string) *clNode {
	t.Helper()
	args := append([]string{"--app", "broadcast", "--http-addr", "127.0.0.1:0",
		"--cluster", "e2e", "--cluster-addr", addr, "--peers", strings.Join(peers, ",")}, extra...)
	n := &clNode{proc: startBroker(t, args...), t: t, cluster: addr}
	for i, a := range extra {
		if a == "--cluster-advertise" && i+1 < len(extra) {
			n.cluster = extra[i+1]
		}
	}
	n.http = n.logged(t, "http listening", 10*time.Second)["addr"].(string)
	return n
}

// logged waits until the broker has logged a record with message msg,
// and returns it.
func (n *clNode) logged(t testing.TB, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for line := range strings.SplitSeq(n.Log(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
				return rec
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker did not log %q within %v:\n%s", msg, timeout, n.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLogged is how many records with message msg the broker has logged.
func (n *clNode) countLogged(msg string) int {
	k := 0
	for line := range strings.SplitSeq(n.Log(), "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			k++
		}
	}
	return k
}

var clHTTP = &http.Client{Timeout: 2 * time.Second}

// get fetches path from the node's monitoring endpoint; a node that does
// not answer (stopped) gives status 0.
func (n *clNode) get(path string) (int, string) {
	resp, err := clHTTP.Get("http://" + n.http + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// clView is the cluster object of a node's /stats.
type clView struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Members []struct {
		Address string `json:"address"`
		Clients *int64 `json:"clients"`
	} `json:"members"`
}

func (n *clNode) view() (clView, error) {
	code, body := n.get("/stats")
	if code != http.StatusOK {
		return clView{}, fmt.Errorf("/stats: %d %s", code, body)
	}
	var doc struct {
		NumClients int64   `json:"num_clients"`
		Cluster    *clView `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return clView{}, err
	}
	if doc.Cluster == nil {
		return clView{}, fmt.Errorf("no cluster object in /stats: %s", body)
	}
	return *doc.Cluster, nil
}

// metric reads one sample of /metrics: the line that starts with
// name{labels} (or name alone); -1 when there is none.
func (n *clNode) metric(series string) float64 {
	code, body := n.get("/metrics")
	if code != http.StatusOK {
		return -1
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// clOK reports whether every node is OK with exactly the given nodes as
// members: /healthz answers 200 "ok" and /stats lists them.
func clOK(nodes []*clNode) bool {
	for _, n := range nodes {
		if code, body := n.get("/healthz"); code != http.StatusOK || body != "ok" {
			return false
		}
		v, err := n.view()
		if err != nil || v.State != "ok" || len(v.Members) != len(nodes) {
			return false
		}
		for _, o := range nodes {
			found := false
			for _, m := range v.Members {
				found = found || m.Address == o.cluster
			}
			if !found {
				return false
			}
		}
	}
	return true
}

// clWaitOK waits until every node is OK with the given nodes as members,
// all in one pass, and returns when that was seen.
func clWaitOK(t testing.TB, nodes []*clNode, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !clOK(nodes) {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, n := range nodes {
				code, body := n.get("/healthz")
				v, err := n.view()
				fmt.Fprintf(&b, "%s (cluster %s): /healthz %d %q, %+v %v\n", n.Addr, n.cluster, code, body, v, err)
			}
			t.Fatalf("the cluster was not OK within %v:\n%s", timeout, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Now()
}

// clClient is a client of the tests: it may publish frames numbered per
// client, and checks every frame it receives. A publisher's frames must
// never repeat or go back; frames may go missing (counted) only before
// the number the test said is due from that publisher (expect): from
// there on, every one arrives, in order.
type clClient struct {
	id   uint32
	c    *client.Client
	sent atomic.Uint32 // the last number published

	mu      sync.Mutex
	last    map[uint32]uint32 // publisher → last number received
	due     map[uint32]uint32 // publisher → every number from this one must arrive
	skipped map[uint32]uint64 // publisher → numbers that never arrived
	got     uint64
	odd     map[string]bool // payloads that are not numbered frames
	errs    []string

	done   chan struct{} // the reader has ended
	stop   chan struct{} // ends stream
	stream sync.WaitGroup
}

// clDial connects a client to a broker and makes sure the broker has
// registered its stream (a telemetry round trip) before it returns: every
// broadcast from then on reaches it.
func clDial(t testing.TB, id int, addr string) *clClient {
	t.Helper()
	c := dial(t, addr)
	cc := &clClient{id: uint32(id), c: c, last: map[uint32]uint32{}, due: map[uint32]uint32{},
		skipped: map[uint32]uint64{}, odd: map[string]bool{}, done: make(chan struct{}), stop: make(chan struct{})}
	go cc.read()
	// Runs before dial's own Close (cleanups run last first); Close may
	// be called twice.
	t.Cleanup(func() { cc.halt(); c.Close(); <-cc.done })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Stats(ctx, 0.001); err != nil {
		t.Fatalf("client %d: %v", id, err)
	}
	return cc
}

func (cc *clClient) read() {
	defer close(cc.done)
	for {
		p, err := cc.c.Recv(context.Background())
		if err != nil {
			return
		}
		if len(p) != clFrameSize {
			cc.mu.Lock()
			cc.odd[string(p)] = true
			cc.mu.Unlock()
			continue
		}
		cc.frame(binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:]))
	}
}

func (cc *clClient) frame(from, seq uint32) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.got++
	last, seen := cc.last[from]
	due, hasDue := cc.due[from]
	switch {
	case from == cc.id:
		cc.fail("got its own frame %d", seq)
	case seen && seq <= last:
		cc.fail("from %d: %d after %d", from, seq, last)
	case !seen && hasDue && seq > due:
		cc.fail("from %d: the first frame is %d; every one from %d was due", from, seq, due)
	case seen && seq > last+1:
		if hasDue && seq-1 >= due {
			cc.fail("from %d: %d..%d missing; every one from %d was due", from, last+1, seq-1, due)
		}
		cc.skipped[from] += uint64(seq - last - 1)
	}
	cc.last[from] = seq
}

func (cc *clClient) fail(format string, a ...any) {
	if len(cc.errs) < 10 {
		cc.errs = append(cc.errs, fmt.Sprintf("client %d: ", cc.id)+fmt.Sprintf(format, a...))
	}
}

// expect says that every frame of publisher from seq on must arrive.
func (cc *clClient) expect(publisher, seq uint32) {
	cc.mu.Lock()
	cc.due[publisher] = seq
	cc.mu.Unlock()
}

// skippedFrom is how many of publisher's frames never arrived.
func (cc *clClient) skippedFrom(publisher uint32) uint64 {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.skipped[publisher]
}

// clFrameSize is the size of a numbered frame: the publisher's id, the
// number, and padding.
const clFrameSize = 16

// publish sends numbers from to to, stamped with the client's id.
func (cc *clClient) publish(from, to uint32) error {
	p := make([]byte, clFrameSize)
	binary.BigEndian.PutUint32(p, cc.id)
	for seq := from; seq <= to; seq++ {
		binary.BigEndian.PutUint32(p[4:], seq)
		if err := cc.c.Send(p); err != nil {
			return fmt.Errorf("client %d: send %d: %w", cc.id, seq, err)
		}
		cc.sent.Store(seq)
	}
	return nil
}

// run publishes the next number every interval until halt, in a goroutine
// of its own. A send that fails ends it (the broker went away).
func (cc *clClient) run(interval time.Duration) {
	cc.stream.Add(1)
	go func() {
		defer cc.stream.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-cc.stop:
				return
			case <-t.C:
			}
			if cc.publish(cc.sent.Load()+1, cc.sent.Load()+1) != nil {
				return
			}
		}
	}()
}

// halt ends run, and waits for it. It may be called more than once.
func (cc *clClient) halt() {
	select {
	case <-cc.stop:
	default:
		close(cc.stop)
	}
	cc.stream.Wait()
}

// waitFor waits until the client has received every publisher's frames up
// to the number given for it, and fails on any error seen on the way.
func (cc *clClient) waitFor(t testing.TB, upTo map[uint32]uint32, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		cc.mu.Lock()
		errs := append([]string(nil), cc.errs...)
		missing := ""
		for from, to := range upTo {
			if from != cc.id && cc.last[from] < to {
				missing = fmt.Sprintf("from client %d: at %d of %d", from, cc.last[from], to)
				break
			}
		}
		cc.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("%v", errs)
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

// clRound has every client publish from to to, all at once, and waits
// until every client has every other's frames, all of them due.
func clRound(t testing.TB, clients []*clClient, from, to uint32) {
	t.Helper()
	upTo := map[uint32]uint32{}
	for _, c := range clients {
		upTo[c.id] = to
		for _, o := range clients {
			if o != c {
				c.expect(o.id, from)
			}
		}
	}
	errs := make(chan error, len(clients))
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.publish(from, to)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		c.waitFor(t, upTo, 30*time.Second)
	}
}

// TestClusterOfThree runs three brokers as one cluster: once every node is
// OK, every client, on any node, receives every other client's broadcasts
// from the first, gapless and in order; a killed node leaves the others
// serving; restarted, it rejoins, and once it is OK, its clients receive
// and are received again.
func TestClusterOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("three brokers forming a cluster: seconds")
	}
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	nodes := make([]*clNode, 3)
	for i := range nodes {
		nodes[i] = clStart(t, addrs[i], addrs)
	}
	clWaitOK(t, nodes, 30*time.Second)

	// Two clients on every node.
	var clients []*clClient
	for i := range 6 {
		clients = append(clients, clDial(t, i+1, nodes[i/2].Addr))
	}
	const n = 2000
	clRound(t, clients, 1, n)

	// Kill the third node: the others carry on between them.
	nodes[2].Stop(syscall.SIGKILL, 10*time.Second)
	clRound(t, clients[:4], n+1, 2*n)
	clWaitOK(t, nodes[:2], 30*time.Second)
	clRound(t, clients[:4], 2*n+1, 3*n)

	// Restart it at the same cluster address: once all are OK, its
	// clients get every frame, and every frame of theirs arrives.
	nodes[2] = clStart(t, addrs[2], addrs)
	clWaitOK(t, nodes, 30*time.Second)
	restarted := []*clClient{clDial(t, 7, nodes[2].Addr), clDial(t, 8, nodes[2].Addr)}
	for _, c := range restarted {
		if err := c.publish(1, 3*n); err != nil { // catch up to the others' numbering
			t.Fatal(err)
		}
	}
	upTo := map[uint32]uint32{7: 3 * n, 8: 3 * n}
	for _, c := range clients[:4] {
		c.expect(7, 1)
		c.expect(8, 1)
		c.waitFor(t, upTo, 30*time.Second)
	}
	all := append(clients[:4:4], restarted...)
	clRound(t, all, 3*n+1, 4*n)
}

// BenchmarkClusterFanout measures broadcast deliveries per second at real
// clients: one publisher on the first node sends 64-byte frames, ten
// subscribers on each other node receive them (on the one node, for the
// single-node figure beside it). The publisher keeps at most clWindow
// frames ahead of the slowest subscriber, so nothing is dropped; every
// broker is its own process, all on this machine. Every subscriber checks
// that it gets every frame once and in order; a frame lost, repeated or
// out of order fails the benchmark.
//
//	go test -run '^$' -bench ClusterFanout -benchtime 200000x ./test/
func BenchmarkClusterFanout(b *testing.B) {
	for _, nodes := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) { clBenchFanout(b, nodes) })
	}
}

const clWindow = 4096

// fanSub is one subscriber of BenchmarkClusterFanout.
type fanSub struct {
	n   atomic.Int64 // frames received
	bad atomic.Int64 // frames out of order, repeated or after a gap
}

func clBenchFanout(b *testing.B, nodes int) {
	var addrs []string
	if nodes == 1 {
		addrs = []string{startBroker(b, "--app", "broadcast").Addr}
	} else {
		cl := make([]string, nodes)
		for i := range cl {
			cl[i] = testnet.ClusterAddr(b)
		}
		var procs []*clNode
		for i := range cl {
			procs = append(procs, clStart(b, cl[i], cl))
		}
		clWaitOK(b, procs, 30*time.Second)
		for _, p := range procs {
			addrs = append(addrs, p.Addr)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs []*fanSub
	subAddrs := addrs[1:]
	if nodes == 1 {
		subAddrs = addrs
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, a := range subAddrs {
		for range 10 {
			c, err := client.Dial(ctx, a)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			// Registered before the first frame (see clDial).
			if _, err := c.Stats(ctx, 0.001); err != nil {
				b.Fatal(err)
			}
			s := new(fanSub)
			subs = append(subs, s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := uint64(0)
				for {
					p, err := c.Recv(ctx)
					if err != nil {
						return
					}
					if seq := binary.BigEndian.Uint64(p); seq != next {
						s.bad.Add(1)
						next = seq
					}
					next++
					s.n.Add(1)
				}
			}()
		}
	}
	pub, err := client.Dial(ctx, addrs[0])
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	slowest := func() int64 {
		m := subs[0].n.Load()
		for _, s := range subs[1:] {
			m = min(m, s.n.Load())
		}
		return m
	}
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = make([]byte, 64)
	}
	b.ResetTimer()
	start := time.Now()
	sent := 0
	for sent < b.N {
		for int64(sent)-slowest() > clWindow {
			time.Sleep(20 * time.Microsecond)
		}
		k := min(len(batch), b.N-sent)
		for i := range k {
			binary.BigEndian.PutUint64(batch[i], uint64(sent+i))
		}
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
	for i, s := range subs {
		if bad, n := s.bad.Load(), s.n.Load(); bad != 0 || n != int64(b.N) {
			b.Fatalf("subscriber %d: %d frames of %d, %d out of order, repeated or after a gap", i, n, b.N, bad)
		}
	}
	b.ReportMetric(float64(b.N*len(subs))/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.N)/el.Seconds(), "frames/s")
}
