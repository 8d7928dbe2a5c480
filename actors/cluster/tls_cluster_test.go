package cluster_test

import (
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/actors/cluster"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
)

// TestTLSClusterAdmitsOnlyItsCA: two nodes with certificates of the
// cluster's CA form a cluster and carry broadcasts; a third node listed
// as their peer, with a certificate of another CA, or with no TLS at
// all, never becomes a member, on either side.
func TestTLSClusterAdmitsOnlyItsCA(t *testing.T) {
	if testing.Short() {
		t.Skip("forms clusters: seconds")
	}
	if raceDetector {
		t.Skip("protoactor-go races with itself when two nodes share a process (see raceDetector)")
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	caFile := ca.CAFile(t, dir, "ca")
	other := testpki.NewCA(t, "other")
	otherFile := other.CAFile(t, dir, "other")
	load := func(ca *testpki.CA, caFile, name string) *cluster.TLS {
		cert, key := ca.NodeFiles(t, dir, name, "127.0.0.1")
		tl, err := cluster.LoadTLS(cert, key, caFile)
		if err != nil {
			t.Fatal(err)
		}
		return tl
	}
	for _, tc := range []struct {
		name     string
		intruder *cluster.TLS
	}{
		{"another CA", load(other, otherFile, "intruder")},
		{"no TLS", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
			start := func(i int, tl *cluster.TLS) *testNode {
				rec := newRecorder()
				n, err := cluster.Start(cluster.Config{Name: "tls", Addr: addrs[i], Peers: addrs, TLS: tl, Logger: testLogger()}, rec.deliver)
				if err != nil {
					t.Fatal(err)
				}
				tn := &testNode{addr: addrs[i], node: n, rec: rec}
				t.Cleanup(func() { tn.shutdown(t) })
				return tn
			}
			a, b := start(0, load(ca, caFile, "a")), start(1, load(ca, caFile, "b"))
			c := start(2, tc.intruder)
			waitMembers(t, a, b)
			b.rec.expect(1, 1)
			mustPublish(t, a, 1, 1, 1000)
			b.rec.waitFor(t, b.addr, 1, 1000)

			// The intruder is cut off for good: isolated once it has
			// waited DeadAfter for anyone, and never a member anywhere.
			deadline := time.Now().Add(10 * time.Second)
			for c.node.State() != cluster.Isolated {
				if time.Now().After(deadline) {
					t.Fatalf("the intruder is %v", c.node.State())
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, n := range []*testNode{a, b, c} {
				ms := n.node.Members()
				for _, m := range ms {
					if (n == c) != (m.Address == c.addr) {
						t.Errorf("%s has member %s", n.addr, m.Address)
					}
				}
			}
			if s := a.node.Stats(); s.State != cluster.OK || s.Members != 2 {
				t.Errorf("a: %+v", s)
			}
			if s := c.node.Stats(); s.Published != 0 || s.BatchesSent != 0 {
				t.Errorf("the intruder sent: %+v", s)
			}
		})
	}
}
