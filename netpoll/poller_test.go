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
	p, err := openPoller(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	events := make([]unix.EpollEvent, 8)
	allocs := testing.AllocsPerRun(20, func() {
		if n, err := p.wait(events, p.clock()+int64(time.Millisecond)); n != 0 || err != nil {
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

// TestWaitAfterDeadline: a wait that timed out leaves the runtime's read
// deadline expired, and an expired deadline fails the next read before it
// polls. A later wait must still see what is ready — with the deadline it
// timed out on (now passed) and with a new one — and not report nothing
// at once, which would spin the loop without serving its connections.
func TestWaitAfterDeadline(t *testing.T) {
	p, err := openPoller(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	events := make([]unix.EpollEvent, 8)
	until := p.clock() + int64(time.Millisecond)
	if n, err := p.wait(events, until); n != 0 || err != nil {
		t.Fatalf("wait on an idle poller: %d events, %v", n, err)
	}
	if p.clock() < until {
		t.Fatalf("wait returned %v before its deadline", time.Duration(until-p.clock()))
	}
	p.trigger()
	if n, err := p.wait(events, until); n != 1 || err != nil {
		t.Fatalf("wait with the passed deadline after a trigger: %d events, %v; want the wakeup", n, err)
	}
	p.drainWake()
	p.woken.Store(0)
	p.trigger()
	if n, err := p.wait(events, p.clock()+int64(time.Hour)); n != 1 || err != nil {
		t.Fatalf("wait with a new deadline after a trigger: %d events, %v; want the wakeup", n, err)
	}
}
