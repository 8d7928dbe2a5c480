package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// WebSocket (Connect.WebSocket): after TCP and TLS, the connection is
// upgraded (RFC 6455, the client side of github.com/gobwas/ws) and
// wrapped in a net.Conn that speaks frames to the load generator and
// WebSocket messages to the server, as docs/PROTOCOL.md has it: each
// binary message is one payload, with no 0x01 … 0x17 framing inside. So
// every workload runs over WebSocket unchanged, and the server is
// measured with the same load.
//
// The adapter costs the load generator no syscall of its own: a Write
// sends all the frames it was given as one socket write of masked binary
// messages, and a Read takes as many messages from one socket read as
// fit the caller's buffer.

// errNotFrame is a Write of bytes that are not frames.
var errNotFrame = errors.New("loadgen: websocket: a write that is not frames")

const (
	// wsReadSize is the adapter's socket read buffer: as much as one
	// read of the TCP load generator's (maxBatchBytes).
	wsReadSize = maxBatchBytes
	// wsMaxHeader is a server frame's largest header we accept: no mask,
	// a 64-bit length (refused later when over MaxPayload).
	wsMaxHeader = 10
	// wsCloseWrite bounds the write of the close frame in Close, so a
	// connection whose server stopped reading still closes at once.
	wsCloseWrite = 50 * time.Millisecond
)

// wsReadBufs holds read buffers between reads: a connection holds one
// only while a read is under way or a message is incomplete, so
// thousands of idle connections hold none.
var wsReadBufs = sync.Pool{New: func() any {
	b := make([]byte, wsReadSize)
	return &b
}}

// upgradeWS upgrades c, connected (and over TLS, if secure) to addr, to a
// WebSocket within timeout, or at once when ctx ends. It sends no Origin
// header: the load generator is a program, not a page (a broker allows
// such requests; docs/PROTOCOL.md).
func upgradeWS(ctx context.Context, c net.Conn, addr string, secure bool, timeout time.Duration) (*wsConn, error) {
	u := &url.URL{Scheme: "ws", Host: addr, Path: "/"}
	if secure {
		u.Scheme = "wss"
	}
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	br, _, err := ws.Dialer{}.Upgrade(c, u)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if br != nil {
			ws.PutReader(br)
		}
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	w := &wsConn{Conn: c}
	if br != nil {
		// Bytes the server sent right behind its answer: the first
		// frames, read with the response.
		w.in = make([]byte, br.Buffered(), max(br.Buffered(), wsReadSize))
		_, _ = io.ReadFull(br, w.in) // all buffered: cannot fail
		ws.PutReader(br)
	}
	return w, nil
}

// wsConn is a WebSocket connection seen as a stream of frames. Reads are
// one at a time and writes one at a time, a read and a write at once;
// Close may come at any time.
type wsConn struct {
	net.Conn // TCP or TLS: addresses and deadlines pass through

	// Write side, and every write to the socket (the read side answers
	// pings and closes), under wmu.
	wmu     sync.Mutex
	wpart   []byte // the start of a frame a Write ended inside
	wbuf    []byte // messages being written
	wclosed bool   // a close frame has been sent: no more messages

	// Read side.
	in     []byte  // socket bytes; in[inOff:] are not yet decoded
	inOff  int     //
	inBuf  *[]byte // in's buffer, if it came from wsReadBufs
	need   int     // bytes the frame at inOff needs in all, when over cap(in)
	out    []byte  // decoded frame bytes that did not fit the last Read
	outOff int     //
	msg    []byte  // the fragments of a message not yet finished
	inMsg  bool    // a fragmented message has begun
	rerr   error   // what every Read returns once out and in are spent
}

// Write sends each frame in b as one binary message, all of them in one
// socket write. A frame may end in a later Write.
func (c *wsConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return 0, fmt.Errorf("loadgen: websocket: write after the close: %w", net.ErrClosed)
	}
	data, joined := b, len(c.wpart) > 0
	if joined {
		c.wpart = append(c.wpart, b...)
		data = c.wpart
	}
	buf := c.wbuf[:0]
	for len(data) > 0 {
		if data[0] != wire.Start {
			c.wpart = c.wpart[:0]
			return 0, fmt.Errorf("%w: start byte %#02x", errNotFrame, data[0])
		}
		if len(data) < wire.HeaderSize {
			break
		}
		n := int(data[1])<<8 | int(data[2])
		size := wire.FrameSize(n)
		if len(data) < size {
			break
		}
		if data[size-1] != wire.End {
			c.wpart = c.wpart[:0]
			return 0, fmt.Errorf("%w: end byte %#02x", errNotFrame, data[size-1])
		}
		buf = appendClientFrame(buf, ws.OpBinary, data[wire.HeaderSize:size-1])
		data = data[size:]
	}
	// Keep an unfinished frame for the next Write (data may be wpart's
	// own tail).
	if joined {
		c.wpart = c.wpart[:copy(c.wpart, data)]
	} else {
		c.wpart = append(c.wpart[:0], data...)
	}
	c.wbuf = buf
	if len(buf) == 0 {
		return len(b), nil
	}
	if _, err := c.Conn.Write(buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

// appendClientFrame appends p to dst as one final client frame of op:
// masked with a fresh key, as RFC 6455 requires of a client. The key
// comes from math/rand/v2's generator (ChaCha8, seeded by the runtime
// from the OS), as gobwas/ws's ws.NewMask takes its keys from math/rand.
func appendClientFrame(dst []byte, op ws.OpCode, p []byte) []byte {
	n := len(p)
	if n < 126 {
		dst = append(dst, 0x80|byte(op), 0x80|byte(n))
	} else {
		dst = append(dst, 0x80|byte(op), 0x80|126, byte(n>>8), byte(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	dst = append(dst, mask[:]...)
	off := len(dst)
	dst = append(dst, p...)
	ws.Cipher(dst[off:], mask, 0)
	return dst
}

// control sends a control frame (a pong, a close) from the read side.
// A Write blocked on a server that is not reading holds the lock, and
// that server may be waiting for this read to go on: then the frame
// goes from a goroutine of its own, once the Write is done.
func (c *wsConn) control(op ws.OpCode, p []byte) {
	f := appendClientFrame(nil, op, p)
	send := func() {
		if !c.wclosed {
			c.wclosed = op == ws.OpClose
			_, _ = c.Conn.Write(f) // a failure shows in the next read
		}
		c.wmu.Unlock()
	}
	if c.wmu.TryLock() {
		send()
		return
	}
	go func() {
		c.wmu.Lock()
		send()
	}()
}

// Read returns the next frames: each message received, framed. It
// answers pings and a close frame, after which it returns io.EOF.
func (c *wsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	if c.outOff < len(c.out) {
		n = copy(p, c.out[c.outOff:])
		c.outOff += n
		if c.outOff == len(c.out) {
			c.out, c.outOff = c.out[:0], 0
		}
	}
	for n < len(p) && c.rerr == nil {
		var err error
		if n, err = c.decode(p, n); err != nil {
			c.rerr = err
		}
		if n > 0 || c.rerr != nil {
			break
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	c.release()
	if n > 0 {
		return n, nil
	}
	return 0, c.rerr
}

// fill reads from the socket behind the bytes not yet decoded, making
// room for the frame in hand.
func (c *wsConn) fill() error {
	if c.in == nil {
		c.inBuf = wsReadBufs.Get().(*[]byte)
		c.in, c.inOff = (*c.inBuf)[:0], 0
	}
	if c.inOff > 0 {
		c.in = c.in[:copy(c.in, c.in[c.inOff:])]
		c.inOff = 0
	}
	if c.need > cap(c.in) {
		// The largest message, with its header, is a little over
		// wsReadSize: a buffer of its own, dropped once it is spent.
		in := make([]byte, len(c.in), c.need)
		copy(in, c.in)
		c.putBuf()
		c.in = in
	}
	k, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
	c.in = c.in[:len(c.in)+k]
	if k > 0 {
		return nil
	}
	if errors.Is(err, io.EOF) && (len(c.in) > 0 || c.inMsg) {
		err = io.ErrUnexpectedEOF // inside a frame or a message
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release gives the read buffer back once every byte read is decoded.
func (c *wsConn) release() {
	if c.in != nil && c.inOff == len(c.in) {
		c.putBuf()
		c.in, c.inOff, c.need = nil, 0, 0
	}
	if cap(c.out) > wsReadSize && c.outOff == len(c.out) {
		c.out, c.outOff = nil, 0
	}
}

func (c *wsConn) putBuf() {
	if c.inBuf != nil {
		wsReadBufs.Put(c.inBuf)
		c.inBuf = nil
	}
}

// decode frames the messages of the complete WebSocket frames in
// c.in[c.inOff:] into p[n:], as long as p has room; what of the last one
// does not fit waits in c.out. It returns the bytes of p filled, and an
// error for a frame that breaks RFC 6455 or a close (io.EOF).
func (c *wsConn) decode(p []byte, n int) (int, error) {
	c.need = 0
	for n < len(p) && c.inOff < len(c.in) {
		b := c.in[c.inOff:]
		h, hl, ok, err := serverHeader(b)
		if err != nil {
			return n, err
		}
		if !ok || int64(len(b)-hl) < h.Length {
			if ok {
				c.need = hl + int(h.Length)
			}
			return n, nil
		}
		payload := b[hl : hl+int(h.Length)]
		c.inOff += hl + int(h.Length)
		switch h.OpCode {
		case ws.OpPing:
			c.control(ws.OpPong, payload)
		case ws.OpPong:
		case ws.OpClose:
			// Answer with the server's status, as RFC 6455 asks.
			if len(payload) < 2 {
				payload = nil
			}
			c.control(ws.OpClose, payload[:min(len(payload), 2)])
			return n, io.EOF
		default: // binary, text, continuation
			if (h.OpCode == ws.OpContinuation) != c.inMsg {
				return n, errors.New("loadgen: websocket: a data frame out of sequence")
			}
			if len(c.msg)+len(payload) > wire.MaxPayload {
				return n, fmt.Errorf("loadgen: websocket: a message over %d bytes", wire.MaxPayload)
			}
			if !h.Fin {
				c.msg, c.inMsg = append(c.msg, payload...), true
				continue
			}
			if c.inMsg {
				payload = append(c.msg, payload...)
				c.msg, c.inMsg = c.msg[:0], false
			}
			n = c.emit(p, n, payload)
		}
	}
	return n, nil
}

// emit writes payload framed into p[n:]; what does not fit goes to c.out.
func (c *wsConn) emit(p []byte, n int, payload []byte) int {
	hdr := [wire.HeaderSize]byte{wire.Start, byte(len(payload) >> 8), byte(len(payload))}
	k := copy(p[n:], hdr[:])
	n += k
	if k < len(hdr) {
		c.spill(hdr[k:], payload)
		return n
	}
	k = copy(p[n:], payload)
	n += k
	if k < len(payload) {
		c.spill(nil, payload[k:])
		return n
	}
	if n == len(p) {
		c.spill(nil, nil)
		return n
	}
	p[n] = wire.End
	return n + 1
}

// spill keeps the rest of a frame for the next Read.
func (c *wsConn) spill(hdr, payload []byte) {
	c.out = append(c.out, hdr...)
	c.out = append(c.out, payload...)
	c.out = append(c.out, wire.End)
}

// serverHeader parses the frame header at the start of b: the header,
// its size, and false if b does not hold all of it. A header a server
// may not send (masked, reserved bits or opcodes, a long or fragmented
// control frame) is an error.
func serverHeader(b []byte) (h ws.Header, size int, ok bool, err error) {
	if len(b) < 2 {
		return h, 0, false, nil
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] >> 4) & 0x07
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	size = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		size = 4
		if len(b) < size {
			return h, 0, false, nil
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		size = wsMaxHeader
		if len(b) < size {
			return h, 0, false, nil
		}
		l := binary.BigEndian.Uint64(b[2:])
		if l > wire.MaxPayload {
			return h, 0, false, fmt.Errorf("loadgen: websocket: a frame of %d bytes, over %d", l, wire.MaxPayload)
		}
		h.Length = int64(l)
	default:
		h.Length = int64(l)
	}
	switch {
	case h.Masked:
		err = errors.New("loadgen: websocket: a masked frame from the server")
	case h.Rsv != 0:
		err = errors.New("loadgen: websocket: reserved bits set")
	case h.OpCode.IsReserved():
		err = fmt.Errorf("loadgen: websocket: reserved opcode %d", h.OpCode)
	case h.OpCode.IsControl() && (h.Length > 125 || !h.Fin):
		err = errors.New("loadgen: websocket: a control frame over 125 bytes or fragmented")
	}
	if err != nil {
		return h, 0, false, err
	}
	return h, size, true, nil
}

// Close sends a close frame (1000, normal closure) unless one was sent,
// without waiting for the answer, and closes the connection.
func (c *wsConn) Close() error {
	if c.wmu.TryLock() {
		if !c.wclosed {
			c.wclosed = true
			_ = c.Conn.SetWriteDeadline(time.Now().Add(wsCloseWrite))
			_, _ = c.Conn.Write(appendClientFrame(nil, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
		}
		c.wmu.Unlock()
	}
	return c.Conn.Close()
}
