package netpoll

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestParkedWaitAllocatesNothing: a loop with nothing to do parks on the
// runtime poller once per wait; with one frame in flight that is once per
// round trip, so the park must not allocate.
func TestParkedWaitAllocatesNothing(t *testing.T) {
	p, err := openPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	events := make([]unix.EpollEvent, 8)
	allocs := testing.AllocsPerRun(20, func() {
		if n, err := p.wait(events, time.Now().Add(time.Millisecond).UnixNano()); n != 0 || err != nil {
			t.Fatalf("wait on an idle poller: %d events, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a parked wait allocates %v times, want 0", allocs)
	}
	// Woken by a trigger, it reports the wakeup.
	p.trigger()
	if n, err := p.wait(events, -1); n != 1 || err != nil {
		t.Fatalf("wait after trigger: %d events, %v", n, err)
	}
}
