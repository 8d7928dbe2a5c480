package broker_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// quietConfig makes the loops tick every 10 ms (an eighth of the write
// timeout), so that a stream is quiet, for ReleaseWhenQuiet, after 40 ms
// without a frame. The write timeout matters only to a stream whose
// socket stays full, which none of these tests' clients lets happen.
func quietConfig() broker.Config { return broker.Config{WriteTimeout: 80 * time.Millisecond} }

// waitReleased waits until n releases have been counted and the actors
// are back to want.
func waitReleased(t *testing.T, b *broker.Broker, n uint64, want int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("release %d and the actors back to %d", n, want), 10*time.Second, func() bool {
		return b.Stats().Actors.StreamsReleased >= n && processes(b) == want
	})
}

// TestReleaseWhenQuiet: a stream that spoke and went quiet has its two
// actors stopped; its next frames make them again, the application
// hearing Connected (with the identity it had) and then the frames in
// order; it is released again when quiet, and when it closes a fresh
// actor hears Closed, after which no actor is left. With authentication
// the stream is not asked for its credential again.
func TestReleaseWhenQuiet(t *testing.T) {
	release := []broker.HandleOption{broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet()}
	for _, tc := range []struct {
		name string
		auth bool
		opts []broker.HandleOption
	}{
		{"workers", false, release},
		{"on-loop", false, append(release, broker.OnEventLoop())},
		{"on-loop, authenticated", true, append(release, broker.OnEventLoop())},
		{"workers, eager", false, []broker.HandleOption{broker.ReleaseWhenQuiet()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			cfg := quietConfig()
			who := "<none>"
			if tc.auth {
				cfg.Authenticator = tokens(t, aliceToken+" alice\n")
				who = "alice"
			}
			b := start(t, cfg, rec.props(), true, tc.opts...)
			before := processes(b)
			p := dial(t, b)
			if tc.auth {
				p.send([]byte(aliceToken))
				if got := string(p.next(5 * time.Second)); got != `{"auth":"ok","identity":"alice"}` {
					t.Fatalf("answer %q", got)
				}
			}
			p.send([]byte("a"), []byte("b"))
			for _, want := range []string{"a", "b"} {
				if got := string(p.next(5 * time.Second)); got != want {
					t.Fatalf("echo %q, want %q", got, want)
				}
			}
			waitReleased(t, b, 1, before)
			p.send([]byte("c"))
			p.send([]byte("d"), []byte("e"))
			for _, want := range []string{"c", "d", "e"} {
				if got := string(p.next(5 * time.Second)); got != want {
					t.Fatalf("echo after the release %q, want %q", got, want)
				}
			}
			if n := processes(b) - before; n != 2 {
				t.Errorf("%d actors once the released stream spoke again, want 2", n)
			}
			waitReleased(t, b, 2, before)
			p.c.Close()
			want := []string{"connected " + who, "a", "b", "connected " + who, "c", "d", "e", "closed"}
			waitFor(t, "Closed", 5*time.Second, func() bool { return len(rec.events()) >= len(want) })
			waitFor(t, "the actors gone", 5*time.Second, func() bool { return processes(b) == before })
			if got := strings.Join(rec.events(), "|"); got != strings.Join(want, "|") {
				t.Errorf("the application heard %q, want %q", got, strings.Join(want, "|"))
			}
			if n := b.Stats().Actors.StreamsReleased; n != 2 {
				t.Errorf("%d releases counted, want 2", n)
			}
		})
	}
}

// nickname is the stream value TestReleaseWhenQuietStreamSurvives keeps.
var nickname = broker.NewKey[string]("nickname")

// TestReleaseWhenQuietStreamSurvives: what is the stream's survives the
// release of its actors — its values, its group, broadcasts to it, its
// place in the list — and a stream that closes while released is heard
// closing once, by an actor made for it (no Connected before it), which
// can still read its values; the group has been left by then. A stream
// that never spoke is never heard of. An actor made again is restarted
// after a panic with its stream (its name carries a generation).
func TestReleaseWhenQuietStreamSurvives(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	hear := func(s string) {
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
	}
	heard := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(seen, "|")
	}
	app := actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *broker.Connected:
			hear("connected")
		case *broker.Restarted:
			name, _ := nickname.Get(m.Stream)
			hear("restarted " + name)
		case *broker.Received:
			cmd, arg, _ := strings.Cut(string(m.Payload), " ")
			switch cmd {
			case "nick":
				nickname.Set(m.Stream, arg)
				if err := m.Streams.Group("room").Join(m.Stream); err != nil {
					panic(err)
				}
			case "boom":
				panic("boom")
			}
			hear(string(m.Payload))
			_ = m.Stream.Send(m.Payload)
		case *broker.Closed:
			name, _ := nickname.Get(m.Stream)
			hear(fmt.Sprintf("closed %s, room of %d", name, m.Streams.Group("room").Len()))
		}
	})
	b := start(t, quietConfig(), app, true, broker.OnEventLoop(), broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet())
	before := processes(b)
	p, silent := dial(t, b), dial(t, b)
	p.send([]byte("nick ada"))
	if got := string(p.next(5 * time.Second)); got != "nick ada" {
		t.Fatalf("echo %q", got)
	}
	waitReleased(t, b, 1, before)

	room := b.Streams().Group("room")
	if n := room.Len(); n != 1 {
		t.Fatalf("the room has %d members once its member was released, want 1", n)
	}
	var s *broker.Stream
	room.Each(func(m *broker.Stream) bool { s = m; return false })
	if got, _ := nickname.Get(s); got != "ada" {
		t.Errorf("the released stream's nick is %q, want ada", got)
	}
	if b.Streams().Get(s.ID()) != s {
		t.Errorf("the list does not find the released stream by its ID")
	}
	if n, err := room.Broadcast([]byte("to the room")); n != 1 || err != nil {
		t.Fatalf("a broadcast to the room reached %d (%v), want 1", n, err)
	}
	if n, err := b.Streams().Broadcast([]byte("to all")); n != 2 || err != nil {
		t.Fatalf("a broadcast reached %d (%v), want 2", n, err)
	}
	for _, want := range []string{"to the room", "to all"} {
		if got := string(p.next(5 * time.Second)); got != want {
			t.Fatalf("the released stream read %q, want %q", got, want)
		}
	}
	if got := string(silent.next(5 * time.Second)); got != "to all" {
		t.Fatalf("the silent stream read %q", got)
	}
	if n := processes(b); n != before {
		t.Errorf("%d actors after broadcasts to released and silent streams, want %d", n, before)
	}

	p.send([]byte("boom"), []byte("after"))
	if got := string(p.next(5 * time.Second)); got != "after" {
		t.Fatalf("echo after the panic %q", got)
	}
	waitReleased(t, b, 2, before)
	p.c.Close()
	silent.c.Close()
	want := "connected|nick ada|connected|restarted ada|after|closed ada, room of 0"
	waitFor(t, "Closed", 5*time.Second, func() bool { return strings.Count(heard(), "|") >= strings.Count(want, "|") })
	waitFor(t, "the streams gone", 5*time.Second, func() bool { return b.Streams().Len() == 0 })
	waitFor(t, "the actors gone", 5*time.Second, func() bool { return processes(b) == before })
	if got := heard(); got != want {
		t.Errorf("the application heard %q, want %q", got, want)
	}
	if got, ok := nickname.Get(s); ok {
		t.Errorf("the closed stream still has its nick %q", got)
	}
}

// raceApp is TestReleaseWhenQuietRace's application: it checks that each
// stream's frames come numbered 1, 2, 3... (the last number is a stream
// value, which survives the releases), that no frame reaches an actor
// that is stopping, and echoes each frame.
type raceApp struct {
	stopping bool
	slowStop time.Duration // how long it takes over Stopping (workers only: it blocks)
	s        *broker.Stream
	live     *sync.Map // stream ID → *atomic.Int32, its application actors alive
	overlaps *atomic.Int64
	bad      *atomic.Int64
	conns    *atomic.Int64
	closes   *atomic.Int64
	errs     chan<- string
}

var lastSeq = broker.NewKey[uint32]("last")

func (a *raceApp) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Stopping:
		a.stopping = true
		time.Sleep(a.slowStop)
	case *actor.Stopped:
		if a.s != nil {
			n, _ := a.live.Load(a.s.ID())
			n.(*atomic.Int32).Add(-1)
		}
	case *broker.Connected:
		a.conns.Add(1)
		a.s = m.Stream
		n, _ := a.live.LoadOrStore(m.Stream.ID(), new(atomic.Int32))
		if n.(*atomic.Int32).Add(1) > 1 {
			a.overlaps.Add(1) // the released actor had not stopped yet
		}
	case *broker.Received:
		last, _ := lastSeq.Get(m.Stream)
		seq := binary.BigEndian.Uint32(m.Payload[4:])
		switch {
		case a.stopping:
			a.report(fmt.Sprintf("stream %d: frame %d handed to a stopping actor", m.Stream.ID(), seq))
		case seq != last+1:
			a.report(fmt.Sprintf("stream %d: frame %d after frame %d", m.Stream.ID(), seq, last))
		}
		lastSeq.Set(m.Stream, seq)
		_ = m.Stream.Send(m.Payload)
	case *broker.Closed:
		a.closes.Add(1)
	}
}

func (a *raceApp) report(s string) {
	a.bad.Add(1)
	select {
	case a.errs <- s:
	default:
	}
}

// TestReleaseWhenQuietRace: many streams send numbered frames in bursts
// separated by pauses around the quiet time, so that frames keep
// arriving while their stream's actors are being released. Every frame
// reaches the application once, in order, never a stopping actor, and is
// echoed in order; each stream is heard closing once; once every client
// has gone, no actor is left and the goroutines are back where they
// were. (Run it with -race.)
func TestReleaseWhenQuietRace(t *testing.T) {
	for _, mode := range []struct {
		name     string
		slowStop time.Duration
		opts     []broker.HandleOption
	}{
		// A handler on the workers may block: one that takes 20 ms to
		// stop keeps the released actors alive while the next frames
		// come, and new actors are made beside them.
		{"workers", 20 * time.Millisecond, nil},
		{"on-loop", 0, []broker.HandleOption{broker.OnEventLoop()}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			const (
				streams = 24
				rounds  = 25
			)
			var bad, conns, closes, overlaps atomic.Int64
			var live sync.Map
			errs := make(chan string, 16)
			app := actor.PropsFromProducer(func() actor.Actor {
				return &raceApp{slowStop: mode.slowStop, live: &live, overlaps: &overlaps, bad: &bad, conns: &conns, closes: &closes, errs: errs}
			})
			opts := append([]broker.HandleOption{broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet()}, mode.opts...)
			b := start(t, quietConfig(), app, true, opts...)
			before := processes(b)
			// The baseline is of a broker that has served: its loops and
			// workers are running.
			w := dial(t, b)
			w.send(seqPayload(streams, 1))
			w.next(5 * time.Second)
			w.c.Close()
			waitFor(t, "the first stream heard closing", 10*time.Second, func() bool { return closes.Load() == 1 && processes(b) == before })
			closes.Store(0)
			conns.Store(0)
			goroutines := goroutinesButWorkers()

			peers := make([]*peer, streams)
			for i := range peers {
				peers[i] = dial(t, b)
			}
			var wg sync.WaitGroup
			fail := make(chan error, streams)
			for i, p := range peers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(i), 7))
					seq := uint32(0)
					for range rounds {
						burst := make([][]byte, 1+rng.IntN(3))
						for j := range burst {
							seq++
							burst[j] = seqPayload(uint32(i), seq)
						}
						// Now one write, now one per frame.
						if rng.IntN(2) == 0 {
							if err := p.trySend(burst...); err != nil {
								fail <- err
								return
							}
						} else {
							for _, f := range burst {
								if err := p.trySend(f); err != nil {
									fail <- err
									return
								}
							}
						}
						for _, want := range burst {
							got, err := p.tryNext(10 * time.Second)
							if err != nil {
								fail <- fmt.Errorf("stream %d: reading the echo of frame %d: %w", i, binary.BigEndian.Uint32(want[4:]), err)
								return
							}
							if string(got) != string(want) {
								fail <- fmt.Errorf("stream %d: echo %x, want %x", i, got, want)
								return
							}
						}
						// Around the quiet time (40 to 50 ms): some
						// bursts come before the release, some while it
						// happens, some after.
						time.Sleep(time.Duration(rng.IntN(70)) * time.Millisecond)
					}
				})
			}
			wg.Wait()
			close(fail)
			for err := range fail {
				t.Error(err)
			}
			releases := b.Stats().Actors.StreamsReleased
			t.Logf("%d releases of %d streams' actors over %d bursts each; %d times the new application actor started before the released one had stopped", releases, streams, rounds, overlaps.Load())
			if releases < streams {
				t.Errorf("%d releases, want at least one per stream", releases)
			}
			for _, p := range peers {
				p.c.Close()
			}
			waitFor(t, "every stream heard closing", 10*time.Second, func() bool { return closes.Load() >= streams })
			waitFor(t, "the actors gone", 10*time.Second, func() bool { return processes(b) == before })
			waitFor(t, "the goroutines back", 10*time.Second, func() bool { return goroutinesButWorkers() <= goroutines })
			time.Sleep(50 * time.Millisecond) // any Closed too many would be heard by now
			if n := closes.Load(); n != streams {
				t.Errorf("%d streams heard closing, want %d", n, streams)
			}
			// Each making of a stream's actors but the one for Closed is
			// heard as Connected: one per release, and one more for each
			// stream whose actors were alive when it closed.
			releases = b.Stats().Actors.StreamsReleased
			if n := uint64(conns.Load()); n < releases || n > releases+streams {
				t.Errorf("%d Connected for %d releases of %d streams, want %d to %d", n, releases, streams, releases, releases+streams)
			}
			if n := bad.Load(); n != 0 {
				close(errs)
				for e := range errs {
					t.Error(e)
				}
				t.Fatalf("%d frames out of order or to a stopping actor", n)
			}
		})
	}
}

// goroutinesButWorkers counts the goroutines but the actor dispatcher's
// workers, which live as long as the broker and grow in number when a
// mailbox waits (a loaded machine under the race detector may add some).
func goroutinesButWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.HasPrefix(g, "goroutine ") && !strings.Contains(g, "actors.(*Dispatcher).worker") {
			count++
		}
	}
	return count
}

// liveHeap is the bytes of live objects after a full collection: unlike
// heapInUse, not the partly used spans that whatever was freed leaves
// behind, which vary from run to run.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestReleasedStreamCostsWhatASilentOneDoes: once its actors have been
// released, a stream that did a round trip holds little more live heap
// than one that never sent a frame: the actors (2.4 KB) are gone. What
// is left is protoactor's process registry: 32,768 Go maps, each of
// which keeps the memory it once grew for a name (about 0.5 KB a stream
// here).
func TestReleasedStreamCostsWhatASilentOneDoes(t *testing.T) {
	const n = 1000
	b := start(t, quietConfig(), broker.Echo(), true, broker.OnEventLoop(), broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet())
	actors := processes(b)
	frame, _ := wire.Encode([]byte("idle"))
	reply := make([]byte, len(frame)) // shared: the clients hold nothing per connection but their socket
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	group := func(spoke bool) int64 {
		t.Helper()
		before := liveHeap()
		released := b.Stats().Actors.StreamsReleased
		for range n {
			c, err := net.DialTimeout("tcp", b.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			if !spoke {
				continue
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, reply); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the streams listed", 10*time.Second, func() bool { return b.Streams().Len() == len(conns) })
		if spoke {
			waitReleased(t, b, released+n, actors)
		}
		// The outbound buffers of the replies go back after the same
		// quiet spell as the actors; a few more ticks for every loop.
		time.Sleep(100 * time.Millisecond)
		return (liveHeap() - before) / n
	}
	group(true) // grows what keeps its size: the stream list, the fd table, the actor registry's maps
	silent := group(false)
	spoke := group(true)
	t.Logf("live heap per idle stream, clients' sockets included: %d bytes silent, %d after a round trip and the release", silent, spoke)
	if spoke > silent+1024 {
		t.Errorf("a released stream holds %d bytes of live heap, a silent one %d: want at most 1 KiB more", spoke, silent)
	}
}

// TestReleaseWaitsForTheHandler: a stream whose handler is still at work
// on a frame is not released, however long ago the frame came: its next
// frame goes to the same actor, behind it, and the replies keep their
// order. (Released while busy, the next frame would go to new actors and
// be answered first.)
func TestReleaseWaitsForTheHandler(t *testing.T) {
	app := actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*broker.Received); ok {
			if string(m.Payload) == "slow" {
				time.Sleep(150 * time.Millisecond) // on a worker: it may block
			}
			_ = m.Stream.Send(m.Payload)
		}
	})
	b := start(t, quietConfig(), app, true, broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet())
	for range 3 {
		p := dial(t, b)
		p.send([]byte("slow"))
		time.Sleep(90 * time.Millisecond) // past the quiet time (40 ms), the handler still at work
		p.send([]byte("next"))
		for _, want := range []string{"slow", "next"} {
			if got := string(p.next(5 * time.Second)); got != want {
				t.Fatalf("got %q, want %q: the stream was released while its handler was busy", got, want)
			}
		}
	}
}

// TestReleaseNeverSkipsTheCredential: a stream whose actors are made at
// the open and that stays quiet before its first frame is not released
// (its credential is not accepted yet): its first frame is still checked
// as the credential. Released then, actors made again would take it for
// an authenticated stream's.
func TestReleaseNeverSkipsTheCredential(t *testing.T) {
	cfg := quietConfig()
	cfg.Authenticator = tokens(t, aliceToken+" alice\n")
	b := start(t, cfg, broker.Echo(), true, broker.ReleaseWhenQuiet())
	p := dial(t, b)
	time.Sleep(200 * time.Millisecond) // five quiet times
	p.send([]byte("not-the-token-0123456789"), []byte("must not arrive"))
	if got := string(p.next(5 * time.Second)); got != `{"error":"auth: credential refused"}` {
		t.Fatalf("a wrong credential after a quiet spell: answer %q", got)
	}
	p.expectEOF(5 * time.Second)
	ok := dial(t, b)
	time.Sleep(200 * time.Millisecond)
	ok.send([]byte(aliceToken), []byte("hello"))
	for _, want := range []string{"", "hello"} {
		got := string(ok.next(5 * time.Second))
		if want == "" {
			if !strings.Contains(got, "alice") {
				t.Fatalf("the right credential after a quiet spell: answer %q", got)
			}
			continue
		}
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
