package netpoll

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/hydrogen-mq/hydrogen/wire"
)

func TestListenConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		h       Handler
		wantErr string // "" for success
	}{
		{"defaults", Config{Addr: "127.0.0.1:0"}, &handler{}, ""},
		{"nil handler", Config{Addr: "127.0.0.1:0"}, nil, "nil Handler"},
		{"no address", Config{}, &handler{}, "Addr is required"},
		{"bad address", Config{Addr: "127.0.0.1:x"}, &handler{}, "listen on"},
		{"MaxPayload over the wire's", Config{Addr: "127.0.0.1:0", MaxPayload: wire.MaxPayload + 1}, &handler{}, "MaxPayload"},
		{"negative MaxConns", Config{Addr: "127.0.0.1:0", MaxConns: -1}, &handler{}, "MaxConns"},
		{"MaxPending under a frame", Config{Addr: "127.0.0.1:0", MaxPending: 1000}, &handler{}, "MaxPending"},
		{"negative IdleTimeout", Config{Addr: "127.0.0.1:0", IdleTimeout: -1}, &handler{}, "IdleTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Listen(tt.cfg, tt.h)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Listen: %v, want an error about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Loops() < 1 || s.Addr().(*net.TCPAddr).Port == 0 {
				t.Errorf("Loops %d, Addr %v", s.Loops(), s.Addr())
			}
			// Shutdown before Serve: Serve returns at once.
			if err := s.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := s.Serve(); err != nil {
				t.Fatal(err)
			}
			if err := s.Serve(); err == nil {
				t.Error("a second Serve succeeded")
			}
		})
	}
}

func TestIPv6(t *testing.T) {
	probe, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	probe.Close()
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{Addr: "[::1]:0"}, h)
	if a := s.Addr().(*net.TCPAddr); !a.IP.Equal(net.IPv6loopback) || a.Port == 0 {
		t.Fatalf("Addr %v", a)
	}
	c := dial(t, s.Addr())
	roundTrip(t, c, []byte("over IPv6"))
	sc := h.nextOpened(t).c
	if got, want := sc.RemoteAddr().String(), c.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr %s, want %s", got, want)
	}
}

// TestSend covers Send's and SendFrame's contracts and Close's reason.
func TestSend(t *testing.T) {
	h := newHandler(t, replyNone)
	s := startServer(t, Config{}, h)
	var clients []*net.TCPConn
	var conns []*Conn
	for range 3 {
		clients = append(clients, dial(t, s.Addr()))
		conns = append(conns, h.nextOpened(t).c)
	}

	if err := conns[0].Send(make([]byte, wire.MaxPayload+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Send of %d bytes: %v, want ErrFrameTooLarge", wire.MaxPayload+1, err)
	}

	// One encoding shared by every connection, with copied frames
	// between, keeps each connection's order.
	shared := frame([]byte("broadcast"))
	for i, c := range conns {
		for _, err := range []error{
			c.Send([]byte("one")),
			c.SendFrame(shared),
			c.Send([]byte{byte(i)}),
			c.SendFrame(shared),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, cl := range clients {
		want := [][]byte{[]byte("one"), []byte("broadcast"), {byte(i)}, []byte("broadcast")}
		checkEcho(t, readFrames(t, cl, cl, len(want)), want)
	}
	if st := s.Stats(); st.MsgSent != 12 || st.BytesSent != 3*(3+9+1+9) {
		t.Errorf("MsgSent %d, BytesSent %d", st.MsgSent, st.BytesSent)
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Error("SendFrame of a bad frame did not panic")
			}
		}()
		conns[0].SendFrame([]byte{wire.Start, 0, 5, wire.End})
	}()

	// Close with a reason of the layer above: what was queued is written,
	// the reason is reported, and the close is counted as local.
	reason := errors.New("kicked")
	conns[1].Send([]byte("bye"))
	conns[1].Close(reason)
	conns[1].Close(errors.New("twice")) // no effect
	if err := h.closedFor(t, conns[1]); err != reason {
		t.Errorf("OnClose: %v, want %v", err, reason)
	}
	if got := readFrames(t, clients[1], clients[1], 1)[0]; string(got) != "bye" {
		t.Errorf("got %q, want bye", got)
	}
	expectEOF(t, clients[1])
	if err := conns[1].Send([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
	if err := conns[1].SendFrame(shared); !errors.Is(err, ErrClosed) {
		t.Errorf("SendFrame after Close: %v", err)
	}
	conns[2].Close(nil)
	if err := h.closedFor(t, conns[2]); !errors.Is(err, ErrClosed) {
		t.Errorf("OnClose after Close(nil): %v, want ErrClosed", err)
	}
	if st := s.Stats(); st.ClosedLocal != 2 {
		t.Errorf("ClosedLocal %d, want 2", st.ClosedLocal)
	}
}
