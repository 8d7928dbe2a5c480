package loadgen

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// FanoutConfig configures Fanout. Zero values mean the defaults noted.
type FanoutConfig struct {
	Addr        string // server address, host:port; required
	Publishers  int    // publishing connections, at most 65,535; default 1
	Subscribers int    // receiving connections; default 10
	// PayloadSize is the bytes of each frame's payload, at least 16 (stamp,
	// publisher, sequence number); default 64.
	PayloadSize int
	// Window is how many frames a publisher may be ahead of the slowest
	// receiver's count of its frames; default 256. Keep Publishers ×
	// Window below the server's per-connection queue (for the baseline,
	// baseline.QueueLen frames) so that pacing, not the server's
	// slow-consumer policy, bounds what is in flight.
	Window int
	// Duration is the span publishers send for; Count is the number of
	// frames published in all, split evenly among the publishers. The
	// run ends at whichever comes first, once the frames sent are
	// delivered; with neither set, Duration is 10 s.
	Duration      time.Duration
	Count         int64
	DialTimeout   time.Duration // per connection; default 5 s
	Connect       Connect       // TLS and a credential, when the broker requires them
	WarmupTimeout time.Duration // for every connection to see every publisher; default 10 s
	// Progress, if set, is called every ProgressInterval (default 1 s)
	// on the goroutine that called Fanout.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

const (
	defaultSubscribers   = 10
	defaultWindow        = 256
	defaultWarmupTimeout = 10 * time.Second
	// warmupResend is how often a publisher repeats its warm-up frame: a
	// connection whose dial has returned may not be registered by the
	// server yet, and misses frames broadcast before it is.
	warmupResend = 20 * time.Millisecond

	// Fanout payload layout: stamp (8 bytes), publisher (2), sequence
	// number (6), all big-endian; the rest is filler.
	fanoutHeader = 16
	seqMask      = 1<<48 - 1
	warmupSeq    = seqMask // marks a warm-up frame
)

func (c *FanoutConfig) setDefaults() error {
	if c.Addr == "" {
		return fmt.Errorf("%w: no address", ErrConfig)
	}
	if c.Publishers < 0 || c.Subscribers < 0 || c.Window < 0 || c.Count < 0 || c.Duration < 0 {
		return fmt.Errorf("%w: negative Publishers, Subscribers, Window, Count or Duration", ErrConfig)
	}
	c.Publishers = cmp.Or(c.Publishers, 1)
	if c.Publishers > math.MaxUint16 {
		return fmt.Errorf("%w: %d publishers, at most %d", ErrConfig, c.Publishers, math.MaxUint16)
	}
	c.Subscribers = cmp.Or(c.Subscribers, defaultSubscribers)
	c.Window = cmp.Or(c.Window, defaultWindow)
	c.PayloadSize = cmp.Or(c.PayloadSize, defaultPayload)
	if c.PayloadSize < fanoutHeader || c.PayloadSize > wire.MaxPayload {
		return fmt.Errorf("%w: payload size %d outside [%d, %d]", ErrConfig, c.PayloadSize, fanoutHeader, wire.MaxPayload)
	}
	if c.Count > 0 && c.Count < int64(c.Publishers) {
		return fmt.Errorf("%w: Count %d below the %d publishers", ErrConfig, c.Count, c.Publishers)
	}
	if c.Count == 0 && c.Duration == 0 {
		c.Duration = defaultDuration
	}
	c.DialTimeout = cmp.Or(c.DialTimeout, defaultDialTimeout)
	c.WarmupTimeout = cmp.Or(c.WarmupTimeout, defaultWarmupTimeout)
	return nil
}

// Fanout measures one-to-many delivery against a server that broadcasts
// each frame to every connection but its sender. cfg.Subscribers
// connections only read; cfg.Publishers connections send as fast as the
// pacing lets them. Publishers read too, since each receives the others'
// frames, so every connection is a receiver, and a publisher stays at
// most cfg.Window frames ahead of the slowest receiver's count of its
// frames: no queue in the server overflows, whatever the speeds.
//
// Before measuring, every publisher repeats a warm-up frame until every
// other connection has seen it, so that all are registered with the
// server. Receivers check each publisher's sequence numbers: duplicates
// and reordering count as Errors, and for subscribers frames skipped
// count as Gaps and frames never delivered by the end as Lost. Deliveries
// and latency, from publish to delivery, are the subscribers'.
//
// The error is for a configuration, a dial, a warm-up or a run that could
// not go on (ErrStalled, every subscriber failed); if ctx is done first,
// Fanout returns what it measured so far with ctx.Err().
func Fanout(ctx context.Context, cfg FanoutConfig) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	conns, err := dialAll(ctx, cfg.Addr, cfg.Connect, cfg.Subscribers+cfg.Publishers, dialWorkers, cfg.DialTimeout)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(conns)
	r := newFanoutRun(cfg, conns)

	var all, subsWG sync.WaitGroup
	for _, rc := range r.recvs {
		if rc.pub == nil {
			subsWG.Go(rc.readLoop)
		} else {
			all.Go(rc.readLoop)
		}
	}
	for _, p := range r.pubs {
		all.Go(p.publishLoop)
	}
	subsDone := make(chan struct{})
	go func() {
		subsWG.Wait()
		close(subsDone)
	}()
	shutdown := func() {
		r.closing.Store(true)
		r.stop()
		interrupt(conns)
		all.Wait()
		<-subsDone
	}

	tick := progressTicker(cfg.ProgressInterval)
	defer tick.Stop()
	if err := r.warmup(ctx, tick.C, subsDone); err != nil {
		shutdown()
		return Result{}, err
	}

	start := time.Now()
	r.start = now()
	close(r.startCh)
	var (
		deadline, drain <-chan time.Time
		pubsDone        = make(chan struct{})
		ctxDone         = ctx.Done()
		runErr          error
		end, sentBy     time.Time
		lastRecv        int64
		lastChange      = start
	)
	go func() {
		r.pubsWG.Wait()
		close(pubsDone)
	}()
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	for end.IsZero() {
		select {
		case <-deadline:
			r.stop()
			deadline = nil
		case <-pubsDone:
			// Every frame is sent and the sent counts are final; wait,
			// boundedly, for the receivers to have them all.
			sentBy = time.Now()
			r.draining.Store(true)
			pubsDone = nil
			t := time.NewTimer(drainTimeout)
			defer t.Stop()
			drain = t.C
			if r.caughtUp() {
				end = time.Now()
			}
		case <-r.drainCh:
			if drain != nil && r.caughtUp() {
				end = time.Now()
			}
		case <-drain:
			end = time.Now()
		case <-subsDone:
			end = time.Now()
			runErr = fmt.Errorf("loadgen: every subscriber failed; first error: %s", r.errs.firstError())
		case <-ctxDone:
			end = time.Now()
			runErr = ctx.Err()
		case <-tick.C:
			p := r.progress(start)
			if cfg.Progress != nil {
				cfg.Progress(p)
			}
			switch {
			case p.Received != lastRecv:
				lastRecv, lastChange = p.Received, time.Now()
			case drain == nil && time.Since(lastChange) > stallTimeout:
				end = time.Now()
				runErr = fmt.Errorf("%w: no delivery for %v", ErrStalled, stallTimeout)
			}
		}
	}
	shutdown()

	res := Result{
		Test:        "fanout",
		Conns:       cfg.Publishers + cfg.Subscribers,
		Publishers:  cfg.Publishers,
		Subscribers: cfg.Subscribers,
		Window:      cfg.Window,
		PayloadSize: cfg.PayloadSize,
		Latency:     r.lat.summary(),
	}
	for _, p := range r.pubs {
		res.Sent += p.sent.Load()
	}
	var last int64
	for _, s := range r.subs {
		res.Deliveries += s.deliveries.Load()
		res.Gaps += s.gaps
		last = max(last, s.last.Load())
		for i, p := range r.pubs {
			res.Lost += max(0, p.sent.Load()-s.seqs[i])
		}
	}
	res.Messages = res.Sent
	// The span ends with the last delivery, or when the publishers
	// stopped if that was later (the deliveries stalled); a run cut short
	// ends when it was.
	res.Elapsed = time.Duration(last - r.start)
	if sentBy.IsZero() {
		sentBy = end
	}
	res.Elapsed = max(res.Elapsed, sentBy.Sub(start))
	res.MsgPerSec = perSec(res.Sent, res.Elapsed)
	res.DeliveriesPerSec = perSec(res.Deliveries, res.Elapsed)
	res.Errors = r.errs.n.Load()
	res.FirstError = r.errs.firstError()
	return res, runErr
}

// fanoutRun is the state a Fanout run's connections share.
type fanoutRun struct {
	cfg      FanoutConfig
	template []byte // one frame; filled in with stamp, publisher, sequence
	batch    int    // most frames a publisher writes at once
	pubs     []*publisher
	recvs    []*receiver    // the subscribers, then the publishers' receiving sides
	subs     []*receiver    // recvs[:Subscribers]
	pubsWG   sync.WaitGroup // publishLoops
	lat      *latencies
	errs     errorLog
	start    int64         // stamp of the measurement's start
	startCh  chan struct{} // closed when the measurement starts
	warmCh   chan struct{} // one token per publisher whose warm-up every other connection saw
	drainCh  chan struct{} // a receiver advanced, or failed, while draining
	draining atomic.Bool
	stopping atomic.Bool   // publishers send no more
	stopCh   chan struct{} // closed when stopping is set
	stopOnce sync.Once
	closing  atomic.Bool // tearing down: read and write errors are expected
}

func newFanoutRun(cfg FanoutConfig, conns []net.Conn) *fanoutRun {
	size := wire.FrameSize(cfg.PayloadSize)
	payload := make([]byte, cfg.PayloadSize)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	template, _ := wire.AppendFrame(nil, payload) // PayloadSize was checked
	r := &fanoutRun{
		cfg:      cfg,
		template: template,
		batch:    max(1, maxBatchBytes/size),
		lat:      newLatencies(cfg.Subscribers),
		startCh:  make(chan struct{}),
		warmCh:   make(chan struct{}, cfg.Publishers),
		drainCh:  make(chan struct{}, 1),
		stopCh:   make(chan struct{}),
	}
	share, extra := cfg.Count/int64(cfg.Publishers), cfg.Count%int64(cfg.Publishers)
	for i := range cfg.Publishers {
		p := &publisher{
			run:    r,
			id:     uint16(i),
			c:      conns[cfg.Subscribers+i],
			quota:  share,
			wbuf:   make([]byte, 0, r.batch*size),
			wake:   make(chan struct{}, 1),
			failCh: make(chan struct{}),
		}
		if int64(i) < extra {
			p.quota++
		}
		r.pubs = append(r.pubs, p)
	}
	for i, c := range conns {
		rc := &receiver{
			run:       r,
			id:        i,
			c:         c,
			next:      make([]atomic.Int64, cfg.Publishers),
			seqs:      make([]int64, cfg.Publishers),
			published: make([]int64, cfg.Publishers),
			warmed:    make([]bool, cfg.Publishers),
			rbuf:      make([]byte, maxBatchBytes),
			samples:   make([]int64, 0, r.batch),
		}
		if i >= cfg.Subscribers {
			rc.pub = r.pubs[i-cfg.Subscribers]
			rc.id = i - cfg.Subscribers
		}
		rc.dec.Init(wire.MaxPayload)
		r.recvs = append(r.recvs, rc)
	}
	r.subs = r.recvs[:cfg.Subscribers]
	r.pubsWG.Add(cfg.Publishers)
	return r
}

func (r *fanoutRun) stop() {
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		close(r.stopCh)
	})
}

// audience is how many connections receive each publisher's frames: all
// but itself.
func (r *fanoutRun) audience() int { return len(r.recvs) - 1 }

// warmup waits until every publisher's warm-up frame has reached every
// other connection.
func (r *fanoutRun) warmup(ctx context.Context, tick <-chan time.Time, subsDone <-chan struct{}) error {
	timeout := time.NewTimer(r.cfg.WarmupTimeout)
	defer timeout.Stop()
	for warm := 0; warm < len(r.pubs); {
		select {
		case <-r.warmCh:
			warm++
		case <-tick:
			if r.errs.n.Load() > 0 {
				return fmt.Errorf("loadgen: warm-up: %s", r.errs.firstError())
			}
		case <-subsDone:
			return fmt.Errorf("loadgen: warm-up: %s", r.errs.firstError())
		case <-timeout.C:
			var b strings.Builder
			for _, p := range r.pubs {
				if n := p.warm.Load(); int(n) < r.audience() {
					fmt.Fprintf(&b, "; publisher %d seen by %d of %d connections", p.id, n, r.audience())
				}
			}
			return fmt.Errorf("loadgen: warm-up timed out after %v%s", r.cfg.WarmupTimeout, b.String())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// caughtUp reports whether every live receiver has every frame sent to
// it. It is called once the publishers are done, so the sent counts are
// final.
func (r *fanoutRun) caughtUp() bool {
	for _, rc := range r.recvs {
		if rc.dead.Load() {
			continue
		}
		for i, p := range r.pubs {
			if p != rc.pub && rc.next[i].Load() < p.sent.Load() {
				return false
			}
		}
	}
	return true
}

func (r *fanoutRun) progress(start time.Time) Progress {
	p := Progress{Elapsed: time.Since(start), Errors: r.errs.n.Load()}
	for _, pub := range r.pubs {
		p.Sent += pub.sent.Load()
	}
	for _, rc := range r.recvs {
		if !rc.dead.Load() {
			p.Conns++
		}
		if rc.pub == nil {
			p.Received += rc.deliveries.Load()
		}
	}
	return p
}
