package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// Defaults for the fields every Config shares.
const (
	defaultDialTimeout      = 5 * time.Second
	defaultProgressInterval = time.Second
	// dialWorkers bounds the dials under way at once for Echo and Fanout,
	// so a run of thousands of connections does not overrun the server's
	// accept backlog (net.core.somaxconn, 4096 on current kernels).
	dialWorkers = 64
	// maxBatchBytes bounds the frames written in one write and the read
	// buffer: 64 KiB is what one loopback write or read moves well.
	maxBatchBytes = 64 << 10
)

// Connect is how a load generator's connections reach a broker beyond
// TCP: TLS, and a credential, when the broker requires them, and
// WebSocket.
type Connect struct {
	TLS        *tls.Config // nil: plain TCP
	Credential []byte      // nil: no authentication
	// WebSocket upgrades each connection (after TLS, before the
	// credential) and sends each frame's payload as one binary message,
	// as a broker's WebSocket listener expects (docs/PROTOCOL.md); the
	// workloads run unchanged. See websocket.go.
	WebSocket bool
}

// dial opens one connection to addr: TCP, then the TLS handshake, the
// WebSocket upgrade and the credential's, if asked for. The credential's
// answer is read to its last byte and no further, so nothing meant for
// the generator is lost.
func (cn Connect) dial(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cn.TLS != nil {
		cfg := cn.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		hctx, cancel := context.WithTimeout(ctx, d.Timeout)
		tc := tls.Client(c, cfg)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	if cn.WebSocket {
		wc, err := upgradeWS(ctx, c, addr, cn.TLS != nil, d.Timeout)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("WebSocket upgrade: %w", err)
		}
		c = wc
	}
	if cn.Credential != nil {
		if err := authenticate(c, cn.Credential, d.Timeout); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// authenticate sends credential as the first frame and reads the
// broker's answer, one frame, which must accept it.
func authenticate(c net.Conn, credential []byte, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	f, err := wire.Encode(credential)
	if err != nil {
		return fmt.Errorf("credential: %w", err)
	}
	if _, err := c.Write(f); err != nil {
		return fmt.Errorf("sending the credential: %w", err)
	}
	var hdr [wire.HeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("waiting for the answer to the credential: %w", err)
	}
	p := make([]byte, int(hdr[1])<<8|int(hdr[2])+1)
	if _, err := io.ReadFull(c, p); err != nil {
		return fmt.Errorf("reading the answer to the credential: %w", err)
	}
	if !bytes.HasPrefix(p, []byte(`{"auth":"ok"`)) {
		return fmt.Errorf("credential refused: %s", p[:len(p)-1])
	}
	return nil
}

// dialAll opens n connections to addr, at most workers at a time. On any
// failure it closes those it opened and returns the first error.
func dialAll(ctx context.Context, addr string, cn Connect, n, workers int, timeout time.Duration) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
	)
	d := net.Dialer{Timeout: timeout}
	for range min(n, workers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := cn.dial(ctx, &d, addr)
				if err != nil {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("loadgen: dial %s (connection %d of %d): %w", addr, i+1, n, err)
						cancel()
					})
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

// closeAll closes every non-nil connection. A close error on a connection
// being discarded tells the caller nothing it can act on.
func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// interrupt makes every blocked Read and Write on conns return at once.
func interrupt(conns []net.Conn) {
	past := time.Unix(1, 0)
	for _, c := range conns {
		if c != nil {
			// An error means the connection is closed already, which is
			// what we want.
			_ = c.SetDeadline(past)
		}
	}
}

// errorLog counts errors and keeps the first one's description.
type errorLog struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (e *errorLog) add(format string, args ...any) {
	if e.n.Add(1) == 1 {
		s := fmt.Sprintf(format, args...)
		e.mu.Lock()
		e.first = s
		e.mu.Unlock()
	}
}

func (e *errorLog) firstError() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.first
}

// cause names the kind of a network error without the addresses and ports
// that make every instance unique, so that failures can be counted by
// cause: "connection refused", "timeout", "EOF", "too many open files".
func cause(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by peer"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

// progressTicker ticks for the Progress callback and the stall check.
func progressTicker(interval time.Duration) *time.Ticker {
	if interval <= 0 {
		interval = defaultProgressInterval
	}
	return time.NewTicker(interval)
}
