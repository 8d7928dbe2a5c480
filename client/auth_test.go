package client_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// authServer is a test-owned server on 127.0.0.1 speaking the
// authentication contract: it reads the first frame and answers with
// answer (nil: close without answering), then sends after, then echoes.
func authServer(t *testing.T, ln net.Listener, answer []byte, after ...[]byte) (got chan []byte) {
	t.Helper()
	got = make(chan []byte, 1)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		cred, err := readOne(r)
		if err != nil {
			return
		}
		got <- cred
		if answer == nil {
			return
		}
		var out []byte
		for _, p := range append([][]byte{answer}, after...) {
			out, _ = wire.AppendFrame(out, p)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
		for {
			p, err := readOne(r)
			if err != nil {
				return
			}
			f, _ := wire.Encode(p)
			if _, err := c.Write(f); err != nil {
				return
			}
		}
	}()
	return got
}

// readOne reads one frame with a decoder of its own.
func readOne(r *bufio.Reader) ([]byte, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	p := make([]byte, int(hdr[1])<<8|int(hdr[2])+1)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	return p[:len(p)-1], nil
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCredentialAccepted: Dial sends the credential first, returns once
// the broker accepts it, with the identity; frames that came right behind
// the answer are received first, in order.
func TestCredentialAccepted(t *testing.T) {
	ln := listen(t)
	got := authServer(t, ln, []byte(`{"auth":"ok","identity":"alice"}`), []byte("early 1"), []byte("early 2"))
	c, err := client.Dial(ctx5(t), ln.Addr().String(), client.WithCredential([]byte("secret-token")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if cred := <-got; string(cred) != "secret-token" {
		t.Errorf("the server got %q as the first frame", cred)
	}
	if c.Identity() != "alice" {
		t.Errorf("Identity %q", c.Identity())
	}
	for _, want := range []string{"early 1", "early 2"} {
		p, err := c.Recv(ctx5(t))
		if err != nil || string(p) != want {
			t.Fatalf("Recv %q, %v; want %q", p, err, want)
		}
	}
	if err := c.Send([]byte("echo")); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Recv(ctx5(t)); err != nil || string(p) != "echo" {
		t.Fatalf("echo: %q, %v", p, err)
	}
}

// TestCredentialRefusals: a refusal fails Dial with its reason; a close
// without an answer, an answer of another shape and no answer in time
// fail it with a clear error.
func TestCredentialRefusals(t *testing.T) {
	cases := []struct {
		name   string
		answer []byte
		hang   bool
		want   string
	}{
		{"refused", []byte(`{"error":"auth: credential refused"}`), false, "authentication refused: auth: credential refused"},
		{"closed", nil, false, "closed the connection without answering"},
		{"another shape", []byte(`hello`), false, "not the authentication answer"},
		{"not ok", []byte(`{"auth":"maybe"}`), false, "not the authentication answer"},
	}
	for _, c := range cases {
		ln := listen(t)
		authServer(t, ln, c.answer)
		_, err := client.Dial(ctx5(t), ln.Addr().String(), client.WithCredential([]byte("x")))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
		if c.name == "refused" {
			var ae *client.AuthError
			if !errors.As(err, &ae) || ae.Reason != "auth: credential refused" || !errors.Is(err, client.ErrAuthRefused) {
				t.Errorf("refused: %v is not an *AuthError with the reason", err)
			}
		}
	}
	// No answer in time: the dial timeout bounds the wait.
	ln := listen(t)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c) // reads, never answers
		}
	}()
	start := time.Now()
	_, err := client.Dial(context.Background(), ln.Addr().String(), client.WithCredential([]byte("x")), client.WithDialTimeout(200*time.Millisecond))
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("no answer: %v after %v", err, time.Since(start))
	}
}

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca := testpki.NewCA(t, "client test CA")
	return ca.Issue(t, "127.0.0.1", "127.0.0.1"), ca.Pool
}

// TestTLSWithCredential: WithTLS speaks TLS (verifying the server), and a
// credential then travels inside it; an untrusted server fails Dial.
func TestTLSWithCredential(t *testing.T) {
	cert, pool := selfSigned(t)
	ln := tls.NewListener(listen(t), &tls.Config{Certificates: []tls.Certificate{cert}})
	authServer(t, ln, []byte(`{"auth":"ok","identity":"tls-alice"}`))
	c, err := client.Dial(ctx5(t), ln.Addr().String(), client.WithTLS(&tls.Config{RootCAs: pool}), client.WithCredential([]byte("t")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send([]byte("over tls")); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Recv(ctx5(t)); err != nil || string(p) != "over tls" {
		t.Fatalf("echo: %q, %v", p, err)
	}
	ln2 := tls.NewListener(listen(t), &tls.Config{Certificates: []tls.Certificate{cert}})
	authServer(t, ln2, []byte(`{"auth":"ok","identity":"x"}`))
	if _, err := client.Dial(ctx5(t), ln2.Addr().String(), client.WithTLS(nil)); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Errorf("an untrusted server: %v", err)
	}
}
