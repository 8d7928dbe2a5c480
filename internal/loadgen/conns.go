package loadgen

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// ConnsConfig configures Open and Conns. Zero values mean the defaults
// noted.
type ConnsConfig struct {
	Addr            string        // server address, host:port; required
	N               int           // connections to open; required
	DialConcurrency int           // dials under way at once; default 100
	DialTimeout     time.Duration // per connection; default 5 s
	Connect         Connect       // TLS and a credential, when the broker requires them
	// Each connection is verified with one echo round trip (the server
	// must echo) whose payload names the connection, so a reply meant for
	// another one fails it. VerifyTimeout bounds the wait for the reply;
	// default 5 s. SkipVerify only opens.
	VerifyTimeout time.Duration
	SkipVerify    bool
	// Hold is how long Conns keeps the connections open once they are
	// all opened, before closing them; ctx being done ends it early.
	Hold time.Duration
	// Progress, if set, is called every ProgressInterval (default 1 s)
	// on the goroutine that called Open or Conns.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

const (
	defaultDialConcurrency = 100
	defaultVerifyTimeout   = 5 * time.Second
	connsPayload           = 16 // run nonce (8 bytes), connection index (8)
)

func (c *ConnsConfig) setDefaults() error {
	if c.Addr == "" {
		return fmt.Errorf("%w: no address", ErrConfig)
	}
	if c.N <= 0 {
		return fmt.Errorf("%w: N = %d connections", ErrConfig, c.N)
	}
	if c.DialConcurrency < 0 || c.Hold < 0 {
		return fmt.Errorf("%w: negative DialConcurrency or Hold", ErrConfig)
	}
	c.DialConcurrency = cmp.Or(c.DialConcurrency, defaultDialConcurrency)
	c.DialTimeout = cmp.Or(c.DialTimeout, defaultDialTimeout)
	c.VerifyTimeout = cmp.Or(c.VerifyTimeout, defaultVerifyTimeout)
	return nil
}

// ConnSet is a set of open connections made by Open. Its methods are safe
// for concurrent use.
type ConnSet struct {
	conns  []net.Conn // the connections held
	res    ConnsResult
	closed sync.Once
}

// Result returns what opening the connections measured.
func (s *ConnSet) Result() ConnsResult { return s.res }

// Len returns the number of connections held.
func (s *ConnSet) Len() int { return len(s.conns) }

// Close closes every connection held. Only the first call does anything.
func (s *ConnSet) Close() error {
	var errs []error
	s.closed.Do(func() {
		for _, c := range s.conns {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("loadgen: closing %d connections: %w", len(errs), errors.Join(errs...))
	}
	return nil
}

// Conns opens cfg.N connections, verifies each with an echo round trip,
// keeps them open for cfg.Hold and closes them. If ctx is done first, it
// closes them at once and returns what it measured with ctx.Err().
func Conns(ctx context.Context, cfg ConnsConfig) (ConnsResult, error) {
	s, err := Open(ctx, cfg)
	if s == nil {
		return ConnsResult{}, err
	}
	defer s.Close()
	if err != nil || cfg.Hold <= 0 {
		return s.res, err
	}
	t := time.NewTimer(cfg.Hold)
	defer t.Stop()
	tick := progressTicker(cfg.ProgressInterval)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-t.C:
			return s.res, nil
		case <-ctx.Done():
			return s.res, ctx.Err()
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(Progress{
					Elapsed:  s.res.Elapsed + time.Since(start),
					Conns:    s.Len(),
					Sent:     int64(s.res.Opened),
					Received: int64(s.res.Verified),
					Errors:   int64(s.res.Failed),
				})
			}
		}
	}
}

// Open opens cfg.N connections, at most cfg.DialConcurrency at a time,
// and verifies each with an echo round trip. Connections that fail are
// closed and counted by cause; the rest stay open in the returned set
// until its Close. The error is for an invalid configuration (and a nil
// set) or ctx being done, in which case the set holds nothing and its
// Result what was measured.
func Open(ctx context.Context, cfg ConnsConfig) (*ConnSet, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	o := &opener{
		cfg:    cfg,
		conns:  make([]net.Conn, cfg.N),
		causes: make(map[string]int),
		nonce:  uint64(time.Now().UnixNano()),
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range min(cfg.N, cfg.DialConcurrency) {
		wg.Go(func() { o.work(dctx) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	tick := progressTicker(cfg.ProgressInterval)
	defer tick.Stop()
	var err error
	for done != nil {
		select {
		case <-done:
			done = nil
		case <-ctx.Done():
			// The workers see dctx end with it; wait for them.
			err = ctx.Err()
			cancel()
			<-done
			done = nil
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(Progress{
					Elapsed:  time.Since(start),
					Conns:    int(o.opened.Load() - o.failed.Load() + o.dialFailed.Load()),
					Sent:     o.opened.Load(),
					Received: o.verified.Load(),
					Errors:   o.failed.Load(),
				})
			}
		}
	}

	s := &ConnSet{res: ConnsResult{
		Requested: cfg.N,
		Opened:    int(o.opened.Load()),
		Verified:  int(o.verified.Load()),
		Failed:    int(o.failed.Load()),
		Elapsed:   time.Since(start),
	}}
	if len(o.causes) > 0 {
		s.res.Causes = o.causes
	}
	s.res.ConnsPerSec = perSec(int64(s.res.Opened), s.res.Elapsed)
	for _, c := range o.conns {
		if c != nil {
			s.conns = append(s.conns, c)
		}
	}
	if err != nil {
		s.Close()
		s.conns = nil
	}
	s.res.Held = len(s.conns)
	return s, err
}

// opener is the state Open's dial workers share.
type opener struct {
	cfg   ConnsConfig
	nonce uint64 // names this run in verify payloads
	next  atomic.Int64
	conns []net.Conn // [i] is set by the worker that opened connection i, if it holds it

	opened, verified, failed, dialFailed atomic.Int64

	mu     sync.Mutex
	causes map[string]int
}

// work opens connections until none are left to open or ctx is done.
func (o *opener) work(ctx context.Context) {
	d := net.Dialer{Timeout: o.cfg.DialTimeout}
	var (
		dec  wire.Decoder
		want [connsPayload]byte
		out  = make([]byte, 0, wire.FrameSize(connsPayload))
		buf  = make([]byte, 256)
	)
	dec.Init(wire.MaxPayload)
	for {
		i := int(o.next.Add(1) - 1)
		if i >= o.cfg.N || ctx.Err() != nil {
			return
		}
		c, err := o.cfg.Connect.dial(ctx, &d, o.cfg.Addr)
		if err != nil {
			o.dialFailed.Add(1)
			o.fail("dial: " + cause(err))
			continue
		}
		o.opened.Add(1)
		if !o.cfg.SkipVerify {
			binary.BigEndian.PutUint64(want[:], o.nonce)
			binary.BigEndian.PutUint64(want[8:], uint64(i))
			out, _ = wire.AppendFrame(out[:0], want[:]) // 16 bytes always frame
			dec.Reset()
			// A done ctx ends a verification at once, not after its timeout.
			stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
			why := verify(c, &dec, out, want[:], buf, o.cfg.VerifyTimeout)
			if !stop() {
				why = "canceled" // whatever the interrupted read said
			}
			if why != "" {
				c.Close()
				o.fail("verify: " + why)
				continue
			}
			o.verified.Add(1)
		}
		o.conns[i] = c
	}
}

// verify sends frame on c and checks that the first frame back is want.
// It returns why not, or "".
func verify(c net.Conn, dec *wire.Decoder, frame, want, buf []byte, timeout time.Duration) string {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return cause(err)
	}
	if _, err := c.Write(frame); err != nil {
		return cause(err)
	}
	for {
		n, err := c.Read(buf)
		if n > 0 {
			dec.Feed(buf[:n])
			p, ok, perr := dec.Next()
			switch {
			case perr != nil:
				return "protocol error"
			case ok && !bytes.Equal(p, want):
				return "wrong reply"
			case ok:
				if n > wire.FrameSize(len(want)) || dec.Buffered() > 0 {
					return "more than one reply"
				}
				if err := c.SetDeadline(time.Time{}); err != nil {
					return cause(err)
				}
				return ""
			}
		}
		if err != nil {
			return cause(err)
		}
	}
}

func (o *opener) fail(why string) {
	o.failed.Add(1)
	o.mu.Lock()
	o.causes[why]++
	o.mu.Unlock()
}
