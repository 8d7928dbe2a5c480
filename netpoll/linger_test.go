package netpoll

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

// TestCloseLingersForThePeer: the broker answers and closes a connection
// whose client keeps sending without reading. The client gets the
// answer and an orderly end (EOF), not a reset that could take the
// answer with it; the socket stays until the client closes too, and no
// longer, or for lingerFor when it never does.
func TestCloseLingersForThePeer(t *testing.T) {
	for _, clientCloses := range []bool{true, false} {
		name := "client closes"
		if !clientCloses {
			name = "client stays"
		}
		t.Run(name, func(t *testing.T) {
			h := newHandler(t, replyNone)
			s := startServer(t, Config{}, h)
			fds, _, err := openFDs()
			if err != nil {
				t.Fatal(err)
			}
			cl := dial(t, s.Addr())
			c := h.nextOpened(t).c

			// The client floods, never waiting; the server reads as it can.
			stop := make(chan struct{})
			flooded := make(chan error, 1)
			go func() {
				f := bytes.Repeat(frame(bytes.Repeat([]byte{'x'}, 1000)), 64)
				for {
					select {
					case <-stop:
						flooded <- nil
						return
					default:
					}
					if _, err := cl.Write(f); err != nil {
						flooded <- err
						return
					}
				}
			}()
			time.Sleep(50 * time.Millisecond)
			if err := c.Send([]byte("goodbye")); err != nil {
				t.Fatal(err)
			}
			c.Close(ErrHandshake)
			cl.SetReadDeadline(time.Now().Add(waitLong))
			got, err := io.ReadAll(cl)
			close(stop)
			if err != nil || !bytes.Equal(got, frame([]byte("goodbye"))) {
				t.Fatalf("the client read %q and then %v; want the answer and EOF", got, err)
			}
			if err := h.closedFor(t, c); !errors.Is(err, ErrHandshake) {
				t.Fatalf("closed for %v", err)
			}
			<-flooded // a write may fail once the linger ends: that is the peer's lot
			start := time.Now()
			if clientCloses {
				cl.Close()
			}
			// The client's own socket is one fd of ours; the server's goes.
			want := fds + 1
			if clientCloses {
				want = fds
			}
			for {
				n, _, err := openFDs()
				if err != nil {
					t.Fatal(err)
				}
				if n <= want {
					break
				}
				if time.Since(start) > lingerFor+2*time.Second {
					t.Fatalf("%d fds open, %d before the connection: the lingering socket was kept", n, fds)
				}
				time.Sleep(10 * time.Millisecond)
			}
			d := time.Since(start)
			switch {
			case clientCloses && d > time.Second:
				t.Errorf("the lingering socket went %v after the client closed", d)
			case !clientCloses && d < lingerFor/2:
				t.Errorf("the lingering socket went after %v, before its time (%v)", d, lingerFor)
			}
			t.Logf("released %v after the close", d.Round(time.Millisecond))
		})
	}
}

// TestShutdownEndsLingering: a socket lingering when the server shuts
// down is closed with it, not left open.
func TestShutdownEndsLingering(t *testing.T) {
	h := newHandler(t, replyNone)
	s, err := Listen(Config{Addr: "127.0.0.1:0", Logger: testLogger(t)}, h)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	dial(t, s.Addr()) // neither reads nor closes: the server's socket lingers
	c := h.nextOpened(t).c
	fd := fmt.Sprintf("/proc/self/fd/%d", c.fd)
	sock, err := os.Readlink(fd)
	if err != nil {
		t.Fatal(err)
	}
	c.Close(ErrIdle)
	h.closedFor(t, c)
	if now, _ := os.Readlink(fd); now != sock {
		t.Fatalf("the closed connection's socket %s is %q, want it lingering (%s)", fd, now, sock)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if now, _ := os.Readlink(fd); now == sock {
		t.Errorf("the lingering socket %s outlived the server", sock)
	}
}
