package test

// The reliability suite of issue 5: each test runs the real broker binary
// on a loopback port and proves one guarantee by what its clients see and
// what the broker's monitoring endpoints (/stats, /metrics) and /proc say.
// Default sizes keep the whole suite to a few minutes under -race on two
// cores; HYDROGEN_LONG=1 (./scripts/test --long) runs the long versions.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/wire"
	"golang.org/x/sys/unix"
)

// relLong reports whether the long versions run.
func relLong() bool { return os.Getenv("HYDROGEN_LONG") == "1" }

// relPick is short in the default run and long with HYDROGEN_LONG=1.
func relPick[T any](short, long T) T {
	if relLong() {
		return long
	}
	return short
}

// relBroker is a broker binary serving its monitoring endpoints too.
type relBroker struct {
	*proc
	HTTP string // host:port of /metrics and /stats
	Pid  int

	hc *http.Client // nil: relHTTPClient
}

// relHTTPClient keeps no connection open between requests, so the
// broker's fd and goroutine counts are not disturbed by its own monitor.
var relHTTPClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// relStart starts the broker with --http-addr on a free loopback port and
// waits for its "http listening" line.
func relStart(t testing.TB, args ...string) *relBroker {
	t.Helper()
	p := startBroker(t, append([]string{"--http-addr", "127.0.0.1:0"}, args...)...)
	b := &relBroker{proc: p, Pid: p.Cmd.Process.Pid}
	waitFor(t, "the broker's http listening line", 10*time.Second, func() bool {
		for _, line := range strings.Split(p.Log(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "http listening" {
				b.HTTP = rec.Addr
				return true
			}
		}
		return false
	})
	return b
}

// relStats is the part of /stats these tests read.
type relStats struct {
	MsgRecv             uint64 `json:"msg_recv"`
	MsgSent             uint64 `json:"msg_sent"`
	BytesRecv           uint64 `json:"bytes_recv"`
	BytesSent           uint64 `json:"bytes_sent"`
	NumClients          int64  `json:"num_clients"`
	ConnectionsAccepted uint64 `json:"connections_accepted"`
	SlowConsumers       uint64 `json:"slow_consumers"`
	ProtocolErrors      uint64 `json:"protocol_errors"`
	PausedReads         int64  `json:"paused_reads"`
	TelemetryRequests   uint64 `json:"telemetry_requests"`
	Process             struct {
		RSSBytes   uint64 `json:"rss_bytes"`
		Goroutines int    `json:"goroutines"`
	} `json:"process"`
}

func (b *relBroker) get(t testing.TB, path string) []byte {
	t.Helper()
	hc := b.hc
	if hc == nil {
		hc = relHTTPClient
	}
	resp, err := hc.Get("http://" + b.HTTP + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", path, resp.Status, err, body)
	}
	return body
}

// stats reads /stats.
func (b *relBroker) stats(t testing.TB) relStats {
	t.Helper()
	var st relStats
	body := b.get(t, "/stats")
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/stats: %v\n%s", err, body)
	}
	return st
}

// metrics reads /metrics into a map from the series (name and labels,
// as printed) to its value.
func (b *relBroker) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	m := make(map[string]float64)
	sc := bufio.NewScanner(bytes.NewReader(b.get(t, "/metrics")))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// metric reads one series of /metrics; it fails the test if there is none.
func (b *relBroker) metric(t testing.TB, series string) float64 {
	t.Helper()
	v, ok := b.metrics(t)[series]
	if !ok {
		t.Fatalf("/metrics has no %s", series)
	}
	return v
}

// closedBy is hydrogen_connections_closed_total for one reason.
func closedBy(m map[string]float64, reason string) float64 {
	return m[`hydrogen_connections_closed_total{reason="`+reason+`"}`]
}

// fds counts the broker's open file descriptors.
func (b *relBroker) fds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", b.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func (b *relBroker) rss(t testing.TB) int64 { t.Helper(); return rss(t, b.Pid) }

// relLevels are the broker's resource levels that must return to a
// baseline once the clients that raised them are gone.
type relLevels struct {
	Open       int     // hydrogen_connections_open
	FDs        int     // entries of /proc/PID/fd
	Goroutines int     // go_goroutines
	HeapInuse  float64 // go_memstats_heap_inuse_bytes
	RSS        int64
}

func (l relLevels) String() string {
	return fmt.Sprintf("open %d, fds %d, goroutines %d, heap in use %.1f MiB, RSS %.1f MiB",
		l.Open, l.FDs, l.Goroutines, l.HeapInuse/(1<<20), float64(l.RSS)/(1<<20))
}

func (b *relBroker) levels(t testing.TB) relLevels {
	t.Helper()
	m := b.metrics(t)
	return relLevels{
		Open:       int(m["hydrogen_connections_open"]),
		FDs:        b.fds(t),
		Goroutines: int(m["go_goroutines"]),
		HeapInuse:  m["go_memstats_heap_inuse_bytes"],
		RSS:        b.rss(t),
	}
}

// relGoroutineSlack is how many goroutines above its baseline the broker
// may keep once the load is gone (timers, the HTTP server's connection
// being served, the runtime's own).
const relGoroutineSlack = 5

// waitBaseline waits until the broker is back to base: the same open
// connections and fds, goroutines within relGoroutineSlack, and, when
// heapSlack > 0, heap in use within heapSlack bytes. It returns the
// levels it saw last.
func (b *relBroker) waitBaseline(t testing.TB, base relLevels, heapSlack float64, timeout time.Duration) relLevels {
	t.Helper()
	var cur relLevels
	deadline := time.Now().Add(timeout)
	for {
		cur = b.levels(t)
		ok := cur.Open == base.Open && cur.FDs <= base.FDs && cur.Goroutines <= base.Goroutines+relGoroutineSlack
		if heapSlack > 0 && cur.HeapInuse > base.HeapInuse+heapSlack {
			ok = false
		}
		if ok {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker did not return to its baseline within %v:\nbaseline %v\nnow      %v", timeout, base, cur)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// relFrame encodes payload.
func relFrame(payload []byte) []byte {
	f, err := wire.Encode(payload)
	if err != nil {
		panic(err)
	}
	return f
}

// relTelemetry encodes a 0x0D request frame for span seconds, big-endian.
func relTelemetry(span float32) []byte {
	var p [5]byte
	p[0] = wire.ActionTelemetry
	binary.BigEndian.PutUint32(p[1:], math.Float32bits(span))
	return relFrame(p[:])
}

// relDialRaw connects a plain TCP socket; it is closed when the test ends.
// rcvbuf > 0 sets SO_RCVBUF before the handshake, so the window the
// client advertises stays that small.
func relDialRaw(t testing.TB, addr string, rcvbuf int) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			}); cerr != nil {
				return cerr
			}
			return err
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// relReader reads frames from a raw connection with its own small decoder,
// independent of package wire's.
type relReader struct {
	c net.Conn
	r *bufio.Reader
}

func newRelReader(c net.Conn) *relReader { return &relReader{c: c, r: bufio.NewReaderSize(c, 64<<10)} }

// next reads one frame within timeout.
func (r *relReader) next(timeout time.Duration) ([]byte, error) {
	r.c.SetReadDeadline(time.Now().Add(timeout))
	var hdr [3]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return nil, err
	}
	if hdr[0] != wire.Start {
		return nil, fmt.Errorf("frame starts with 0x%02x", hdr[0])
	}
	n := int(hdr[1])<<8 | int(hdr[2])
	p := make([]byte, n+1)
	if _, err := io.ReadFull(r.r, p); err != nil {
		return nil, fmt.Errorf("inside a %d-byte frame: %w", n, err)
	}
	if p[n] != wire.End {
		return nil, fmt.Errorf("frame of %d bytes ends with 0x%02x", n, p[n])
	}
	return p[:n], nil
}

// relExpectClosed reads c until the broker closes it, failing if any byte
// arrives or it stays open past timeout.
func relExpectClosed(c net.Conn, timeout time.Duration) error {
	c.SetReadDeadline(time.Now().Add(timeout))
	var buf [256]byte
	for {
		n, err := c.Read(buf[:])
		if n > 0 {
			return fmt.Errorf("read %d unexpected bytes: % x", n, buf[:n])
		}
		switch {
		case err == nil:
			continue
		case err == io.EOF, errors.Is(err, syscall.ECONNRESET):
			return nil
		default:
			return fmt.Errorf("the broker did not close the connection: %v", err)
		}
	}
}

// relSetLinger0 makes Close send RST.
func relSetLinger0(t testing.TB, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
}

// relBystander is a client that keeps doing echo round trips on an echo
// broker while a test abuses it, and fails the test if one fails or takes
// longer than maxRTT.
type relBystander struct {
	trips  atomic.Int64
	maxRTT atomic.Int64 // nanoseconds
	stop   chan struct{}
	done   chan error
}

func relStartBystander(t testing.TB, addr string) *relBystander {
	t.Helper()
	c := dial(t, addr)
	bs := &relBystander{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		bs.done <- func() error {
			for i := 0; ; i++ {
				select {
				case <-bs.stop:
					return nil
				default:
				}
				p := fmt.Appendf(nil, "bystander %d", i)
				start := time.Now()
				if err := c.Send(p); err != nil {
					return fmt.Errorf("bystander send %d: %w", i, err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				got, err := c.Recv(ctx)
				cancel()
				if err != nil {
					return fmt.Errorf("bystander round trip %d: %w", i, err)
				}
				if !bytes.Equal(got, p) {
					return fmt.Errorf("bystander round trip %d: got %q, want %q", i, got, p)
				}
				rtt := int64(time.Since(start))
				for {
					m := bs.maxRTT.Load()
					if rtt <= m || bs.maxRTT.CompareAndSwap(m, rtt) {
						break
					}
				}
				bs.trips.Add(1)
			}
		}()
	}()
	t.Cleanup(func() { bs.finish(t) })
	return bs
}

// finish stops the bystander and fails the test if it failed. It may be
// called more than once.
func (bs *relBystander) finish(t testing.TB) {
	t.Helper()
	select {
	case <-bs.stop:
		return
	default:
	}
	close(bs.stop)
	if err := <-bs.done; err != nil {
		t.Errorf("the bystander was disturbed: %v", err)
	}
}

// waitTrips waits until the bystander has made n more round trips:
// proof that the broker serves it now.
func (bs *relBystander) waitTrips(t testing.TB, n int64) {
	t.Helper()
	target := bs.trips.Load() + n
	waitFor(t, "the bystander's round trips", 20*time.Second, func() bool {
		select {
		case <-bs.stop:
			return true
		default:
		}
		return bs.trips.Load() >= target
	})
}

// TestRelBadInput: 50 offenders of each kind — junk, a wrong start byte, a
// wrong end byte, a length over --max-payload (each after a good round
// trip) and half a frame followed by close — each closed and counted, a
// bystander echoing throughout, and afterwards the broker's connections,
// fds and goroutines back to their baseline.
func TestRelBadInput(t *testing.T) {
	start := time.Now()
	b := relStart(t, "--app", "echo", "--max-payload", "100")
	bs := relStartBystander(t, b.Addr)
	bs.waitTrips(t, 10)

	// The boundary: a payload of exactly --max-payload is a frame.
	edge := relDialRaw(t, b.Addr, 0)
	p := bytes.Repeat([]byte{wire.End}, 100)
	if _, err := edge.Write(relFrame(p)); err != nil {
		t.Fatal(err)
	}
	if got, err := newRelReader(edge).next(10 * time.Second); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("a payload of exactly --max-payload: %q, %v", got, err)
	}
	edge.Close()
	waitFor(t, "the edge connection closed", 10*time.Second, func() bool { return b.stats(t).NumClients == 1 })
	// The monitor's first scrape starts what it keeps running; take the
	// baseline after one.
	b.metrics(t)
	base := b.levels(t)
	m0 := b.metrics(t)
	t.Logf("baseline: %v", base)

	const rounds = 50
	kinds := []struct {
		name     string
		bad      []byte
		protocol bool // counted as a protocol error; otherwise a peer close
	}{
		{"junk", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), true},
		{"wrong start byte", []byte{0x02, 0, 1, 'x', wire.End}, true},
		{"wrong end byte", []byte{wire.Start, 0, 1, 'x', 0x18}, true},
		{"length over --max-payload", []byte{wire.Start, 0, 101}, true},
		{"half a frame then close", []byte{wire.Start, 0, 50, 'h', 'a', 'l', 'f'}, false},
	}
	var wg sync.WaitGroup
	errs := make(chan error, rounds*len(kinds))
	sem := make(chan struct{}, 8)
	for i := range rounds {
		for _, k := range kinds {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				errs <- relOffend(b.Addr, i, k.bad, k.protocol)
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	bs.waitTrips(t, 10)

	protocol, peer := 4*rounds, rounds
	var m map[string]float64
	waitFor(t, "every offender counted", 10*time.Second, func() bool {
		m = b.metrics(t)
		return m["hydrogen_protocol_errors_total"]-m0["hydrogen_protocol_errors_total"] >= float64(protocol) &&
			closedBy(m, "peer")-closedBy(m0, "peer") >= float64(peer)
	})
	if d := m["hydrogen_protocol_errors_total"] - m0["hydrogen_protocol_errors_total"]; d != float64(protocol) {
		t.Errorf("protocol errors +%v, want +%d", d, protocol)
	}
	if d := closedBy(m, "protocol_error") - closedBy(m0, "protocol_error"); d != float64(protocol) {
		t.Errorf(`closed{reason="protocol_error"} +%v, want +%d`, d, protocol)
	}
	if d := closedBy(m, "peer") - closedBy(m0, "peer"); d != float64(peer) {
		t.Errorf(`closed{reason="peer"} +%v, want +%d (the half frames)`, d, peer)
	}
	if d := m["hydrogen_connections_accepted_total"] - m0["hydrogen_connections_accepted_total"]; d != float64(protocol+peer) {
		t.Errorf("accepted +%v, want +%d", d, protocol+peer)
	}
	if st := b.stats(t); st.ProtocolErrors != uint64(protocol) {
		t.Errorf("/stats protocol_errors %d, want %d", st.ProtocolErrors, protocol)
	}
	end := b.waitBaseline(t, base, 0, 20*time.Second)
	bs.finish(t)
	t.Logf("after %d offenders: %v; bystander %d round trips, slowest %v; %v in all",
		protocol+peer, end, bs.trips.Load(), time.Duration(bs.maxRTT.Load()), time.Since(start).Round(time.Millisecond))
}

// relOffend makes one offending connection. A protocol offender first
// proves its connection works with a round trip, then sends bad bytes and
// must be closed with nothing more sent to it; a half frame is followed
// by the client's own close.
func relOffend(addr string, i int, bad []byte, protocol bool) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if !protocol {
		if _, err := c.Write(bad); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		if err := relExpectClosed(c, 10*time.Second); err != nil {
			return fmt.Errorf("half frame %d: %w", i, err)
		}
		return nil
	}
	p := fmt.Appendf(nil, "before %d", i)
	if _, err := c.Write(relFrame(p)); err != nil {
		return err
	}
	got, err := newRelReader(c).next(10 * time.Second)
	if err != nil || !bytes.Equal(got, p) {
		return fmt.Errorf("offender %d before its bad bytes: %q, %v", i, got, err)
	}
	if _, err := c.Write(bad); err != nil {
		return err
	}
	if err := relExpectClosed(c, 10*time.Second); err != nil {
		return fmt.Errorf("offender %d (% x): %w", i, bad[:min(len(bad), 8)], err)
	}
	return nil
}

// TestRelTelemetryBadSpans: 0x0D requests with a NaN, negative, zero,
// infinite or too-long span each get an immediate {"error": ...} reply,
// the connection stays open and serves frames, and a flood of thousands of
// requests is answered one reply each, within bounds, while the broker
// keeps serving another client.
func TestRelTelemetryBadSpans(t *testing.T) {
	start := time.Now()
	b := relStart(t, "--app", "echo", "--max-span", "2s")
	c := relDialRaw(t, b.Addr, 0)
	r := newRelReader(c)
	spans := []float32{float32(math.NaN()), -1, float32(math.Inf(-1)), float32(math.Inf(1)), 0, float32(math.Copysign(0, -1)), 2.5, 1e30, math.SmallestNonzeroFloat32 * -1}
	for _, s := range spans {
		sent := time.Now()
		if _, err := c.Write(relTelemetry(s)); err != nil {
			t.Fatal(err)
		}
		p, err := r.next(5 * time.Second)
		if err != nil {
			t.Fatalf("span %v: %v", s, err)
		}
		var reply map[string]any
		if err := json.Unmarshal(p, &reply); err != nil {
			t.Fatalf("span %v: reply %q is not JSON: %v", s, p, err)
		}
		reason, ok := reply["error"].(string)
		if !ok || reason == "" || len(reply) != 1 {
			t.Fatalf("span %v: reply %s, want {\"error\": reason}", s, p)
		}
		if el := time.Since(sent); el > time.Second {
			t.Errorf("span %v: error reply after %v, want at once", s, el)
		}
		// Still open: an application frame is echoed.
		echo := fmt.Appendf(nil, "after span %v", s)
		if _, err := c.Write(relFrame(echo)); err != nil {
			t.Fatalf("span %v: the connection is closed: %v", s, err)
		}
		if got, err := r.next(5 * time.Second); err != nil || !bytes.Equal(got, echo) {
			t.Fatalf("span %v: echo after the error reply: %q, %v", s, got, err)
		}
		t.Logf("span %v: %s", s, reason)
	}

	// The flood: thousands of requests, from several connections, of a
	// valid span. Each gets exactly one reply (a reading, or an error
	// refusing it past the broker's bounds), all within a bound, and the
	// bystander is served meanwhile. How many are readings follows from
	// the bounds: a connection's share is floor(64 × free / 16,384) of
	// the broker's 16,384 places, 64 only while all are free, 63 while at
	// most 256 are taken (docs/PROTOCOL.md). Four connections so get 63
	// each, 252 in all, however their requests interleave, provided that
	// every request is judged before the first is answered: the span
	// (1.5 s) is many times what judging them takes.
	bs := relStartBystander(t, b.Addr)
	conns, per, span := 4, relFloodPer, float32(1.5)
	const perConn = 63
	before := b.rss(t)
	floodStart := time.Now()
	var wg sync.WaitGroup
	type tally struct{ readings, refused int }
	results := make([]tally, conns)
	errs := make(chan error, conns)
	for i := range conns {
		fc := relDialRaw(t, b.Addr, 0)
		wg.Go(func() {
			fc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := fc.Write(bytes.Repeat(relTelemetry(span), per)); err != nil {
				errs <- fmt.Errorf("flood connection %d: %v", i, err)
				return
			}
			fr := newRelReader(fc)
			for n := range per {
				p, err := fr.next(20 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("flood connection %d: reply %d of %d: %v", i, n, per, err)
					return
				}
				var reply map[string]json.RawMessage
				if err := json.Unmarshal(p, &reply); err != nil {
					errs <- fmt.Errorf("flood connection %d: reply %q: %v", i, p, err)
					return
				}
				if _, ok := reply["up_time"]; ok {
					results[i].readings++
				} else if _, ok := reply["error"]; ok {
					results[i].refused++
				} else {
					errs <- fmt.Errorf("flood connection %d: reply %s", i, p)
					return
				}
			}
			errs <- nil
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(floodStart)
	readings, refused := 0, 0
	for _, r := range results {
		readings += r.readings
		refused += r.refused
	}
	if readings+refused != conns*per {
		t.Fatalf("%d readings and %d refusals for %d requests", readings, refused, conns*per)
	}
	for i, r := range results {
		if r.readings != perConn {
			t.Errorf("flood connection %d got %d readings, want %d (and %d refusals)", i, r.readings, perConn, per-perConn)
		}
	}
	if took > 15*time.Second {
		t.Errorf("the flood took %v to answer", took)
	}
	bs.waitTrips(t, 10)
	waitFor(t, "no telemetry request waiting", 10*time.Second, func() bool {
		return b.metric(t, "hydrogen_telemetry_requests_waiting") == 0
	})
	st := b.stats(t)
	want := uint64(len(spans) + conns*per)
	if st.TelemetryRequests != want {
		t.Errorf("telemetry_requests %d, want %d", st.TelemetryRequests, want)
	}
	// 252 readings share a few encodings and the refusals are small:
	// measured +4.4 MiB, +24 MiB race-built.
	growth := b.rss(t) - before
	if bound := racePick[int64](16<<20, 48<<20); growth > bound {
		t.Errorf("RSS grew %d MiB answering the flood, more than %d MiB", growth>>20, bound>>20)
	}
	bs.finish(t)
	t.Logf("flood of %d requests on %d connections answered in %v: %d readings, %d refused; RSS %+d KiB; bystander %d round trips, slowest %v; %v in all",
		conns*per, conns, took.Round(time.Millisecond), readings, refused, growth>>10, bs.trips.Load(), time.Duration(bs.maxRTT.Load()), time.Since(start).Round(time.Millisecond))
}

// relFloodPer is the telemetry requests each flooding connection sends.
var relFloodPer = relPick(1500, 5000)

// TestRelTelemetryReleasedOnClose: the places of telemetry requests
// waiting for their span (16,384 on the broker, a shrinking share per
// connection; docs/PROTOCOL.md) must be held by connections that can still
// be answered. 256 connections each ask for 64 readings of a 30 s span —
// about half the places fill, the rest of their requests are refused at
// once, and another client's request is still accepted — and then close.
// Their requests can never be answered, so their places must be released
// at once: the waiting gauge returns to 0 and a new client's request gets
// a reading, rather than waiting for the dead requests' span to pass.
func TestRelTelemetryReleasedOnClose(t *testing.T) {
	start := time.Now()
	b := relStart(t, "--app", "echo")
	const flooders, per = 256, 64
	req := bytes.Repeat(relTelemetry(30), per)
	conns := make([]*net.TCPConn, flooders)
	var refused atomic.Int64
	var wg sync.WaitGroup
	for i := range conns {
		conns[i] = relDialRaw(t, b.Addr, 0)
		if _, err := conns[i].Write(req); err != nil {
			t.Fatal(err)
		}
		r := newRelReader(conns[i])
		wg.Go(func() {
			// The refusals come at once; the rest wait for their span.
			for {
				p, err := r.next(2 * time.Second)
				if err != nil {
					return
				}
				if bytes.Contains(p, []byte(`"error"`)) {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	waiting := b.metric(t, "hydrogen_telemetry_requests_waiting")
	if int64(waiting)+refused.Load() != flooders*per || waiting == 0 {
		t.Fatalf("%v waiting and %d refused of the %d asked", waiting, refused.Load(), flooders*per)
	}
	probe := relDialRaw(t, b.Addr, 0)
	pr := newRelReader(probe)
	if _, err := probe.Write(relTelemetry(0.05)); err != nil {
		t.Fatal(err)
	}
	if p, err := pr.next(5 * time.Second); err != nil || !bytes.Contains(p, []byte(`"up_time"`)) {
		t.Fatalf("another client's request beside the flooders: %q, %v; want a reading", p, err)
	}
	for _, c := range conns {
		relSetLinger0(t, c)
		c.Close()
	}
	relWaitClients(t, b, 1)
	closed := time.Now()
	deadline := closed.Add(5 * time.Second)
	var w float64
	for {
		if w = b.metric(t, "hydrogen_telemetry_requests_waiting"); w == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v telemetry requests of %d closed connections still hold the broker-wide bound %v after they closed (until their 30 s span passes, no client gets a telemetry reading)",
				w, flooders, time.Since(closed).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := probe.Write(relTelemetry(0.05)); err != nil {
		t.Fatal(err)
	}
	p, err := pr.next(5 * time.Second)
	if err != nil || !bytes.Contains(p, []byte(`"up_time"`)) {
		t.Fatalf("a request after the flooders left: %q, %v; want a reading", p, err)
	}
	t.Logf("%v requests of closed connections (%d of theirs refused at once) released %v after the close; %v in all", waiting, refused.Load(), time.Since(closed).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
