package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"golang.org/x/sys/unix"
)

// relParallel runs n jobs on conc goroutines and returns the first error.
func relParallel(n, conc int, job func(i int) error) error {
	var next atomic.Int64
	var first atomic.Pointer[error]
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil {
					return
				}
				if err := job(i); err != nil {
					first.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}

// relDialFrom connects from 127.0.0.x (x from 2 to 201, by i), so that
// tens of thousands of short connections, each leaving a TIME_WAIT
// behind, do not run out of ephemeral ports.
func relDialFrom(addr string, i int) (*net.TCPConn, error) {
	d := net.Dialer{
		Timeout:   10 * time.Second,
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%200))},
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// TestRelVanishingPeers: peers that vanish mid-frame (FIN or RST after
// half a frame), mid-write (closing with unread echo replies pending,
// plainly and with SO_LINGER 0), and an RST storm of hundreds of
// connections that reset right after sending. Every such connection is
// closed and counted as a peer close or a reset — none as a protocol
// error —, a bystander is served throughout, and connections, fds and
// goroutines return to the baseline.
func TestRelVanishingPeers(t *testing.T) {
	start := time.Now()
	b := relStart(t, "--app", "echo")
	bs := relStartBystander(t, b.Addr)
	bs.waitTrips(t, 10)
	b.metrics(t)
	base := b.levels(t)
	m0 := b.metrics(t)

	n := relPick(100, 1000)
	storm := relPick(500, 5000)
	half := relFrame(bytes.Repeat([]byte{'h'}, 1000))[:500]
	replies := bytes.Repeat(relFrame(bytes.Repeat([]byte{'w'}, 4000)), 64) // 256 KiB of echo to leave unread
	cases := []struct {
		name  string
		n     int
		write []byte
		rst   bool
		wait  bool // wait for the echo to start coming back before vanishing
	}{
		{"mid-frame FIN", n, half, false, false},
		{"mid-frame RST", n, half, true, false},
		{"mid-write FIN", n, replies, false, true},
		{"mid-write RST", n, replies, true, true},
		{"RST storm", storm, relFrame([]byte("storm")), true, false},
	}
	total := 0
	for _, tc := range cases {
		caseStart := time.Now()
		err := relParallel(tc.n, 32, func(i int) error {
			c, err := relDialFrom(b.Addr, i)
			if err != nil {
				return err
			}
			defer c.Close()
			if tc.rst {
				c.SetLinger(0)
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(tc.write); err != nil {
				return fmt.Errorf("%s %d: %v", tc.name, i, err)
			}
			if tc.wait {
				// A reply has started to come back: the broker is
				// writing to this connection when it goes.
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				var one [1]byte
				if _, err := c.Read(one[:]); err != nil {
					return fmt.Errorf("%s %d: no reply: %v", tc.name, i, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		total += tc.n
		bs.waitTrips(t, 5)
		t.Logf("%s × %d: %v", tc.name, tc.n, time.Since(caseStart).Round(time.Millisecond))
	}
	var m map[string]float64
	waitFor(t, "every vanished peer counted", 20*time.Second, func() bool {
		m = b.metrics(t)
		return closedBy(m, "peer")+closedBy(m, "reset")-closedBy(m0, "peer")-closedBy(m0, "reset") >= float64(total)
	})
	peer, reset := closedBy(m, "peer")-closedBy(m0, "peer"), closedBy(m, "reset")-closedBy(m0, "reset")
	if peer+reset != float64(total) {
		t.Errorf("closed as peer +%v, reset +%v: want %d in all", peer, reset, total)
	}
	for _, r := range []string{"protocol_error", "slow_consumer", "local"} {
		if d := closedBy(m, r) - closedBy(m0, r); d != 0 {
			t.Errorf(`closed{reason=%q} +%v, want 0`, r, d)
		}
	}
	end := b.waitBaseline(t, base, 0, 30*time.Second)
	bs.finish(t)
	t.Logf("%d vanished peers: %v peer closes, %v resets; baseline %v; after %v; bystander %d round trips, slowest %v; %v in all",
		total, peer, reset, base, end, bs.trips.Load(), time.Duration(bs.maxRTT.Load()), time.Since(start).Round(time.Millisecond))
}

// TestRelChurn: 5,000 short connections (30,000 with HYDROGEN_LONG=1),
// each one echo round trip and a close, 32 at a time. Each spawns and
// stops the broker's connection and application actors; afterwards the
// broker's goroutines are back at the baseline and its heap in use
// within what protoactor's registry keeps (see below).
func TestRelChurn(t *testing.T) {
	start := time.Now()
	n := relPick(5000, 30000)
	b := relStart(t, "--app", "echo")
	// Warm up: the first connections grow the broker's tables. The
	// largest is protoactor-go's process registry, 1,024 × 32
	// concurrent-map shards, each keeping the storage its first PID gave
	// it: about 12.5 MiB once some 60,000 actors have come and gone,
	// bounded, not a leak. The long run warms up more of it first.
	if err := relParallel(relPick(200, 10000), 32, func(i int) error { return relRoundTrip(b.Addr, i) }); err != nil {
		t.Fatal(err)
	}
	b.waitBaseline(t, relLevels{FDs: 1 << 30, Goroutines: 1 << 20}, 0, 10*time.Second) // none open
	b.metrics(t)
	base := b.levels(t)
	m0 := b.metrics(t)
	churnStart := time.Now()
	if err := relParallel(n, 32, func(i int) error { return relRoundTrip(b.Addr, i) }); err != nil {
		t.Fatal(err)
	}
	took := time.Since(churnStart)
	mid := b.levels(t)
	// Each connection spawns two actors, and protoactor's registry keeps
	// the table of each of its 32,768 shard maps that an actor's name
	// lands in: about 400 bytes a map (12.5 MiB once all are touched),
	// so at most 800 bytes a connection, less as the maps fill. Measured
	// +2.6 MiB for 5,000 (+2.8 race-built), under the 4 MiB that rule
	// gives; the slack is that and 1 MiB of garbage not yet collected.
	end := b.waitBaseline(t, base, float64(n)*800+1<<20, 30*time.Second)
	m := b.metrics(t)
	if d := m["hydrogen_connections_accepted_total"] - m0["hydrogen_connections_accepted_total"]; d != float64(n) {
		t.Errorf("accepted +%v, want %d", d, n)
	}
	if d := closedBy(m, "peer") + closedBy(m, "reset") - closedBy(m0, "peer") - closedBy(m0, "reset"); d != float64(n) {
		t.Errorf("closed +%v, want %d", d, n)
	}
	t.Logf("%d connections, one round trip each, in %v (%.0f/s); baseline %v; just after %v; settled %v; %v in all",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), base, mid, end, time.Since(start).Round(time.Millisecond))
}

// relRoundTrip connects, does one echo round trip and closes.
func relRoundTrip(addr string, i int) error {
	c, err := relDialFrom(addr, i)
	if err != nil {
		return err
	}
	defer c.Close()
	p := fmt.Appendf(nil, "churn %d", i)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(relFrame(p)); err != nil {
		return err
	}
	got, err := newRelReader(c).next(10 * time.Second)
	if err != nil || !bytes.Equal(got, p) {
		return fmt.Errorf("round trip %d: %q, %v", i, got, err)
	}
	return nil
}

// relBrokerFD finds the broker's fd for the connection whose client end
// has local port port: the socket inode from /proc/net/tcp (local
// address the broker's port, remote the client's), then the fd of
// /proc/PID/fd that links to it. It returns -1 if there is none.
func relBrokerFD(t testing.TB, b *relBroker, port int) int {
	t.Helper()
	_, bp, err := net.SplitHostPort(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	brokerPort, _ := strconv.Atoi(bp)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inode := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 {
			continue
		}
		lp, rp := relHexPort(fs[1]), relHexPort(fs[2])
		if lp == brokerPort && rp == port {
			inode = fs[9]
			break
		}
	}
	if inode == "" || inode == "0" {
		return -1
	}
	dir := fmt.Sprintf("/proc/%d/fd", b.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == "socket:["+inode+"]" {
			fd, _ := strconv.Atoi(e.Name())
			return fd
		}
	}
	return -1
}

func relHexPort(addr string) int {
	i := strings.IndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	v, err := strconv.ParseUint(addr[i+1:], 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}

// relNewcomer records what a client connected after the victim receives.
type relNewcomer struct {
	mu     sync.Mutex
	seqs   []uint64
	bad    error
	frames atomic.Int64
}

func (n *relNewcomer) handle(p []byte) {
	_, seq, err := relCheckSeqPayload(p, relReuseSize)
	n.mu.Lock()
	if err != nil && n.bad == nil {
		n.bad = err
	}
	n.seqs = append(n.seqs, seq)
	n.mu.Unlock()
	n.frames.Add(1)
}

const relReuseSize = 1000

// TestRelFDReuse: on --app broadcast, a victim that does not read has
// broadcasts queued for it in the broker (hydrogen_outbound_queued_bytes
// > 0) when it resets; a newcomer connects at once (or, every other
// iteration, as soon as the broker has closed the victim, which makes the
// kernel hand the newcomer the victim's fd number) and must receive only
// whole frames broadcast after the victim left, in order — nothing meant
// for the victim. The test reports how often the newcomer got the
// victim's fd, found through /proc/net/tcp and /proc/PID/fd.
func TestRelFDReuse(t *testing.T) {
	start := time.Now()
	iterations := relPick(30, 300)
	// 6 MiB for the victim: more than the kernel's socket buffers take
	// (tcp_wmem allows the broker's side up to 4 MiB), less than its
	// --max-pending.
	const oldFrames = 6 << 10
	b := relStart(t, "--app", "broadcast", "--max-pending", "16MiB")
	pub := dial(t, b.Addr)
	reader := relDialSeqReceiver(t, b.Addr, 0, 1, relReuseSize)
	relWaitClients(t, b, 2)
	var seq uint64
	send := func(n int) {
		ps := make([][]byte, n)
		for i := range ps {
			ps[i] = relSeqPayload(0, seq, relReuseSize)
			seq++
		}
		if err := pub.SendBatch(ps...); err != nil {
			t.Fatal(err)
		}
	}
	waitReader := func() {
		t.Helper()
		waitFor(t, "the reader to catch up", 20*time.Second, func() bool {
			return reader.got[0].Load() == seq || reader.failure() != nil
		})
		if err := reader.failure(); err != nil {
			t.Fatal(err)
		}
	}
	reused, queuedSeen := [2]int{}, 0
	for it := range iterations {
		victim := relDialRaw(t, b.Addr, 4096)
		relWaitClients(t, b, 3)
		vfd := relBrokerFD(t, b, victim.LocalAddr().(*net.TCPAddr).Port)
		// Queue broadcasts for the victim, then a barrier: once the
		// reader has the barrier, every earlier broadcast has been
		// handed to every queue.
		send(oldFrames)
		send(1)
		waitReader()
		if b.metric(t, "hydrogen_outbound_queued_bytes") > 0 {
			queuedSeen++
		}
		firstNew := seq
		relSetLinger0(t, victim)
		victim.Close()
		wait := it%2 == 1
		if wait {
			relWaitClients(t, b, 2)
			// The /stats requests that wait made take fds of the broker
			// too, the freed one first; wait until the HTTP server has
			// closed its side (slower in a race-built broker), so that
			// the newcomer is the next to be given the victim's fd.
			if vfd >= 0 {
				waitFor(t, "the victim's fd free", 10*time.Second, func() bool {
					_, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", b.Pid, vfd))
					return err != nil
				})
			}
		}
		nc := &relNewcomer{}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		newcomer, err := client.Dial(ctx, b.Addr, client.WithHandler(nc.handle))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for nc.frames.Load() < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("iteration %d: the newcomer received %d frames", it, nc.frames.Load())
			}
			send(1)
			time.Sleep(time.Millisecond)
		}
		waitReader()
		nfd := relBrokerFD(t, b, newcomer.LocalAddr().(*net.TCPAddr).Port)
		nc.mu.Lock()
		seqs, bad := nc.seqs, nc.bad
		nc.mu.Unlock()
		if bad != nil {
			t.Fatalf("iteration %d: the newcomer got a bad frame: %v", it, bad)
		}
		if err := newcomer.Err(); err != nil {
			t.Fatalf("iteration %d: the newcomer's stream broke: %v", it, err)
		}
		for i, s := range seqs {
			if s < firstNew {
				t.Fatalf("iteration %d: the newcomer (fd %d; the victim's was %d) got seq %d, broadcast before it connected (first new %d)", it, nfd, vfd, s, firstNew)
			}
			if i > 0 && s != seqs[i-1]+1 {
				t.Fatalf("iteration %d: the newcomer got seq %d after %d", it, s, seqs[i-1])
			}
		}
		if vfd >= 0 && nfd == vfd {
			reused[it%2]++
		}
		newcomer.Close()
		relWaitClients(t, b, 2)
	}
	m := b.metrics(t)
	if closedBy(m, "reset")+closedBy(m, "peer") < float64(iterations) {
		t.Errorf("victims closed: reset %v, peer %v; want %d", closedBy(m, "reset"), closedBy(m, "peer"), iterations)
	}
	if queuedSeen < iterations/2 {
		t.Errorf("bytes were queued for the victim in only %d of %d iterations: the test did not test queued broadcasts", queuedSeen, iterations)
	}
	if reused[1] < iterations/4 {
		t.Errorf("the newcomer got the victim's fd in only %d of %d waiting iterations: the test did not test fd reuse", reused[1], iterations/2)
	}
	t.Logf("%d iterations: bytes queued for the victim when it reset in %d; the newcomer got the victim's fd in %d of %d immediate and %d of %d waiting iterations; %v in all",
		iterations, queuedSeen, reused[0], (iterations+1)/2, reused[1], iterations/2, time.Since(start).Round(time.Millisecond))
}

// TestRelAcceptEMFILE: the broker's descriptor limit is lowered (prlimit
// on the running process) and connections are opened past it. Accepting
// backs off (counted) instead of spinning — the broker uses little CPU
// while the excess connections wait —, the connections it has are
// served, and once descriptors free up the waiting connections are
// accepted and served.
func TestRelAcceptEMFILE(t *testing.T) {
	start := time.Now()
	b := relStart(t, "--app", "echo")
	keep := dial(t, b.Addr)
	relWaitClients(t, b, 1)
	// The monitor keeps one connection open for this test: a new one
	// could not be accepted while descriptors run out.
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	b.hc = &http.Client{Timeout: 10 * time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	b.metrics(t)
	limit := uint64(b.fds(t) + 20)
	var old unix.Rlimit
	if err := unix.Prlimit(b.Pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Skipf("prlimit on the broker: %v", err)
	}
	if err := unix.Prlimit(b.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: old.Max}, nil); err != nil {
		t.Skipf("prlimit on the broker: %v", err)
	}
	// Fill the table, and 20 more that must wait in the backlog.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 40; i++ {
		c, err := net.DialTimeout("tcp", b.Addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, "accept to back off", 10*time.Second, func() bool {
		return b.metric(t, "hydrogen_accept_backoffs_total") > 0
	})
	// No spinning: CPU over one second while connections wait.
	cpu0 := relCPU(t, b.Pid)
	time.Sleep(time.Second)
	cpu := relCPU(t, b.Pid) - cpu0
	if cpu > 300*time.Millisecond {
		t.Errorf("the broker used %v of CPU in 1 s while accept was failing", cpu)
	}
	// The connection it has is served.
	keep.Send([]byte("still served"))
	if got := string(recv(t, keep)); got != "still served" {
		t.Fatalf("got %q", got)
	}
	// Free descriptors: every waiting connection is accepted and served.
	if err := unix.Prlimit(b.Pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		p := fmt.Appendf(nil, "waited %d", i)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(relFrame(p)); err != nil {
			t.Fatal(err)
		}
		got, err := newRelReader(c).next(10 * time.Second)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("connection %d after the limit was raised: %q, %v", i, got, err)
		}
	}
	st := b.stats(t)
	if st.NumClients != 41 {
		t.Errorf("num_clients %d, want 41", st.NumClients)
	}
	t.Logf("limit %d: %v accept backoffs, %v of CPU in the second of failing accepts; all %d connections served once raised; %v in all",
		limit, b.metric(t, "hydrogen_accept_backoffs_total"), cpu, len(conns), time.Since(start).Round(time.Millisecond))
}

// relCPU is the CPU time, user and system, process pid has used.
func relCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields from the state (field 3): utime is field 14, stime 15.
	ut, _ := strconv.ParseUint(fs[11], 10, 64)
	st, _ := strconv.ParseUint(fs[12], 10, 64)
	const hz = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / hz
}
