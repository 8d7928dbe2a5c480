package broker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/benchecho"
	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
	"github.com/hydrogen-mq/hydrogen/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// A copy of the test binary started by a benchmark as its server
	// process runs that server instead of the tests.
	benchproc.Main(benchproc.Servers{
		"broker-onloop":     serveOnLoopEcho,
		"baseline":          benchecho.ServeBaseline,
		"broker-onloop-tls": serveOnLoopEchoTLS,
		"baseline-tls":      benchecho.ServeBaselineTLS,
		"broker-eager":      serveEchoEager,
		"broker-lazy":       serveEchoQuiet,
		"broker-onloop-ws":  serveOnLoopEchoWS,
		"baseline-ws":       benchecho.ServeBaselineWebSocket,
	})
	goleak.VerifyTestMain(m,
		// protoactor-go's dead-letter throttle outlives the actor system
		// that started it.
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottle.func2"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewThrottleWithLogger.func2"),
		goleak.IgnoreAnyFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	)
}

func TestEcho(t *testing.T) {
	for _, perStream := range []bool{false, true} {
		t.Run(fmt.Sprintf("perStream=%v", perStream), func(t *testing.T) {
			b := start(t, broker.Config{}, broker.Echo(), perStream)
			p := dial(t, b)
			payloads := [][]byte{{}, []byte("hello"), bytes.Repeat([]byte{wire.Start, wire.End, wire.ActionTelemetry}, 1000), make([]byte, wire.MaxPayload)}
			p.send(payloads...)
			for i, want := range payloads {
				if got := p.next(5 * time.Second); !bytes.Equal(got, want) {
					t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
				}
			}
		})
	}
}

func TestPingPong(t *testing.T) {
	b := start(t, broker.Config{}, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*broker.Received); ok && string(m.Payload) == "ping" {
			m.Stream.Send([]byte("pong"))
		}
	}), false)
	p := dial(t, b)
	p.send([]byte("ping"))
	if got := string(p.next(5 * time.Second)); got != "pong" {
		t.Fatalf("got %q, want pong", got)
	}
}

func TestBroadcastReachesEveryOtherStream(t *testing.T) {
	for _, mode := range appModes {
		t.Run(mode.name, func(t *testing.T) {
			testBroadcast(t, start(t, broker.Config{}, broker.Broadcast(), mode.perStream, mode.opts...))
		})
	}
}

func testBroadcast(t *testing.T, b *broker.Broker) {
	const n = 20
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = dial(t, b)
	}
	waitFor(t, "all streams open", 5*time.Second, func() bool { return b.Streams().Len() == n })
	peers[0].send([]byte("to all"))
	for i, p := range peers[1:] {
		if got := string(p.next(5 * time.Second)); got != "to all" {
			t.Fatalf("stream %d got %q", i+1, got)
		}
	}
	// The sender is excluded: the next frame it sees is its own echo of a
	// later broadcast from another stream.
	peers[1].send([]byte("second"))
	if got := string(peers[0].next(5 * time.Second)); got != "second" {
		t.Fatalf("sender got %q, want the next broadcast", got)
	}
}

func TestStreamLifecycleMessages(t *testing.T) {
	for _, mode := range appModes {
		t.Run(mode.name, func(t *testing.T) { testLifecycle(t, mode.perStream, mode.opts...) })
	}
}

func testLifecycle(t *testing.T, perStream bool, opts ...broker.HandleOption) {
	events := make(chan string, 16)
	b := start(t, broker.Config{}, actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *broker.Connected:
			events <- "connected"
		case *broker.Received:
			events <- "received " + string(m.Payload)
		case *broker.Closed:
			events <- "closed " + fmt.Sprint(m.Reason != nil)
		}
	}), perStream, opts...)
	p := dial(t, b)
	p.send([]byte("x"))
	p.c.Close()
	for _, want := range []string{"connected", "received x", "closed true"} {
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %q", want)
		}
	}
}

func TestTelemetryReply(t *testing.T) {
	b := start(t, broker.Config{}, broker.Echo(), true)
	p := dial(t, b)
	const span = 0.3
	sent := time.Now()
	p.send(telemetryRequest(span))
	reply := p.next(5 * time.Second)
	if elapsed := time.Since(sent); elapsed < time.Duration(span*float64(time.Second)) {
		t.Fatalf("reply after %v, before its span of %vs", elapsed, span)
	}
	m := decodeJSON(t, reply)
	for _, k := range []string{"up_time", "bytes_recv", "bytes_sent", "msg_recv", "msg_sent", "num_clients"} {
		v, ok := m[k].(float64)
		if !ok || v != math.Trunc(v) || v < 0 {
			t.Errorf("%s = %v, want a non-negative integer", k, m[k])
		}
	}
	if m["num_clients"].(float64) != 1 {
		t.Errorf("num_clients = %v, want 1", m["num_clients"])
	}
	if m["msg_recv"].(float64) != 1 || m["bytes_recv"].(float64) != wire.TelemetryRequestSize {
		t.Errorf("msg_recv/bytes_recv = %v/%v, want 1/5 (the request itself)", m["msg_recv"], m["bytes_recv"])
	}
	res := m["resources"].(map[string]any)
	ram := res["ram"].(map[string]any)
	if got, want := ram["bytes_available"].(float64), float64(memTotal(t)); got != want {
		t.Errorf("ram.bytes_available = %v, want MemTotal %v", got, want)
	}
	if used := ram["bytes_used"].(float64); used <= 0 || used > ram["bytes_available"].(float64) {
		t.Errorf("ram.bytes_used = %v", used)
	}
	if f := res["cpu_overall"].(float64); f < 0 || f > 1 {
		t.Errorf("cpu_overall = %v", f)
	}
	cores := res["cpu_per_core"].([]any)
	lines := cpuLines(t)
	if len(cores) != len(lines) {
		t.Fatalf("%d cpu_per_core entries, /proc/stat has %d cpuN lines", len(cores), len(lines))
	}
	for i, c := range cores {
		e := c.(map[string]any)
		if e["core"].(float64) != float64(lines[i]) {
			t.Errorf("entry %d core = %v, want %d", i, e["core"], lines[i])
		}
		if u := e["using"].(float64); u < 0 || u > 1 {
			t.Errorf("core %d using = %v", i, u)
		}
	}
}

func TestTelemetryDoesNotBlockTheStream(t *testing.T) {
	b := start(t, broker.Config{}, broker.Echo(), true)
	p := dial(t, b)
	p.send(telemetryRequest(2), []byte("after"))
	// The echo of the frame sent after the request arrives long before the
	// reply to the request.
	if got := string(p.next(time.Second)); got != "after" {
		t.Fatalf("got %q first, want the echo", got)
	}
	if m := decodeJSON(t, p.next(10*time.Second)); m["up_time"] == nil {
		t.Fatalf("second frame is not the reply: %v", m)
	}
}

func TestTelemetryCountersMoveByWhatWasSent(t *testing.T) {
	b := start(t, broker.Config{}, broker.Echo(), true)
	p := dial(t, b)
	p.send(telemetryRequest(0.01))
	firstRaw := p.next(5 * time.Second)
	first := decodeJSON(t, firstRaw)
	const frames, size = 100, 37
	for range frames {
		p.send(make([]byte, size))
	}
	for range frames {
		p.next(5 * time.Second)
	}
	p.send(telemetryRequest(0.01))
	second := decodeJSON(t, p.next(5*time.Second))
	diff := func(k string) float64 { return second[k].(float64) - first[k].(float64) }
	if got, want := diff("msg_recv"), float64(frames+1); got != want {
		t.Errorf("msg_recv moved by %v, want %v", got, want)
	}
	if got, want := diff("bytes_recv"), float64(frames*size+wire.TelemetryRequestSize); got != want {
		t.Errorf("bytes_recv moved by %v, want %v", got, want)
	}
	// Sent: the echoes and the first reply.
	if got, want := diff("msg_sent"), float64(frames+1); got != want {
		t.Errorf("msg_sent moved by %v, want %v", got, want)
	}
	if got, want := diff("bytes_sent"), float64(frames*size+len(firstRaw)); got != want {
		t.Errorf("bytes_sent moved by %v, want %v", got, want)
	}
}

func TestTelemetryBadSpans(t *testing.T) {
	b := start(t, broker.Config{MaxSpan: 2 * time.Second}, broker.Echo(), true)
	p := dial(t, b)
	for _, s := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, -1, 2.5} {
		p.send(telemetryRequest(s))
		m := decodeJSON(t, p.next(time.Second))
		msg, ok := m["error"].(string)
		if !ok || msg == "" || len(m) != 1 {
			t.Fatalf("span %v: reply %v, want only a readable error", s, m)
		}
	}
	p.send([]byte("still open"))
	if got := string(p.next(time.Second)); got != "still open" {
		t.Fatalf("got %q", got)
	}
}

// The telemetry bounds (actors/telemetry.go, docs/PROTOCOL.md): a stream
// may have 64 requests waiting while the broker's 16,384 places are all
// free, and floor(64 × free / 16,384), at least 1, as they fill. So a
// stream alone gets 64 only for its first request: from the second on
// one place is taken and its share is 63, which it stays until more than
// 256 places are taken (64 × 16,128 / 16,384 = 63), then 62 until more
// than 512, and so on.

// TestTelemetryFloodIsBounded: 200 requests at once on one stream get
// exactly 63 readings and 137 refusals, the refusals at once. The span is
// long enough (1 s) that every request is judged before the first is
// answered and gives its place back.
func TestTelemetryFloodIsBounded(t *testing.T) {
	b := start(t, broker.Config{}, broker.Echo(), true)
	p := dial(t, b)
	const n, accepted = 200, 63
	reqs := make([][]byte, n)
	for i := range reqs {
		reqs[i] = telemetryRequest(1)
	}
	p.send(reqs...)
	for i := range n - accepted {
		m := decodeJSON(t, p.next(10*time.Second))
		if _, ok := m["error"]; !ok {
			t.Fatalf("reply %d is a reading; want the first %d replies to be refusals, at once", i, n-accepted)
		}
	}
	if st := b.Stats(); st.Actors.TelemetryWaiting != accepted {
		t.Fatalf("%d requests waiting after the refusals, want %d", st.Actors.TelemetryWaiting, accepted)
	}
	for i := range accepted {
		m := decodeJSON(t, p.next(10*time.Second))
		if _, ok := m["up_time"]; !ok {
			t.Fatalf("reply %d of the %d accepted is not a reading: %v", i, accepted, m)
		}
	}
	if st := b.Stats(); st.Actors.TelemetryWaiting != 0 {
		t.Fatalf("%d requests still waiting", st.Actors.TelemetryWaiting)
	}
}

// TestTelemetryShareShrinks: streams that flood one after another get
// the share of what is left: 63 each while at most 256 places are taken,
// then 62 (63 × 4 = 252 taken before the fifth stream, which passes 256
// on its fifth request). Spans of 30 s keep every place taken; the
// streams are reset at the end, which gives their places back at once (a
// FIN would be a half-close, which waits for the replies owed).
func TestTelemetryShareShrinks(t *testing.T) {
	b := start(t, broker.Config{}, broker.Echo(), true)
	const per = 64
	reqs := make([][]byte, per)
	for i := range reqs {
		reqs[i] = telemetryRequest(30)
	}
	waiting := int64(0)
	var peers []*peer
	for i, accepted := range []int{63, 63, 63, 63, 62} {
		p := dial(t, b)
		peers = append(peers, p)
		p.send(reqs...)
		for j := range per - accepted {
			m := decodeJSON(t, p.next(10*time.Second))
			if _, ok := m["error"]; !ok {
				t.Fatalf("stream %d: reply %d is not a refusal: %v", i, j, m)
			}
		}
		waiting += int64(accepted)
		if got := b.Stats().Actors.TelemetryWaiting; got != waiting {
			t.Fatalf("stream %d: %d requests waiting after its %d refusals, want %d (it was to get %d)", i, got, per-accepted, waiting, accepted)
		}
	}
	for _, p := range peers {
		p.c.SetLinger(0)
		p.c.Close()
	}
	waitFor(t, "the closed streams' places given back", 10*time.Second, func() bool {
		return b.Stats().Actors.TelemetryWaiting == 0
	})
}

func TestProtocolErrorClosesOnlyTheOffender(t *testing.T) {
	b := start(t, broker.Config{MaxPayload: 100}, broker.Echo(), true)
	good := dial(t, b)
	for name, raw := range map[string][]byte{
		"bad start": {0x02, 0, 1, 'x', wire.End},
		"bad end":   {wire.Start, 0, 1, 'x', 0x18},
		"too long":  {wire.Start, 0, 101},
	} {
		bad := dial(t, b)
		bad.writeRaw(raw)
		bad.expectEOF(5 * time.Second)
		good.send([]byte(name))
		if got := string(good.next(time.Second)); got != name {
			t.Fatalf("%s: good stream got %q", name, got)
		}
	}
	waitFor(t, "protocol errors counted", 5*time.Second, func() bool { return b.Stats().IO.ClosedProtocol == 3 })
}

// appModes are the ways an application can run: one shared actor, an
// actor per stream on the worker pool, and an actor per stream on the
// event loops.
var appModes = []struct {
	name      string
	perStream bool
	opts      []broker.HandleOption
}{
	{"shared", false, nil},
	{"perstream", true, nil},
	{"onloop", true, []broker.HandleOption{broker.OnEventLoop()}},
}

func TestPanickingHandlerIsRestarted(t *testing.T) {
	for _, mode := range appModes {
		t.Run(mode.name, func(t *testing.T) {
			b := start(t, broker.Config{}, actor.PropsFromFunc(func(ctx actor.Context) {
				if m, ok := ctx.Message().(*broker.Received); ok {
					if string(m.Payload) == "boom" {
						panic("boom")
					}
					m.Stream.Send(m.Payload)
				}
			}), mode.perStream, mode.opts...)
			p, other := dial(t, b), dial(t, b)
			for range 20 {
				p.send([]byte("boom"))
			}
			p.send([]byte("after"))
			if got := string(p.next(5 * time.Second)); got != "after" {
				t.Fatalf("got %q", got)
			}
			other.send([]byte("other"))
			if got := string(other.next(5 * time.Second)); got != "other" {
				t.Fatalf("other stream got %q", got)
			}
			st := b.Stats().Actors
			if st.HandlerPanics != 20 || st.HandlerRestarts != 20 {
				t.Fatalf("panics %d restarts %d, want 20 each", st.HandlerPanics, st.HandlerRestarts)
			}
		})
	}
}

func TestPerStreamOrderUnderLoad(t *testing.T) {
	for _, mode := range appModes {
		t.Run(mode.name, func(t *testing.T) {
			testOrderUnderLoad(t, start(t, broker.Config{}, broker.Echo(), mode.perStream, mode.opts...))
		})
	}
}

// testOrderUnderLoad: each client sends numbered frames from one
// goroutine and reads the echoes in another; the failures are reported
// from the test's goroutine once every one of them has returned.
func testOrderUnderLoad(t *testing.T, b *broker.Broker) {
	const clients, frames = 10, 3000
	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	for id := range clients {
		p := dial(t, b)
		wg.Go(func() {
			for seq := range frames {
				if err := p.trySend(seqPayload(uint32(id), uint32(seq))); err != nil {
					errs <- fmt.Errorf("client %d: frame %d: %w", id, seq, err)
					return
				}
			}
		})
		wg.Go(func() {
			for seq := range frames {
				got, err := p.tryNext(10 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("client %d: echo %d: %w", id, seq, err)
					return
				}
				if len(got) != 8 || binary.BigEndian.Uint32(got) != uint32(id) || binary.BigEndian.Uint32(got[4:]) != uint32(seq) {
					errs <- fmt.Errorf("client %d: echo %d is %x", id, seq, got)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestInboundBackpressurePausesReading(t *testing.T) {
	release := make(chan struct{})
	var handled atomic.Int64
	b := start(t, broker.Config{MaxInbound: 16}, actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*broker.Received); ok {
			<-release
			handled.Add(1)
		}
	}), true)
	p := dial(t, b)
	const frames = 2000
	sent := make(chan error, 1)
	go func() {
		for range frames {
			if err := p.trySend([]byte("x")); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	released := false
	defer func() {
		if !released {
			close(release) // so that a failed test's handlers return
		}
	}()
	waitFor(t, "reading paused", 5*time.Second, func() bool { return b.Stats().IO.PausedReads == 1 })
	close(release)
	released = true
	if err := <-sent; err != nil {
		t.Fatalf("sending: %v", err)
	}
	waitFor(t, "every frame handled", 10*time.Second, func() bool { return handled.Load() == frames })
	waitFor(t, "reading resumed", 5*time.Second, func() bool { return b.Stats().IO.PausedReads == 0 })
}

func TestHalfCloseStillGetsReplies(t *testing.T) {
	b := start(t, broker.Config{}, broker.Echo(), true)
	p := dial(t, b)
	const frames = 500
	for i := range frames {
		p.send(seqPayload(0, uint32(i)))
	}
	if err := p.c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		if got := p.next(5 * time.Second); binary.BigEndian.Uint32(got[4:]) != uint32(i) {
			t.Fatalf("reply %d is %x", i, got)
		}
	}
	p.expectEOF(5 * time.Second)
}

func TestShutdownDeliversQueuedFrames(t *testing.T) {
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	b.HandlePerStream(broker.Echo())
	done := make(chan error, 1)
	go func() { done <- b.Serve(context.Background()) }()
	p := dial(t, b)
	waitFor(t, "stream open", 5*time.Second, func() bool { return b.Streams().Len() == 1 })
	// Queue 2 MB straight into the stream's outbound queue while its
	// client is not reading.
	const frames, size = 64, 32 << 10
	payload := bytes.Repeat([]byte{0xAB}, size)
	b.Streams().Each(func(s *broker.Stream) bool {
		for range frames {
			if err := s.Send(payload); err != nil {
				t.Errorf("send: %v", err)
			}
		}
		return true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- b.Shutdown(ctx) }()
	for i := range frames {
		if got := p.next(5 * time.Second); len(got) != size {
			t.Fatalf("frame %d has %d bytes", i, len(got))
		}
	}
	p.expectEOF(5 * time.Second)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []broker.Config{
		{Addr: "127.0.0.1:0", MaxPayload: wire.MaxPayload + 1},
		{Addr: "127.0.0.1:0", MaxSpan: -time.Second},
		{Addr: "not an address"},
	} {
		if b, err := broker.New(cfg); err == nil {
			b.Shutdown(context.Background())
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(context.Background()); err == nil || !strings.Contains(err.Error(), "no application") {
		t.Fatalf("Serve without an application: %v", err)
	}
	b.Shutdown(context.Background())
}

func memTotal(t testing.TB) uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var kb uint64
		if n, _ := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb * 1024
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

func cpuLines(t testing.TB) []int {
	f, err := os.Open("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cores []int
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		// "cpu " is the aggregate line; "cpuN " are the cores.
		if len(line) < 4 || !strings.HasPrefix(line, "cpu") || line[3] < '0' || line[3] > '9' {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(line, "cpu%d ", &n); err != nil {
			t.Fatalf("parsing %q: %v", line, err)
		}
		cores = append(cores, n)
	}
	return cores
}
