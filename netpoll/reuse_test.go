package netpoll

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestFDReuse closes connection A while another goroutine keeps sending
// to it, and opens connection B so that the server gets A's fd number for
// it. B must receive its own echo and nothing else: not a byte queued for
// A, whether A was closed by the server or reset by its client.
func TestFDReuse(t *testing.T) {
	const iterations = 100
	for _, loops := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d loops", loops), func(t *testing.T) {
			h := newHandler(t, replyEcho)
			// Lingering would keep A's fd past its close.
			s := startServer(t, Config{Loops: loops, MaxPending: 64 << 20, noLinger: true}, h)
			reused := 0
			for i := range iterations {
				if fdReuseOnce(t, s, h, i) {
					reused++
				}
				if t.Failed() {
					return
				}
			}
			t.Logf("B got A's fd in %d of %d iterations", reused, iterations)
			if reused < iterations/2 {
				t.Errorf("B got A's fd in only %d of %d iterations: the test did not test reuse", reused, iterations)
			}
		})
	}
}

// fdReuseOnce runs one iteration of TestFDReuse and reports whether B got
// A's fd.
func fdReuseOnce(t *testing.T, s *Server, h *handler, i int) bool {
	ca, err := dialer().Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	a := h.nextOpened(t)

	markerA := bytes.Repeat([]byte{'A'}, 1000)
	sendErr := make(chan error, 1)
	go func() {
		for {
			if err := a.c.Send(markerA); err != nil {
				sendErr <- err
				return
			}
		}
	}()

	// B's client socket is made while A's server fd is still open, and
	// connects only once that is closed: the lowest free fd the server's
	// accept can get is then A's. When A's client resets, its socket is
	// closed first so that B's client socket takes that number back.
	rst := i%2 == 1
	if rst {
		ca.(*net.TCPConn).SetLinger(0)
		ca.Close()
	}
	socketMade := make(chan struct{})
	aGone := make(chan struct{})
	type dialed struct {
		c   net.Conn
		err error
	}
	bDialed := make(chan dialed, 1)
	go func() {
		d := dialer()
		d.Control = func(string, string, syscall.RawConn) error {
			close(socketMade)
			<-aGone
			return nil
		}
		c, err := d.Dial("tcp", s.Addr().String())
		bDialed <- dialed{c, err}
	}()
	<-socketMade
	if !rst {
		a.c.Close(nil)
	}
	h.closedFor(t, a.c)
	close(aGone)

	err = <-sendErr
	if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("Send racing with close: %v", err)
	}
	if err := a.c.Send(markerA); !errors.Is(err, ErrClosed) {
		t.Errorf("Send on a closed Conn: %v, want ErrClosed", err)
	}

	d := <-bDialed
	if d.err != nil {
		t.Fatal(d.err)
	}
	cb := d.c.(*net.TCPConn)
	defer cb.Close()
	b := h.nextOpened(t)

	markerB := fmt.Appendf(nil, "B %d", i)
	write(t, cb, frame(markerB))
	if err := cb.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	cb.SetReadDeadline(time.Now().Add(waitLong))
	got, err := io.ReadAll(cb)
	if err != nil {
		t.Fatalf("iteration %d: B read: %v", i, err)
	}
	if want := frame(markerB); !bytes.Equal(got, want) {
		t.Fatalf("iteration %d: B received %s, want only its echo %s (A's marker inside: %v)",
			i, brief(got), brief(want), bytes.Contains(got, markerA[:8]))
	}
	h.closedFor(t, b.c)
	return b.fd == a.fd
}
