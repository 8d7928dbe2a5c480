package loadgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// receiver is the receiving side of a connection: a subscriber, or a
// publisher, which receives the other publishers' frames. Its readLoop
// owns everything but the atomics. Only subscribers are measured:
// deliveries, latency, gaps.
type receiver struct {
	run       *fanoutRun
	id        int        // subscriber or publisher number, for messages
	pub       *publisher // nil for a subscriber
	c         net.Conn
	rbuf      []byte
	dec       wire.Decoder
	samples   []int64
	seqs      []int64 // per publisher: the next sequence number expected
	published []int64 // per publisher: seqs as last stored in next
	warmed    []bool  // per publisher: its warm-up frame was seen
	gaps      int64   // read after the run by its owner

	next       []atomic.Int64 // per publisher: seqs, stored once a read, for the publishers' pacing
	deliveries atomic.Int64
	last       atomic.Int64 // stamp of the latest delivery
	dead       atomic.Bool
}

func (rc *receiver) name() string {
	if rc.pub != nil {
		return fmt.Sprintf("publisher %d", rc.id)
	}
	return fmt.Sprintf("subscriber %d", rc.id)
}

func (rc *receiver) readLoop() {
	for {
		n, err := rc.c.Read(rc.rbuf)
		if n > 0 {
			if perr := rc.consume(rc.rbuf[:n]); perr != nil {
				rc.fail(perr)
				return
			}
		}
		if err != nil {
			rc.fail(err)
			return
		}
	}
}

// consume decodes and checks the frames in data, times the deliveries,
// then publishes its counts to the publishers and wakes those waiting for
// them.
func (rc *receiver) consume(data []byte) error {
	r := rc.run
	t := now()
	rc.samples = rc.samples[:0]
	rc.dec.Feed(data)
	for {
		p, ok, err := rc.dec.Next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if len(p) != r.cfg.PayloadSize {
			r.errs.add("%s: received %d bytes, want %d", rc.name(), len(p), r.cfg.PayloadSize)
			continue
		}
		word := binary.BigEndian.Uint64(p[8:])
		pub, seq := int(word>>48), int64(word&seqMask)
		// The filler after the header is the template's: a frame
		// corrupted there is an error, whatever its header says.
		if !bytes.Equal(p[fanoutHeader:], r.template[wire.HeaderSize+fanoutHeader:wire.HeaderSize+len(p)]) {
			r.errs.add("%s: publisher %d's frame %d corrupt after byte %d", rc.name(), pub, seq, fanoutHeader)
			continue
		}
		switch {
		case pub >= len(r.pubs):
			r.errs.add("%s: received a frame from publisher %d of %d", rc.name(), pub, len(r.pubs))
			continue
		case r.pubs[pub] == rc.pub:
			r.errs.add("%s: received its own frame", rc.name())
			continue
		case seq == warmupSeq:
			if !rc.warmed[pub] {
				rc.warmed[pub] = true
				if int(r.pubs[pub].warm.Add(1)) == r.audience() {
					r.pubs[pub].poke()
				}
			}
			continue
		}
		switch want := rc.seqs[pub]; {
		case seq == want:
			rc.seqs[pub]++
		case seq > want:
			rc.gaps += seq - want
			rc.seqs[pub] = seq + 1
		default:
			r.errs.add("%s: publisher %d's frame %d after %d", rc.name(), pub, seq, want-1)
		}
		if rc.pub == nil {
			rc.samples = append(rc.samples, t-int64(binary.BigEndian.Uint64(p)))
		}
	}
	if len(rc.samples) > 0 {
		rc.deliveries.Add(int64(len(rc.samples)))
		rc.last.Store(t)
		r.lat.record(rc.id, rc.samples)
	}
	advanced := false
	for i, n := range rc.seqs {
		if n == rc.published[i] {
			continue
		}
		advanced = true
		rc.published[i] = n
		rc.next[i].Store(n)
		if p := r.pubs[i]; p.waiting.Load() && n >= p.target.Load() && p.waiting.CompareAndSwap(true, false) {
			p.poke()
		}
	}
	if advanced && r.draining.Load() {
		select {
		case r.drainCh <- struct{}{}:
		default:
		}
	}
	return nil
}

// fail ends the receiver. Unless the run is tearing down, that is an
// error (a publisher's, if this is a publisher's connection), and the
// publishers stop pacing themselves by it.
func (rc *receiver) fail(err error) {
	r := rc.run
	if r.closing.Load() {
		return
	}
	if rc.pub != nil {
		rc.pub.fail(err)
	} else {
		r.errs.add("%s: %v", rc.name(), err)
	}
	rc.dead.Store(true)
	for _, p := range r.pubs {
		p.poke()
	}
	select {
	case r.drainCh <- struct{}{}:
	default:
	}
}
