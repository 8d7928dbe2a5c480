package baseline_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// A subscriber that never reads is dropped once its queue is full, and
// the subscribers that read still get every frame: one stalled client
// costs the others nothing.
func TestBroadcastDropsNonReader(t *testing.T) {
	s := serve(t, baseline.Broadcast)
	stalled := dial(t, s)
	waitFor(t, "the stalled subscriber to be registered", 5*time.Second, func() bool { return s.Stats().Conns == 1 })

	// Enough to fill the stalled connection's queue and everything the
	// kernel buffers for it, twice over: the server's send buffer grows
	// up to tcp_wmem's maximum, while a receive buffer nobody reads stays
	// at tcp_rmem's default.
	const payload = 4096
	buffered := sysctlField(t, "net/ipv4/tcp_wmem", 2) + sysctlField(t, "net/ipv4/tcp_rmem", 1)
	count := 2 * (baseline.QueueLen + buffered/payload)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const subscribers = 3
	res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{
		Addr: s.Addr(), Publishers: 1, Subscribers: subscribers,
		PayloadSize: payload, Count: int64(count),
	})
	if err != nil {
		t.Fatalf("Fanout: %v", err)
	}
	if st := s.Stats(); st.Dropped != 1 {
		t.Fatalf("after %d frames of %d bytes, the server dropped %d subscribers, want the stalled one", count, payload, st.Dropped)
	}
	if res.Deliveries != res.Sent*subscribers || res.Gaps != 0 || res.Lost != 0 || res.Errors != 0 {
		t.Errorf("%v: want every frame delivered to the %d reading subscribers", res, subscribers)
	}
	// The stalled client finds its connection closed after what was
	// already on its way.
	expectEOF(t, stalled)
}

// sysctlField returns field i of a numeric sysctl with several fields,
// such as net/ipv4/tcp_wmem's "min default max".
func sysctlField(t *testing.T, name string, i int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if i >= len(f) {
		t.Fatalf("%s = %q: no field %d", name, b, i)
	}
	n, err := strconv.Atoi(f[i])
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}
