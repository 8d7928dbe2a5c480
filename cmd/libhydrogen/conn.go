//go:build cgo

package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
)

// statsGrace is how long hy_stats waits for a reply beyond the span it
// asked for: enough for a loaded broker and a slow network, short enough
// that a broker that never answers does not hang the C caller. A refused
// span is answered at once, so it waits only this long.
const statsGrace = 10 * time.Second

// maxStatsWait bounds the span part of hy_stats's wait, so that a huge
// (and certainly refused) span cannot overflow a time.Duration.
const maxStatsWait = 24 * time.Hour

// errTimeout is the cause of a wait that ran out.
var errTimeout = errors.New("timed out")

// tooSmallError reports a frame or reply that does not fit the caller's
// buffer; it has been kept for the next call.
type tooSmallError struct {
	what string // "message" or "reply"
	need int    // the capacity that fits
	cap  int    // the capacity given
}

func (e *tooSmallError) Error() string {
	return fmt.Sprintf("the %s needs a buffer of %d bytes, got %d; it is kept for the next call", e.what, e.need, e.cap)
}

// conn is one connection behind a handle.
type conn struct {
	c *client.Client

	// recvTurn holds a token while a hy_recv is in progress on the
	// connection; held and hasHeld belong to the holder. A frame that did
	// not fit the caller's buffer waits in held, and the next hy_recv
	// returns it before asking the client for another.
	recvTurn chan struct{}
	held     []byte
	hasHeld  bool

	// statsTurn does the same for hy_stats and a reply that did not fit.
	statsTurn chan struct{}
	heldStats []byte
}

func newConn(c *client.Client) *conn {
	return &conn{c: c, recvTurn: make(chan struct{}, 1), statsTurn: make(chan struct{}, 1)}
}

// recv returns the next frame if it fits in capacity bytes. A frame that
// does not is kept, and recv returns a *tooSmallError.
func (cn *conn) recv(ctx context.Context, capacity int) ([]byte, error) {
	if err := take(ctx, cn.recvTurn); err != nil {
		return nil, err
	}
	defer func() { <-cn.recvTurn }()
	p := cn.held
	if cn.hasHeld {
		cn.held, cn.hasHeld = nil, false
	} else {
		var err error
		if p, err = cn.c.Recv(ctx); err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil, errTimeout
			}
			return nil, err
		}
	}
	if len(p) > capacity {
		cn.held, cn.hasHeld = p, true
		return nil, &tooSmallError{what: "message", need: len(p), cap: capacity}
	}
	return p, nil
}

// stats returns the raw JSON of a telemetry reply over seconds if it fits
// in capacity bytes with a NUL after it. A reply that does not is kept,
// and the next call returns it without a new request.
func (cn *conn) stats(seconds float32, capacity int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), statsWait(seconds))
	defer cancel()
	if err := take(ctx, cn.statsTurn); err != nil {
		return nil, err
	}
	defer func() { <-cn.statsTurn }()
	raw := cn.heldStats
	if raw != nil {
		cn.heldStats = nil
	} else {
		s, err := cn.c.Stats(ctx, seconds)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil, errTimeout
			}
			return nil, err
		}
		raw = s.Raw
	}
	if len(raw)+1 > capacity {
		cn.heldStats = raw
		return nil, &tooSmallError{what: "reply", need: len(raw) + 1, cap: capacity}
	}
	return raw, nil
}

// statsWait is how long hy_stats waits for the reply to a request for
// seconds: the span, if it is one the broker could accept, plus statsGrace.
func statsWait(seconds float32) time.Duration {
	s := float64(seconds)
	if math.IsNaN(s) || s <= 0 {
		return statsGrace
	}
	if s >= maxStatsWait.Seconds() { // +Inf too
		return maxStatsWait + statsGrace
	}
	return time.Duration(math.Ceil(s*float64(time.Second))) + statsGrace
}

// take puts a token into turn, waiting while another caller holds it,
// for as long as ctx allows.
func take(ctx context.Context, turn chan struct{}) error {
	select {
	case turn <- struct{}{}:
		return nil
	default:
	}
	select {
	case turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return errTimeout
	}
}
