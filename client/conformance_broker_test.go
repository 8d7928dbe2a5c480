package client_test

// Cases of docs/CONFORMANCE.md for the Go client against the broker
// binary: built once for TestConformanceBroker (or $HYDROGEN_BROKER), each
// subtest running `broker serve` on 127.0.0.1 with the flags it needs and
// the tokens and certificates it makes.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/testnet"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// The tokens of tokenFile: alice may publish, bob may not.
const (
	aliceToken   = "alice-token-7f3c9a1e5b2d4c6f"
	bobToken     = "bob-token-0e1d2c3b4a596877"
	unknownToken = "nobody-token-0123456789abcdef"
)

// buildBroker returns $HYDROGEN_BROKER, or builds cmd/broker into dir
// (without the flags of this test binary, such as -race).
func buildBroker(t *testing.T, dir string) string {
	t.Helper()
	if bin := os.Getenv("HYDROGEN_BROKER"); bin != "" {
		return bin
	}
	bin := filepath.Join(dir, "broker")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/broker")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/broker: %v\n%s", err, out)
	}
	return bin
}

func tokenFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(f, []byte(aliceToken+" alice\n"+bobToken+" bob publish=false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// pki is a CA of one test, the server certificate it signed for
// localhost and 127.0.0.1 (as files for the broker), a client certificate
// it signed, and a client certificate another CA signed.
type pki struct {
	ca                  *testpki.CA
	certFile, keyFile   string
	caFile              string
	client, otherClient tls.Certificate
	otherCA             *testpki.CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{ca: testpki.NewCA(t, "conformance CA"), otherCA: testpki.NewCA(t, "another CA")}
	p.certFile, p.keyFile = testpki.Files(t, dir, "server", p.ca.Issue(t, "localhost", "localhost", "127.0.0.1"))
	p.caFile = p.ca.CAFile(t, dir, "ca")
	p.client = p.ca.Issue(t, "carol")
	p.otherClient = p.otherCA.Issue(t, "mallory")
	return p
}

func extraInt(t *testing.T, st *client.Stats, name string) int {
	t.Helper()
	var n int
	if err := json.Unmarshal(st.Extra[name], &n); err != nil {
		t.Fatalf("extra field %s = %s: %v", name, st.Extra[name], err)
	}
	return n
}

func recvText(t *testing.T, c *client.Client) string {
	t.Helper()
	p, err := c.Recv(ctx5(t))
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return string(p)
}

func dialOK(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx5(t), addr, opts...)
	if err != nil {
		t.Fatalf("Dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitNumClients(t *testing.T, c *client.Client, n uint64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		st, err := c.Stats(ctx5(t), 0.01)
		if err != nil {
			t.Fatal(err)
		}
		if st.NumClients == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker counts %d clients, want %d", st.NumClients, n)
		}
	}
}

// TestConformanceBroker runs the cases against the broker binary.
func TestConformanceBroker(t *testing.T) {
	bin := buildBroker(t, t.TempDir())
	start := func(t *testing.T, args ...string) *testnet.Broker { return testnet.StartBroker(t, bin, args...) }

	t.Run("C05_RefusedLocallyNothingSent", func(t *testing.T) {
		b := start(t, "--app", "echo")
		c := dialOK(t, b.Addr)
		if err := c.Send(make([]byte, wire.MaxPayload+1)); err == nil {
			t.Error("a payload of 65,536 bytes was accepted")
		}
		if err := c.Send([]byte{0x0d, 0x3f, 0x80, 0, 0}); !errors.Is(err, client.ErrTelemetryPayload) {
			t.Errorf("a telemetry-shaped payload: %v", err)
		}
		if err := c.Send([]byte("after")); err != nil {
			t.Fatal(err)
		}
		if got := recvText(t, c); got != "after" {
			t.Fatalf("echo %q, want the next frame sent", got)
		}
		st, err := c.Stats(ctx5(t), 0.01)
		if err != nil {
			t.Fatal(err)
		}
		if st.MsgRecv != 2 || st.BytesRecv != 5+5 {
			t.Errorf("the broker received %d frames, %d bytes; want 2 and 10 (\"after\" and the request)", st.MsgRecv, st.BytesRecv)
		}
	})

	t.Run("C07_ReplyAmongBroadcastsFromAnotherClient", func(t *testing.T) {
		b := start(t, "--app", "broadcast")
		a, other := dialOK(t, b.Addr), dialOK(t, b.Addr)
		waitNumClients(t, a, 2)
		var sent [][]byte
		for _, d := range notReplies {
			if !wire.IsTelemetryRequest([]byte(d)) { // which no client sends
				sent = append(sent, []byte(d))
			}
		}
		for i := range 300 {
			sent = append(sent, []byte(fmt.Sprintf("b-%d", i)))
		}
		type result struct {
			st  *client.Stats
			err error
		}
		res := make(chan result, 1)
		go func() {
			st, err := a.Stats(ctx5(t), 0.5)
			res <- result{st, err}
		}()
		time.Sleep(50 * time.Millisecond) // the request is out
		if err := other.SendBatch(sent...); err != nil {
			t.Fatal(err)
		}
		r := <-res
		if r.err != nil || r.st.NumClients != 2 {
			t.Fatalf("Stats among broadcasts: %+v, %v", r.st, r.err)
		}
		for i, want := range sent {
			if got := recvText(t, a); got != string(want) {
				t.Fatalf("broadcast %d: %q, want %q", i, got, want)
			}
		}
	})

	t.Run("C10_BadFrameClosesTheClient", func(t *testing.T) {
		b := start(t, "--app", "echo", "--max-payload", "100")
		c := dialOK(t, b.Addr)
		if err := c.Send(make([]byte, 200)); err != nil {
			t.Fatal(err)
		}
		_, err := c.Recv(ctx5(t))
		if !errors.Is(err, io.EOF) {
			t.Fatalf("Recv after the broker closed for a bad frame: %v; want io.EOF", err)
		}
		select {
		case <-c.Done():
		case <-time.After(waitLimit):
			t.Fatal("Done not closed")
		}
		if !errors.Is(c.Err(), io.EOF) {
			t.Errorf("Err %v", c.Err())
		}
		if _, err := c.Stats(ctx5(t), 0.01); !errors.Is(err, io.EOF) {
			t.Errorf("Stats after the close: %v", err)
		}
		if err := c.Send([]byte("x")); err == nil {
			t.Error("Send after the close succeeded")
		}
	})

	t.Run("C10_ShutdownReportedAfterItsFrames", func(t *testing.T) {
		b := start(t, "--app", "echo")
		c := dialOK(t, b.Addr)
		if err := c.Send([]byte("before")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Stats(ctx5(t), 0.01); err != nil { // its reply comes after the echo, which now waits
			t.Fatal(err)
		}
		if code := b.Stop(syscall.SIGTERM, waitLimit); code != 0 {
			t.Errorf("broker exited %d on SIGTERM", code)
		}
		if got := recvText(t, c); got != "before" {
			t.Errorf("first Recv %q, want the frame sent before the shutdown", got)
		}
		if _, err := c.Recv(ctx5(t)); !errors.Is(err, io.EOF) {
			t.Errorf("Recv after the shutdown: %v; want io.EOF", err)
		}
	})

	t.Run("C20_AcceptedWithIdentityRefusedWithReason", func(t *testing.T) {
		b := start(t, "--app", "echo", "--auth-token-file", tokenFile(t))
		c := dialOK(t, b.Addr, client.WithCredential([]byte(aliceToken)))
		if c.Identity() != "alice" {
			t.Errorf("Identity %q, want alice", c.Identity())
		}
		if err := c.Send([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if got := recvText(t, c); got != "hello" {
			t.Fatalf("echo %q: the answer must not be delivered as a message", got)
		}
		for _, tok := range []string{unknownToken, aliceToken[1:]} {
			_, err := client.Dial(ctx5(t), b.Addr, client.WithCredential([]byte(tok)))
			var ae *client.AuthError
			if !errors.As(err, &ae) || ae.Reason != "auth: credential refused" || !errors.Is(err, client.ErrAuthRefused) {
				t.Errorf("Dial with %q: %v; want an *AuthError with the broker's reason", tok, err)
			}
		}
		waitNumClients(t, c, 1) // both refused connections are closed
		st, err := c.Stats(ctx5(t), 0.01)
		if err != nil {
			t.Fatal(err)
		}
		if n := extraInt(t, st, "auth_failures"); n != 2 {
			t.Errorf("auth_failures %d, want 2", n)
		}
	})

	t.Run("C20_PipelinedFramesServedInOrder", func(t *testing.T) {
		b := start(t, "--app", "echo", "--auth-token-file", tokenFile(t))
		// A client that sends the credential itself need not wait for the
		// answer: what follows it in the same write is held until then.
		c := dialOK(t, b.Addr)
		if err := c.SendBatch([]byte(aliceToken), []byte("one"), []byte("two"), []byte("three")); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`{"auth":"ok","identity":"alice"}`, "one", "two", "three"} {
			if got := recvText(t, c); got != want {
				t.Fatalf("%q, want %q", got, want)
			}
		}
		r := dialOK(t, b.Addr)
		if err := r.SendBatch([]byte(unknownToken), []byte("one"), []byte("two")); err != nil {
			t.Fatal(err)
		}
		if got := recvText(t, r); got != `{"error":"auth: credential refused"}` {
			t.Fatalf("answer %q", got)
		}
		if p, err := r.Recv(ctx5(t)); !errors.Is(err, io.EOF) {
			t.Errorf("after the refusal: %q, %v; want io.EOF and nothing pipelined served", p, err)
		}
	})

	t.Run("C20_IdentityThatMayNotPublish", func(t *testing.T) {
		b := start(t, "--app", "broadcast", "--auth-token-file", tokenFile(t))
		alice := dialOK(t, b.Addr, client.WithCredential([]byte(aliceToken)))
		bob := dialOK(t, b.Addr, client.WithCredential([]byte(bobToken)))
		if bob.Identity() != "bob" {
			t.Errorf("Identity %q", bob.Identity())
		}
		waitNumClients(t, alice, 2)
		for i := range 2 {
			if err := bob.Send([]byte(fmt.Sprintf("from bob %d", i))); err != nil {
				t.Fatal(err)
			}
			if got := recvText(t, bob); got != `{"refused":"not allowed to publish"}` {
				t.Fatalf("bob's frame %d: %q", i, got)
			}
		}
		if err := alice.Send([]byte("from alice")); err != nil {
			t.Fatal(err)
		}
		if got := recvText(t, bob); got != "from alice" {
			t.Fatalf("bob received %q", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if p, err := alice.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("alice received %q, %v: bob's frames must reach no one", p, err)
		}
	})

	t.Run("C21_TLSByNameAndIP", func(t *testing.T) {
		p := newPKI(t)
		b := start(t, "--app", "echo", "--tls-cert", p.certFile, "--tls-key", p.keyFile)
		_, port, _ := net.SplitHostPort(b.Addr)
		for _, host := range []string{"localhost", "127.0.0.1"} {
			c := dialOK(t, net.JoinHostPort(host, port), client.WithTLS(&tls.Config{RootCAs: p.ca.Pool}))
			if err := c.Send([]byte("over tls to " + host)); err != nil {
				t.Fatal(err)
			}
			if got := recvText(t, c); got != "over tls to "+host {
				t.Errorf("echo %q", got)
			}
			if st, err := c.Stats(ctx5(t), 0.01); err != nil || st.NumClients != 1 {
				t.Errorf("telemetry over TLS: %+v, %v", st, err)
			}
			c.Close()
		}
		for _, cfg := range []*tls.Config{{RootCAs: p.otherCA.Pool}, {RootCAs: p.ca.Pool, ServerName: "not-localhost"}} {
			if c, err := client.Dial(ctx5(t), b.Addr, client.WithTLS(cfg)); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
				if c != nil {
					c.Close()
				}
				t.Errorf("Dial trusting the wrong CA or name: %v", err)
			}
		}
	})

	t.Run("C21_MutualTLS", func(t *testing.T) {
		p := newPKI(t)
		b := start(t, "--app", "echo", "--tls-cert", p.certFile, "--tls-key", p.keyFile, "--tls-client-ca", p.caFile)
		addr := net.JoinHostPort("localhost", strings.Split(b.Addr, ":")[1])
		withCert := func(cert ...tls.Certificate) client.Option {
			return client.WithTLS(&tls.Config{RootCAs: p.ca.Pool, Certificates: cert})
		}
		c := dialOK(t, addr, withCert(p.client))
		if err := c.Send([]byte("with a client certificate")); err != nil {
			t.Fatal(err)
		}
		if got := recvText(t, c); got != "with a client certificate" {
			t.Errorf("echo %q", got)
		}
		// Refused: at Dial, or (TLS 1.3 checks the client's certificate
		// after the client's side of the handshake) at the first read.
		for name, opt := range map[string]client.Option{"no certificate": withCert(), "another CA's": withCert(p.otherClient)} {
			r, err := client.Dial(ctx5(t), addr, opt)
			if err != nil {
				continue
			}
			r.Send([]byte("let me in"))
			if p, err := r.Recv(ctx5(t)); err == nil || errorsIsAny(err, context.DeadlineExceeded) {
				t.Errorf("%s: received %q, %v; want the connection refused", name, p, err)
			}
			r.Close()
		}
		st, err := c.Stats(ctx5(t), 0.01)
		if err != nil {
			t.Fatal(err)
		}
		if n := extraInt(t, st, "closed_handshake"); n != 2 {
			t.Errorf("closed_handshake %d, want 2", n)
		}
	})

	t.Run("C22_TLSAndCredential", func(t *testing.T) {
		p := newPKI(t)
		b := start(t, "--app", "echo", "--tls-cert", p.certFile, "--tls-key", p.keyFile, "--auth-token-file", tokenFile(t))
		addr := net.JoinHostPort("localhost", strings.Split(b.Addr, ":")[1])
		trust := client.WithTLS(&tls.Config{RootCAs: p.ca.Pool})
		c := dialOK(t, addr, trust, client.WithCredential([]byte(aliceToken)))
		if c.Identity() != "alice" {
			t.Errorf("Identity %q", c.Identity())
		}
		if err := c.Send([]byte("secret over tls")); err != nil {
			t.Fatal(err)
		}
		if got := recvText(t, c); got != "secret over tls" {
			t.Errorf("echo %q", got)
		}
		_, err := client.Dial(ctx5(t), addr, trust, client.WithCredential([]byte(unknownToken)))
		var ae *client.AuthError
		if !errors.As(err, &ae) || ae.Reason != "auth: credential refused" {
			t.Errorf("an unknown token over TLS: %v", err)
		}
		_, err = client.Dial(ctx5(t), addr, client.WithTLS(&tls.Config{RootCAs: p.otherCA.Pool}), client.WithCredential([]byte(aliceToken)))
		if err == nil || errors.As(err, &ae) || !strings.Contains(err.Error(), "TLS handshake") {
			t.Errorf("an untrusted broker: %v; want a TLS handshake error before any credential", err)
		}
	})
}
