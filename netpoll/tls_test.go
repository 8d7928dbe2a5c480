package netpoll

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/testpki"
)

// testPKI is a CA and a server certificate for 127.0.0.1 it signed.
type testPKI struct {
	*testpki.CA
	server tls.Certificate
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca := testpki.NewCA(t, "test CA")
	return &testPKI{CA: ca, server: ca.Issue(t, "127.0.0.1", "127.0.0.1")}
}

func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
}

// dialTLS connects with TLS, trusting the test CA; closed at the end.
func dialTLS(t testing.TB, addr net.Addr, p *testPKI, certs ...tls.Certificate) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(dialer(), "tcp", addr.String(), &tls.Config{RootCAs: p.Pool, Certificates: certs, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTLSEcho: over TLS, frames split anywhere and many frames per record
// decode as over TCP, the largest frames round trip, and 10,000 frames
// come back in order; the handler hears of the connection once its
// handshake is done, with its TLS state.
func TestTLSEcho(t *testing.T) {
	pki := newPKI(t)
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{TLS: pki.serverConfig()}, h)
	c := dialTLS(t, s.Addr(), pki)
	o := h.nextOpened(t)
	if st := o.c.TLS(); st == nil || !st.HandshakeComplete {
		t.Fatalf("TLS state in OnOpen: %+v", st)
	}
	r := bufio.NewReader(c)
	read := func(want []byte) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(waitLong))
		got, err := readFrame(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("echo: %s, %v; want %s", brief(got), err, brief(want))
		}
	}
	// One frame written a byte at a time.
	f := frame([]byte("split at every byte"))
	for i := range f {
		if _, err := c.Write(f[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	read([]byte("split at every byte"))
	// The largest payloads, several at once.
	big := make([][]byte, 4)
	for i := range big {
		big[i] = bytes.Repeat([]byte{byte('a' + i)}, 65535)
	}
	write(t, c, frames(big...))
	for _, p := range big {
		read(p)
	}
	// 10,000 small frames in a few writes, back in order.
	var want [][]byte
	for i := range 10000 {
		want = append(want, tricky(i, i%100))
	}
	for i := 0; i < len(want); i += 1000 {
		write(t, c, frames(want[i:i+1000]...))
	}
	for _, p := range want {
		read(p)
	}
	if st := s.Stats(); st.TLSHandshakes != 1 || st.TLSHandshakeFailures != 0 {
		t.Errorf("handshakes %d, failures %d; want 1, 0", st.TLSHandshakes, st.TLSHandshakeFailures)
	}
}

// TestTLSHandshakeFailures: a peer that does not complete a handshake —
// it speaks plain frames, distrusts the certificate, says nothing, or
// floods — is closed and counted, and the handler never hears of it.
func TestTLSHandshakeFailures(t *testing.T) {
	pki := newPKI(t)
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{TLS: pki.serverConfig(), TLSHandshakeTimeout: 300 * time.Millisecond}, h)

	plain := dial(t, s.Addr())
	write(t, plain, frame([]byte("not TLS")))
	expectClosed(t, plain)

	distrust := tls.Client(dial(t, s.Addr()), &tls.Config{ServerName: "127.0.0.1"}) // system roots: no test CA
	if err := distrust.Handshake(); err == nil {
		t.Fatal("a client that does not trust the certificate completed the handshake")
	}

	silent := dial(t, s.Addr())
	start := time.Now()
	expectClosed(t, silent)
	if d := time.Since(start); d < 300*time.Millisecond || d > time.Second {
		t.Errorf("a silent peer closed after %v, want about the 300 ms timeout", d)
	}

	flood := dial(t, s.Addr())
	flood.SetWriteDeadline(time.Now().Add(waitLong))
	flood.Write(append([]byte{0x16, 0x03, 0x01, 0xff, 0xff}, make([]byte, 100<<10)...)) // a huge record header, then more
	expectClosed(t, flood)

	waitStats(t, s, "the failures counted", func(st Stats) bool { return st.ClosedHandshake+st.ClosedPeer >= 4 && st.Open == 0 })
	st := s.Stats()
	if st.TLSHandshakes != 0 || st.TLSHandshakeFailures < 3 {
		t.Errorf("handshakes %d, failures %d; want 0, at least 3", st.TLSHandshakes, st.TLSHandshakeFailures)
	}
	select {
	case o := <-h.opened:
		t.Errorf("the handler heard of connection %d", o.c.ID())
	default:
	}
}

// expectClosed reads until the server closes c, whatever arrives.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLong))
	var buf [4096]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the server did not close the connection")
			}
			return
		}
	}
}

// TestMutualTLS: with a client CA, a client without a certificate signed
// by it cannot connect; one with it can, and its certificate is in the
// connection's TLS state.
func TestMutualTLS(t *testing.T) {
	pki := newPKI(t)
	cfg := pki.serverConfig()
	cfg.ClientCAs = pki.Pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{TLS: cfg}, h)

	other := newPKI(t)
	for _, certs := range [][]tls.Certificate{nil, {other.Issue(t, "mallory")}} {
		c, err := tls.DialWithDialer(dialer(), "tcp", s.Addr().String(), &tls.Config{RootCAs: pki.Pool, Certificates: certs, ServerName: "127.0.0.1"})
		if err == nil {
			// TLS 1.3 reports the client certificate's refusal on the first read.
			c.SetReadDeadline(time.Now().Add(waitLong))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil {
			t.Fatalf("a client with certificates %v was served", len(certs))
		}
	}
	c := dialTLS(t, s.Addr(), pki, pki.Issue(t, "alice"))
	roundTrip(t, c, []byte("mutual"))
	st := h.nextOpened(t).c.TLS()
	if st == nil || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "alice" {
		t.Fatalf("peer certificates in the TLS state: %+v", st)
	}
}

// TestTLSSlowConsumerAndHalfClose: the bounds of plain connections hold
// over TLS: a client that never reads is closed as a slow consumer, and a
// client that half-closes (close_notify) gets every reply, then the close.
func TestTLSSlowConsumerAndHalfClose(t *testing.T) {
	pki := newPKI(t)
	h := newHandler(t, replyEcho)
	s := startServer(t, Config{TLS: pki.serverConfig(), MaxPending: 256 << 10}, h)

	dialTLS(t, s.Addr(), pki) // never reads
	slow := h.nextOpened(t).c
	payload := make([]byte, 32<<10)
	var err error
	for sent := 0; err == nil; sent++ {
		err = slow.Send(payload)
		if sent > 100_000 {
			t.Fatal("the queue never passed MaxPending")
		}
	}
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("Send: %v, want ErrSlowConsumer", err)
	}
	if err := h.reasonFor(t, slow); !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("OnClose: %v", err)
	}

	c := dialTLS(t, s.Addr(), pki)
	var want [][]byte
	for i := range 300 {
		want = append(want, tricky(i, i%200))
	}
	write(t, c, frames(want...))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for _, p := range want {
		c.SetReadDeadline(time.Now().Add(waitLong))
		got, err := readFrame(r)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("after close_notify: %s, %v", brief(got), err)
		}
	}
	expectClosed(t, c)
	waitStats(t, s, "no connection left", func(st Stats) bool { return st.Open == 0 && st.MemoryUsed == 0 })
}
