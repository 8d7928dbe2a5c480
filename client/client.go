package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// readBufferSize is the size of a Client's socket read buffer: one read
// can carry a whole maximal frame, or many small ones.
const readBufferSize = 64 << 10

// Client is one connection to a hydrogen broker. Its methods are safe for
// concurrent use; see the package documentation for the ordering and
// ownership rules.
type Client struct {
	conn net.Conn
	opts options

	// Write side (send.go): frames are appended to wbuf under wmu and
	// written by the last of the concurrent writers.
	wmu     sync.Mutex
	wbuf    []byte
	werr    error        // the first write error; sticky
	pending atomic.Int32 // writers that have announced themselves and not yet finished

	// Read side, owned by the reader goroutine.
	dec    wire.Decoder
	frames chan []byte // application frames for Recv; nil with a handler; closed by the reader when it stops
	early  [][]byte    // frames that came with the authentication answer, delivered first
	ident  string      // the identity the broker accepted; "" without WithCredential

	// Telemetry (stats.go). statsSlot holds one token from the moment a
	// request is about to be sent until its reply has been read, so at
	// most one request is outstanding on the connection.
	statsSlot chan struct{}
	statsCall atomic.Pointer[statsCall]

	// Lifetime.
	closed     atomic.Bool   // Close has been called
	closing    chan struct{} // closed by Close
	done       chan struct{} // closed once the connection has ended, for whatever reason
	endOnce    sync.Once
	err        error         // why it ended; written before done is closed
	readerDone chan struct{} // closed when the reader goroutine has returned
}

// Dial connects to the broker at addr ("host:port") over TCP and starts the
// Client's reader goroutine. ctx bounds the dial only; once Dial returns,
// cancelling ctx does not affect the Client. Close the Client to release its
// connection and goroutine.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.dialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.dialTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("hydrogen: dial: %w", err)
	}
	if o.tls != nil {
		cfg := o.tls.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("hydrogen: TLS handshake: %w", err)
		}
		conn = tc
	}
	c := &Client{
		conn:       conn,
		opts:       o,
		statsSlot:  make(chan struct{}, 1),
		closing:    make(chan struct{}),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	c.dec.Init(o.maxPayload)
	if o.credential != nil {
		if err := c.authenticate(ctx); err != nil {
			conn.Close()
			return nil, err
		}
	}
	if o.handler == nil {
		c.frames = make(chan []byte, max(o.recvBuffer, len(c.early)))
	}
	go c.read()
	return c, nil
}

// defaultAuthWait bounds the wait for the broker's answer to a credential
// when ctx has no deadline: the broker's own authentication timeout is 5 s
// by default.
const defaultAuthWait = 30 * time.Second

// authenticate sends the credential as the first frame and reads the
// broker's answer, before the reader goroutine starts. Frames that arrive
// right behind the answer are kept for the reader to deliver first.
func (c *Client) authenticate(ctx context.Context) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultAuthWait)
	}
	c.conn.SetDeadline(deadline)
	defer c.conn.SetDeadline(time.Time{})
	f, err := wire.Encode(c.opts.credential)
	if err != nil {
		return fmt.Errorf("hydrogen: credential: %w", err)
	}
	if _, err := c.conn.Write(f); err != nil {
		return fmt.Errorf("hydrogen: sending the credential: %w", err)
	}
	buf := make([]byte, readBufferSize)
	var answer []byte
	for answer == nil {
		n, err := c.conn.Read(buf)
		if n > 0 {
			c.dec.Feed(buf[:n])
			for {
				p, ok, derr := c.dec.Next()
				if derr != nil {
					return fmt.Errorf("hydrogen: protocol error from the broker: %w", derr)
				}
				if !ok {
					break
				}
				if answer == nil {
					answer = append([]byte(nil), p...)
				} else {
					c.early = append(c.early, append([]byte(nil), p...))
				}
			}
		}
		if err != nil && answer == nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("hydrogen: the broker closed the connection without answering the credential: %w", err)
			}
			return fmt.Errorf("hydrogen: waiting for the broker's answer to the credential: %w", err)
		}
	}
	var m struct {
		Auth     *string `json:"auth"`
		Identity string  `json:"identity"`
		Error    *string `json:"error"`
	}
	switch {
	case json.Unmarshal(answer, &m) != nil:
		return fmt.Errorf("hydrogen: the broker's answer to the credential is not the authentication answer: %q", brief(answer))
	case m.Error != nil:
		return &AuthError{Reason: *m.Error}
	case m.Auth == nil || *m.Auth != "ok":
		return fmt.Errorf("hydrogen: the broker's answer to the credential is not the authentication answer: %q", brief(answer))
	}
	c.ident = m.Identity
	return nil
}

// brief cuts a payload for an error message.
func brief(p []byte) string {
	if len(p) > 64 {
		return string(p[:64]) + "..."
	}
	return string(p)
}

// Identity is the name the broker accepted the credential as
// (WithCredential); "" when the Client did not authenticate.
func (c *Client) Identity() string { return c.ident }

// Close closes the connection and waits for the Client's reader goroutine
// to stop, including a handler call in progress. Calls blocked in Recv,
// Send or Stats return an error wrapping net.ErrClosed, and so does every
// later call; frames still buffered for Recv are dropped. Close is
// idempotent: later calls return nil. It must not be called from a
// WithHandler handler (see WithHandler).
func (c *Client) Close() error {
	var err error
	if c.closed.CompareAndSwap(false, true) {
		close(c.closing)
		if cerr := c.end(errClosed); cerr != nil {
			err = fmt.Errorf("hydrogen: close: %w", cerr)
		}
	}
	<-c.readerDone
	return err
}

// Done returns a channel that is closed when the connection has ended: by
// Close, by the broker closing it, or by a read, write or protocol error.
// Err then says why. It lets a client using WithHandler learn of the end.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is up, and after it has ended the
// error that ended it: one wrapping net.ErrClosed when Close ended it,
// io.EOF when the broker closed the connection between frames,
// io.ErrUnexpectedEOF when it closed it inside a frame, a
// *wire.ProtocolError (wire.ErrBadStart, wire.ErrBadEnd, wire.ErrTooLarge)
// when the broker's stream broke the frame format, or the read or write
// error.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// LocalAddr returns the local network address of the connection.
func (c *Client) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the broker's network address.
func (c *Client) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// end records why the connection ended and closes it; only the first call
// has an effect, and it returns the error of closing the socket.
func (c *Client) end(cause error) (closeErr error) {
	c.endOnce.Do(func() {
		c.err = cause
		closeErr = c.conn.Close()
		close(c.done)
	})
	return closeErr
}

// terminal is the error a call returns once the connection has ended. It
// must be called only after done is closed.
func (c *Client) terminal() error {
	if c.closed.Load() {
		return errClosed
	}
	return c.err
}

// Recv returns the payload of the next application frame, waiting for one
// if none is buffered. The payload belongs to the caller. Telemetry replies
// awaited by Stats are not returned (see the package documentation).
//
// When ctx is done first, Recv returns an error wrapping ctx.Err() and no
// frame is lost. Once the connection has ended, Recv returns the frames
// still buffered and then the error that ended it (see Err): one wrapping
// io.EOF when the broker closed the connection, net.ErrClosed after Close
// (Close drops buffered frames). On a Client with a handler Recv returns
// ErrHandlerSet.
func (c *Client) Recv(ctx context.Context) ([]byte, error) {
	if c.frames == nil {
		return nil, ErrHandlerSet
	}
	if c.closed.Load() {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hydrogen: recv: %w", err)
	}
	select {
	case p, ok := <-c.frames:
		return c.received(p, ok)
	default:
	}
	select {
	case p, ok := <-c.frames:
		return c.received(p, ok)
	case <-ctx.Done():
		return nil, fmt.Errorf("hydrogen: recv: %w", ctx.Err())
	case <-c.closing:
		return nil, errClosed
	}
}

func (c *Client) received(p []byte, ok bool) ([]byte, error) {
	if !ok {
		// The reader closes frames only after end has run.
		return nil, c.terminal()
	}
	return p, nil
}

// read is the Client's reader goroutine: it cuts frames out of the socket
// and hands each to a waiting Stats call, the handler, or Recv's queue.
func (c *Client) read() {
	defer close(c.readerDone)
	if c.frames != nil {
		defer close(c.frames)
	}
	for _, p := range c.early {
		if !c.deliver(p) {
			return
		}
	}
	c.early = nil
	buf := make([]byte, readBufferSize)
	for {
		n, err := c.conn.Read(buf)
		if n > 0 {
			c.dec.Feed(buf[:n])
			for {
				p, ok, derr := c.dec.Next()
				if derr != nil {
					c.end(fmt.Errorf("hydrogen: protocol error from the broker: %w", derr))
					return
				}
				if !ok {
					break
				}
				if !c.deliver(p) {
					return
				}
			}
		}
		if err != nil {
			c.end(c.readError(err))
			return
		}
	}
}

func (c *Client) readError(err error) error {
	if errors.Is(err, io.EOF) {
		if n := c.dec.Buffered(); n > 0 {
			return fmt.Errorf("hydrogen: broker closed the connection inside a frame (%d bytes of it read): %w", n, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("hydrogen: broker closed the connection: %w", io.EOF)
	}
	return fmt.Errorf("hydrogen: read: %w", err)
}

// deliver routes one frame; p is valid only during the call. It reports
// false when the connection ended while it waited for room in the queue.
func (c *Client) deliver(p []byte) bool {
	if call := c.statsCall.Load(); call != nil && isReply(p) && c.statsCall.CompareAndSwap(call, nil) {
		call.reply <- append([]byte(nil), p...) // buffered for this one reply: never blocks
		<-c.statsSlot
		return true
	}
	if h := c.opts.handler; h != nil {
		h(p)
		return true
	}
	q := make([]byte, len(p))
	copy(q, p)
	select {
	case c.frames <- q:
		return true
	default:
	}
	// The queue is full: stop reading the socket until Recv makes room, so
	// TCP pushes back on the broker.
	select {
	case c.frames <- q:
		return true
	case <-c.done:
		return false
	}
}
