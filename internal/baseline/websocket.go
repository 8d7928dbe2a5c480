package baseline

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// WebSocketServer is the baseline for WebSocket clients: the echo server
// a Go programmer would write with github.com/gobwas/ws and its wsutil,
// a goroutine per connection. Each binary (or text) message is one
// payload, as on a broker's WebSocket listener (docs/PROTOCOL.md), and is
// sent back as one binary message. Like the TCP baseline it reads and
// writes through bufio and flushes only when no further message is
// already buffered, so a client that pipelines gets its replies in one
// write. Pings are answered, a close is answered with the client's
// status, and a message over 65,535 bytes closes the connection with
// 1009 (the broker's maximum).
//
// Like a broker with its default Origin check, it refuses (403) an
// upgrade whose Origin header names another host than the request's
// Host, and allows one without an Origin (not a browser).
type WebSocketServer struct {
	ln   net.Listener
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool

	accepted       atomic.Int64
	protocolErrors atomic.Int64
}

// wsUpgradeTimeout bounds a connection's upgrade request, as the
// broker's does.
const wsUpgradeTimeout = 5 * time.Second

// ListenWebSocket starts a WebSocket echo server on addr (host:port;
// port 0 picks a free one). The upgrade is accepted on any path.
func ListenWebSocket(addr string) (*WebSocketServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	s := &WebSocketServer{ln: ln, done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the address the server listens on, as host:port.
func (s *WebSocketServer) Addr() string { return s.ln.Addr().String() }

// Stats returns the server's counters (Dropped is always 0).
func (s *WebSocketServer) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return Stats{Conns: n, Accepted: s.accepted.Load(), ProtocolErrors: s.protocolErrors.Load()}
}

// Close stops accepting, closes every connection and waits for all the
// server's goroutines to finish. It is safe to call more than once.
func (s *WebSocketServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	close(s.done)
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("baseline: close listener: %w", err)
	}
	return nil
}

func (s *WebSocketServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, ok := accept(s.ln, s.done)
		if !ok {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// serve upgrades one connection and echoes its messages.
func (s *WebSocketServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	if err := upgrade(c); err != nil {
		return
	}
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(c)
	// Control frames are answered into bw, flushed with the replies.
	control := func(h ws.Header, r io.Reader) error {
		return wsutil.ControlHandler{Src: r, Dst: bw, State: ws.StateServerSide, DisableSrcCiphering: true}.Handle(h)
	}
	rd := wsutil.Reader{Source: br, State: ws.StateServerSide, CheckUTF8: true, OnIntermediate: control}
	msg := make([]byte, 0, 4096)
	for {
		h, err := rd.NextFrame()
		if err == nil && h.OpCode.IsControl() {
			err = control(h, &rd)
		} else if err == nil {
			msg, err = readMessage(&rd, msg[:0])
			if err == nil {
				err = ws.WriteHeader(bw, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(msg))})
			}
			if err == nil {
				_, err = bw.Write(msg)
			}
		}
		if err != nil {
			s.wsFailed(bw, err)
			return
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

// errTooBig is a message over the protocol's largest payload.
var errTooBig = errors.New("baseline: a message over 65535 bytes")

// readMessage reads the rest of the message rd is at into buf.
func readMessage(rd *wsutil.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > wire.MaxPayload {
			return buf, errTooBig
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// wsFailed ends a connection: a client's close was answered already (by
// the control handler); a frame that breaks RFC 6455 or a message too
// big is answered with a close frame saying why, and counted.
func (s *WebSocketServer) wsFailed(bw *bufio.Writer, err error) {
	var code ws.StatusCode
	var closed wsutil.ClosedError
	switch {
	case errors.As(err, &closed):
	case errors.Is(err, errTooBig):
		code = ws.StatusMessageTooBig
	case errors.Is(err, wsutil.ErrInvalidUTF8):
		code = ws.StatusInvalidFramePayloadData
	case isProtocolError(err):
		code = ws.StatusProtocolError
	}
	if code != 0 {
		s.protocolErrors.Add(1)
		_ = ws.WriteFrame(bw, ws.NewCloseFrame(ws.NewCloseFrameBody(code, "")))
	}
	_ = bw.Flush()
}

func isProtocolError(err error) bool {
	var pe ws.ProtocolError
	return errors.As(err, &pe) || errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected)
}

// upgrade reads the upgrade request from c and answers it, within
// wsUpgradeTimeout.
func upgrade(c net.Conn) error {
	if err := c.SetDeadline(time.Now().Add(wsUpgradeTimeout)); err != nil {
		return err
	}
	var host, origin string
	u := ws.Upgrader{
		OnHost: func(h []byte) error { host = string(h); return nil },
		OnHeader: func(k, v []byte) error {
			if strings.EqualFold(string(k), "Origin") {
				origin = string(v)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if !sameHost(origin, host) {
				return nil, ws.RejectConnectionError(ws.RejectionStatus(403), ws.RejectionReason("origin not allowed"))
			}
			return nil, nil
		},
	}
	if _, err := u.Upgrade(c); err != nil {
		return err
	}
	return c.SetDeadline(time.Time{})
}

// sameHost reports whether an upgrade request's Origin names the host of
// its Host header (any port), or is absent.
func sameHost(origin, host string) bool {
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" {
		return false
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	return strings.EqualFold(o.Hostname(), strings.Trim(h, "[]"))
}
