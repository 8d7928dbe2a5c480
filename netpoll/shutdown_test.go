package netpoll

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
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// queueUnread queues n bytes of 65,535-byte frames on sc, whose client is
// not reading, and returns the payloads.
func queueUnread(t *testing.T, sc *Conn, n int) [][]byte {
	t.Helper()
	var sent [][]byte
	for i := 0; i*wire.MaxPayload < n; i++ {
		p := tricky(i, wire.MaxPayload)
		if err := sc.Send(p); err != nil {
			t.Fatalf("Send: %v", err)
		}
		sent = append(sent, p)
	}
	return sent
}

// TestShutdownFlushes: Shutdown writes everything queued before it closes,
// however slowly the client reads, and only then returns.
func TestShutdownFlushes(t *testing.T) {
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{MaxPending: 16 << 20}, h)
	cl := dialSlow(t, s.Addr())
	sc := h.nextOpened(t).c
	// More than the kernel's send buffer can grow to (tcp_wmem's 4 MiB
	// maximum by default), so that some stays in the server's queue.
	sent := queueUnread(t, sc, 8<<20)
	if sc.Queued() == 0 {
		t.Fatal("everything fit in the socket buffers: nothing for Shutdown to flush")
	}

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// The client starts reading only now; Shutdown cannot finish first.
	checkEcho(t, readFrames(t, cl, cl, len(sent)), sent)
	expectEOF(t, cl)
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("Shutdown did not return")
	}
	<-s.Done()
	if err := h.closedFor(t, sc); !errors.Is(err, ErrShutdown) {
		t.Errorf("OnClose: %v, want ErrShutdown", err)
	}
	if st := s.Stats(); st.ClosedShutdown != 1 || st.Open != 0 {
		t.Errorf("ClosedShutdown %d, Open %d; want 1, 0", st.ClosedShutdown, st.Open)
	}
}

// TestShutdownExpired: with its context already done, Shutdown closes
// every connection at once, queue or not, and returns the context's error.
func TestShutdownExpired(t *testing.T) {
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{MaxPending: 16 << 20}, h)
	dialSlow(t, s.Addr())
	sc := h.nextOpened(t).c
	queueUnread(t, sc, 8<<20)
	if sc.Queued() == 0 {
		t.Fatal("everything fit in the socket buffers")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	select {
	case <-s.Done():
	default:
		t.Error("Shutdown returned before Serve")
	}
	if err := h.closedFor(t, sc); !errors.Is(err, ErrShutdown) {
		t.Errorf("OnClose: %v, want ErrShutdown", err)
	}
	if err := sc.Send([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Shutdown: %v, want ErrClosed", err)
	}
}

// TestQuiesce: a quiesced server accepts nothing and reads nothing, but
// still writes what is sent.
func TestQuiesce(t *testing.T) {
	h := newHandler(t, replyNone)
	s := startServer(t, Config{}, h)
	cl := dial(t, s.Addr())
	sc := h.nextOpened(t).c
	write(t, cl, frame([]byte("before")))
	h.receivedFrom(t, sc, 1)

	s.Quiesce()
	waitFor(t, "the listener to close", func() bool {
		c, err := dialer().Dial("tcp", s.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	write(t, cl, frame([]byte("ignored")))
	if err := sc.Send([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if got := readFrames(t, cl, cl, 1)[0]; string(got) != "after" {
		t.Fatalf("got %q", got)
	}
	select {
	case r := <-h.received:
		t.Fatalf("%d frames delivered after Quiesce", len(r.frames))
	case <-time.After(100 * time.Millisecond): // asserts an absence
	}
}

// TestShutdownTwice: Shutdown and Quiesce after the server has ended do
// nothing. In particular they must not write a wakeup to the loops'
// eventfds, which are closed by then and whose numbers the process may
// have given to new files.
func TestShutdownTwice(t *testing.T) {
	for _, served := range []bool{true, false} {
		t.Run(fmt.Sprintf("served %v", served), func(t *testing.T) {
			h := newHandler(t, replyEcho)
			s, err := Listen(Config{Addr: "127.0.0.1:0", Loops: 4, Logger: testLogger(t)}, h)
			if err != nil {
				t.Fatal(err)
			}
			serveErr := make(chan error, 1)
			if served {
				go func() { serveErr <- s.Serve() }()
				cl := dial(t, s.Addr())
				roundTrip(t, cl, []byte("x"))
				if err := s.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				// Shut down before Serve, which then returns at once.
				if err := s.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				serveErr <- s.Serve()
			}
			if err := <-serveErr; err != nil {
				t.Fatalf("Serve: %v", err)
			}

			// Take the lowest free descriptors, those the server just
			// closed among them, with socket pairs: a stray write to either
			// end shows at the other.
			var pairs [][2]int
			for range 32 {
				fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				pairs = append(pairs, fds)
				defer unix.Close(fds[0])
				defer unix.Close(fds[1])
			}
			if err := s.Shutdown(context.Background()); err != nil {
				t.Errorf("second Shutdown: %v", err)
			}
			s.Quiesce()
			for _, fds := range pairs {
				for _, fd := range fds {
					var b [16]byte
					if n, _ := unix.Read(fd, b[:]); n > 0 {
						t.Fatalf("%d bytes written to a descriptor the server had closed", n)
					}
				}
			}
		})
	}
}

// TestShutdownWhileAccepting shuts down while clients keep connecting:
// every connection the server accepted is closed, none is left open on a
// loop that has already ended, and no descriptor outlives the server.
func TestShutdownWhileAccepting(t *testing.T) {
	for i := range 10 {
		before, _, err := openFDs()
		if err != nil {
			t.Fatal(err)
		}
		shutdownWhileAccepting(t, i)
		if t.Failed() {
			return
		}
		// Descriptors the server closes are closed before Serve returns;
		// the clients' are closed by now too.
		if after, _, err := openFDs(); err != nil || after != before {
			t.Fatalf("round %d: %d descriptors open before the server, %d after (%v)", i, before, after, err)
		}
	}
}

func shutdownWhileAccepting(t *testing.T, round int) {
	h := newHandler(t, replyEcho)
	s, err := Listen(Config{Addr: "127.0.0.1:0", Loops: 2, Logger: testLogger(t)}, h)
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve() }()

	// Clients dial until the listener is gone; each then must see its
	// connection end.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var clients []net.Conn
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialer().Dial("tcp", s.Addr().String())
				if err != nil {
					return // refused: the listener is closed
				}
				mu.Lock()
				clients = append(clients, c)
				mu.Unlock()
			}
		})
	}
	waitStats(t, s, "some connections", func(st Stats) bool { return st.Accepted > 50 })
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("round %d: Shutdown: %v", round, err)
	}
	if err := <-serveErr; err != nil {
		t.Errorf("round %d: Serve: %v", round, err)
	}
	close(stop)
	wg.Wait()
	// Every client must find its connection ended. One the server never
	// accepted may look open: the kernel drops a connection still in
	// SYN-RECV silently when the listener closes. Writing a byte makes the
	// kernel answer for it with a reset; a connection whose server side
	// is still open, on a loop that no longer serves it, stays silent.
	var stuck atomic.Int32
	var readers sync.WaitGroup
	for _, c := range clients {
		readers.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(waitLong))
			c.Write([]byte{0})
			if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
				stuck.Add(1)
			}
		})
	}
	readers.Wait()
	if n := stuck.Load(); n > 0 {
		t.Errorf("round %d: %d of %d client connections stayed open after Shutdown", round, n, len(clients))
	}
	if st := s.Stats(); st.Open != 0 {
		t.Errorf("round %d: Open %d after Shutdown", round, st.Open)
	}
}

// TestAdoptByEndedLoop: a loop that has drained and ended while another
// still accepts (its share of a Shutdown came first) must not be handed
// connections it will never serve. The accepting loop closes them: every
// connection is served or closed, none is left hanging.
func TestAdoptByEndedLoop(t *testing.T) {
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{Loops: 2}, h)
	s.loops[1].control(ctlQuiesce | ctlDrain)
	waitFor(t, "loop 1 to end", func() bool {
		s.loops[1].mu.Lock()
		defer s.loops[1].mu.Unlock()
		return s.loops[1].stopped
	})

	// Loop 0 keeps a connection while it has no more than loop 1's none;
	// after that, it deals them to loop 1, which has ended.
	const n = 8
	served, refused := 0, 0
	for i := range n {
		c := dial(t, s.Addr())
		write(t, c, frame([]byte("hello")))
		c.SetReadDeadline(time.Now().Add(waitLong))
		p, err := readFrame(c)
		switch {
		case err == nil && string(p) == "hello":
			served++
		case err == io.EOF || errors.Is(err, syscall.ECONNRESET):
			refused++
		default:
			t.Fatalf("connection %d: %s, %v", i, brief(p), err)
		}
	}
	if served == 0 || refused == 0 {
		t.Errorf("%d served, %d refused; want loop 0 to serve some and the rest refused", served, refused)
	}
	waitFor(t, "the connection count to settle", func() bool { return s.open.Load() == int64(served) })
}
