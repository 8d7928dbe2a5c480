package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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

// dialAll opens n connections to addr, at most workers at a time. On any
// failure it closes those it opened and returns the first error.
func dialAll(ctx context.Context, addr string, n, workers int, timeout time.Duration) ([]net.Conn, error) {
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
				c, err := d.DialContext(ctx, "tcp", addr)
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
