package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// relSeqPayload is a stamped payload: publisher (2 bytes), sequence
// number (8 bytes), then size-10 bytes of byte(seq+publisher).
func relSeqPayload(pub int, seq uint64, size int) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint16(p, uint16(pub))
	binary.BigEndian.PutUint64(p[2:], seq)
	fill := byte(seq) + byte(pub)
	for i := 10; i < size; i++ {
		p[i] = fill
	}
	return p
}

// relCheckSeqPayload parses a stamped payload and checks its filler.
func relCheckSeqPayload(p []byte, size int) (pub int, seq uint64, err error) {
	if len(p) != size {
		return 0, 0, fmt.Errorf("payload of %d bytes, want %d", len(p), size)
	}
	pub = int(binary.BigEndian.Uint16(p))
	seq = binary.BigEndian.Uint64(p[2:])
	fill := byte(seq) + byte(pub)
	if bytes.Count(p[10:], []byte{fill}) != size-10 {
		return pub, seq, fmt.Errorf("publisher %d seq %d: corrupt filler", pub, seq)
	}
	return pub, seq, nil
}

// relSeqReceiver checks that every publisher's frames arrive in order with
// no gap and no duplicate.
type relSeqReceiver struct {
	id   int
	size int
	c    *client.Client
	got  []atomic.Uint64 // per publisher: frames received (= next expected seq)
	mu   sync.Mutex
	err  error // the first violation
}

func (r *relSeqReceiver) handle(p []byte) {
	pub, seq, err := relCheckSeqPayload(p, r.size)
	if err == nil && pub >= len(r.got) {
		err = fmt.Errorf("unknown publisher %d", pub)
	}
	if err == nil {
		if want := r.got[pub].Load(); seq != want {
			kind := "a gap"
			if seq < want {
				kind = "a duplicate or reordering"
			}
			err = fmt.Errorf("publisher %d: got seq %d, want %d: %s", pub, seq, want, kind)
		} else {
			r.got[pub].Add(1)
			return
		}
	}
	r.mu.Lock()
	if r.err == nil {
		r.err = fmt.Errorf("receiver %d: %w", r.id, err)
	}
	r.mu.Unlock()
}

func (r *relSeqReceiver) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	return r.c.Err()
}

func relDialSeqReceiver(t testing.TB, addr string, id, pubs, size int) *relSeqReceiver {
	t.Helper()
	r := &relSeqReceiver{id: id, size: size, got: make([]atomic.Uint64, pubs)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.WithHandler(r.handle))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.c = c
	return r
}

// relWaitClients waits until the broker counts n open connections.
func relWaitClients(t testing.TB, b *relBroker, n int64) {
	t.Helper()
	var last int64
	deadline := time.Now().Add(20 * time.Second)
	for {
		last = b.stats(t).NumClients
		if last == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("num_clients %d, want %d", last, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// relRSSSampler records the broker's largest RSS while it runs.
type relRSSSampler struct {
	max  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func relSampleRSS(t testing.TB, b *relBroker) *relRSSSampler {
	s := &relRSSSampler{stop: make(chan struct{}), done: make(chan struct{})}
	s.max.Store(b.rss(t))
	pid := b.Pid
	go func() {
		defer close(s.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			if v, err := relRSSOf(pid); err == nil && v > s.max.Load() {
				s.max.Store(v)
			}
		}
	}()
	t.Cleanup(s.finish)
	return s
}

func (s *relRSSSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// relRSSOf is rss without a testing.TB, for the sampler's goroutine.
func relRSSOf(pid int) (int64, error) {
	var kb int64
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if n, _ := fmt.Sscanf(line, "VmRSS: %d kB", &kb); n == 1 {
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS")
}

// TestRelDeliveryUnderLoad: on --app broadcast, several publishers stamp
// sequence numbers and send as fast as the slowest receiver allows (a
// window, so that pacing and not the slow-consumer bound limits what is
// in flight) to hundreds of subscribers that keep reading. Every
// receiver, the other publishers included, sees every publisher's frames
// with no gap, no duplicate and no reordering, and the broker's msg_sent
// equals the deliveries.
func TestRelDeliveryUnderLoad(t *testing.T) {
	start := time.Now()
	pubs, subs, frames := 4, 200, relPick(5000, 50000)
	const size, window, batch = 64, 512, 32
	b := relStart(t, "--app", "broadcast")
	recvs := make([]*relSeqReceiver, pubs+subs) // the first pubs publish
	for i := range recvs {
		recvs[i] = relDialSeqReceiver(t, b.Addr, i, pubs, size)
	}
	relWaitClients(t, b, int64(pubs+subs))
	base := b.stats(t)

	// minGot is the fewest frames of publisher pub any other receiver has.
	minGot := func(pub int) uint64 {
		m := uint64(frames)
		for i, r := range recvs {
			if i != pub {
				m = min(m, r.got[pub].Load())
			}
		}
		return m
	}
	sent := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for pub := range pubs {
		wg.Go(func() {
			c := recvs[pub].c
			for seq := 0; seq < frames; {
				deadline := time.Now().Add(30 * time.Second)
				for uint64(seq) > minGot(pub)+window {
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("publisher %d: receivers stalled at %d of its frames", pub, minGot(pub))
						return
					}
					time.Sleep(100 * time.Microsecond)
				}
				n := min(batch, frames-seq)
				ps := make([][]byte, n)
				for i := range ps {
					ps[i] = relSeqPayload(pub, uint64(seq+i), size)
				}
				if err := c.SendBatch(ps...); err != nil {
					errs <- fmt.Errorf("publisher %d: %w", pub, err)
					return
				}
				seq += n
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for i, r := range recvs {
		for pub := range pubs {
			if pub == i {
				continue
			}
			for r.got[pub].Load() < uint64(frames) {
				if err := r.failure(); err != nil {
					t.Fatalf("receiver %d: %v", i, err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("receiver %d has %d of publisher %d's %d frames", i, r.got[pub].Load(), pub, frames)
				}
				time.Sleep(time.Millisecond)
			}
		}
		if err := r.failure(); err != nil {
			t.Fatalf("receiver %d: %v", i, err)
		}
	}
	took := time.Since(sent)
	deliveries := uint64(pubs * frames * (pubs + subs - 1))
	var st relStats
	waitFor(t, "msg_sent to count every delivery", 10*time.Second, func() bool {
		st = b.stats(t)
		return st.MsgSent-base.MsgSent >= deliveries
	})
	if got := st.MsgSent - base.MsgSent; got != deliveries {
		t.Errorf("msg_sent +%d, want %d deliveries", got, deliveries)
	}
	if got := st.MsgRecv - base.MsgRecv; got != uint64(pubs*frames) {
		t.Errorf("msg_recv +%d, want %d", got, pubs*frames)
	}
	if st.SlowConsumers != 0 || st.NumClients != int64(pubs+subs) {
		t.Errorf("slow_consumers %d, num_clients %d: want 0 and %d", st.SlowConsumers, st.NumClients, pubs+subs)
	}
	t.Logf("%d publishers × %d frames to %d receivers: %d deliveries in %v (%.0f/s), each checked; %v in all",
		pubs, frames, pubs+subs-1, deliveries, took.Round(time.Millisecond), float64(deliveries)/took.Seconds(), time.Since(start).Round(time.Millisecond))
}

// TestRelSlowConsumer: on --app broadcast with the default --max-pending,
// one client that never reads (a 4 KiB receive buffer) while a publisher
// fans out 200 MiB (1 GiB with HYDROGEN_LONG=1) to it and three readers:
// it is closed as a slow consumer and counted, what it did receive is a
// clean prefix of the stream, the readers receive everything in order,
// and the broker's RSS stays within what its bounds allow (see below).
func TestRelSlowConsumer(t *testing.T) {
	start := time.Now()
	const size, readers, window = 64000, 3, 32
	total := relPick(200<<20, 1<<30)
	frames := (total + size - 1) / size
	b := relStart(t, "--app", "broadcast")
	stuck := relDialRaw(t, b.Addr, 4096)
	pub := dial(t, b.Addr)
	rs := make([]*relSeqReceiver, readers)
	for i := range rs {
		rs[i] = relDialSeqReceiver(t, b.Addr, i, 1, size)
	}
	relWaitClients(t, b, readers+2)
	m0 := b.metrics(t)
	before := b.rss(t)
	sampler := relSampleRSS(t, b)

	minGot := func() uint64 {
		m := uint64(frames)
		for _, r := range rs {
			m = min(m, r.got[0].Load())
		}
		return m
	}
	for seq := range frames {
		deadline := time.Now().Add(30 * time.Second)
		for uint64(seq) > minGot()+window {
			for _, r := range rs {
				if err := r.failure(); err != nil {
					t.Fatal(err)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("readers stalled at %d of %d frames", minGot(), frames)
			}
			time.Sleep(200 * time.Microsecond)
		}
		if err := pub.Send(relSeqPayload(0, uint64(seq), size)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the readers to receive everything", 60*time.Second, func() bool { return minGot() == uint64(frames) })
	for _, r := range rs {
		if err := r.failure(); err != nil {
			t.Fatal(err)
		}
	}
	var m map[string]float64
	waitFor(t, "the slow consumer counted", 20*time.Second, func() bool {
		m = b.metrics(t)
		return m["hydrogen_slow_consumers_total"] > m0["hydrogen_slow_consumers_total"]
	})
	sampler.finish()
	if d := m["hydrogen_slow_consumers_total"] - m0["hydrogen_slow_consumers_total"]; d != 1 {
		t.Errorf("slow consumers +%v, want +1", d)
	}
	if d := closedBy(m, "slow_consumer") - closedBy(m0, "slow_consumer"); d != 1 {
		t.Errorf(`closed{reason="slow_consumer"} +%v, want +1`, d)
	}
	if open := m["hydrogen_connections_open"]; open != readers+1 {
		t.Errorf("%v connections open, want %d", open, readers+1)
	}
	// The stuck client now drains what its kernel buffers held: whole
	// frames of the stream from its start, perhaps a cut one, then the
	// close.
	prefix, err := relReadPrefix(stuck, size)
	if err != nil {
		t.Errorf("the slow consumer's stream: %v", err)
	}
	// What the broker may hold: the stuck client's queue up to
	// --max-pending (4 MiB), the readers' frames within the window (32 ×
	// 64,000 bytes, shared with it), a frame's read buffer, and as much
	// again as garbage before a collection (GOGC 100): about 12 MiB, on
	// top of which the runtime and the pools of written buffers keep
	// some. Measured: +8 to +17 MiB (+43 MiB race-built). The bound is
	// 32 MiB (64 MiB race-built), an eighth of what a queue that ignored
	// its bound would take (the 200 MiB sent).
	growth := sampler.max.Load() - before
	if bound := racePick[int64](32<<20, 64<<20); growth >= bound {
		t.Errorf("broker RSS grew %d MiB (from %d MiB), want < %d MiB", growth>>20, before>>20, bound>>20)
	}
	t.Logf("fanned out %d MiB to %d readers and a stuck client; the stuck client got %d frames before it was closed as a slow consumer; broker RSS %d MiB before, peak %d MiB (+%d MiB); %v in all",
		frames*size>>20, readers, prefix, before>>20, sampler.max.Load()>>20, growth>>20, time.Since(start).Round(time.Millisecond))
}

// TestRelSlowConsumerWriteTimeout: the other slow-consumer bound. With
// --max-pending far above what is sent and --write-timeout 1s, a client
// that stops reading while 8 MiB are fanned out to it (more than the
// kernel's buffers hold, so the broker's queue for it stops draining) is
// closed as a slow consumer, counted, while a reader receives everything.
//
// When, from both sides: the queue made progress after the first frame
// was sent, so the close cannot come less than the timeout after that;
// and it made none after the reader had everything (the stuck client's
// buffers were full long before), so the close must come within the
// timeout plus a tick of the loop's clock (an eighth of it) after that.
// The test allows twice the timeout for the upper bound: the rest is the
// scheduling of a loaded (perhaps race-built) broker and of /metrics
// polls. A timeout enforced at 2× or more its value fails it.
func TestRelSlowConsumerWriteTimeout(t *testing.T) {
	start := time.Now()
	const size, frames = 64000, 8 << 20 / 64000
	const writeTimeout = time.Second
	b := relStart(t, "--app", "broadcast", "--max-pending", "64MiB", "--write-timeout", writeTimeout.String())
	stuck := relDialRaw(t, b.Addr, 4096)
	pub := dial(t, b.Addr)
	r := relDialSeqReceiver(t, b.Addr, 0, 1, size)
	relWaitClients(t, b, 3)
	m0 := b.metrics(t)
	firstSent := time.Now()
	for seq := range frames {
		if err := pub.Send(relSeqPayload(0, uint64(seq), size)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the reader to receive everything", 30*time.Second, func() bool {
		return r.got[0].Load() == frames || r.failure() != nil
	})
	if err := r.failure(); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	var m map[string]float64
	waitFor(t, "the stuck client closed as a slow consumer", 10*time.Second, func() bool {
		m = b.metrics(t)
		return closedBy(m, "slow_consumer") > closedBy(m0, "slow_consumer")
	})
	closedAfter, sinceFirst := time.Since(sent), time.Since(firstSent)
	if closedAfter > 2*writeTimeout {
		t.Errorf("closed %v after the last frame reached the reader: the write timeout is %v (bound %v)", closedAfter, writeTimeout, 2*writeTimeout)
	}
	if sinceFirst < writeTimeout {
		t.Errorf("closed %v after the first frame was sent, sooner than the write timeout %v", sinceFirst, writeTimeout)
	}
	if d := m["hydrogen_slow_consumers_total"] - m0["hydrogen_slow_consumers_total"]; d != 1 {
		t.Errorf("slow consumers +%v, want +1", d)
	}
	if m["hydrogen_connections_open"] != 2 || m["hydrogen_outbound_queued_bytes"] != 0 {
		t.Errorf("open %v, queued %v after the close; want 2 and 0", m["hydrogen_connections_open"], m["hydrogen_outbound_queued_bytes"])
	}
	prefix, err := relReadPrefix(stuck, size)
	if err != nil {
		t.Errorf("the slow consumer's stream: %v", err)
	}
	t.Logf("the stuck client got %d of %d frames and was closed %v after the reader had the last (%v after the first was sent); %v in all",
		prefix, frames, closedAfter.Round(time.Millisecond), sinceFirst.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// relReadPrefix reads c to its end and checks that it holds the frames of
// publisher 0 from seq 0, in order, the last perhaps cut short.
func relReadPrefix(c net.Conn, size int) (int, error) {
	r := newRelReader(c)
	n := 0
	for {
		p, err := r.next(20 * time.Second)
		if err != nil {
			if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return n, nil
			}
			return n, err
		}
		_, seq, err := relCheckSeqPayload(p, size)
		if err != nil {
			return n, err
		}
		if seq != uint64(n) {
			return n, fmt.Errorf("frame %d has seq %d", n, seq)
		}
		n++
	}
}

// TestRelFastSender: inbound backpressure as the binary has it. The
// built-in applications run on the event loops and never block, so a
// handler is never slower than reading; what a client that sends as fast
// as it can meets is the echo replies it does not read. With --max-inbound
// 4 and a 4 KiB receive buffer, a sender that never reads is closed as a
// slow consumer once its replies pass --max-pending, the broker's RSS
// stays bounded, and a bystander is served throughout. A sender that does
// read everything gets every reply, in order, with nothing closed, and
// any read pause has resumed by the end.
func TestRelFastSender(t *testing.T) {
	t.Run("never reads", func(t *testing.T) {
		start := time.Now()
		b := relStart(t, "--app", "echo", "--max-inbound", "4")
		bs := relStartBystander(t, b.Addr)
		bs.waitTrips(t, 10)
		m0 := b.metrics(t)
		before := b.rss(t)
		sampler := relSampleRSS(t, b)
		sender := relDialRaw(t, b.Addr, 4096)
		frame := relFrame(bytes.Repeat([]byte{'f'}, 16<<10))
		burst := bytes.Repeat(frame, 16)
		var written int64
		var maxPaused float64
		werr := make(chan error, 1)
		go func() {
			for {
				sender.SetWriteDeadline(time.Now().Add(30 * time.Second))
				n, err := sender.Write(burst)
				atomic.AddInt64(&written, int64(n))
				if err != nil {
					werr <- err
					return
				}
			}
		}()
		var err error
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case err = <-werr:
				break wait
			case <-deadline:
				t.Fatalf("the sender was not stopped after writing %d MiB", atomic.LoadInt64(&written)>>20)
			case <-time.After(20 * time.Millisecond):
				maxPaused = max(maxPaused, b.metric(t, "hydrogen_connections_read_paused"))
			}
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Errorf("the sender's write ended with %v, want a reset", err)
		}
		bs.waitTrips(t, 10)
		var m map[string]float64
		waitFor(t, "the sender counted", 10*time.Second, func() bool {
			m = b.metrics(t)
			return m["hydrogen_connections_open"] == 1
		})
		sampler.finish()
		if d := m["hydrogen_slow_consumers_total"] - m0["hydrogen_slow_consumers_total"]; d != 1 {
			t.Errorf("slow consumers +%v, want +1", d)
		}
		if m["hydrogen_connections_read_paused"] != 0 || m["hydrogen_outbound_queued_bytes"] > 1<<10 {
			t.Errorf("read paused %v, queued %v bytes after the sender left", m["hydrogen_connections_read_paused"], m["hydrogen_outbound_queued_bytes"])
		}
		// Its queue up to --max-pending (4 MiB) of 16 KiB echoes, four
		// frames waiting for the application, garbage as much again, and
		// the pools: measured +17 to +19 MiB, +64 MiB race-built.
		growth := sampler.max.Load() - before
		if bound := racePick[int64](32<<20, 96<<20); growth >= bound {
			t.Errorf("broker RSS grew %d MiB, want < %d MiB", growth>>20, bound>>20)
		}
		bs.finish(t)
		t.Logf("sender wrote %d MiB (broker read %.1f MiB) before it was closed as a slow consumer; read pauses seen at once: %v; RSS %d MiB, peak +%d MiB; bystander %d round trips, slowest %v; %v in all",
			atomic.LoadInt64(&written)>>20, (m["hydrogen_received_bytes_total"]-m0["hydrogen_received_bytes_total"])/(1<<20), maxPaused,
			before>>20, growth>>20, bs.trips.Load(), time.Duration(bs.maxRTT.Load()), time.Since(start).Round(time.Millisecond))
	})
	t.Run("reads everything", func(t *testing.T) {
		start := time.Now()
		b := relStart(t, "--app", "echo", "--max-inbound", "4")
		bs := relStartBystander(t, b.Addr)
		before := b.rss(t)
		sampler := relSampleRSS(t, b)
		const size = 1000
		frames := relPick(30000, 300000)
		r := relDialSeqReceiver(t, b.Addr, 0, 1, size)
		var maxPaused float64
		pollDone := make(chan struct{})
		pollStop := make(chan struct{})
		go func() {
			defer close(pollDone)
			for {
				select {
				case <-pollStop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				resp, err := relHTTPClient.Get("http://" + b.HTTP + "/stats")
				if err != nil {
					continue
				}
				var st relStats
				json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				maxPaused = max(maxPaused, float64(st.PausedReads))
			}
		}()
		sendStart := time.Now()
		const batch = 64
		for seq := 0; seq < frames; seq += batch {
			ps := make([][]byte, min(batch, frames-seq))
			for i := range ps {
				ps[i] = relSeqPayload(0, uint64(seq+i), size)
			}
			if err := r.c.SendBatch(ps...); err != nil {
				t.Fatal(err)
			}
		}
		sendTook := time.Since(sendStart)
		waitFor(t, "every echo", 60*time.Second, func() bool {
			return r.got[0].Load() == uint64(frames) || r.failure() != nil
		})
		close(pollStop)
		<-pollDone
		if err := r.failure(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "reading resumed", 10*time.Second, func() bool {
			return b.metric(t, "hydrogen_connections_read_paused") == 0
		})
		sampler.finish()
		st := b.stats(t)
		if st.SlowConsumers != 0 || st.NumClients != 2 {
			t.Errorf("slow_consumers %d, num_clients %d; want 0 and 2", st.SlowConsumers, st.NumClients)
		}
		// The client reads everything, so the queue stays small:
		// measured +4 MiB (+17 in the long run), +22 MiB race-built.
		growth := sampler.max.Load() - before
		if bound := racePick[int64](relPick[int64](16<<20, 32<<20), 48<<20); growth >= bound {
			t.Errorf("broker RSS grew %d MiB, want < %d MiB", growth>>20, bound>>20)
		}
		bs.finish(t)
		t.Logf("%d frames of %d bytes sent in %v, every echo back in order; paused_reads peak seen %v; RSS %d MiB, peak +%d MiB; bystander %d round trips, slowest %v; %v in all",
			frames, size, sendTook.Round(time.Millisecond), maxPaused, before>>20, growth>>20, bs.trips.Load(), time.Duration(bs.maxRTT.Load()), time.Since(start).Round(time.Millisecond))
	})
}

// TestRelSoak: a bounded soak of mixed traffic on one echo broker —
// pipelined bursts of frames of random sizes (up to 65,535 bytes), valid
// telemetry requests, and reconnects — for 20 s (3 min with
// HYDROGEN_LONG=1). Every reply is checked; at the end the counters add
// up (frames and payload bytes the clients sent = msg_recv and
// bytes_recv; frames and bytes they received = msg_sent and bytes_sent),
// RSS at the end is within 32 MiB of the middle, and connections, fds
// and goroutines return to the baseline.
func TestRelSoak(t *testing.T) {
	start := time.Now()
	dur := relPick(20*time.Second, 3*time.Minute)
	const workers = 8
	b := relStart(t, "--app", "echo")
	b.metrics(t)
	base := b.levels(t)
	var sentFrames, sentBytes, gotFrames, gotBytes, reconnects, bursts, readings atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	stopAt := time.Now().Add(dur)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			errs <- relSoakWorker(b.Addr, rng, stopAt, &sentFrames, &sentBytes, &gotFrames, &gotBytes, &reconnects, &bursts, &readings)
		})
	}
	time.Sleep(dur / 2) // the middle of the soak, for the RSS comparison
	mid := b.levels(t)
	midRSS := mid.RSS
	var endRSS int64
	// Sample RSS at the end, before the clients close.
	for time.Until(stopAt) > 500*time.Millisecond {
		time.Sleep(100 * time.Millisecond)
	}
	endRSS = b.rss(t)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var st relStats
	waitFor(t, "the counters to settle", 10*time.Second, func() bool {
		st = b.stats(t)
		return st.NumClients == 0 && st.MsgSent == uint64(gotFrames.Load())
	})
	if st.MsgRecv != uint64(sentFrames.Load()) || st.BytesRecv != uint64(sentBytes.Load()) {
		t.Errorf("msg_recv %d, bytes_recv %d; the clients sent %d frames, %d bytes", st.MsgRecv, st.BytesRecv, sentFrames.Load(), sentBytes.Load())
	}
	if st.MsgSent != uint64(gotFrames.Load()) || st.BytesSent != uint64(gotBytes.Load()) {
		t.Errorf("msg_sent %d, bytes_sent %d; the clients received %d frames, %d bytes", st.MsgSent, st.BytesSent, gotFrames.Load(), gotBytes.Load())
	}
	if st.SlowConsumers != 0 || st.ProtocolErrors != 0 {
		t.Errorf("slow_consumers %d, protocol_errors %d", st.SlowConsumers, st.ProtocolErrors)
	}
	if d := endRSS - midRSS; d > 32<<20 {
		t.Errorf("RSS %d MiB at the end, %d MiB in the middle: grew %d MiB", endRSS>>20, midRSS>>20, d>>20)
	}
	end := b.waitBaseline(t, base, 0, 20*time.Second)
	t.Logf("soak of %v: %d frames (%d MiB) sent, %d received, %d bursts, %d telemetry readings, %d reconnects; counters match; RSS %.1f MiB middle, %.1f MiB end; baseline %v; after %v; %v in all",
		dur, sentFrames.Load(), sentBytes.Load()>>20, gotFrames.Load(), bursts.Load(), readings.Load(), reconnects.Load(),
		float64(midRSS)/(1<<20), float64(endRSS)/(1<<20), base, end, time.Since(start).Round(time.Millisecond))
}

func relSoakWorker(addr string, rng *rand.Rand, stopAt time.Time, sentFrames, sentBytes, gotFrames, gotBytes, reconnects, bursts, readings *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Until(stopAt)+time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer func() { c.Close() }()
	for op := 0; time.Now().Before(stopAt); op++ {
		switch k := rng.IntN(100); {
		case k < 90:
			n := 1 + rng.IntN(32)
			ps := make([][]byte, n)
			total := 0
			for i := range ps {
				size := rng.IntN(2048)
				if rng.IntN(200) == 0 {
					size = wire.MaxPayload
				}
				p := make([]byte, size)
				for j := range p {
					p[j] = byte(op + i + j)
				}
				if wire.IsTelemetryRequest(p) {
					p = append(p, 0)
				}
				ps[i] = p
				total += len(p)
			}
			if err := c.SendBatch(ps...); err != nil {
				return err
			}
			sentFrames.Add(int64(n))
			sentBytes.Add(int64(total))
			for i, want := range ps {
				got, err := c.Recv(ctx)
				if err != nil {
					return fmt.Errorf("reply %d of %d: %w", i, n, err)
				}
				if !bytes.Equal(got, want) {
					return fmt.Errorf("reply %d of %d: %d bytes, want %d (or different)", i, n, len(got), len(want))
				}
				gotFrames.Add(1)
				gotBytes.Add(int64(len(got)))
			}
			bursts.Add(1)
		case k < 97:
			sentFrames.Add(1)
			sentBytes.Add(wire.TelemetryRequestSize)
			st, err := c.Stats(ctx, 0.01+rng.Float32()*0.04)
			if err != nil {
				return fmt.Errorf("telemetry: %w", err)
			}
			gotFrames.Add(1)
			gotBytes.Add(int64(len(st.Raw)))
			readings.Add(1)
		default:
			c.Close()
			if c, err = client.Dial(ctx, addr); err != nil {
				return err
			}
			reconnects.Add(1)
		}
	}
	return nil
}
