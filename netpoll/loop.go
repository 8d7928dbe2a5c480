package netpoll

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// listenerMarker is the epoll data of a loop's first listening socket;
// the i-th has listenerMarker - i.
const listenerMarker = -2

// Accept backoff on EMFILE/ENFILE: long enough not to spin, short enough
// that service resumes soon after descriptors free up.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// Loop control requests from the server, applied on the loop goroutine.
const (
	ctlQuiesce = 1 << iota // stop accepting and reading
	ctlDrain               // close each connection once its queue is written
	ctlForce               // close every connection now
)

// loop is one event loop: an epoll instance, the connections assigned to
// it, and a goroutine that alone touches their fds.
type loop struct {
	idx     int
	srv     *Server
	p       *poller
	handler Handler
	quiet   QuietHandler // handler, if it wants to hear of quiet connections; else nil
	log     *slog.Logger
	stats   counters

	maxPending   int64
	stallMark    int64 // 3/4 of maxPending: a Send past it stalls its producer
	resumeMark   int64 // 1/2 of maxPending: a stall ends when its queues are below it
	overflow     Overflow
	maxPayload   int
	writeTimeout int64
	idleTimeout  int64
	frameTimeout int64
	tickEvery    int64

	// Loop-only state.
	byFD       []*Conn // open connections by fd
	nconns     int
	nextGen    int32
	now        int64 // the poller's clock: monotonic nanoseconds
	nextTick   int64
	buf        []byte
	plain      []byte // TLS plaintext of one drain, and records' plaintext to encrypt; nil without TLS
	iov        []unix.Iovec
	quiesced   bool
	draining   bool
	lns        []*listener // the server's listeners, until quiesced: every loop accepts
	armed      []bool      // lns[i] is registered with this loop's epoll
	backoff    time.Duration
	retryAt    int64
	readyLocal []*Conn
	newLocal   []*Conn

	stalledConns []*Conn // connections whose reading a flow-control stall holds
	tlsMore      []*Conn // TLS connections with plaintext that may be left to drain
	tlsMoreLocal []*Conn
	memStalled   bool          // the memory budget's stall, applied to every mask
	reclaimSeen  uint64        // the budget's reclaimSeq this loop has acted on
	lingering    map[int]int64 // closed sockets lingering (linger.go), fd → until
	noLinger     bool          // Config.noLinger
	reclaimBuf   []holder

	// Shared with other goroutines under mu.
	mu       sync.Mutex
	ready    []*Conn // connections with queued work
	newConns []*Conn // accepted connections handed to this loop
	ctl      int
	stopped  bool // run has returned: adopt refuses new connections
}

func (l *loop) schedule(c *Conn) {
	l.mu.Lock()
	l.ready = append(l.ready, c)
	l.mu.Unlock()
	l.p.trigger()
}

func (l *loop) control(op int) {
	l.mu.Lock()
	l.ctl |= op
	l.mu.Unlock()
	l.p.trigger()
}

// adopt hands l a connection another loop accepted. It reports false, and
// leaves closing the fd to the caller, when l has already stopped: a
// loop whose connections have all drained at shutdown may end while loop
// 0 is still accepting.
func (l *loop) adopt(c *Conn) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.newConns = append(l.newConns, c)
	l.mu.Unlock()
	l.p.trigger()
	return true
}

// refuse closes an accepted fd that will never be served because the
// server is shutting down.
func (l *loop) refuse(fd int) {
	unix.Close(fd)
	l.srv.open.Add(-1)
	l.stats.closed[reasonShutdown].Add(1)
}

// stop ends the loop: it closes the listener, if it still has it, and
// any connection adopted since the last processQueues, and then its
// poller.
func (l *loop) stop() {
	l.closeListener()
	l.mu.Lock()
	l.stopped = true
	orphans := l.newConns
	l.newConns, l.ready = nil, nil
	l.mu.Unlock()
	for _, c := range orphans {
		l.refuse(c.fd)
	}
	l.expireLingering(true)
	l.p.close()
}

func (l *loop) run() error {
	defer l.stop()
	events := make([]unix.EpollEvent, 256)
	l.now = l.p.clock()
	l.nextTick = l.now + l.tickEvery
	until := l.wakeAt()
	for {
		n, err := l.p.wait(events, until)
		if err != nil {
			l.closeAll(ErrShutdown)
			return fmt.Errorf("loop %d: %w", l.idx, err)
		}
		l.now = l.p.clock()
		// The memory budget's state first, so that a stall applies before
		// this batch of events is read.
		l.checkMemory()
		// While the loop is awake, senders need not wake it: it looks at
		// its queues once more after clearing the mark, before it sleeps.
		// Under load that saves most eventfd writes.
		l.p.woken.Store(1)
		for i := range n {
			ev := &events[i]
			switch {
			case ev.Pad == wakeMarker:
				l.p.drainWake()
			case ev.Pad == lingerMarker:
				l.lingerEvent(int(ev.Fd))
			case ev.Pad <= listenerMarker:
				if i := int(listenerMarker - ev.Pad); i < len(l.lns) {
					l.accept(i)
				}
			default:
				l.event(ev)
			}
		}
		l.processQueues()
		if len(l.tlsMore) > 0 {
			l.drainMore()
		}
		if len(l.stalledConns) > 0 {
			l.pollStalls()
		}
		// The accept retry has its own deadline: tick may be far off, and
		// wakeAt returns 0 once retryAt has passed, so leaving the retry
		// to tick would spin the loop until then.
		if l.retryAt != 0 && l.now >= l.retryAt {
			l.retryAccept()
		}
		if l.now >= l.nextTick {
			l.tick()
		}
		if l.draining && l.nconns == 0 {
			return nil
		}
		l.p.woken.Store(0)
		until = l.wakeAt()
		if l.queuedWork() || len(l.tlsMore) > 0 {
			until = 0 // queued while the mark was set, or TLS input to drain: poll, do not sleep
		}
	}
}

// queuedWork reports whether other goroutines queued work for the loop.
func (l *loop) queuedWork() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ready) > 0 || len(l.newConns) > 0 || l.ctl != 0
}

// wakeAt is when the loop must wake even with nothing to read: the next
// tick, the accept retry, or the next look at stalled producers, whichever
// is soonest; 0 when that time has come.
func (l *loop) wakeAt() int64 {
	t := l.nextTick
	if l.retryAt != 0 && l.retryAt < t {
		t = l.retryAt
	}
	if len(l.stalledConns) > 0 {
		t = min(t, l.now+int64(stallPoll))
	}
	if t <= l.now {
		return 0
	}
	return t
}

func (l *loop) lookup(fd, gen int32) *Conn {
	if int(fd) >= len(l.byFD) {
		return nil
	}
	c := l.byFD[fd]
	if c == nil || c.gen != gen {
		return nil
	}
	return c
}

func (l *loop) event(ev *unix.EpollEvent) {
	c := l.lookup(ev.Fd, ev.Pad)
	if c == nil {
		return // a stale event for a connection closed earlier in this batch
	}
	e := ev.Events
	if e&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 && c.mask&unix.EPOLLIN != 0 {
		l.read(c)
	}
	if c.done {
		return
	}
	if e&unix.EPOLLOUT != 0 {
		l.flush(c)
	}
	if c.done {
		return
	}
	if e&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		// Both directions are gone (RST, or a full close). Level-triggered
		// HUP cannot be masked, so leaving the connection registered would
		// spin the loop.
		err := socketError(c.fd)
		if err == nil {
			l.close(c, ErrPeerClosed, reasonPeer)
		} else {
			l.close(c, fmt.Errorf("%w: %w", ErrReset, err), reasonReset)
		}
	}
}

// read does one read into the loop's buffer and delivers the frames it
// completed in one Handler call. (A TLS connection's bytes go through its
// TLS state first.)
func (l *loop) read(c *Conn) {
	n, err := unix.Read(c.fd, l.buf)
	if n > 0 {
		if c.tls != nil {
			l.readTLS(c, l.buf[:n])
			return
		}
		l.deliver(c, l.buf[:n])
		return
	}
	switch {
	case err == nil: // end of file: the peer half-closed or closed
		if c.tls != nil {
			l.readTLS(c, nil)
			return
		}
		l.peerEOF(c)
	case err == unix.EAGAIN || err == unix.EINTR:
	default:
		l.close(c, fmt.Errorf("%w: %w", ErrReset, err), reasonReset)
	}
}

// peerEOF is the end of what the peer sends: it half-closed or closed.
func (l *loop) peerEOF(c *Conn) {
	c.readClosed = true
	c.readClosedAt = l.now
	l.updateMask(c)
	l.maybeFinish(c)
}

// deliver decodes the stream bytes of one read (for TLS, its plaintext)
// and hands the frames they complete to the handler in one call.
func (l *loop) deliver(c *Conn, data []byte) {
	if c.ws != nil {
		l.wsInput(c, data)
		return
	}
	size := len(data) + c.dec.Buffered() // payloads can not exceed the bytes in hand
	c.dec.Feed(data)
	var b *Batch
	var payload uint64
	var perr error
	for {
		p, ok, err := c.dec.Next()
		if err != nil {
			perr = err
			break
		}
		if !ok {
			break
		}
		if b == nil {
			b = newBatch(c, size)
		}
		b.add(p)
		payload += uint64(len(p))
	}
	l.trackPartial(c, b != nil)
	if b != nil {
		c.lastFrame, c.quietTold = l.now, false
		l.stats.msgRecv.Add(uint64(len(b.Frames)))
		l.stats.bytesRecv.Add(payload)
		c.inflight.Add(1)
		l.handler.OnFrames(c, b)
		if c.inflight.Load() == 0 {
			// The handler finished the batch before it returned (it
			// ran on the loop): write its replies now, while this
			// socket is warm, instead of after every other ready
			// connection has been read.
			l.flushNow(c)
		}
	}
	if perr != nil {
		l.close(c, fmt.Errorf("%w: %w", ErrProtocol, perr), reasonProtocol)
	}
}

// trackPartial follows the frame left incomplete by a read: when it began,
// for the frame timeout, and the carry buffer it holds, for the memory
// budget. completed says whether the read completed a frame, so that any
// frame incomplete now began with this read.
func (l *loop) trackPartial(c *Conn, completed bool) {
	if c.dec.Buffered() == 0 {
		c.partialSince = 0
	} else if completed || c.partialSince == 0 {
		c.partialSince = l.now
	}
	if h := c.dec.Held(); h != c.carry {
		l.srv.mem.used.Add(int64(h - c.carry))
		c.carry = h
	}
}

// flushNow writes an open connection's queue at once. (A closing one is
// left to processQueues, which knows whether its close allows a flush; so
// is one already waiting for EPOLLOUT.) It checks the state under the
// lock that takes the queue, so the read path pays for one lock, not two.
func (l *loop) flushNow(c *Conn) {
	if !c.hasOutput() {
		l.write(c, true)
	}
}

// flush writes what is queued until the socket is full or the queue is
// empty, and arms or disarms EPOLLOUT to match.
func (l *loop) flush(c *Conn) { l.write(c, false) }

// write is flush; with onlyOpen it does nothing unless the connection is
// open when its queue is taken.
func (l *loop) write(c *Conn, onlyOpen bool) {
	if c.tls != nil || c.ws != nil {
		l.writeTransport(c, onlyOpen)
		return
	}
	progress := false
	for range 4 { // bound the time one connection holds the loop
		if c.out.empty() {
			c.mu.Lock()
			if onlyOpen && c.state != stateOpen {
				c.mu.Unlock()
				return
			}
			if c.pend.empty() {
				c.mu.Unlock()
				break
			}
			frames, payload := c.out.take(&c.pend)
			c.mu.Unlock()
			c.quiet = 0
			l.stats.msgSent.Add(frames)
			l.stats.bytesSent.Add(payload)
		}
		var want int64
		l.iov, want = c.out.iovecs(l.iov)
		c.inWrite.Store(want)
		n, err := writev(c.fd, l.iov)
		if n > 0 {
			c.out.advance(n)
			c.queued.Add(-int64(n))
			l.srv.mem.release(int64(n))
			progress = true
		}
		c.inWrite.Store(0)
		if err == unix.EAGAIN {
			break
		}
		if err != nil && err != unix.EINTR {
			l.close(c, fmt.Errorf("%w: %w", ErrReset, err), reasonReset)
			return
		}
	}
	l.afterWrite(c, progress)
}

// afterWrite keeps the write timeout's clock and arms or disarms EPOLLOUT
// after a write. The timeout counts from the last progress: a reader that
// is slow but reads is not stuck. What the kernel sends for us counts too
// (see tick), so the peer's acknowledged bytes are noted when the clock
// restarts.
func (l *loop) afterWrite(c *Conn, progress bool) {
	if !c.hasOutput() {
		c.blockedSince = 0
	} else if progress || c.blockedSince == 0 {
		c.blockedSince = l.now
		c.acked = ackedBytes(c.fd)
	}
	l.updateMask(c)
	l.maybeFinish(c)
}

// maybeFinish closes a connection whose work is done: half-closed by the
// peer with every delivered batch released and every reply written, or
// drained at shutdown.
func (l *loop) maybeFinish(c *Conn) {
	if c.done || c.hasOutput() {
		return
	}
	if c.readClosed && c.inflight.Load() == 0 && c.owed.Load() == 0 && c.queued.Load() == 0 {
		l.close(c, ErrPeerClosed, reasonPeer)
	} else if l.draining && c.queued.Load() == 0 {
		l.close(c, ErrShutdown, reasonShutdown)
	}
}

func (l *loop) updateMask(c *Conn) {
	if c.done {
		return
	}
	var want uint32
	if !c.readClosed && !c.readPaused && !c.readStalled && !l.memStalled && !l.quiesced {
		want |= evRead
	}
	if c.hasOutput() {
		want |= evWrite
	}
	if want == c.mask {
		return
	}
	if c.tls != nil && want&evRead != 0 && c.mask&evRead == 0 && c.tls.buffered {
		// Plaintext left in the TLS state: epoll will not report it.
		l.tlsMore = append(l.tlsMore, c)
	}
	if err := l.p.control(unix.EPOLL_CTL_MOD, c.fd, c.gen, want); err != nil {
		l.close(c, fmt.Errorf("%w: %w", ErrReset, err), reasonReset)
		return
	}
	c.mask = want
}

func (l *loop) processQueues() {
	l.mu.Lock()
	ready, newConns, ctl := l.ready, l.newConns, l.ctl
	l.ready, l.readyLocal = l.readyLocal[:0], ready
	l.newConns, l.newLocal = l.newLocal[:0], newConns
	l.ctl = 0
	l.mu.Unlock()

	for _, c := range newConns {
		l.register(c)
	}
	clear(newConns)
	if ctl != 0 {
		l.applyControl(ctl)
	}
	for _, c := range ready {
		if c.done {
			continue
		}
		if c.tls != nil && !c.opened && c.tls.result.Load() != handshakePending {
			l.handshakeOutcome(c)
			if c.done {
				continue
			}
		}
		c.mu.Lock()
		c.scheduled = false
		state, reason, paused := c.state, c.reason, c.paused
		stalled, stallFor := c.stalled, c.stallFor
		c.mu.Unlock()
		if state == stateClosing {
			if errors.Is(reason, ErrSlowConsumer) {
				// Nothing more is written to a slow consumer.
				l.close(c, reason, reasonOf(reason))
				continue
			}
			l.flush(c) // one non-blocking attempt, as Close promises
			if !c.done {
				l.close(c, reason, reasonOf(reason))
			}
			continue
		}
		if paused != c.readPaused {
			c.readPaused = paused
			if paused {
				l.stats.paused.Add(1)
			} else {
				l.stats.paused.Add(-1)
				c.resumed(l.now)
			}
		}
		if stalled {
			l.applyStall(c, stallFor)
		}
		l.flush(c)
	}
	clear(ready)
}

func (l *loop) register(c *Conn) {
	if l.draining || l.quiesced {
		l.refuse(c.fd)
		return
	}
	c.loop = l
	c.gen = l.nextGen & 0x7fffffff
	l.nextGen++
	c.lastFrame = l.now
	c.dec.Init(l.maxPayload)
	for c.fd >= len(l.byFD) {
		l.byFD = append(l.byFD, make([]*Conn, len(l.byFD)+64)...)
	}
	l.byFD[c.fd] = c
	l.nconns++
	l.stats.open.Add(1)
	switch {
	case c.ws != nil:
		// The handler hears of it once it has upgraded (wsUpgrade).
		c.SetDeadline(l.srv.cfg.TLSHandshakeTimeout, fmt.Errorf("%w: %w: not done within %v", ErrHandshake, errUpgrade, l.srv.cfg.TLSHandshakeTimeout))
	case c.tls == nil:
		l.open(c)
	}
	c.mask = evRead
	if err := l.p.control(unix.EPOLL_CTL_ADD, c.fd, c.gen, c.mask); err != nil {
		l.close(c, fmt.Errorf("%w: %w", ErrReset, err), reasonReset)
		return
	}
	if c.tls != nil {
		// The handler hears of a TLS connection once its handshake is
		// done (handshakeOutcome); the loop reads its bytes meanwhile.
		l.srv.handshakes.Add(1)
		go l.srv.handshake(c)
	}
}

// open tells the handler of a connection that is ready for frames.
func (l *loop) open(c *Conn) {
	c.opened = true
	c.lastFrame = l.now
	l.handler.OnOpen(c)
}

// close closes c's fd and reports OnClose exactly once.
func (l *loop) close(c *Conn, err error, r reason) {
	if c.done {
		return
	}
	c.done = true
	c.mu.Lock()
	c.state = stateClosed
	putArena(c.pend.box)
	c.pend = pending{}
	clear(c.waitOn)
	c.waitOn, c.stalled = nil, false
	c.mu.Unlock()
	putArena(c.out.box)
	c.out = outbound{}
	if c.tls != nil {
		// Its unwritten records are in queued, given back below; a
		// handshake still running fails on the closed pipe.
		c.tls.pipe.Close()
		c.tls.pipe.dropOut()
	}
	// What the queue and the carry buffer held goes back to the budget.
	// (A Send racing the close has either counted its bytes in queued
	// already, or finds the connection closed and counts nothing.)
	l.srv.mem.release(c.queued.Swap(0) + int64(c.carry))
	c.dec.Reset()
	c.carry = 0
	if c.readStalled {
		c.readStalled = false
		l.stats.stalled.Add(-1)
	}
	l.srv.forgetPeer(c)
	// Closing the fd removes it from the epoll set; the fd number may be
	// reused at once, which the generation in the event data guards.
	l.byFD[c.fd] = nil
	if lingers(r) && !c.readClosed {
		l.linger(c.fd, true)
	} else {
		unix.Close(c.fd)
	}
	l.nconns--
	// The reason is counted before the connection leaves Open, so a reader
	// that sees Open fall also sees why.
	l.stats.closed[r].Add(1)
	if c.readPaused {
		l.stats.paused.Add(-1)
	}
	l.stats.open.Add(-1)
	l.srv.open.Add(-1)
	if c.opened {
		l.handler.OnClose(c, err)
	}
}

func reasonOf(err error) reason {
	switch {
	case errors.Is(err, ErrMemoryLimit):
		return reasonMemory
	case errors.Is(err, ErrSlowConsumer):
		return reasonSlow
	case errors.Is(err, ErrIdle):
		return reasonIdle
	case errors.Is(err, ErrFrameTimeout):
		return reasonFrame
	case errors.Is(err, ErrHandshake):
		return reasonHandshake
	case errors.Is(err, ErrProtocol):
		return reasonProtocol
	case errors.Is(err, ErrShutdown):
		return reasonShutdown
	case errors.Is(err, ErrLimit):
		return reasonLimit
	}
	return reasonLocal
}

func (l *loop) applyControl(ctl int) {
	if ctl&ctlQuiesce != 0 && !l.quiesced {
		l.quiesced = true
		l.closeListener()
		for _, c := range l.byFD {
			if c != nil {
				l.updateMask(c)
			}
		}
	}
	if ctl&ctlDrain != 0 && !l.draining {
		l.draining = true
		for _, c := range l.byFD {
			if c != nil {
				// Write now what wakeLocked held back behind a batch the
				// handler still has; flush closes c once all is written.
				l.flush(c)
			}
		}
	}
	if ctl&ctlForce != 0 {
		l.closeAll(ErrShutdown)
	}
}

func (l *loop) closeAll(err error) {
	for _, c := range l.byFD {
		if c != nil {
			l.close(c, err, reasonShutdown)
		}
	}
}

// closeListener stops this loop accepting: it takes the listeners out of
// its epoll and lets go of them; the last loop to do so closes them.
func (l *loop) closeListener() {
	for i, ln := range l.lns {
		if l.armed[i] {
			_ = l.p.control(unix.EPOLL_CTL_DEL, ln.fd, int32(listenerMarker-i), 0)
		}
		if err := ln.release(); err != nil {
			l.log.Warn("closing the listener", "addr", ln.addr.String(), "err", err)
		}
	}
	l.lns, l.armed = nil, nil
	l.retryAt = 0
}

// tick enforces the time limits: write deadlines, idle and frame
// timeouts, and the linger of half-closed connections; it gives idle
// queues' buffers back, and tells a QuietHandler of quiet connections.
func (l *loop) tick() {
	l.nextTick = l.now + l.tickEvery
	l.expireLingering(false)
	for _, c := range l.byFD {
		if c == nil {
			continue
		}
		c.shrink()
		if !c.hasOutput() && c.queued.Load() > 0 {
			// Output deferred behind a batch the handler still holds.
			l.flush(c)
			if c.done {
				continue
			}
		}
		// A connection the loop is not reading (paused by the layer above,
		// stalled, or quiesced) is neither idle nor slow to finish a frame:
		// it may well be sending.
		reading := !c.readClosed && !c.readPaused && !c.readStalled && !l.memStalled && !l.quiesced
		if c.blockedSince != 0 && l.now-c.blockedSince > l.writeTimeout {
			// The kernel reports a full socket writable again only once a
			// third of its send buffer (megabytes, with autotuning) is
			// free: a peer that reads slowly can take longer than the
			// timeout to get there. If the peer has acknowledged more
			// bytes since, it is reading.
			if a := ackedBytes(c.fd); a != c.acked {
				c.acked = a
				c.blockedSince = l.now
			}
		}
		if w := c.ws; w != nil && w.upgraded && !w.closing {
			switch every := int64(w.cfg.PingInterval); {
			case w.pingAt != 0 && l.now-w.pingAt > every:
				l.close(c, fmt.Errorf("%w: websocket: no answer to a ping in %v", ErrIdle, w.cfg.PingInterval), reasonIdle)
				continue
			case w.pingAt == 0 && l.now-w.lastSeen > every:
				w.pingAt = l.now
				l.wsControl(c, 0x9, nil)
				if c.done {
					continue
				}
			}
		}
		if dl := c.deadline.Load(); dl != 0 && l.now >= dl {
			c.mu.Lock()
			reason := c.deadlineReason
			c.mu.Unlock()
			l.close(c, reason, reasonOf(reason))
			continue
		}
		switch {
		case c.blockedSince != 0 && l.now-c.blockedSince > l.writeTimeout:
			l.close(c, fmt.Errorf("%w: no write progress for %v", ErrSlowConsumer, time.Duration(l.writeTimeout)), reasonSlow)
		// A half-closed connection lingers for its replies: while the
		// layer above owes some (each bounded by its own deadline, such as
		// a telemetry span), and then for the write timeout.
		case c.readClosed && c.owed.Load() == 0 && l.now-c.readClosedAt > l.writeTimeout:
			l.close(c, ErrPeerClosed, reasonPeer)
		case c.readClosed && c.owed.Load() > 0:
			c.readClosedAt = l.now
		case reading && c.partialSince != 0 && l.now-c.partialSince > l.frameTimeout:
			l.close(c, fmt.Errorf("%w: %d bytes of it after %v", ErrFrameTimeout, c.dec.Buffered(), time.Duration(l.frameTimeout)), reasonFrame)
		case reading && l.idleTimeout > 0 && l.now-c.lastFrame > l.idleTimeout:
			l.close(c, ErrIdle, reasonIdle)
		}
		if l.quiet != nil && !c.quietTold && !c.done && c.opened && !c.readClosed && !l.quiesced &&
			l.now-c.lastFrame >= quietTicks*l.tickEvery {
			c.quietTold = l.quiet.OnQuiet(c)
		}
	}
}

// retryAccept ends an accept backoff.
func (l *loop) retryAccept() {
	l.retryAt = 0
	l.armListener()
	for i := range l.lns {
		l.accept(i)
	}
}

// armListener registers the listeners with this loop's epoll. Every loop
// does: a storm of connections is accepted on every core. EPOLLEXCLUSIVE
// wakes one waiting loop per connection rather than all of them.
func (l *loop) armListener() {
	for i, ln := range l.lns {
		if l.armed[i] {
			continue
		}
		if err := l.p.control(unix.EPOLL_CTL_ADD, ln.fd, int32(listenerMarker-i), unix.EPOLLIN|unix.EPOLLEXCLUSIVE); err != nil {
			// Most likely ENOMEM: try again later rather than never accept.
			l.log.Error("watching the listener", "addr", ln.addr.String(), "err", err)
			l.backOff(err)
			return
		}
		l.armed[i] = true
	}
}

// accept takes the connections waiting on listener i and hands each to
// the loop with the fewest connections: itself, unless another has fewer.
func (l *loop) accept(i int) {
	if !l.armed[i] {
		return
	}
	ln := l.lns[i]
	for range 256 { // then let the loop serve its connections
		fd, sa, err := ln.accept()
		if err != nil {
			switch err {
			case unix.EAGAIN:
				return
			case unix.EINTR, unix.ECONNABORTED:
				continue
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				l.backOff(err)
				return
			default:
				l.log.Error("accept", "addr", ln.addr.String(), "err", err)
				l.backOff(err)
				return
			}
		}
		l.backoff = 0
		l.stats.accepted.Add(1)
		s := l.srv
		remote := tcpAddr(sa)
		if max := s.cfg.MaxConns; max > 0 && s.open.Load() >= int64(max) {
			l.refuseLimit(ln, fd, remote, "connections", max)
			continue
		}
		if !s.admitPeer(remote) {
			l.refuseLimit(ln, fd, remote, "connections from one address", s.cfg.MaxConnsPerIP)
			continue
		}
		s.open.Add(1)
		// TCP_NODELAY and keepalive come from the listening socket.
		c := &Conn{id: s.nextID.Add(1), fd: fd, remote: remote}
		if ln.tls != nil {
			c.tls = newTLS(c, ln.tls)
		}
		if ln.ws != nil {
			c.ws = newWS(ln.ws)
		}
		target := l.leastLoaded()
		c.loop = target
		if target == l {
			l.register(c)
		} else if !target.adopt(c) {
			l.refuse(fd)
		}
	}
}

// leastLoaded is the loop a connection accepted by l goes to: the one
// with the fewest connections, l itself when none has fewer. Connections
// live long, so they are spread evenly over the cores whichever loop
// happened to wake for them.
func (l *loop) leastLoaded() *loop {
	least, n := l, l.stats.open.Load()
	for _, o := range l.srv.loops {
		if on := o.stats.open.Load(); on < n {
			least, n = o, on
		}
	}
	return least
}

// refuseLimit turns away a connection over a limit: it writes the
// refusal as one frame (the error object a client also gets for a refused
// telemetry request), if the socket takes it at once, closes it, counts
// it and logs it, at most once a second.
func (l *loop) refuseLimit(ln *listener, fd int, remote *net.TCPAddr, what string, limit int) {
	if ln.refusal != nil {
		_, _ = unix.Write(fd, ln.refusal)
	}
	l.linger(fd, false)
	l.stats.closed[reasonLimit].Add(1)
	l.srv.limitLog.warn(l.log, "connection refused: limit reached", "remote", remote.String(), "limit", what, "max", limit)
}

// backOff stops watching the listener for a while when accept fails for
// lack of resources: the pending connection stays in the kernel's queue,
// so a level-triggered listener would otherwise wake the loop forever.
func (l *loop) backOff(err error) {
	if l.backoff == 0 {
		l.backoff = minAcceptBackoff
	} else {
		l.backoff = min(2*l.backoff, maxAcceptBackoff)
	}
	l.stats.acceptBackoffs.Add(1)
	if l.backoff == minAcceptBackoff {
		l.log.Warn("accept failed; backing off", "addr", l.srv.addr.String(), "err", err)
	}
	for i, ln := range l.lns {
		if l.armed[i] {
			if cerr := l.p.control(unix.EPOLL_CTL_DEL, ln.fd, int32(listenerMarker-i), 0); cerr == nil {
				l.armed[i] = false
			}
		}
	}
	l.retryAt = l.now + int64(l.backoff)
}
