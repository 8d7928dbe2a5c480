package loadgen

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// EchoConfig configures Echo. Zero values mean the defaults noted.
type EchoConfig struct {
	Addr     string // server address, host:port; required
	Conns    int    // connections; default 1
	InFlight int    // frames outstanding on each connection; default 1
	// PayloadSize is the bytes of each frame's payload, at least 8 (the
	// stamp); default 64. From 16 bytes up a payload also names its
	// connection and sequence number, so a reply meant for another
	// connection, or out of order, counts as an error.
	PayloadSize int
	// Duration is the measured span. Count is the number of round trips
	// in all. The run ends at whichever comes first; with neither set,
	// Duration is 10 s.
	Duration    time.Duration
	Count       int64
	DialTimeout time.Duration // per connection; default 5 s
	Connect     Connect       // TLS and a credential, when the broker requires them
	// Progress, if set, is called every ProgressInterval (default 1 s)
	// on the goroutine that called Echo.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

const (
	defaultPayload  = 64
	defaultDuration = 10 * time.Second
	// minEchoPayload is the stamp. It also keeps every payload longer
	// than a telemetry request (5 bytes), which a broker would answer
	// itself instead of echoing.
	minEchoPayload = 8
	echoHeader     = 16 // stamp, connection, sequence
	// inlineBytes is the most a connection may have in flight for one
	// goroutine to both write and read it. Writing blocks only when both
	// directions' socket buffers are full, and the frames in flight are all
	// the data there is, so below the smallest buffers Linux gives a
	// loopback socket (16 KiB to send, 128 KiB to receive, each way) a
	// blocked write cannot happen. Above it, a writer goroutine of its own.
	inlineBytes = 128 << 10
)

func (c *EchoConfig) setDefaults() error {
	if c.Addr == "" {
		return fmt.Errorf("%w: no address", ErrConfig)
	}
	if c.Conns < 0 || c.InFlight < 0 || c.Count < 0 || c.Duration < 0 {
		return fmt.Errorf("%w: negative Conns, InFlight, Count or Duration", ErrConfig)
	}
	c.Conns = cmp.Or(c.Conns, 1)
	c.InFlight = cmp.Or(c.InFlight, 1)
	c.PayloadSize = cmp.Or(c.PayloadSize, defaultPayload)
	if c.PayloadSize < minEchoPayload || c.PayloadSize > wire.MaxPayload {
		return fmt.Errorf("%w: payload size %d outside [%d, %d]", ErrConfig, c.PayloadSize, minEchoPayload, wire.MaxPayload)
	}
	if c.Count == 0 && c.Duration == 0 {
		c.Duration = defaultDuration
	}
	c.DialTimeout = cmp.Or(c.DialTimeout, defaultDialTimeout)
	return nil
}

// Echo measures round trips: cfg.Conns connections each keep cfg.InFlight
// frames outstanding against a server that echoes each frame to its
// sender, sending a new frame for each reply, until cfg.Count round trips
// or cfg.Duration. Latency is from the send of a frame to the receipt of
// its reply.
//
// The error is for a configuration, a dial or a run that could not go on
// (ErrStalled); a connection that fails during the run is counted in
// Result.Errors and the others carry on. If ctx is done first, Echo
// returns what it measured so far with ctx.Err().
func Echo(ctx context.Context, cfg EchoConfig) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	conns, err := dialAll(ctx, cfg.Addr, cfg.Connect, cfg.Conns, dialWorkers, cfg.DialTimeout)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(conns)

	r := newEchoRun(cfg)
	ecs := make([]*echoConn, len(conns))
	for i, c := range conns {
		ecs[i] = r.newConn(uint32(i), c)
	}
	var wg sync.WaitGroup
	start := time.Now()
	for _, ec := range ecs {
		if r.inline {
			wg.Go(ec.runInline)
		} else {
			wg.Go(ec.readLoop)
			wg.Go(ec.writeLoop)
		}
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	var deadline, drain <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := progressTicker(cfg.ProgressInterval)
	defer tick.Stop()
	var (
		end        time.Time
		runErr     error
		ctxDone    = ctx.Done()
		lastRecv   int64
		lastChange = start
	)
	abort := func(err error) {
		if end.IsZero() {
			end = time.Now()
		}
		runErr = err
		r.stop()
		r.closing.Store(true)
		interrupt(conns)
		ctxDone, deadline, drain = nil, nil, nil
	}
	for done != nil {
		select {
		case <-done:
			if end.IsZero() {
				end = time.Now()
			}
			done = nil
		case <-deadline:
			// The measured span is over: send nothing more, and give the
			// replies in flight a bounded time to come back.
			end = time.Now()
			r.stop()
			deadline = nil
			t := time.NewTimer(drainTimeout)
			defer t.Stop()
			drain = t.C
		case <-drain:
			var sent, answered int64
			for _, ec := range ecs {
				sent += ec.sent.Load()
				answered += ec.answered.Load()
			}
			r.errs.add("%d replies still missing %v after the end", sent-answered, drainTimeout)
			abort(nil)
		case <-ctxDone:
			abort(ctx.Err())
		case <-tick.C:
			p := r.progress(ecs, start)
			if cfg.Progress != nil {
				cfg.Progress(p)
			}
			switch {
			case p.Received != lastRecv:
				lastRecv, lastChange = p.Received, time.Now()
			case !r.stopping.Load() && time.Since(lastChange) > stallTimeout:
				abort(fmt.Errorf("%w: no reply for %v", ErrStalled, stallTimeout))
			}
		}
	}

	res := Result{
		Test:        "echo",
		Conns:       cfg.Conns,
		InFlight:    cfg.InFlight,
		PayloadSize: cfg.PayloadSize,
		Elapsed:     end.Sub(start),
		Latency:     r.lat.summary(),
		Errors:      r.errs.n.Load(),
		FirstError:  r.errs.firstError(),
	}
	for _, ec := range ecs {
		res.Sent += ec.sent.Load()
		res.Messages += ec.replies.Load()
	}
	res.MsgPerSec = perSec(res.Messages, res.Elapsed)
	return res, runErr
}

// echoRun is the state an Echo run's connections share.
type echoRun struct {
	cfg      EchoConfig
	inline   bool   // one goroutine per connection; else a reader and a writer
	template []byte // one frame; send fills in stamp, connection and sequence
	batch    int    // most frames written at once
	lat      *latencies
	errs     errorLog
	budget   atomic.Int64  // round trips not yet started, if cfg.Count > 0
	stopping atomic.Bool   // past the measured span: send no more, count no more
	stopCh   chan struct{} // closed when stopping is set
	stopOnce sync.Once
	closing  atomic.Bool // tearing down: read and write errors are expected
}

func newEchoRun(cfg EchoConfig) *echoRun {
	size := wire.FrameSize(cfg.PayloadSize)
	payload := make([]byte, cfg.PayloadSize)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	template, _ := wire.AppendFrame(nil, payload) // PayloadSize was checked
	r := &echoRun{
		cfg:      cfg,
		inline:   cfg.InFlight*size <= inlineBytes,
		template: template,
		batch:    max(1, min(cfg.InFlight, maxBatchBytes/size)),
		lat:      newLatencies(cfg.Conns),
		stopCh:   make(chan struct{}),
	}
	r.budget.Store(cfg.Count)
	return r
}

func (r *echoRun) stop() {
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		close(r.stopCh)
	})
}

// claim takes up to n round trips from the budget and returns how many it
// took: none once the run is stopping or the Count is spent.
func (r *echoRun) claim(n int) int {
	if n <= 0 || r.stopping.Load() {
		return 0
	}
	if r.cfg.Count == 0 {
		return n
	}
	for {
		b := r.budget.Load()
		if b <= 0 {
			return 0
		}
		k := min(int64(n), b)
		if r.budget.CompareAndSwap(b, b-k) {
			return int(k)
		}
	}
}

func (r *echoRun) progress(ecs []*echoConn, start time.Time) Progress {
	p := Progress{Elapsed: time.Since(start), Errors: r.errs.n.Load()}
	for _, ec := range ecs {
		if !ec.failed.Load() {
			p.Conns++
		}
		p.Sent += ec.sent.Load()
		p.Received += ec.replies.Load()
	}
	return p
}

// echoConn is one connection of an Echo run. In inline mode one goroutine
// owns all of it; otherwise the reader owns dec, rbuf, samples and
// recvSeq, the writer wbuf and sendSeq, and they share the atomics.
type echoConn struct {
	run     *echoRun
	c       net.Conn
	id      uint32
	rbuf    []byte
	wbuf    []byte
	dec     wire.Decoder
	samples []int64
	sendSeq uint32
	recvSeq uint32

	sent     atomic.Int64 // frames sent
	answered atomic.Int64 // replies received, right or wrong
	replies  atomic.Int64 // right replies received in the measured span
	failed   atomic.Bool

	// Reader and writer mode only.
	wake       chan struct{} // the reader has received replies
	readerDone chan struct{}
	writerDone atomic.Bool
}

func (r *echoRun) newConn(id uint32, c net.Conn) *echoConn {
	size := wire.FrameSize(r.cfg.PayloadSize)
	ec := &echoConn{
		run: r,
		c:   c,
		id:  id,
		// The reply to every frame in flight fits, and a read never
		// returns more than is in flight.
		rbuf:       make([]byte, min(max(r.cfg.InFlight*size, 4096), maxBatchBytes)),
		wbuf:       make([]byte, 0, r.batch*size),
		samples:    make([]int64, 0, r.batch),
		wake:       make(chan struct{}, 1),
		readerDone: make(chan struct{}),
	}
	ec.dec.Init(wire.MaxPayload)
	return ec
}

// runInline drives the connection from one goroutine: send a window, then
// for each read's worth of replies send as many new frames in one write.
func (ec *echoConn) runInline() {
	r := ec.run
	if err := ec.send(r.claim(r.cfg.InFlight)); err != nil {
		ec.fail(err)
		return
	}
	for ec.answered.Load() < ec.sent.Load() {
		n, err := ec.c.Read(ec.rbuf)
		if n > 0 {
			got, perr := ec.consume(ec.rbuf[:n])
			if perr != nil {
				ec.fail(perr)
				return
			}
			if err := ec.send(r.claim(got)); err != nil {
				ec.fail(err)
				return
			}
		}
		if err != nil {
			ec.fail(err)
			return
		}
	}
}

// readLoop receives replies and hands the writer credit for new frames.
// It ends when the writer has stopped and every frame it sent is answered.
func (ec *echoConn) readLoop() {
	defer close(ec.readerDone)
	for !ec.finished() {
		n, err := ec.c.Read(ec.rbuf)
		if n > 0 {
			got, perr := ec.consume(ec.rbuf[:n])
			if perr != nil {
				ec.fail(perr)
				return
			}
			if got > 0 {
				select {
				case ec.wake <- struct{}{}:
				default:
				}
			}
		}
		if err != nil {
			if !ec.finished() { // else the writer's deadline ended the read
				ec.fail(err)
			}
			return
		}
	}
}

func (ec *echoConn) finished() bool {
	return ec.writerDone.Load() && ec.answered.Load() >= ec.sent.Load()
}

// writeLoop sends a new frame for each reply, all that are due in one
// write, until the Count is spent or the run stops.
func (ec *echoConn) writeLoop() {
	r := ec.run
	defer func() {
		// The reader checks writerDone after each read; if everything is
		// answered already it may be blocked in a read that will never
		// return, so end that read.
		ec.writerDone.Store(true)
		if ec.answered.Load() >= ec.sent.Load() {
			_ = ec.c.SetReadDeadline(time.Unix(1, 0))
		}
	}()
	window := int64(r.cfg.InFlight)
	for {
		if due := ec.answered.Load() + window - ec.sent.Load(); due > 0 {
			k := r.claim(int(min(due, int64(r.batch))))
			if k == 0 {
				return
			}
			if err := ec.send(k); err != nil {
				ec.fail(err)
				return
			}
			continue
		}
		select {
		case <-ec.wake:
		case <-r.stopCh:
			return
		case <-ec.readerDone:
			return
		}
	}
}

// send writes k frames in one write.
func (ec *echoConn) send(k int) error {
	if k == 0 {
		return nil
	}
	r := ec.run
	stamp := uint64(now())
	long := r.cfg.PayloadSize >= echoHeader
	b := ec.wbuf[:0]
	for range k {
		off := len(b) + wire.HeaderSize
		b = append(b, r.template...)
		binary.BigEndian.PutUint64(b[off:], stamp)
		if long {
			binary.BigEndian.PutUint32(b[off+8:], ec.id)
			binary.BigEndian.PutUint32(b[off+12:], ec.sendSeq)
		}
		ec.sendSeq++
	}
	ec.wbuf = b[:0]
	// Counted before the write, so the reader never sees a reply to a
	// frame it does not know was sent.
	ec.sent.Add(int64(k))
	_, err := ec.c.Write(b)
	return err
}

// consume decodes the replies in data, checks and times them, and returns
// how many there were. A protocol error ends the connection.
func (ec *echoConn) consume(data []byte) (int, error) {
	r := ec.run
	counting := !r.stopping.Load()
	t := now()
	long := r.cfg.PayloadSize >= echoHeader
	ec.samples = ec.samples[:0]
	ec.dec.Feed(data)
	n := 0
	for {
		p, ok, err := ec.dec.Next()
		if err != nil {
			return n, err
		}
		if !ok {
			break
		}
		n++
		if len(p) != r.cfg.PayloadSize {
			r.errs.add("connection %d: reply of %d bytes, want %d", ec.id, len(p), r.cfg.PayloadSize)
			continue
		}
		// The bytes after the stamp (and the connection and sequence)
		// are the template's: a reply corrupted there is an error too.
		if hdr := ec.headerLen(); !bytes.Equal(p[hdr:], r.template[wire.HeaderSize+hdr:wire.HeaderSize+len(p)]) {
			r.errs.add("connection %d: reply %d corrupt after byte %d", ec.id, ec.recvSeq, hdr)
			ec.recvSeq++
			continue
		}
		if long {
			if id := binary.BigEndian.Uint32(p[8:]); id != ec.id {
				r.errs.add("connection %d: got the reply for connection %d", ec.id, id)
				continue
			}
			seq := binary.BigEndian.Uint32(p[12:])
			if seq != ec.recvSeq {
				r.errs.add("connection %d: reply %d, want %d", ec.id, seq, ec.recvSeq)
				ec.recvSeq = seq + 1
				continue
			}
			ec.recvSeq++
		}
		d := t - int64(binary.BigEndian.Uint64(p))
		if d < 0 {
			r.errs.add("connection %d: reply stamped in the future", ec.id)
			continue
		}
		if counting {
			ec.samples = append(ec.samples, d)
		}
	}
	if over := ec.answered.Load() + int64(n) - ec.sent.Load(); over > 0 {
		r.errs.add("connection %d: %d replies to frames never sent", ec.id, over)
	}
	ec.answered.Add(int64(n))
	if len(ec.samples) > 0 {
		r.lat.record(int(ec.id), ec.samples)
		ec.replies.Add(int64(len(ec.samples)))
	}
	return n, nil
}

// headerLen is how many bytes at the start of a payload send fills in;
// the rest are the template's.
func (ec *echoConn) headerLen() int {
	if ec.run.cfg.PayloadSize >= echoHeader {
		return echoHeader
	}
	return minEchoPayload
}

// fail ends the connection on its first error, counting the error unless
// the run is tearing down, and unblocks its other goroutine.
func (ec *echoConn) fail(err error) {
	if !ec.failed.CompareAndSwap(false, true) {
		return
	}
	if !ec.run.closing.Load() {
		ec.run.errs.add("connection %d: %v", ec.id, err)
	}
	_ = ec.c.SetDeadline(time.Unix(1, 0))
}
