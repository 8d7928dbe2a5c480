package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

func TestStats(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)

	s, err := c.Stats(testContext(t), 0.01)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := client.Stats{
		UpTime: 42, BytesRecv: 1000, BytesSent: 2000, MsgRecv: 10, MsgSent: 20, NumClients: 3,
		Resources: client.Resources{
			RAM:        client.RAM{BytesUsed: 1024, BytesAvailable: 4096},
			CPUOverall: 0.5,
			CPUPerCore: []client.CoreUsage{{Core: 0, Using: 0.75}, {Core: 1, Using: 0.25}},
		},
		Extra: map[string]json.RawMessage{
			"process":         json.RawMessage(`{"rss_bytes":12345,"goroutines":7}`),
			"protocol_errors": json.RawMessage(`2`),
		},
		Raw: []byte(statsReply),
	}
	if !reflect.DeepEqual(*s, want) {
		t.Fatalf("Stats =\n%+v\nwant\n%+v", *s, want)
	}
}

func TestStatsBrokerError(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)

	tests := []struct {
		span   float32
		reason string
	}{
		{float32(math.NaN()), "span is NaN"},
		{0, "span 0 is outside (0, 60]"},
		{-1, "span -1 is outside (0, 60]"},
		{float32(math.Inf(1)), "span +Inf is outside (0, 60]"},
	}
	for _, tt := range tests {
		s, err := c.Stats(testContext(t), tt.span)
		var be *client.BrokerError
		if !errors.As(err, &be) {
			t.Fatalf("Stats(%v) = %v, %v; want a *BrokerError", tt.span, s, err)
		}
		if be.Reason != tt.reason {
			t.Errorf("Stats(%v): reason %q, want %q", tt.span, be.Reason, tt.reason)
		}
	}
	// A refusal leaves the connection open and the next request free.
	if _, err := c.Stats(testContext(t), 0.001); err != nil {
		t.Fatalf("Stats after refusals: %v", err)
	}
	mustSend(t, c, []byte("open"))
	if got := mustRecv(t, c); string(got) != "open" {
		t.Fatalf("Recv = %q", got)
	}
}

// notReplies are frames a client waiting for a telemetry reply must pass
// to Recv: none is a JSON object with an "up_time" member or with exactly
// one member "error" holding a string.
var notReplies = []string{
	"plain",
	"",
	`{}`,
	`{"uptime":1}`,
	`{"UP_TIME":1}`,
	`{"nested":{"up_time":1}}`,
	`{"error":"with company","code":1}`,
	`{"error":42}`,
	`{"error":null}`,
	`{"error":["x"]}`,
	`["up_time"]`,
	`"up_time"`,
	`{"up_time":1`,
	`{"up_time":1}garbage`,
	`{"error":"truncated"`,
	"\x0d\x3f\x80\x00\x00",
}

func TestStatsAmongOtherFrames(t *testing.T) {
	// While the request waits for its span, the broker sends the client
	// frames of every other shape, then the reply, then one more.
	srv := serve(t, func(sc *serverConn, p []byte) {
		if span, ok := wire.ParseTelemetryRequest(p); ok {
			for _, d := range notReplies {
				sc.send([]byte(d))
			}
			sc.answer(span, func() { sc.send([]byte(statsReply), []byte("tail")) })
			return
		}
		sc.send(p)
	})
	c := dial(t, srv)

	s, err := c.Stats(testContext(t), 0.05)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if string(s.Raw) != statsReply {
		t.Fatalf("Stats took %q for the reply", s.Raw)
	}
	for _, want := range append(notReplies, "tail") {
		if got := mustRecv(t, c); string(got) != want {
			t.Fatalf("Recv = %q, want %q", got, want)
		}
	}
}

func TestRefusalAmongOtherFrames(t *testing.T) {
	srv := serve(t, func(sc *serverConn, p []byte) {
		if wire.IsTelemetryRequest(p) {
			sc.send([]byte(`{"error":"a","code":1}`), []byte(` {"error" : "too many requests"} `), []byte("tail"))
			return
		}
		sc.send(p)
	})
	c := dial(t, srv)
	_, err := c.Stats(testContext(t), 1)
	var be *client.BrokerError
	if !errors.As(err, &be) || be.Reason != "too many requests" {
		t.Fatalf("Stats = %v, want the refusal %q", err, "too many requests")
	}
	for _, want := range []string{`{"error":"a","code":1}`, "tail"} {
		if got := mustRecv(t, c); string(got) != want {
			t.Fatalf("Recv = %q, want %q", got, want)
		}
	}
}

func TestReplyShapeWithoutStatsIsAMessage(t *testing.T) {
	srv := serve(t, echoAndStats(statsReply))
	c := dial(t, srv)
	for _, p := range []string{statsReply, `{"error":"just a message"}`} {
		mustSend(t, c, []byte(p))
		if got := mustRecv(t, c); string(got) != p {
			t.Fatalf("Recv = %q, want %q", got, p)
		}
	}
}

func TestStatsOneOutstanding(t *testing.T) {
	var outstanding, most atomic.Int32
	srv := serve(t, func(sc *serverConn, p []byte) {
		if span, ok := wire.ParseTelemetryRequest(p); ok {
			n := outstanding.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			sc.answer(span, func() {
				outstanding.Add(-1) // before the reply: the next request may follow it at once
				sc.send([]byte(statsReply))
			})
			return
		}
		sc.send(p)
	})
	c := dial(t, srv)

	const callers, calls = 4, 3
	var wg sync.WaitGroup
	errs := make(chan error, callers*calls)
	for range callers {
		wg.Go(func() {
			for range calls {
				if _, err := c.Stats(testContext(t), 0.005); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Stats: %v", err)
	}
	if m := most.Load(); m != 1 {
		t.Fatalf("the broker saw %d requests outstanding at once, want 1", m)
	}
}

// manualStats returns a broker that echoes frames and hands each telemetry
// request's connection to the test, which answers when it likes.
func manualStats(t *testing.T) (*server, <-chan *serverConn) {
	requests := make(chan *serverConn, 8)
	srv := serve(t, func(sc *serverConn, p []byte) {
		if wire.IsTelemetryRequest(p) {
			requests <- sc
			return
		}
		sc.send(p)
	})
	return srv, requests
}

func TestStatsContext(t *testing.T) {
	srv, requests := manualStats(t)
	c := dial(t, srv)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Stats(ctx, 5)
		errc <- err
	}()
	sc := receive(t, requests)
	cancel()
	if err := receive(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stats with a cancelled context: %v, want context.Canceled", err)
	}

	// The abandoned request is still outstanding at the broker, so the
	// next call waits for its reply rather than send a second request.
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := c.Stats(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stats while an abandoned request is outstanding: %v, want context.DeadlineExceeded", err)
	}
	// The broker handles frames in order: once "ping" is echoed, any
	// request sent before it would have been seen.
	mustSend(t, c, []byte("ping"))
	if got := mustRecv(t, c); string(got) != "ping" {
		t.Fatalf("Recv = %q", got)
	}
	select {
	case <-requests:
		t.Fatal("a second request was sent while the first was outstanding")
	default:
	}

	// The late reply is discarded, not delivered to Recv ...
	if err := sc.send([]byte(statsReply)); err != nil {
		t.Fatal(err)
	}
	mustSend(t, c, []byte("after"))
	if got := mustRecv(t, c); string(got) != "after" {
		t.Fatalf("Recv = %q, want %q: the abandoned reply was delivered", got, "after")
	}
	// ... and the next request goes out and gets its own reply.
	type result struct {
		s   *client.Stats
		err error
	}
	res := make(chan result, 1)
	go func() {
		s, err := c.Stats(testContext(t), 1)
		res <- result{s, err}
	}()
	sc = receive(t, requests)
	if err := sc.send([]byte(`{"up_time":7}`)); err != nil {
		t.Fatal(err)
	}
	// A reply with up_time but without the other fields is recognised and
	// then rejected.
	if r := receive(t, res); !errors.Is(r.err, client.ErrBadReply) {
		t.Fatalf("Stats = %v, %v; want ErrBadReply", r.s, r.err)
	}
}

func TestCloseUnblocksStats(t *testing.T) {
	srv, requests := manualStats(t)
	c := dial(t, srv)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Stats(context.Background(), 5)
		errc <- err
	}()
	receive(t, requests)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, errc); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Stats during Close: %v, want net.ErrClosed", err)
	}
}

func TestStatsWaitsBehindFullRecvQueue(t *testing.T) {
	// The reply is read in order with the application frames: with the
	// receive queue full it waits until Recv makes room.
	srv := serve(t, func(sc *serverConn, p []byte) {
		if wire.IsTelemetryRequest(p) {
			sc.send([]byte("1"), []byte("2"), []byte("3"), []byte(statsReply))
			return
		}
	})
	c := dial(t, srv, client.WithRecvBuffer(1))
	type result struct {
		s   *client.Stats
		err error
	}
	res := make(chan result, 1)
	go func() {
		s, err := c.Stats(testContext(t), 1)
		res <- result{s, err}
	}()
	for _, want := range []string{"1", "2", "3"} {
		if got := mustRecv(t, c); string(got) != want {
			t.Fatalf("Recv = %q, want %q", got, want)
		}
	}
	if r := receive(t, res); r.err != nil || r.s.UpTime != 42 {
		t.Fatalf("Stats = %v, %v", r.s, r.err)
	}
}
