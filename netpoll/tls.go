package netpoll

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// TLS runs on the event loops with Go's own crypto/tls, fed through a
// pipe of bytes instead of a socket:
//
//   - The handshake runs on a goroutine of its own, whose reads of the pipe
//     block until the loop has read the peer's bytes into it and whose
//     writes the loop sends. crypto/tls cannot resume a handshake that was
//     interrupted, so it gets a blocking transport; handshakes are few.
//   - Once it is done, the loop alone drives the connection: it feeds the
//     bytes of each read into the pipe and takes out the plaintext with
//     tls.Conn.Read, which finds the pipe empty as a temporary error
//     (crypto/tls keeps a partial record for the next call when the
//     transport's error is temporary), and it encrypts what is queued with
//     tls.Conn.Write, which leaves the records in the pipe for the loop to
//     write. So a TLS stream has every property of a plain one — the same
//     queues, bounds, flow control and counters — and costs no goroutine
//     once established.
//
// The connection's queue counts ciphertext as well: the bytes a Send
// queues leave the count when they are encrypted, and their records enter
// it, until written.
type tlsState struct {
	conn   *tls.Conn
	pipe   tlsPipe
	result atomic.Int32 // handshakePending, handshakeDone, handshakeFailed
	err    error        // why the handshake failed; written before result

	// Loop-only.
	buffered bool // the last drain stopped with the plaintext buffer full: more may wait
}

const (
	handshakePending int32 = iota
	handshakeDone
	handshakeFailed
)

// maxHandshakeInput bounds what a peer may send before its handshake is
// done: a ClientHello with every extension is a few KiB.
const maxHandshakeInput = 64 << 10

// errWouldBlock is what the pipe's Read returns when it is empty and the
// loop drives the connection: temporary, so crypto/tls keeps what it has
// of a record and tries again on the next call.
var errWouldBlock = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "netpoll: no TLS input yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// tlsPipe is the transport under a connection's tls.Conn: ciphertext read
// from the socket (in), and ciphertext to write to it (out).
//
// Once the handshake is done the loop alone drives the tls.Conn, and the
// pipe saves the copies and allocations a plain buffer would cost: a
// read's bytes are lent to the tls.Conn as they are (lend, then keep once
// the drain is done), records are written to the socket as the tls.Conn
// makes them, only what the socket does not take is kept, and both
// buffers are reused until the connection goes quiet (release).
type tlsPipe struct {
	c *Conn

	mu       sync.Mutex
	cond     sync.Cond
	in       []byte // ciphertext not yet read: in[inOff:]
	inOff    int
	lent     bool   // in is the loop's read buffer, lent for one drain
	keptIn   []byte // the pipe's own input buffer while in is lent
	out      []byte // ciphertext not yet written: out[outOff:]
	outOff   int
	eof      bool // the peer sent its FIN
	closed   bool // the connection closed
	blocking bool // Read waits for input (the handshake's goroutine reads)
}

var _ net.Conn = (*tlsPipe)(nil)

// feed adds bytes read from the socket; false if a handshake is being
// flooded past maxHandshakeInput.
func (p *tlsPipe) feed(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blocking && len(p.in)-p.inOff+len(b) > maxHandshakeInput {
		return false
	}
	p.in = append(p.compactIn(), b...)
	if p.blocking {
		p.cond.Signal()
	}
	return true
}

// lend hands the tls.Conn b, the loop's read buffer, without copying it,
// when nothing is waiting before it; keep must follow before the loop
// reads into b again. Otherwise it is feed.
func (p *tlsPipe) lend(b []byte) bool {
	p.mu.Lock()
	if p.blocking || p.inOff != len(p.in) {
		p.mu.Unlock()
		return p.feed(b)
	}
	p.keptIn = p.in[:0]
	p.in, p.inOff, p.lent = b, 0, true
	p.mu.Unlock()
	return true
}

// keep ends a lend: what the tls.Conn left of the lent bytes (part of a
// record) is copied into the pipe's own buffer.
func (p *tlsPipe) keep() {
	p.mu.Lock()
	if p.lent {
		rest := p.in[p.inOff:]
		p.in, p.inOff, p.lent = append(p.keptIn, rest...), 0, false
		p.keptIn = nil
	}
	p.mu.Unlock()
}

// compactIn empties in once it is all read, keeping its memory, or moves
// the unread part to the front once more than half has been read. With
// p.mu held.
func (p *tlsPipe) compactIn() []byte {
	switch {
	case p.inOff == len(p.in):
		p.in, p.inOff = p.in[:0], 0
	case p.inOff > len(p.in)/2:
		n := copy(p.in, p.in[p.inOff:])
		p.in, p.inOff = p.in[:n], 0
	}
	return p.in
}

func (p *tlsPipe) setEOF() {
	p.mu.Lock()
	p.eof = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *tlsPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.blocking && p.inOff == len(p.in) && !p.eof && !p.closed {
		p.cond.Wait()
	}
	switch {
	case p.closed:
		return 0, net.ErrClosed
	case p.inOff < len(p.in):
		n := copy(b, p.in[p.inOff:])
		p.inOff += n
		return n, nil
	case p.eof:
		return 0, io.EOF
	}
	return 0, errWouldBlock
}

// Write takes records for the socket. Once the handshake is done (the
// loop writing), a record goes to the socket at once if nothing waits
// before it; what the socket does not take waits in out. The waiting
// bytes count in the connection's queue and the memory budget until
// written; during the handshake the loop is told, so that its records
// leave without waiting.
func (p *tlsPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, net.ErrClosed
	}
	handshake := p.blocking
	c := p.c
	rest := b
	if !handshake && p.outOff == len(p.out) {
		n, err := unix.Write(c.fd, b)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
		case err != nil:
			p.mu.Unlock()
			return 0, err
		}
		rest = b[max(n, 0):]
	}
	if len(rest) > 0 {
		if p.outOff == len(p.out) {
			p.out, p.outOff = p.out[:0], 0
		}
		p.out = append(p.out, rest...)
	}
	p.mu.Unlock()
	if len(rest) > 0 {
		c.queued.Add(int64(len(rest)))
		c.loop.srv.mem.used.Add(int64(len(rest)))
	}
	if handshake {
		c.wakeLoop()
	}
	return len(b), nil
}

// outLen is the ciphertext waiting to be written.
func (p *tlsPipe) outLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.out) - p.outOff
}

// writeTo writes the waiting ciphertext to fd, once. Loop-only.
func (p *tlsPipe) writeTo(fd int) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.outOff == len(p.out) {
		return 0, nil
	}
	n, err := unix.Write(fd, p.out[p.outOff:])
	if n > 0 {
		p.outOff += n
	}
	return max(n, 0), err
}

// release gives up the pipe's buffers when nothing waits in them: a quiet
// connection keeps none. Loop-only (Conn.shrink).
func (p *tlsPipe) release() {
	p.mu.Lock()
	if !p.lent && p.inOff == len(p.in) {
		p.in, p.inOff = nil, 0
	}
	if p.outOff == len(p.out) {
		p.out, p.outOff = nil, 0
	}
	p.mu.Unlock()
}

func (p *tlsPipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// dropOut forgets unwritten ciphertext when the connection closes; it
// returns how many bytes it held.
func (p *tlsPipe) dropOut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.out) - p.outOff
	p.out, p.outOff, p.in, p.inOff, p.keptIn, p.lent = nil, 0, nil, 0, nil, false
	return n
}

func (p *tlsPipe) LocalAddr() net.Addr                { return p.c.loop.srv.addr }
func (p *tlsPipe) RemoteAddr() net.Addr               { return p.c.remote }
func (p *tlsPipe) SetDeadline(t time.Time) error      { return nil }
func (p *tlsPipe) SetReadDeadline(t time.Time) error  { return nil }
func (p *tlsPipe) SetWriteDeadline(t time.Time) error { return nil }

// newTLS prepares c for a TLS handshake with cfg.
func newTLS(c *Conn, cfg *tls.Config) *tlsState {
	t := &tlsState{}
	t.pipe.c = c
	t.pipe.cond.L = &t.pipe.mu
	t.pipe.blocking = true
	t.conn = tls.Server(&t.pipe, cfg)
	return t
}

// handshake runs the TLS handshake of c on a goroutine of the server's;
// the loop learns the outcome in processQueues.
func (s *Server) handshake(c *Conn) {
	defer s.handshakes.Done()
	t := c.tls
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.TLSHandshakeTimeout)
	defer cancel()
	err := t.conn.HandshakeContext(ctx)
	t.pipe.mu.Lock()
	t.pipe.blocking = false
	t.pipe.mu.Unlock()
	// Counted here, whatever the loop does next: a peer that gave up and
	// closed may be gone before the loop looks.
	stats := &c.loop.stats
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("not done within %v: %w", s.cfg.TLSHandshakeTimeout, err)
		}
		stats.handshakeFailures.Add(1)
		s.tlsLog.warn(s.cfg.Logger, "TLS handshake failed", "remote", c.remote.String(), "err", err.Error())
		t.err = err
		t.result.Store(handshakeFailed)
	} else {
		stats.handshakes.Add(1)
		t.result.Store(handshakeDone)
	}
	c.wakeLoop()
}

// wakeLoop puts c on its loop's ready list, unless it is there already.
func (c *Conn) wakeLoop() {
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

// TLS is the connection's TLS state (the peer's certificates among it);
// nil for a connection without TLS. Call it from OnOpen on, on any
// goroutine.
func (c *Conn) TLS() *tls.ConnectionState {
	if c.tls == nil || c.tls.result.Load() != handshakeDone {
		return nil
	}
	st := c.tls.conn.ConnectionState()
	return &st
}

// handshakeOutcome opens or closes a TLS connection whose handshake has
// ended. Loop-only.
func (l *loop) handshakeOutcome(c *Conn) {
	switch c.tls.result.Load() {
	case handshakeDone:
		if c.ws == nil {
			l.open(c) // a WebSocket opens once upgraded, over TLS
		}
		l.drainTLS(c) // what came behind the handshake
	case handshakeFailed:
		l.close(c, fmt.Errorf("%w: TLS: %w", ErrHandshake, c.tls.err), reasonHandshake)
	}
}

// readTLS takes the bytes of one read (nil at end of file) into c's TLS
// state and, once the handshake is done, delivers the plaintext.
func (l *loop) readTLS(c *Conn, raw []byte) {
	t := c.tls
	if raw == nil {
		t.pipe.setEOF()
	} else if !t.pipe.lend(raw) {
		l.close(c, fmt.Errorf("%w: TLS: over %d bytes before the handshake was done", ErrHandshake, maxHandshakeInput), reasonHandshake)
		return
	}
	if c.tls.result.Load() == handshakeDone && (c.opened || c.ws != nil) {
		l.drainTLS(c)
		t.pipe.keep()
	} else if t.pipe.keep(); raw == nil {
		c.readClosed = true // nothing more to read; the handshake fails on its own
		l.updateMask(c)
	}
}

// drainTLS decrypts what c's pipe holds, up to one plaintext buffer, and
// delivers it. Loop-only; c's handshake is done.
func (l *loop) drainTLS(c *Conn) {
	t := c.tls
	total := 0
	var rerr error
	for total < len(l.plain) {
		n, err := t.conn.Read(l.plain[total:])
		total += n
		if err != nil {
			rerr = err
			break
		}
	}
	t.buffered = total == len(l.plain)
	if total > 0 {
		l.deliver(c, l.plain[:total])
		if c.done {
			return
		}
	}
	switch {
	case rerr == nil, errors.Is(rerr, errWouldBlock):
		if t.buffered {
			l.tlsMore = append(l.tlsMore, c)
		}
	case errors.Is(rerr, io.EOF):
		l.peerEOF(c)
	default:
		l.close(c, fmt.Errorf("%w: TLS: %w", ErrProtocol, rerr), reasonProtocol)
	}
}

// drainMore decrypts for the connections whose last drain filled the
// plaintext buffer: their bytes are in the TLS state, not the socket, so
// epoll will not report them. A connection not being read now (paused,
// stalled) waits until it is. Loop-only.
func (l *loop) drainMore() {
	more := l.tlsMore
	l.tlsMore = l.tlsMoreLocal[:0]
	for _, c := range more {
		if !c.done && c.tls.buffered && c.mask&unix.EPOLLIN != 0 {
			l.drainTLS(c)
		}
	}
	clear(more)
	l.tlsMoreLocal = more[:0]
}

// writeTransport is write for a connection whose frames go through a
// transport: TLS records, WebSocket frames, or both. It turns what is
// queued into the transport's bytes and writes them.
func (l *loop) writeTransport(c *Conn, onlyOpen bool) {
	t, w := c.tls, c.ws
	progress := false
	for range 4 { // bound the time one connection holds the loop
		if c.transportOut() == 0 && c.opened {
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
			// The transport's bytes enter the queue's count as they are
			// made (the pipe counts records); the frames leave it now.
			var k int
			switch {
			case t == nil: // WebSocket
				before := len(w.out)
				w.out, k = c.out.gatherWS(w.out, before+len(l.plain))
				c.queued.Add(int64(len(w.out) - before))
				l.srv.mem.used.Add(int64(len(w.out) - before))
			default:
				var plain []byte
				if w != nil {
					plain, k = c.out.gatherWS(l.plain[:0], len(l.plain))
				} else {
					k = c.out.gather(l.plain)
					plain = l.plain[:k]
				}
				if _, err := t.conn.Write(plain); err != nil {
					l.close(c, fmt.Errorf("%w: TLS: %w", ErrReset, err), reasonReset)
					return
				}
			}
			c.out.advance(k)
			c.queued.Add(-int64(k))
			l.srv.mem.release(int64(k))
		}
		n, err := l.writeOut(c)
		if n > 0 {
			c.queued.Add(-int64(n))
			l.srv.mem.release(int64(n))
			progress = true
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil && err != unix.EINTR {
			l.close(c, fmt.Errorf("%w: %w", ErrReset, err), reasonReset)
			return
		}
		if n == 0 {
			break
		}
	}
	l.afterWrite(c, progress)
}

// transportOut is the transport's bytes waiting for the socket.
func (c *Conn) transportOut() int {
	if c.tls != nil {
		return c.tls.pipe.outLen()
	}
	if c.ws != nil {
		return len(c.ws.out)
	}
	return 0
}

// writeOut writes the transport's waiting bytes to the socket, once.
func (l *loop) writeOut(c *Conn) (int, error) {
	c.inWrite.Store(int64(c.transportOut()))
	defer c.inWrite.Store(0)
	if c.tls != nil {
		return c.tls.pipe.writeTo(c.fd)
	}
	w := c.ws
	if len(w.out) == 0 {
		return 0, nil
	}
	n, err := unix.Write(c.fd, w.out)
	if n > 0 {
		w.out = w.out[n:]
		if len(w.out) == 0 {
			w.out = nil
		}
	}
	return max(n, 0), err
}
