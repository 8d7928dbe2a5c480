package test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// injector is what the security issue measured: a program that is not a
// member, speaking protoactor remote to a node's cluster port. It has an
// actor system and a remote of its own, on a port of its own.
type injector struct {
	sys  *actor.ActorSystem
	r    *remote.Remote
	addr string
	gone chan string // addresses its remote gave up on
}

// The injector is made once for the test process and stopped by
// TestMain: protoactor's remote sets grpc's global logger each time one
// starts, which races with the goroutines a stopped remote's connections
// leave running for a moment.
var injectorOnce struct {
	sync.Once
	inj *injector
}

// newInjector is the test process's injector, started at the first call;
// addresses its remote gave up on before are forgotten.
func newInjector(t *testing.T) *injector {
	t.Helper()
	injectorOnce.Do(func() {
		addr := testnet.ClusterAddr(t)
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
		rcfg := remote.Configure(host, p, remote.WithAdvertisedHost(addr))
		rcfg.MaxRetryCount = 1
		r := remote.NewRemote(sys, rcfg)
		inj := &injector{sys: sys, r: r, addr: addr, gone: make(chan string, 16)}
		sys.EventStream.Subscribe(func(evt any) {
			if e, ok := evt.(*remote.EndpointTerminatedEvent); ok {
				select {
				case inj.gone <- e.Address:
				default:
				}
			}
		})
		r.Start()
		injectorOnce.inj = inj
	})
	inj := injectorOnce.inj
	if inj == nil {
		t.Fatal("the injector could not be made (see the first test that asked for it)")
	}
	for {
		select {
		case <-inj.gone:
			continue
		default:
		}
		return inj
	}
}

// stopInjector stops the injector, if one was made.
func stopInjector() {
	if inj := injectorOnce.inj; inj != nil {
		inj.r.Shutdown(true)
		inj.sys.Shutdown()
	}
}

// batch is a broadcast batch as the nodes encode it: frames from one
// publisher, then the sending node, batch number and first frame number.
func batch(payloads ...string) *wrapperspb.BytesValue {
	var b []byte
	for _, p := range payloads {
		var f []byte
		f = protowire.AppendTag(f, 1, protowire.VarintType)
		f = protowire.AppendVarint(f, 7)
		f = protowire.AppendTag(f, 2, protowire.BytesType)
		f = protowire.AppendBytes(f, []byte(p))
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, f)
	}
	for num, v := range []uint64{1: 99, 2: 1, 3: 0} {
		if num > 0 {
			b = protowire.AppendTag(b, protowire.Number(num), protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		}
	}
	return &wrapperspb.BytesValue{Value: b}
}

// memberID is a node's member id, from its log.
func memberID(t *testing.T, n *clNode) string {
	t.Helper()
	id, _ := n.logged(t, "cluster node started", 10*time.Second)["id"].(string)
	if id == "" {
		t.Fatalf("no member id in the log:\n%s", n.Log())
	}
	return id
}

// sawPayload reports whether a client got a frame containing s.
func sawPayload(cc *clClient, s string) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.odd[s]
}

// TestClusterRefusesNonMembers replays the injection of the security
// issue against a node of a two-node cluster, without TLS: batches sent
// to its receiver by a remote that is not a member (no sender, its own
// address as the sender, a member's address with a member id that is not
// that member's) are refused: never delivered to a client, counted
// (hydrogen_cluster_refused_total) and logged once. The issue's own
// target, the receiver's old fixed name, no longer exists.
func TestClusterRefusesNonMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster: seconds")
	}
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	a, b := clStart(t, addrs[0], addrs), clStart(t, addrs[1], addrs)
	clWaitOK(t, []*clNode{a, b}, 30*time.Second)
	sub := clDial(t, 1, a.Addr)
	inj := newInjector(t)
	id := memberID(t, a)
	target := actor.NewPID(a.cluster, "hydrogen-broadcast-"+id)

	inj.sys.Root.Send(target, batch("injected-1"))
	inj.sys.Root.RequestWithCustomSender(target, batch("injected-2"), actor.NewPID(inj.addr, "intruder"))
	inj.sys.Root.RequestWithCustomSender(target, batch("injected-3"), actor.NewPID(b.cluster, "hydrogen-broadcast-notbsid"))
	inj.sys.Root.Send(actor.NewPID(a.cluster, "hydrogen-broadcast"), batch("injected-4"))
	refused := `hydrogen_cluster_refused_total{cluster="e2e"}`
	waitForEvery(t, "three refusals", 10*time.Second, 20*time.Millisecond, func() bool { return a.metric(refused) >= 3 })
	if v := a.metric(refused); v != 3 {
		t.Errorf("%s %v, want 3", refused, v)
	}
	// Anything delivered would be queued before a frame broadcast on the
	// node after the refusals were counted.
	marker := clDial(t, 2, a.Addr)
	if err := marker.publish(1, 1); err != nil {
		t.Fatal(err)
	}
	sub.expect(2, 1)
	sub.waitFor(t, map[uint32]uint32{2: 1}, 10*time.Second)
	for i := 1; i <= 4; i++ {
		if p := fmt.Sprintf("injected-%d", i); sawPayload(sub, p) {
			t.Errorf("a client got %q", p)
		}
	}
	if n := a.countLogged("cluster: refused broadcast batches from a sender that is not a member of this cluster"); n != 1 {
		t.Errorf("%d refusal lines logged, want 1 (at most one every 10 s):\n%s", n, a.Log())
	}
	if v := b.metric(refused); v != 0 {
		t.Errorf("the other node refused %v", v)
	}
}

// clTLS starts a TLS node of the cluster "e2e" with the given files.
func clTLS(t *testing.T, addr string, peers []string, cert, key, ca string) *clNode {
	t.Helper()
	return clStart(t, addr, peers, "--cluster-tls-cert", cert, "--cluster-tls-key", key, "--cluster-tls-ca", ca)
}

// TestClusterTLS runs three nodes with mutual TLS: two with certificates
// of the cluster's CA, one with a certificate of another CA, listed as
// their peer. The two form a cluster and carry broadcasts; the third
// never joins and says it is cut off. A remote without a certificate
// cannot deliver anything: its connection never gets through the
// handshake, so the node has nothing even to refuse. SIGHUP re-reads a
// node's files: connections made afterwards present the new
// certificate, and files that do not fit are reported and the previous
// ones kept.
func TestClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster: seconds")
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	caFile := ca.CAFile(t, dir, "ca")
	other := testpki.NewCA(t, "other")
	otherFile := other.CAFile(t, dir, "other")
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	certA, keyA := ca.NodeFiles(t, dir, "a", "127.0.0.1")
	certB, keyB := ca.NodeFiles(t, dir, "b", "127.0.0.1")
	certC, keyC := other.NodeFiles(t, dir, "c", "127.0.0.1")
	a := clTLS(t, addrs[0], addrs, certA, keyA, caFile)
	b := clTLS(t, addrs[1], addrs, certB, keyB, caFile)
	c := clTLS(t, addrs[2], addrs, certC, keyC, otherFile)
	clWaitOK(t, []*clNode{a, b}, 30*time.Second)
	clRound(t, []*clClient{clDial(t, 1, a.Addr), clDial(t, 2, b.Addr)}, 1, 1000)

	// The intruder is cut off, and knows why.
	waitForEvery(t, "the intruder to say it is cut off", 15*time.Second, 50*time.Millisecond, func() bool {
		code, body := c.get("/healthz")
		return code == 503 && body == "cluster isolated"
	})
	for _, n := range []*clNode{a, b} {
		v, err := n.view()
		if err != nil || len(v.Members) != 2 {
			t.Errorf("%s: %+v %v", n.Addr, v, err)
		}
	}
	c.logged(t, "cluster: a peer answers, but the TLS handshake with it fails; it cannot be a member", 10*time.Second)
	if !strings.Contains(c.Log(), "certificate signed by unknown authority") {
		t.Errorf("the intruder's log does not say why it cannot connect:\n%s", c.Log())
	}

	// A remote without TLS gets nothing through.
	sub := clDial(t, 3, a.Addr)
	inj := newInjector(t)
	inj.sys.Root.RequestWithCustomSender(actor.NewPID(a.cluster, "hydrogen-broadcast-"+memberID(t, a)), batch("plain"), actor.NewPID(b.cluster, "hydrogen-broadcast-"+memberID(t, b)))
	select {
	case addr := <-inj.gone:
		if addr != a.cluster {
			t.Fatalf("the injector gave up on %s", addr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the injector's connection neither failed nor delivered")
	}
	marker := clDial(t, 4, a.Addr)
	if err := marker.publish(1, 1); err != nil {
		t.Fatal(err)
	}
	sub.expect(4, 1)
	sub.waitFor(t, map[uint32]uint32{4: 1}, 10*time.Second)
	if sawPayload(sub, "plain") {
		t.Error("a batch sent without TLS was delivered")
	}

	// SIGHUP: a new certificate under the same file names.
	serial := func() string {
		cert, err := tls.LoadX509KeyPair(certB, keyB)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(caFile)
		pool.AppendCertsFromPEM(pem)
		conn, err := tls.Dial("tcp", a.cluster, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("dialling node a with TLS: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	newCert, newKey := ca.NodeFiles(t, dir, "a2", "127.0.0.1")
	copyFile(t, newCert, certA)
	copyFile(t, newKey, keyA)
	clSignal(t, a, syscall.SIGHUP)
	rec := a.logged(t, "cluster: TLS files re-read", 10*time.Second)
	after := serial()
	if after == before || fmt.Sprint(rec["serial"]) != after {
		t.Errorf("after SIGHUP node a presents serial %s (before %s; logged %v)", after, before, rec["serial"])
	}
	// Files that do not fit: reported, and the last good ones stay.
	if err := os.WriteFile(certA, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	clSignal(t, a, syscall.SIGHUP)
	if rec := a.logged(t, "SIGHUP: re-reading failed; keeping what was in use", 10*time.Second); rec["flag"] != "--cluster-tls-cert" {
		t.Errorf("the failed reload was logged for %v, want --cluster-tls-cert", rec["flag"])
	}
	if s := serial(); s != after {
		t.Errorf("after a failed reload node a presents serial %s, want %s", s, after)
	}
	clRound(t, []*clClient{clDial(t, 5, a.Addr), clDial(t, 6, b.Addr)}, 1, 100)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer that one goroutine may write while
// another reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// listening is the local addresses of the TCP sockets listening on port,
// from /proc/net/tcp and tcp6 (hex, as the kernel writes them).
func listening(t *testing.T, port int) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // LISTEN
				continue
			}
			local := fields[1]
			i := strings.LastIndexByte(local, ':')
			p, err := strconv.ParseUint(local[i+1:], 16, 16)
			if err == nil && int(p) == port {
				out = append(out, local[:i])
			}
		}
	}
	return out
}

// TestClusterBindsOnlyItsAddressAndPrintsNothing: a clustered broker
// listens for the other nodes on --cluster-addr's host alone, opens no
// other port for membership (the automanaged provider took the next port
// on every interface), and writes nothing to standard output.
func TestClusterBindsOnlyItsAddressAndPrintsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster: seconds")
	}
	addr := testnet.ClusterAddr(t)
	_, ps, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(ps)
	cmd := exec.Command(brokerBin, "serve", "--addr", "127.0.0.1:0", "--log-format", "json",
		"--cluster", "e2e", "--cluster-addr", addr, "--peers", addr)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), `"msg":"cluster joined"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no join logged:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := listening(t, port); len(got) != 1 || got[0] != "0100007F" {
		t.Errorf("listening on port %d at %v, want 127.0.0.1 (0100007F) alone", port, got)
	}
	if got := listening(t, port+1); len(got) != 0 {
		t.Errorf("something listens on port %d, the old provider's: %v", port+1, got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the broker did not stop on SIGTERM")
	}
	if stdout.Len() != 0 {
		t.Errorf("the broker wrote to stdout: %q", stdout.String())
	}
}

// TestClusterPlaintextWarning: a cluster on an address other than
// loopback, without TLS, says so at start; with TLS, or on loopback, it
// does not. It needs an address of this machine that is not loopback.
func TestClusterPlaintextWarning(t *testing.T) {
	var ip string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			ip = n.IP.String()
			break
		}
	}
	if ip == "" {
		t.Skip("no address but loopback on this machine")
	}
	const warning = "cluster: traffic between nodes is plaintext on a non-loopback address: anyone who can reach it can read the broadcasts and pose as a node; set --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca"
	free := func(host string) string {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Skipf("cannot listen on %s: %v", host, err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	plain := free(ip)
	n := clStart(t, plain, []string{plain})
	n.logged(t, warning, 10*time.Second)

	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	caFile := ca.CAFile(t, dir, "ca")
	cert, key := ca.NodeFiles(t, dir, "n", ip)
	secure := free(ip)
	s := clTLS(t, secure, []string{secure}, cert, key, caFile)
	s.logged(t, "cluster joined", 10*time.Second)
	l := clStart(t, testnet.ClusterAddr(t), nil)
	l.logged(t, "cluster node starting", 10*time.Second)
	for _, n := range []*clNode{s, l} {
		if n.countLogged(warning) != 0 {
			t.Errorf("%s warns of plaintext:\n%s", n.cluster, n.Log())
		}
	}
}

// TestClusterTLSFlags: TLS flags that are wrong exit 2 with a message that
// names the flag.
func TestClusterTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	caFile := ca.CAFile(t, dir, "ca")
	other := testpki.NewCA(t, "other")
	cert, key := ca.NodeFiles(t, dir, "n", "127.0.0.1")
	_, key2 := ca.NodeFiles(t, dir, "n2", "127.0.0.1")
	stranger, strangerKey := other.NodeFiles(t, dir, "s", "127.0.0.1")
	old, oldKey := ca.ExpiredFiles(t, dir, "old", "127.0.0.1")
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("junk"), 0o600)
	missing := filepath.Join(dir, "missing")
	base := []string{"serve", "--cluster", "c", "--cluster-addr", "127.0.0.1:7946"}
	tlsArgs := func(c, k, a string) []string {
		return append(base[:len(base):len(base)], "--cluster-tls-cert", c, "--cluster-tls-key", k, "--cluster-tls-ca", a)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(base[:len(base):len(base)], "--cluster-tls-cert", cert), "missing --cluster-tls-key, --cluster-tls-ca"},
		{append(base[:len(base):len(base)], "--cluster-tls-ca", caFile), "missing --cluster-tls-cert, --cluster-tls-key"},
		{[]string{"serve", "--cluster-tls-cert", cert}, "need --cluster NAME"},
		{tlsArgs(missing, key, caFile), "--cluster-tls-cert " + missing},
		{tlsArgs(cert, missing, caFile), "--cluster-tls-key " + missing},
		{tlsArgs(cert, key, missing), "--cluster-tls-ca " + missing},
		{tlsArgs(cert, key2, caFile), "--cluster-tls-key " + key2},
		{tlsArgs(junk, key, caFile), "--cluster-tls-cert " + junk},
		{tlsArgs(cert, key, junk), "--cluster-tls-ca " + junk},
		{tlsArgs(stranger, strangerKey, caFile), "--cluster-tls-cert " + stranger},
		{tlsArgs(old, oldKey, caFile), "--cluster-tls-cert " + old},
		{append(base[:len(base):len(base)], "--cluster-advertise", "0.0.0.0:7946"), "--cluster-advertise"},
	} {
		out, errOut, code := run(t, 10*time.Second, tc.args...)
		if code != 2 || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("broker %v: exit %d, want 2 with %q:\n%s%s", tc.args, code, tc.want, out, errOut)
		}
	}
	// The environment sets them too.
	t.Setenv("HYDROGEN_CLUSTER_TLS_CA", missing)
	if _, errOut, code := run(t, 10*time.Second, tlsArgs(cert, key, "")[:len(base)+4]...); code != 2 || !strings.Contains(errOut, "--cluster-tls-ca "+missing) {
		t.Errorf("HYDROGEN_CLUSTER_TLS_CA: exit %d: %s", code, errOut)
	}
}
