package netpoll

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// WebSocket configures a listener whose connections speak WebSocket
// (RFC 6455): each binary message is one payload in each direction, a
// text message is taken as its UTF-8 bytes, and the broker sends binary
// messages. The loop does the upgrade and the framing itself, with the
// header parsing, masking and upgrade of github.com/gobwas/ws, so a
// WebSocket stream is read and written by the event loops like any other:
// the same queues, bounds and counters, and no goroutine.
type WebSocket struct {
	// Origins are the Origin headers allowed to upgrade, as path.Match
	// patterns: one with "://" is matched against the whole origin
	// (scheme://host[:port]), one without against its host[:port]; "*"
	// allows any. Default nil: the Origin's host name must be the
	// request's Host's (a page of the broker's own host, on any port: a
	// web server beside the broker), as browsers are concerned. A request
	// without an Origin header (not a browser) is allowed.
	Origins []string
	// PingInterval is how long a connection may be silent before the
	// broker pings it; an unanswered ping closes it the next interval.
	// Default 30s.
	PingInterval time.Duration
}

// DefaultPingInterval is WebSocket.PingInterval's default.
const DefaultPingInterval = 30 * time.Second

// maxUpgradeRequest bounds the HTTP request of an upgrade.
const maxUpgradeRequest = 8 << 10

// errUpgrade wraps why an upgrade was refused.
var errUpgrade = errors.New("websocket upgrade refused")

// wsState is a WebSocket connection's framing. Loop-only, but for out,
// which only a non-TLS connection uses.
type wsState struct {
	cfg      *WebSocket
	upgraded bool
	in       []byte // bytes of an incomplete request or frame
	msg      []byte // the fragments of a message being assembled
	msgText  bool   // msg is a text message
	inMsg    bool   // a message has begun and not finished
	out      []byte // frames for the socket (without TLS; with TLS they go through the pipe)
	closing  bool   // a close frame has been sent
	lastSeen int64  // loop clock of the last bytes from the peer
	pingAt   int64  // loop clock when an unanswered ping was sent; 0 if none
}

func newWS(cfg *WebSocket) *wsState { return &wsState{cfg: cfg} }

// held is what the framing holds of the peer's bytes, for the budget.
func (w *wsState) held() int { return cap(w.in) + cap(w.msg) }

// wsInput takes the bytes of one read (or of TLS plaintext) into c's
// WebSocket framing: the upgrade request first, then frames, whose
// payloads are delivered in one batch. Loop-only.
func (l *loop) wsInput(c *Conn, data []byte) {
	w := c.ws
	w.lastSeen = l.now
	w.pingAt = 0
	if !w.upgraded {
		if !l.wsUpgrade(c, data) || c.done || len(w.in) == 0 {
			l.trackWS(c)
			return
		}
		data, w.in = w.in, nil // frames that came with the request
	}
	l.wsFrames(c, data)
}

// wsUpgrade gathers the upgrade request and answers it. It reports true
// once the connection is upgraded, with any bytes after the request left
// in w.in.
func (l *loop) wsUpgrade(c *Conn, data []byte) bool {
	w := c.ws
	w.in = append(w.in, data...)
	end := bytes.Index(w.in, []byte("\r\n\r\n"))
	if end < 0 {
		if len(w.in) > maxUpgradeRequest {
			l.wsRefuse(c, "431 Request Header Fields Too Large", "request headers too large")
		}
		return false
	}
	req, rest := w.in[:end+4], w.in[end+4:]
	var host, origin []byte
	u := ws.Upgrader{
		OnHost: func(h []byte) error { host = append([]byte(nil), h...); return nil },
		OnHeader: func(k, v []byte) error {
			if bytes.EqualFold(k, []byte("Origin")) {
				origin = append([]byte(nil), v...)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if !originAllowed(w.cfg.Origins, string(origin), string(host)) {
				return nil, ws.RejectConnectionError(ws.RejectionStatus(403), ws.RejectionReason("origin not allowed"))
			}
			return nil, nil
		},
	}
	var resp bytes.Buffer
	_, err := u.Upgrade(upgradeIO{bytes.NewReader(req), &resp})
	if err != nil && resp.Len() == 0 {
		// A request line it could not parse gets no answer from it.
		resp.WriteString("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	}
	l.wsSend(c, resp.Bytes())
	if err != nil {
		l.stats.wsRefused.Add(1)
		l.srv.wsLog.warn(l.log, "websocket upgrade refused", "remote", c.remote.String(), "err", err.Error())
		// The response (400, 403, ...) goes out before the close.
		c.mu.Lock()
		c.closeLocked(fmt.Errorf("%w: %w: %w", ErrHandshake, errUpgrade, err))
		c.mu.Unlock()
		l.flush(c)
		if !c.done {
			l.close(c, fmt.Errorf("%w: %w: %w", ErrHandshake, errUpgrade, err), reasonHandshake)
		}
		return false
	}
	w.upgraded = true
	w.in = append([]byte(nil), rest...)
	if len(w.in) == 0 {
		w.in = nil
	}
	l.stats.wsUpgrades.Add(1)
	c.ClearDeadline()
	l.flush(c) // the 101 before anything of the stream's
	if c.done {
		return false
	}
	l.open(c)
	return true
}

// upgradeIO is the upgrade's reader (the request) and writer (the
// response).
type upgradeIO struct {
	r *bytes.Reader
	w *bytes.Buffer
}

func (u upgradeIO) Read(p []byte) (int, error)  { return u.r.Read(p) }
func (u upgradeIO) Write(p []byte) (int, error) { return u.w.Write(p) }

// wsRefuse answers a request that cannot be read with an HTTP error and
// closes the connection.
func (l *loop) wsRefuse(c *Conn, status, reason string) {
	l.stats.wsRefused.Add(1)
	l.wsSend(c, []byte("HTTP/1.1 "+status+"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
	l.flush(c)
	if !c.done {
		l.close(c, fmt.Errorf("%w: %w: %s", ErrHandshake, errUpgrade, reason), reasonHandshake)
	}
}

// originAllowed applies WebSocket.Origins to a request's Origin and Host.
func originAllowed(patterns []string, origin, host string) bool {
	if origin == "" {
		return true // not a browser: nothing to protect against
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if patterns == nil {
		h, _, err := net.SplitHostPort(host)
		if err != nil {
			h = host // no port
		}
		return strings.EqualFold(u.Hostname(), strings.Trim(h, "[]"))
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// wsFrames parses the frames in data (after what w.in holds) and
// delivers the completed messages in one batch. Control frames are
// answered on the spot.
func (l *loop) wsFrames(c *Conn, data []byte) {
	w := c.ws
	if len(w.in) > 0 {
		w.in = append(w.in, data...)
		data, w.in = w.in, nil
	}
	size := len(data) + len(w.msg) // payloads can not exceed the bytes in hand
	var b *Batch
	var payload uint64
	var fail error
	var code ws.StatusCode
	for len(data) > 0 && fail == nil {
		h, n, ok := wsHeader(data)
		if !ok {
			break // an incomplete header
		}
		switch {
		case !h.Masked:
			fail, code = errors.New("an unmasked frame from the client"), ws.StatusProtocolError
		case h.Rsv != 0:
			fail, code = errors.New("reserved bits set"), ws.StatusProtocolError
		case h.OpCode.IsControl() && (h.Length > 125 || !h.Fin):
			fail, code = errors.New("a control frame over 125 bytes or fragmented"), ws.StatusProtocolError
		case h.OpCode.IsReserved():
			fail, code = fmt.Errorf("reserved opcode %d", h.OpCode), ws.StatusProtocolError
		case !h.OpCode.IsControl() && int64(len(w.msg))+h.Length > int64(l.maxPayload):
			fail, code = fmt.Errorf("a message over %d bytes", l.maxPayload), ws.StatusMessageTooBig
		}
		if fail != nil {
			break
		}
		if int64(len(data)-n) < h.Length {
			break // an incomplete payload
		}
		p := data[n : n+int(h.Length)]
		data = data[n+int(h.Length):]
		ws.Cipher(p, h.Mask, 0) // in place: the bytes are the loop's own
		switch h.OpCode {
		case ws.OpPing:
			l.wsControl(c, ws.OpPong, p)
		case ws.OpPong:
		case ws.OpClose:
			l.wsClose(c, p)
			data = nil
		default: // data: binary, text or continuation
			if h.OpCode == ws.OpContinuation && !w.inMsg || h.OpCode != ws.OpContinuation && w.inMsg {
				fail, code = errors.New("a data frame out of sequence"), ws.StatusProtocolError
				break
			}
			if h.OpCode != ws.OpContinuation {
				w.inMsg, w.msgText = true, h.OpCode == ws.OpText
			}
			if !h.Fin {
				w.msg = append(w.msg, p...)
				continue
			}
			msg := p
			if len(w.msg) > 0 {
				msg = append(w.msg, p...)
			}
			if w.msgText && !utf8.Valid(msg) {
				fail, code = errors.New("a text message that is not UTF-8"), ws.StatusInvalidFramePayloadData
				break
			}
			if b == nil {
				b = newBatch(c, size)
			}
			b.add(msg)
			payload += uint64(len(msg))
			w.msg, w.inMsg = nil, false
		}
	}
	if fail == nil && len(data) > 0 {
		w.in = append(w.in, data...) // the incomplete frame, for the next read
	}
	l.trackWS(c)
	if b != nil {
		c.lastFrame, c.quietTold = l.now, false
		l.stats.msgRecv.Add(uint64(len(b.Frames)))
		l.stats.bytesRecv.Add(payload)
		c.inflight.Add(1)
		l.handler.OnFrames(c, b)
		if c.inflight.Load() == 0 {
			l.flushNow(c)
		}
	}
	if fail != nil && !c.done {
		l.wsFail(c, code, fail)
	}
}

// wsHeader reads a frame header from the start of b: the header, its
// size, and false when b does not hold all of it yet.
func wsHeader(b []byte) (ws.Header, int, bool) {
	if len(b) < 2 {
		return ws.Header{}, 0, false
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	if len(b) < n {
		return ws.Header{}, 0, false
	}
	h, err := ws.ReadHeader(bytes.NewReader(b[:n]))
	if err != nil {
		// ReadHeader refuses only a length with its top bit set: take it
		// as over any maximum.
		h = ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Length: 1 << 62}
	}
	return h, n, true
}

// trackWS keeps the budget's count of what the framing holds, and the
// frame timeout's clock.
func (l *loop) trackWS(c *Conn) {
	w := c.ws
	if len(w.in) == 0 && len(w.msg) == 0 {
		w.in, w.msg = nil, nil
		c.partialSince = 0
	} else if c.partialSince == 0 {
		c.partialSince = l.now
	}
	if h := w.held(); h != c.carry {
		l.srv.mem.used.Add(int64(h - c.carry))
		c.carry = h
	}
}

// wsControl sends a control frame (ping, pong, close) ahead of whatever
// the queue holds that has not been framed yet.
func (l *loop) wsControl(c *Conn, op ws.OpCode, p []byte) {
	hdr := [2]byte{0x80 | byte(op), byte(len(p))}
	l.wsSend(c, append(hdr[:], p...))
	l.flush(c)
}

// wsClose answers the peer's close frame with one of its own (the
// peer's status echoed), and closes once it is written.
func (l *loop) wsClose(c *Conn, p []byte) {
	w := c.ws
	if !w.closing {
		w.closing = true
		body := p
		if len(p) >= 2 {
			body = p[:2] // the status; the reason is the peer's own
		}
		l.wsControl(c, ws.OpClose, body)
	}
	if !c.done {
		l.peerEOF(c)
	}
}

// wsFail closes the connection for a protocol error, with a close frame
// saying why.
func (l *loop) wsFail(c *Conn, code ws.StatusCode, err error) {
	if !c.ws.closing {
		c.ws.closing = true
		body := ws.NewCloseFrameBody(code, "")
		hdr := [2]byte{0x80 | byte(ws.OpClose), byte(len(body))}
		l.wsSend(c, append(hdr[:], body...))
	}
	reason := ErrProtocol
	r := reasonProtocol
	c.mu.Lock()
	c.closeLocked(fmt.Errorf("%w: websocket: %w", reason, err))
	c.mu.Unlock()
	l.flush(c) // the close frame, if the socket takes it
	if !c.done {
		l.close(c, fmt.Errorf("%w: websocket: %w", reason, err), r)
	}
}

// wsSend queues bytes for the socket as they are: through TLS when the
// connection has it. They count in the queue until written.
func (l *loop) wsSend(c *Conn, b []byte) {
	if c.tls != nil {
		_, _ = c.tls.conn.Write(b) // the pipe counts them
		return
	}
	c.ws.out = append(c.ws.out, b...)
	c.queued.Add(int64(len(b)))
	l.srv.mem.used.Add(int64(len(b)))
}

// gatherWS appends the whole frames of o that fit in limit bytes to dst as
// WebSocket binary messages, and returns dst and the bytes of o they
// took; advance then marks them taken. Frames are copied whole, so that o
// is always left at a frame boundary.
func (o *outbound) gatherWS(dst []byte, limit int) ([]byte, int) {
	taken := 0
	for i := o.head; i < len(o.segs); i++ {
		b := o.bytes(i)
		if i == o.head {
			b = b[o.off:]
		}
		for len(b) >= 3 {
			n := int(b[1])<<8 | int(b[2])
			hdr := 2
			if n >= 126 {
				hdr = 4
			}
			if len(dst)+hdr+n > limit && taken > 0 {
				return dst, taken
			}
			if n < 126 {
				dst = append(dst, 0x82, byte(n))
			} else {
				dst = append(dst, 0x82, 126, 0, 0)
				binary.BigEndian.PutUint16(dst[len(dst)-2:], uint16(n))
			}
			dst = append(dst, b[3:3+n]...)
			b = b[4+n:]
			taken += 4 + n
		}
	}
	return dst, taken
}
