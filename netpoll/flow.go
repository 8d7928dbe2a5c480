package netpoll

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Overflow is the policy for a connection whose outbound queue fills
// faster than its peer reads it.
//
// Either way, a Send made on behalf of a producer (SendFrom, SendFrameFrom:
// the connection whose frame caused it) that takes the queue past 3/4 of
// MaxPending stalls the producer's reading, so that it stops feeding the
// queue, and the stall ends once the queue is below 1/2 of MaxPending. The
// policies differ in what bounds the stall and what closes the consumer.
type Overflow int

const (
	// OverflowClose stalls a producer briefly: 2 ms, growing to 5 ms as
	// the queue nears MaxPending, once per read. A queue that would pass
	// MaxPending is closed as a slow consumer, as is one that makes no
	// write progress for WriteTimeout. Nobody waits long for a consumer
	// that cannot keep up.
	OverflowClose Overflow = iota
	// OverflowThrottle is lossless for every consumer that keeps reading:
	// a producer stays stalled while any queue it fed is over the mark,
	// however long that takes, and a consumer is closed only when its
	// queue makes no write progress for WriteTimeout (or by the memory
	// budget). A queue may pass MaxPending by what its producers had
	// already read when they stalled; MaxPending is not a hard bound.
	OverflowThrottle
)

func (o Overflow) String() string {
	switch o {
	case OverflowClose:
		return "close"
	case OverflowThrottle:
		return "throttle"
	}
	return fmt.Sprintf("Overflow(%d)", int(o))
}

// ParseOverflow reads the name of a policy, as String writes it.
func ParseOverflow(s string) (Overflow, error) {
	switch s {
	case "close":
		return OverflowClose, nil
	case "throttle":
		return OverflowThrottle, nil
	}
	return 0, fmt.Errorf("unknown overflow policy %q: want close or throttle", s)
}

// Stall bounds under OverflowClose (NATS stalls a fast producer for 2 to
// 5 ms as its slow consumer's buffer fills from half to full; so does
// this), and how often a loop looks whether its stalled producers may go
// on.
const (
	stallMin  = 2 * time.Millisecond
	stallMax  = 5 * time.Millisecond
	stallPoll = time.Millisecond
)

// maxWaitOn bounds the queues one stalled producer keeps track of. A
// producer stalled on more waits for these; when they drain it reads
// again, and the next Send to a queue still over the mark stalls it anew.
const maxWaitOn = 16

// stallOn stalls c's reading because a Send on its behalf took t's queue
// to q bytes, past the stall mark.
func (c *Conn) stallOn(t *Conn, q int64) {
	l := c.loop
	d := stallMin + time.Duration(float64(stallMax-stallMin)*float64(q-l.stallMark)/float64(l.maxPending-l.stallMark))
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	if len(c.waitOn) < maxWaitOn && !slices.Contains(c.waitOn, t) {
		c.waitOn = append(c.waitOn, t)
	}
	c.stallFor = min(max(c.stallFor, d), stallMax)
	wake := false
	if !c.stalled {
		c.stalled = true
		wake = !c.scheduled
		c.scheduled = true
	}
	c.mu.Unlock()
	if wake {
		l.schedule(c)
	}
}

// applyStall starts a stall the loop has just learned of. Loop-only.
func (l *loop) applyStall(c *Conn, stallFor time.Duration) {
	if c.readStalled {
		return
	}
	c.readStalled = true
	c.stallUntil = 0
	if l.overflow == OverflowClose {
		c.stallUntil = l.now + int64(stallFor)
	}
	l.stalledConns = append(l.stalledConns, c)
	l.stats.stalls.Add(1)
	l.stats.stalled.Add(1)
	l.updateMask(c)
}

// pollStalls ends the stalls whose queues have drained below the resume
// mark, or, under OverflowClose, whose time is up. Loop-only.
func (l *loop) pollStalls() {
	kept := l.stalledConns[:0]
	for _, c := range l.stalledConns {
		if c.done {
			continue
		}
		c.mu.Lock()
		waiting := c.waitOn[:0]
		for _, t := range c.waitOn {
			// A closed queue reads 0: it has drained for good.
			if t.queued.Load() > l.resumeMark {
				waiting = append(waiting, t)
			}
		}
		clear(c.waitOn[len(waiting):])
		c.waitOn = waiting
		end := len(waiting) == 0 || (c.stallUntil != 0 && l.now >= c.stallUntil)
		if end {
			clear(c.waitOn)
			c.waitOn = c.waitOn[:0]
			c.stalled = false
			c.stallFor = 0
		}
		c.mu.Unlock()
		if !end {
			kept = append(kept, c)
			continue
		}
		c.readStalled = false
		l.stats.stalled.Add(-1)
		c.resumed(l.now)
		l.updateMask(c)
	}
	clear(l.stalledConns[len(kept):])
	l.stalledConns = kept
}

// resumed restarts the clocks that stand still while the loop does not
// read c (idle and frame timeouts): the peer could not send meanwhile.
// Loop-only.
func (c *Conn) resumed(now int64) {
	c.lastFrame = now
	if c.partialSince != 0 {
		c.partialSince = now
	}
}

// logLimit logs at most one line a second for one kind of event, saying
// how many were left out since the last.
type logLimit struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (r *logLimit) warn(log *slog.Logger, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last) < time.Second {
		r.dropped++
		r.mu.Unlock()
		return
	}
	r.last = now
	dropped := r.dropped
	r.dropped = 0
	r.mu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	log.Warn(msg, args...)
}
