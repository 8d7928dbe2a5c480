package test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

// logOrder is the messages of a broker's log records, in order.
func logOrder(n *clNode) []string {
	var out []string
	for line := range strings.SplitSeq(n.Log(), "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			out = append(out, rec.Msg)
		}
	}
	return out
}

func index(msgs []string, msg string) int {
	for i, m := range msgs {
		if m == msg {
			return i
		}
	}
	return -1
}

// TestClusterServesWhileJoining starts one node of two while the other
// is not up: it listens for clients at once, before its cluster
// membership has even started (protoactor's start takes a second), and
// its clients broadcast to each other meanwhile, while /healthz says it
// is joining, then cut off. Once the other node comes up, the join is
// logged, with how long it took, and /healthz turns 200.
func TestClusterServesWhileJoining(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a cluster: seconds")
	}
	addrs := []string{testnet.ClusterAddr(t), testnet.ClusterAddr(t)}
	a := clStart(t, addrs[0], addrs)
	if code, body := a.get("/healthz"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "cluster ") {
		t.Errorf("/healthz of a node whose peer is down: %d %q", code, body)
	}
	clRound(t, []*clClient{clDial(t, 1, a.Addr), clDial(t, 2, a.Addr)}, 1, 100)
	msgs := logOrder(a)
	if l, s := index(msgs, "listening"), index(msgs, "cluster node started"); l < 0 || (s >= 0 && s < l) {
		t.Errorf("the broker listened only after joining (listening at %d, cluster node started at %d): %v", l, s, msgs)
	}
	waitForEvery(t, "/healthz to say the node is cut off", 10*time.Second, 50*time.Millisecond, func() bool {
		code, body := a.get("/healthz")
		return code == http.StatusServiceUnavailable && body == "cluster isolated"
	})
	if index(logOrder(a), "cluster joined") >= 0 {
		t.Errorf("a join logged with the only peer down:\n%s", a.Log())
	}

	b := clStart(t, addrs[1], addrs)
	clWaitOK(t, []*clNode{a, b}, 30*time.Second)
	for _, n := range []*clNode{a, b} {
		rec := n.logged(t, "cluster joined", time.Second)
		if _, ok := rec["took"]; !ok {
			t.Errorf("the join is logged without how long it took: %v", rec)
		}
	}
	clRound(t, []*clClient{clDial(t, 3, a.Addr), clDial(t, 4, b.Addr)}, 1, 100)

	// The 0x0D reply carries the same cluster object as /stats.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := dial(t, a.Addr).Stats(ctx, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	var cl clView
	if err := json.Unmarshal(st.Extra["cluster"], &cl); err != nil || cl.Name != "e2e" || cl.State != "ok" || len(cl.Members) != 2 {
		t.Errorf("0x0D cluster object %s: %+v %v", st.Extra["cluster"], cl, err)
	}
}
