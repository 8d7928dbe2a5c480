package netpoll

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
	"golang.org/x/sys/unix"
)

const (
	stateOpen    = iota
	stateClosing // Close was asked for; the loop has not closed the fd yet
	stateClosed
)

// Conn is one client connection. It is a handle, not an fd: the loop that
// owns the connection alone touches the fd, and a Conn that has closed
// refuses every Send, so nothing queued for it can reach a later
// connection that the kernel gave the same fd number.
//
// Send, SendFrame, Close, PauseRead, ResumeRead and the accessors are safe
// for concurrent use from any goroutine.
type Conn struct {
	id     uint64
	remote *net.TCPAddr
	loop   *loop
	value  any

	// Loop-only state: read and written by the owning loop alone.
	fd           int
	gen          int32
	mask         uint32 // events registered with epoll
	readPaused   bool   // pause applied to mask
	readStalled  bool   // flow-control stall applied to mask
	readClosed   bool   // peer half-closed; waiting for replies to drain
	done         bool   // the loop closed the fd and reported OnClose
	quietTold    bool   // a QuietHandler is done with the quiet since lastFrame
	lastFrame    int64  // loop clock when a frame was last completed, for the idle timeout
	partialSince int64  // loop clock when the frame now incomplete began; 0 if none
	blockedSince int64  // loop clock since when the queue has waited for EPOLLOUT without progress; 0 if not waiting
	stallUntil   int64  // loop clock when a stall under OverflowClose ends
	readClosedAt int64
	acked        uint64 // bytes the peer had acknowledged when blockedSince was set
	carry        int    // bytes of the decoder's carry buffer counted in the budget
	dec          wire.Decoder
	out          outbound  // bytes being written
	tls          *tlsState // nil for plain TCP; set before the loop registers c
	ws           *wsState  // nil but for a WebSocket listener's connections; likewise
	opened       bool      // OnOpen has been called (a TLS connection's, once its handshake is done)
	quiet        uint8     // ticks its queue has been empty, nothing taken (shrink)

	inflight atomic.Int32 // batches delivered and not yet released
	owed     atomic.Int32 // replies the layer above owes the peer (Owe, Settle)
	queued   atomic.Int64 // outbound bytes accepted by Send and not yet written
	inWrite  atomic.Int64 // bytes of a writev in progress, for the slow-consumer bound
	deadline atomic.Int64 // server clock at which SetDeadline closes the connection; 0 for none

	mu             sync.Mutex
	state          int
	reason         error // why Close was asked for
	scheduled      bool  // on the loop's ready list
	paused         bool  // pause asked for by the layer above
	stalled        bool  // stall asked for by stallOn
	deadlineReason error // what SetDeadline closes with
	stallFor       time.Duration
	waitOn         []*Conn // queues this connection's stall waits on to drain
	pend           pending
}

// ID is unique among the connections of a server for its lifetime.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetValue attaches the layer above's state to the connection. Call it in
// Handler.OnOpen, before the connection is shared with other goroutines;
// Value may then be read from any goroutine that learned of the
// connection after OnOpen.
func (c *Conn) SetValue(v any) { c.value = v }

// Value returns what SetValue attached.
func (c *Conn) Value() any { return c.value }

// Queued reports the outbound bytes accepted by Send and not yet written
// to the socket.
func (c *Conn) Queued() int { return int(c.queued.Load()) }

// Send frames payload and queues it for writing. The payload is copied;
// the caller may reuse it at once. Frames queued by one goroutine are
// written in the order queued.
//
// It returns ErrClosed on a connection that is closed or closing,
// ErrFrameTooLarge for a payload over 65,535 bytes, and ErrSlowConsumer
// when the frame cannot be queued within the connection's bound
// (OverflowClose) or the server's memory budget, in which case the
// connection is closed as a slow consumer.
func (c *Conn) Send(payload []byte) error { return c.SendFrom(nil, payload) }

// SendFrom is Send on behalf of a producer: the connection whose frame
// caused this one (the sender of a broadcast, or c itself for a reply).
// When the frame takes c's queue past 3/4 of MaxPending, the producer's
// reading stalls until the queue drains (see Overflow). A nil producer
// stalls nobody.
func (c *Conn) SendFrom(producer *Conn, payload []byte) error {
	if len(payload) > wire.MaxPayload {
		return ErrFrameTooLarge
	}
	return c.enqueue(producer, payload, nil, 1, len(payload))
}

// SendFrame queues an encoded frame (as made by wire.AppendFrame) without
// copying it, so that one encoding can be shared by many connections. The
// frame must not be modified afterwards. Errors are those of Send.
func (c *Conn) SendFrame(frame []byte) error { return c.SendFrameFrom(nil, frame) }

// SendFrameFrom is SendFrame on behalf of a producer, as SendFrom.
func (c *Conn) SendFrameFrom(producer *Conn, frame []byte) error {
	if len(frame) < wire.Overhead || frame[0] != wire.Start || len(frame) != wire.FrameSize(int(frame[1])<<8|int(frame[2])) {
		panic("netpoll: SendFrame given bytes that are not one encoded frame")
	}
	return c.enqueue(producer, nil, frame, 1, len(frame)-wire.Overhead)
}

// enqueue queues a payload to be framed into the connection's own buffer,
// or, when frame is not nil, encoded frames (n of them, carrying payload
// bytes) to be shared as they are.
//
// The per-connection bound counts the bytes not yet handed to the kernel:
// the bytes of a writev in progress are taken as written. Counting them
// would close a reader that keeps up, whenever one large writev had
// finished in the kernel and the loop had not yet subtracted it while the
// next frames arrived.
func (c *Conn) enqueue(producer *Conn, payload, frame []byte, n, payloadBytes int) error {
	size := int64(len(frame))
	if frame == nil {
		size = int64(wire.FrameSize(len(payload)))
	}
	l := c.loop
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	q := c.queued.Load() - c.inWrite.Load() + size
	if q > l.maxPending && l.overflow == OverflowClose {
		c.closeLocked(ErrSlowConsumer)
		c.mu.Unlock()
		l.schedule(c)
		return ErrSlowConsumer
	}
	if !l.srv.mem.reserve(size) {
		c.closeLocked(errMemoryLimit)
		c.mu.Unlock()
		l.schedule(c)
		return errMemoryLimit
	}
	if frame == nil {
		c.pend.appendFrame(payload)
	} else {
		c.pend.appendShared(frame, n, payloadBytes)
	}
	c.queued.Add(size)
	wake := c.wakeLocked()
	c.mu.Unlock()
	if wake {
		l.schedule(c)
	}
	if q > l.stallMark && producer != nil {
		producer.stallOn(c, q)
	}
	return nil
}

// SetDeadline closes the connection with reason (nil means ErrHandshake)
// if ClearDeadline is not called within d: the layer above's bound on a
// handshake of its own, such as authentication. The loop's tick enforces
// it, within an eighth of the server's shortest timeout (at most 250 ms).
func (c *Conn) SetDeadline(d time.Duration, reason error) {
	if reason == nil {
		reason = ErrHandshake
	}
	c.mu.Lock()
	c.deadlineReason = reason
	c.mu.Unlock()
	c.deadline.Store(max(int64(time.Since(c.loop.srv.epoch)+d), 1))
}

// ClearDeadline cancels SetDeadline.
func (c *Conn) ClearDeadline() { c.deadline.Store(0) }

// Owe tells the connection that the layer above owes its peer a reply it
// will send later (a telemetry reply waiting for its span, say). A
// connection whose peer half-closed stays open until every Owe has been
// matched by a Settle and the replies are written.
func (c *Conn) Owe() { c.owed.Add(1) }

// Settle matches one Owe, once the reply has been queued or will never be.
func (c *Conn) Settle() {
	if c.owed.Add(-1) != 0 {
		return
	}
	// Let the loop look at a half-closed connection that waited for this.
	c.mu.Lock()
	wake := c.state == stateOpen && !c.scheduled
	if wake {
		c.scheduled = true
	}
	c.mu.Unlock()
	if wake {
		c.loop.schedule(c)
	}
}

// wakeLocked decides whether a Send must put the connection on its loop's
// ready list. Not while the connection has batches out with the handler:
// replies to a batch are then written together, in one writev, when the
// batch is released (batchReleased schedules the connection), much as a
// goroutine-per-connection server flushes once per read. The loop's tick
// writes anything left waiting should a handler hold a batch for long.
func (c *Conn) wakeLocked() bool {
	if c.scheduled || c.inflight.Load() != 0 {
		return false
	}
	c.scheduled = true
	return true
}

// Close closes the connection with the given reason, reported to
// Handler.OnClose (nil means ErrClosed). What is already queued gets one
// non-blocking attempt at being written first. Close returns at once; the
// loop closes the fd. Closing a closed connection does nothing.
func (c *Conn) Close(reason error) {
	if reason == nil {
		reason = ErrClosed
	}
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.closeLocked(reason)
	c.mu.Unlock()
	c.loop.schedule(c)
}

func (c *Conn) closeLocked(reason error) {
	c.state = stateClosing
	c.reason = reason
	c.scheduled = true
}

// PauseRead stops reading from the connection until ResumeRead: the kernel
// buffers fill and TCP pushes back on the sender. Frames already read are
// still delivered.
func (c *Conn) PauseRead() { c.setPaused(true) }

// ResumeRead undoes PauseRead.
func (c *Conn) ResumeRead() { c.setPaused(false) }

func (c *Conn) setPaused(p bool) {
	c.mu.Lock()
	if c.state != stateOpen || c.paused == p {
		c.mu.Unlock()
		return
	}
	c.paused = p
	wake := !c.scheduled
	c.scheduled = true
	c.mu.Unlock()
	if wake {
		c.loop.schedule(c)
	}
}

// batchReleased is called when a batch from this connection is released.
// A half-closed connection waits for the last before it closes, and the
// replies wakeLocked held back go out now: at every release, not only the
// last, or a client that keeps a batch in flight, as a pipelining one
// does, would get its replies only from the tick.
func (c *Conn) batchReleased() {
	if c.inflight.Add(-1) != 0 && c.queued.Load() == 0 {
		return
	}
	c.mu.Lock()
	wake := c.state == stateOpen && !c.scheduled
	if wake {
		c.scheduled = true
	}
	c.mu.Unlock()
	if wake {
		c.loop.schedule(c)
	}
}

// hasOutput reports whether c has bytes waiting to be written: frames
// taken from its queue, or a TLS connection's records. Loop-only.
func (c *Conn) hasOutput() bool {
	return !c.out.empty() || c.transportOut() > 0
}

// ackedBytes reports the bytes the peer has acknowledged on a socket
// (TCP_INFO's tcpi_bytes_acked): it grows whenever the peer reads what
// the kernel holds for it. 0 when it cannot be read.
func ackedBytes(fd int) uint64 {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0
	}
	return ti.Bytes_acked
}

// socketError fetches the pending error of a socket that reported
// EPOLLERR.
func socketError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v == 0 {
		return nil
	}
	return unix.Errno(v)
}
