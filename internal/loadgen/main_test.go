package loadgen_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hydrogen-mq/hydrogen/internal/baseline"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// run must stop everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve starts a baseline server on a free loopback port for the test.
func serve(t testing.TB, mode baseline.Mode) *baseline.Server {
	t.Helper()
	s, err := baseline.Listen("127.0.0.1:0", mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// waitFor polls cond until it holds or the deadline passes. The server's
// counters have no change notification; polling with a deadline is the
// honest wait.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// checkLatency fails t unless l is an ordered, non-zero distribution.
func checkLatency(t testing.TB, l loadgen.Latency) {
	t.Helper()
	if l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
		t.Errorf("latency %v: want 0 < p50 <= p99 <= p999 <= max", l)
	}
	if l.Max > time.Minute {
		t.Errorf("latency %v: max beyond the histogram's range", l)
	}
}
