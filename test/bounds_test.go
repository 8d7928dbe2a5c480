package test

// Bounds under abuse and overload, judged from outside: the broker binary
// with its memory budget, time limits and flow-control policies, and what
// /stats, /metrics, /proc and the clients see. Each case has a default
// size and a long one (HYDROGEN_LONG=1, ./scripts/test --long) ten times
// larger where one process of clients can open that many connections.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// boundsStats is the part of /stats these tests read.
type boundsStats struct {
	NumClients         int64  `json:"num_clients"`
	SlowConsumers      uint64 `json:"slow_consumers"`
	ClosedMemory       uint64 `json:"closed_memory"`
	ClosedFrameTimeout uint64 `json:"closed_frame_timeout"`
	ClosedIdle         uint64 `json:"closed_idle"`
	ClosedLimit        uint64 `json:"closed_limit"`
	ProducerStalls     uint64 `json:"producer_stalls"`
	Memory             struct {
		Used    int64  `json:"used_bytes"`
		Limit   int64  `json:"limit_bytes"`
		Stalls  uint64 `json:"stalls"`
		Stalled bool   `json:"stalled"`
	} `json:"memory"`
	Process struct {
		RSSBytes int64 `json:"rss_bytes"`
	} `json:"process"`
}

func (b *relBroker) boundsStats(t testing.TB) boundsStats {
	t.Helper()
	var st boundsStats
	body := b.get(t, "/stats")
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/stats: %v\n%s", err, body)
	}
	return st
}

// The documented bound on the broker's RSS (README, Limits): the memory
// budget, plus a fixed overhead, plus the state of each open connection.
const (
	rssOverhead = 64 << 20
	rssPerConn  = 8 << 10
)

func rssBound(budget int64, conns int) int64 { return budget + rssOverhead + rssPerConn*int64(conns) }

// budgetWatch samples the broker's RSS and its budget's use (from /stats)
// while a case runs, and keeps the largest of each.
type budgetWatch struct {
	maxRSS, maxUsed atomic.Int64
	stop, done      chan struct{}
}

func watchBudget(t testing.TB, b *relBroker) *budgetWatch {
	w := &budgetWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if v, err := relRSSOf(b.Pid); err == nil && v > w.maxRSS.Load() {
				w.maxRSS.Store(v)
			}
			resp, err := relHTTPClient.Get("http://" + b.HTTP + "/stats")
			if err != nil {
				continue
			}
			var st boundsStats
			if json.NewDecoder(resp.Body).Decode(&st) == nil && st.Memory.Used > w.maxUsed.Load() {
				w.maxUsed.Store(st.Memory.Used)
			}
			resp.Body.Close()
		}
	}()
	t.Cleanup(w.finish)
	return w
}

func (w *budgetWatch) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// TestBoundsUnreadEcho: clients that send echo frames and never read
// their replies, each leaving just under --max-pending unread, cannot
// take the broker past its memory budget: its producers stall, the
// largest holders are closed, and its RSS stays under the budget plus the
// documented overhead. A bystander is served throughout.
func TestBoundsUnreadEcho(t *testing.T) {
	const budget = 256 << 20
	n := relPick(600, 6000)
	const each = 3686400 // 3.6 MiB, just under --max-pending (4 MiB)
	b := relStart(t, "--app", "echo", "--max-memory", "256MiB")
	bystander := dial(t, b.Addr)
	watch := watchBudget(t, b)

	payload := make([]byte, 60000)
	f := relFrame(payload)
	var wg sync.WaitGroup
	var refused atomic.Int64
	for i := range n {
		c := relDialRaw(t, b.Addr, 4096)
		wg.Go(func() {
			c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			for sent := 0; sent < each; sent += len(f) {
				if _, err := c.Write(f); err != nil {
					refused.Add(1) // closed by the budget, most likely
					return
				}
			}
		})
		if i%100 == 99 {
			// The bystander is served between waves.
			roundTripWithin(t, bystander, []byte("still here"), 30*time.Second)
		}
	}
	wg.Wait()
	roundTripWithin(t, bystander, []byte("after"), 30*time.Second)
	watch.finish()
	st := b.boundsStats(t)
	bound := rssBound(budget, n+1)
	t.Logf("%d clients leaving %.1f MiB each unread (%.0f MiB in all): peak RSS %d MiB (bound %d MiB), peak budget use %d MiB of %d; %d closed by the budget, %d memory stalls, %d writers cut off",
		n, float64(each)/(1<<20), float64(n)*each/(1<<20), watch.maxRSS.Load()>>20, bound>>20, watch.maxUsed.Load()>>20, budget>>20, st.ClosedMemory, st.Memory.Stalls, refused.Load())
	if got := watch.maxRSS.Load(); got > bound {
		t.Errorf("peak RSS %d MiB, over the bound of %d MiB", got>>20, bound>>20)
	}
	if got := watch.maxUsed.Load(); got > budget {
		t.Errorf("budget use peaked at %d bytes, over the budget %d", got, budget)
	}
	if st.ClosedMemory == 0 || st.Memory.Stalls == 0 {
		t.Errorf("closed by the budget %d, memory stalls %d; want both > 0", st.ClosedMemory, st.Memory.Stalls)
	}
}

// roundTripWithin echoes payload through c, failing after timeout.
func roundTripWithin(t testing.TB, c *client.Client, payload []byte, timeout time.Duration) {
	t.Helper()
	if err := c.Send(payload); err != nil {
		t.Fatalf("bystander: %v", err)
	}
	got, err := c.Recv(ctxWithin(t, timeout))
	if err != nil || string(got) != string(payload) {
		t.Fatalf("bystander got %q, %v; want %q", got, err, payload)
	}
}

// ctxWithin is a context that ends after timeout, or with the test.
func ctxWithin(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// TestBoundsPartialFrames: thousands of connections each announcing a
// 65,535-byte frame and sending all but a few hundred bytes of it hold
// carry buffers the budget counts: the broker stalls and closes the
// largest holders instead of growing, its RSS stays under the budget plus
// the documented overhead, and what is left is closed by --frame-timeout.
func TestBoundsPartialFrames(t *testing.T) {
	const budget = 256 << 20
	n := 10_000 // as many as one process of clients can hold; the long run repeats it
	waves := relPick(1, 3)
	b := relStart(t, "--app", "echo", "--max-memory", "256MiB", "--frame-timeout", "5s")
	watch := watchBudget(t, b)
	f := relFrame(make([]byte, wire.MaxPayload))
	partial := f[:65000]
	for wave := range waves {
		conns := make([]net.Conn, 0, n)
		var mu sync.Mutex
		err := relParallel(n, 200, func(i int) error {
			c, err := net.DialTimeout("tcp", b.Addr, 30*time.Second)
			if err != nil {
				return err
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			c.Write(partial) // the broker may close it meanwhile
			return nil
		})
		if err != nil {
			t.Fatalf("wave %d: %v", wave, err)
		}
		// Every one is closed: by the budget, or by the frame timeout.
		waitForEvery(t, "the partial frames to be closed", 60*time.Second, 250*time.Millisecond, func() bool {
			return b.boundsStats(t).NumClients == 0
		})
		for _, c := range conns {
			c.Close()
		}
	}
	watch.finish()
	st := b.boundsStats(t)
	bound := rssBound(budget, n)
	t.Logf("%d×%d connections each holding 65,000 bytes of a 65,539-byte frame: peak RSS %d MiB (bound %d MiB), peak budget use %d MiB; %d closed by the budget, %d by the frame timeout",
		waves, n, watch.maxRSS.Load()>>20, bound>>20, watch.maxUsed.Load()>>20, st.ClosedMemory, st.ClosedFrameTimeout)
	if got := watch.maxRSS.Load(); got > bound {
		t.Errorf("peak RSS %d MiB, over the bound of %d MiB", got>>20, bound>>20)
	}
	if got := watch.maxUsed.Load(); got > budget {
		t.Errorf("budget use peaked at %d, over %d", got, budget)
	}
	if st.ClosedMemory+st.ClosedFrameTimeout != uint64(waves*n) {
		t.Errorf("closed by the budget %d + by the frame timeout %d, want %d", st.ClosedMemory, st.ClosedFrameTimeout, waves*n)
	}
	if st.Memory.Used != 0 {
		t.Errorf("budget use %d with no connection open, want 0", st.Memory.Used)
	}
}

// TestBoundsStaleConnections: with the defaults a broker reclaims what
// nobody uses: a connection that began a frame and stopped is closed by
// the frame timeout, and every accepted socket has TCP keepalive on, so a
// vanished peer is found. Silent connections, which may be subscribers
// that only read, stay.
func TestBoundsStaleConnections(t *testing.T) {
	silent, partial := relPick(300, 3000), relPick(550, 5500)
	b := relStart(t, "--app", "broadcast", "--frame-timeout", "2s", "--tcp-keepalive", "1s")
	_, ps, _ := net.SplitHostPort(b.Addr)
	port, _ := strconv.Atoi(ps)
	for range silent {
		relDialRaw(t, b.Addr, 0)
	}
	for range partial {
		c := relDialRaw(t, b.Addr, 0)
		if _, err := c.Write([]byte{wire.Start, 0x10}); err != nil { // half a header
			t.Fatal(err)
		}
	}
	start := time.Now()
	waitForEvery(t, "the partial headers to be closed", 30*time.Second, 100*time.Millisecond, func() bool {
		return b.boundsStats(t).ClosedFrameTimeout == uint64(partial)
	})
	took := time.Since(start)
	st := b.boundsStats(t)
	if st.NumClients != int64(silent) {
		t.Errorf("%d connections open, want the %d silent ones", st.NumClients, silent)
	}
	if took < 2*time.Second {
		t.Errorf("partial headers closed after %v, before the frame timeout", took)
	}
	// Keepalive: the kernel arms the keepalive timer (timer 2 in
	// /proc/net/tcp) on the broker's side of every idle connection.
	withTimer := 0
	waitForEvery(t, "keepalive timers on the silent connections", 10*time.Second, 200*time.Millisecond, func() bool {
		withTimer = keepaliveTimers(t, b.Pid, port)
		return withTimer == silent
	})
	t.Logf("%d partial headers closed by the frame timeout %v after they were sent; %d silent connections kept, each with a keepalive timer", partial, took.Round(time.Millisecond), withTimer)
}

// keepaliveTimers counts the broker's sockets on its listening port whose
// active timer is the keepalive timer, from /proc/PID/net/tcp.
func keepaliveTimers(t testing.TB, pid, port int) int {
	t.Helper()
	n := 0
	for _, file := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local rem st tx:rx tr:when ...
			if len(fields) < 6 || fields[3] != "01" { // established
				continue
			}
			if relHexPort(fields[1]) != port {
				continue
			}
			if tr, _, _ := strings.Cut(fields[5], ":"); tr == "02" {
				n++
			}
		}
	}
	return n
}

// TestBoundsIdleCountsFrames: --idle-timeout counts complete frames, so a
// client dripping one byte of a frame now and then is idle, and closed.
func TestBoundsIdleCountsFrames(t *testing.T) {
	b := relStart(t, "--app", "echo", "--idle-timeout", "2s")
	c := relDialRaw(t, b.Addr, 0)
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f := relFrame(make([]byte, 100))
		for i := range f {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond): // the drip's pace
			}
			if _, err := c.Write(f[i : i+1]); err != nil {
				return
			}
		}
	}()
	if err := relExpectClosed(c, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	close(stop)
	<-done
	if took < 2*time.Second || took > 4*time.Second {
		t.Errorf("closed after %v, want within 2s..4s", took)
	}
	if st := b.boundsStats(t); st.ClosedIdle != 1 {
		t.Errorf("closed_idle %d, want 1", st.ClosedIdle)
	}
}

// floodCase runs one publisher flooding numbered 1,000-byte frames into
// --app broadcast with a steady subscriber reading at a fraction of its
// speed and one that never reads, and reports what the steady one got.
type floodResult struct {
	sent, got   int
	gotErr      error
	took        time.Duration
	stats       boundsStats
	steadyCut   bool
	silentEnded bool
}

func floodCase(t *testing.T, overflow string, total int) floodResult {
	const size = 1000
	frames := total / size
	b := relStart(t, "--app", "broadcast", "--overflow", overflow, "--write-timeout", "2s")
	steady := relDialRaw(t, b.Addr, 0)
	silent := relDialRaw(t, b.Addr, 4096)
	pub := relDialRaw(t, b.Addr, 0)
	relWaitClients(t, b, 3)

	start := time.Now()
	sent := make(chan int, 1)
	go func() {
		w := bufio.NewWriterSize(pub, 256<<10)
		p := make([]byte, size)
		n := 0
		pub.SetWriteDeadline(time.Now().Add(5 * time.Minute))
		for ; n < frames; n++ {
			binary.BigEndian.PutUint64(p, uint64(n))
			if _, err := w.Write(relFrame(p)); err != nil {
				break
			}
		}
		w.Flush()
		sent <- n
	}()
	// The steady subscriber reads 256 KiB every 4 ms: 64 MB/s at most, a
	// fraction of what the publisher sends on loopback.
	var res floodResult
	r := bufio.NewReaderSize(steady, 256<<10)
	read := 0
	for res.got < frames {
		steady.SetReadDeadline(time.Now().Add(60 * time.Second))
		var hdr [3]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			res.gotErr, res.steadyCut = err, true
			break
		}
		body := make([]byte, int(hdr[1])<<8|int(hdr[2])+1)
		if _, err := io.ReadFull(r, body); err != nil {
			res.gotErr, res.steadyCut = err, true
			break
		}
		if seq := binary.BigEndian.Uint64(body); hdr[0] != wire.Start || body[len(body)-1] != wire.End || seq != uint64(res.got) {
			res.gotErr = fmt.Errorf("frame %d carries %d", res.got, seq)
			break
		}
		res.got++
		if read += len(body) + 3; read >= 256<<10 {
			read = 0
			time.Sleep(4 * time.Millisecond) // the subscriber's pace
		}
	}
	res.took = time.Since(start)
	res.sent = <-sent
	res.silentEnded = relExpectClosedLenient(silent, 30*time.Second) == nil
	res.stats = b.boundsStats(t)
	return res
}

// relExpectClosedLenient reads c to its end, whatever arrives, and reports
// an error if it is not closed within timeout.
func relExpectClosedLenient(c net.Conn, timeout time.Duration) error {
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return nil
}

// TestBoundsFloodThrottle: under --overflow throttle a publisher flooding
// far faster than a subscriber reads is paused instead of the subscriber
// cut: the steady subscriber gets every frame in order, and the one that
// never reads is closed after --write-timeout without progress.
func TestBoundsFloodThrottle(t *testing.T) {
	total := relPick(200<<20, 2000<<20)
	res := floodCase(t, "throttle", total)
	t.Logf("throttle: %d MB flooded; the steady subscriber got %d of %d frames in %v (%.0f MB/s); %d producer stalls; the silent one closed: %v (slow consumers %d)",
		total>>20, res.got, res.sent, res.took.Round(time.Millisecond), float64(res.got)*1000/res.took.Seconds()/1e6, res.stats.ProducerStalls, res.silentEnded, res.stats.SlowConsumers)
	if res.gotErr != nil || res.got != total/1000 || res.sent != total/1000 {
		t.Fatalf("the steady subscriber got %d of %d frames (%d sent): %v", res.got, total/1000, res.sent, res.gotErr)
	}
	if !res.silentEnded || res.stats.SlowConsumers != 1 {
		t.Errorf("silent subscriber closed %v, slow consumers %d; want closed, 1", res.silentEnded, res.stats.SlowConsumers)
	}
	if res.stats.ProducerStalls == 0 {
		t.Error("no producer stall")
	}
}

// TestBoundsFloodClose: under --overflow close (the default) the same
// flood stalls the publisher briefly per read, and a subscriber that
// cannot keep up is cut: the silent one surely, the steady one if the
// stalls do not let it keep up. The figures go to the log; what must hold
// is that whatever the steady subscriber got, it got in order from the
// first frame, and the silent one is closed.
func TestBoundsFloodClose(t *testing.T) {
	total := relPick(200<<20, 2000<<20)
	res := floodCase(t, "close", total)
	t.Logf("close: %d MB flooded; the steady subscriber got %d of %d frames in %v (cut: %v); %d producer stalls; slow consumers %d",
		total>>20, res.got, res.sent, res.took.Round(time.Millisecond), res.steadyCut, res.stats.ProducerStalls, res.stats.SlowConsumers)
	if res.gotErr != nil && !res.steadyCut {
		t.Fatalf("the steady subscriber's stream: %v", res.gotErr)
	}
	if !res.silentEnded {
		t.Error("the silent subscriber was not closed")
	}
	want := uint64(1)
	if res.steadyCut {
		want = 2
	}
	if res.stats.SlowConsumers != want {
		t.Errorf("slow consumers %d, want %d", res.stats.SlowConsumers, want)
	}
	if res.stats.ProducerStalls == 0 {
		t.Error("no producer stall")
	}
}

// TestBoundsHalfCloseTelemetry: a client that asks for telemetry and then
// shuts down its sending side still gets the reply once the span has
// passed, then the close.
func TestBoundsHalfCloseTelemetry(t *testing.T) {
	b := relStart(t, "--app", "echo")
	c := relDialRaw(t, b.Addr, 0)
	start := time.Now()
	if _, err := c.Write(append(relFrame([]byte("first")), relTelemetry(0.5)...)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	r := newRelReader(c)
	if p, err := r.next(10 * time.Second); err != nil || string(p) != "first" {
		t.Fatalf("echo: %q, %v", p, err)
	}
	p, err := r.next(10 * time.Second)
	if err != nil || !strings.Contains(string(p), `"up_time"`) {
		t.Fatalf("telemetry reply: %q, %v", p, err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("the reply came after %v, before its span", d)
	}
	if _, err := r.next(10 * time.Second); err != io.EOF {
		t.Fatalf("after the reply: %v, want the close", err)
	}
}

// TestBoundsMaxConnsRefusal: past --max-conns a connection gets one error
// frame and the close; the refusals are counted and logged (rate-limited).
func TestBoundsMaxConnsRefusal(t *testing.T) {
	b := relStart(t, "--app", "echo", "--max-conns", "100")
	for range 100 {
		relDialRaw(t, b.Addr, 0)
	}
	relWaitClients(t, b, 100)
	for i := range 50 {
		c := relDialRaw(t, b.Addr, 0)
		p, err := newRelReader(c).next(10 * time.Second)
		if err != nil || string(p) != `{"error":"connection limit reached"}` {
			t.Fatalf("refusal %d: %q, %v", i, p, err)
		}
		if err := relExpectClosed(c, 10*time.Second); err != nil {
			t.Fatalf("refusal %d: %v", i, err)
		}
	}
	if st := b.boundsStats(t); st.ClosedLimit != 50 || st.NumClients != 100 {
		t.Errorf("closed_limit %d, num_clients %d; want 50, 100", st.ClosedLimit, st.NumClients)
	}
	if !strings.Contains(b.Log(), `"msg":"connection refused: limit reached"`) || !strings.Contains(b.Log(), `"remote":"127.0.0.1:`) {
		t.Errorf("no refusal with its address in the log:\n%s", b.Log())
	}
}

// TestBoundsTelemetryFairness: a handful of connections asking for as
// many long telemetry spans as they may cannot hold every place: other
// clients' requests are still accepted, and a flooder's refused requests
// are each answered with the error reply.
func TestBoundsTelemetryFairness(t *testing.T) {
	b := relStart(t, "--app", "echo")
	flooders := 256
	req := relTelemetry(60)
	var refusals atomic.Int64
	var wg sync.WaitGroup
	for range flooders {
		c := relDialRaw(t, b.Addr, 0)
		wg.Go(func() {
			var batch []byte
			for range 64 {
				batch = append(batch, req...)
			}
			if _, err := c.Write(batch); err != nil {
				return
			}
			r := newRelReader(c)
			for {
				p, err := r.next(2 * time.Second)
				if err != nil {
					return // no more immediate answers: the rest wait for their span
				}
				if strings.HasPrefix(string(p), `{"error":`) {
					refusals.Add(1)
				}
			}
		})
	}
	wg.Wait()
	waiting := b.metric(t, "hydrogen_telemetry_requests_waiting")
	if int(waiting)+int(refusals.Load()) != flooders*64 {
		t.Errorf("%v waiting + %d refused, want %d asked", waiting, refusals.Load(), flooders*64)
	}
	if waiting > 16384*3/4 {
		t.Errorf("%d flooders hold %v of the 16,384 places", flooders, waiting)
	}
	// Someone else still gets an answer.
	c := dial(t, b.Addr)
	st, err := c.Stats(ctxWithin(t, 10*time.Second), 0.1)
	if err != nil {
		t.Fatalf("a newcomer's request: %v", err)
	}
	t.Logf("%d connections asking 64 spans of 60 s each: %v wait, %d refused with the error reply; a newcomer's request answered (num_clients %d)", flooders, waiting, refusals.Load(), st.NumClients)
}
