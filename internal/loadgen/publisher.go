package loadgen

import (
	"encoding/binary"
	"math"
	"net"
	"sync/atomic"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// publisher is the sending side of a publishing connection; its
// publishLoop owns wbuf and seq. Its receiving side is a receiver.
type publisher struct {
	run   *fanoutRun
	id    uint16
	c     net.Conn
	quota int64 // frames to send; 0 means until stopped
	wbuf  []byte
	seq   uint64

	sent    atomic.Int64 // frames written
	warm    atomic.Int32 // connections that saw the warm-up frame
	waiting atomic.Bool  // blocked until the slowest receiver reaches target
	target  atomic.Int64
	wake    chan struct{} // a receiver reached target, or saw the warm-up, or failed
	failed  atomic.Bool
	failCh  chan struct{} // closed when failed is set
}

// publishLoop warms up, then sends until the quota, the deadline or the
// end of the run.
func (p *publisher) publishLoop() {
	r := p.run
	defer r.pubsWG.Done()
	if !p.warmup() {
		return
	}
	r.warmCh <- struct{}{}
	select {
	case <-r.startCh:
	case <-r.stopCh:
		return
	}
	window := int64(r.cfg.Window)
	var sent int64
	for !r.stopping.Load() {
		left := int64(math.MaxInt64)
		if p.quota > 0 {
			left = p.quota - sent
			if left == 0 {
				return
			}
		}
		// Send when at least half the window is free (or all that is
		// left fits), so frames go out in batches, not one per delivery.
		need := min(max(window/2, 1), left)
		if free := p.slowest(sent) + window - sent; free >= need {
			k := min(free, left, int64(r.batch))
			if err := p.send(int(k), false); err != nil {
				p.fail(err)
				return
			}
			sent += k
			p.sent.Store(sent)
			continue
		}
		// Wait for the slowest receiver to reach target. The flag is set
		// before looking again, and receivers store their count before
		// looking at the flag, so one of the two sees the other.
		target := sent - window + need
		p.target.Store(target)
		p.waiting.Store(true)
		if p.slowest(sent) < target {
			select {
			case <-p.wake:
			case <-r.stopCh:
			case <-p.failCh:
				return
			}
		}
		p.waiting.Store(false)
	}
}

// slowest returns the lowest count of this publisher's frames among the
// live receivers, at most sent.
func (p *publisher) slowest(sent int64) int64 {
	low := sent
	for _, rc := range p.run.recvs {
		if rc.pub != p && !rc.dead.Load() {
			low = min(low, rc.next[p.id].Load())
		}
	}
	return low
}

// warmup repeats the warm-up frame until every other connection has seen
// it.
func (p *publisher) warmup() bool {
	r := p.run
	t := time.NewTicker(warmupResend)
	defer t.Stop()
	for {
		if err := p.send(1, true); err != nil {
			p.fail(err)
			return false
		}
	wait:
		for int(p.warm.Load()) < r.audience() {
			select {
			case <-p.wake:
			case <-t.C:
				break wait
			case <-r.stopCh:
				return false
			case <-p.failCh:
				return false
			}
		}
		if int(p.warm.Load()) >= r.audience() {
			return true
		}
	}
}

// send writes k frames (or one warm-up frame) in one write.
func (p *publisher) send(k int, warmup bool) error {
	r := p.run
	stamp := uint64(now())
	b := p.wbuf[:0]
	for range k {
		off := len(b) + wire.HeaderSize
		b = append(b, r.template...)
		seq := uint64(warmupSeq)
		if !warmup {
			seq = p.seq
			p.seq++
		}
		binary.BigEndian.PutUint64(b[off:], stamp)
		binary.BigEndian.PutUint64(b[off+8:], uint64(p.id)<<48|seq)
	}
	p.wbuf = b[:0]
	_, err := p.c.Write(b)
	return err
}

// fail ends the publisher on its first error, counting it unless the run
// is tearing down, and ends its connection's reads and writes.
func (p *publisher) fail(err error) {
	if !p.failed.CompareAndSwap(false, true) {
		return
	}
	if !p.run.closing.Load() {
		p.run.errs.add("publisher %d: %v", p.id, err)
	}
	close(p.failCh)
	_ = p.c.SetDeadline(time.Unix(1, 0))
}

// poke wakes the publisher if it is waiting; a wakeup already pending is
// enough.
func (p *publisher) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}
