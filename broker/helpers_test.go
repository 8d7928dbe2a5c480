package broker_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// start runs a broker on a free loopback port with the given application
// and stops it when the test ends.
func start(t testing.TB, cfg broker.Config, app *actor.Props, perStream bool, opts ...broker.HandleOption) *broker.Broker {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil && os.Getenv("HYDROGEN_TEST_LOG") == "" {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if perStream {
		b.HandlePerStream(app, opts...)
	} else {
		b.Handle(app)
	}
	done := make(chan error, 1)
	go func() { done <- b.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b
}

// peer is a raw protocol client over Go's net package.
type peer struct {
	t   testing.TB
	c   *net.TCPConn
	r   *bufio.Reader
	dec *wire.Decoder
	buf []byte
}

func dial(t testing.TB, b *broker.Broker) *peer {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, c: c.(*net.TCPConn), r: bufio.NewReaderSize(c, 64<<10), dec: wire.NewDecoder(wire.MaxPayload), buf: make([]byte, 0, 64<<10)}
}

func (p *peer) send(payloads ...[]byte) {
	p.t.Helper()
	if err := p.trySend(payloads...); err != nil {
		p.t.Fatal(err)
	}
}

// trySend is send for goroutines other than the test's: it returns the
// error for the test's goroutine to report. A write that cannot finish
// within 10 s is an error too, so that no sender is left blocked.
func (p *peer) trySend(payloads ...[]byte) error {
	var out []byte
	for _, pl := range payloads {
		var err error
		if out, err = wire.AppendFrame(out, pl); err != nil {
			return err
		}
	}
	p.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.c.Write(out); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (p *peer) writeRaw(b []byte) {
	p.t.Helper()
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// next reads the next frame, failing the test after the deadline.
func (p *peer) next(timeout time.Duration) []byte {
	p.t.Helper()
	f, err := p.tryNext(timeout)
	if err != nil {
		p.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

func (p *peer) tryNext(timeout time.Duration) ([]byte, error) {
	p.c.SetReadDeadline(time.Now().Add(timeout))
	defer p.c.SetReadDeadline(time.Time{})
	for {
		if pl, ok, err := p.dec.Next(); err != nil {
			return nil, err
		} else if ok {
			return append([]byte(nil), pl...), nil
		}
		n, err := p.r.Read(p.buf[:cap(p.buf)])
		if n > 0 {
			p.dec.Feed(p.buf[:n])
			continue
		}
		if err != nil {
			return nil, err
		}
	}
}

// expectEOF waits for the broker to close the connection.
func (p *peer) expectEOF(timeout time.Duration) {
	p.t.Helper()
	for {
		_, err := p.tryNext(timeout)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			p.t.Fatalf("connection still open after %v", timeout)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return
		}
		p.t.Fatalf("expected EOF, got %v", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

func telemetryRequest(seconds float32) []byte {
	return wire.AppendTelemetryRequest(nil, seconds)
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("reply is not a JSON object: %v: %q", err, b)
	}
	return m
}

func seqPayload(id, seq uint32) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b, id)
	binary.BigEndian.PutUint32(b[4:], seq)
	return b
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
