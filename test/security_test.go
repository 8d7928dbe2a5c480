package test

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
)

const (
	secAlice = "alice-token-0123456789abcdef"
	secBob   = "bob-token-0123456789abcdef"
)

func secWrite(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// secDial dials with opts, failing the test on error.
func secDial(t testing.TB, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(ctxWithin(t, 10*time.Second), addr, opts...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func secEcho(t testing.TB, c *client.Client, payload string) {
	t.Helper()
	if err := c.Send([]byte(payload)); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Recv(ctxWithin(t, 10*time.Second)); err != nil || string(p) != payload {
		t.Fatalf("echo: %q, %v; want %q", p, err, payload)
	}
}

// TestSecurityTokens runs the binary with --auth-token-file: a client with
// a listed token is served under its name; a wrong token is refused with
// the reason; a client that sends no credential is closed at
// --auth-timeout; every refusal is counted and logged with the address;
// SIGHUP re-reads the file without dropping anyone; `broker stats` and
// `broker bench` authenticate with --credential-file.
func TestSecurityTokens(t *testing.T) {
	dir := t.TempDir()
	tokens := secWrite(t, dir, "tokens", "# who may connect\n"+secAlice+" alice\n")
	b := relStart(t, "--app", "echo", "--auth-token-file", tokens, "--auth-timeout", "1s")

	alice := secDial(t, b.Addr, client.WithCredential([]byte(secAlice)))
	if alice.Identity() != "alice" {
		t.Errorf("identity %q, want alice", alice.Identity())
	}
	secEcho(t, alice, "hello")

	_, err := client.Dial(ctxWithin(t, 10*time.Second), b.Addr, client.WithCredential([]byte("wrong-token-0123456789")))
	var ae *client.AuthError
	if !errors.As(err, &ae) || ae.Reason != "auth: credential refused" {
		t.Fatalf("a wrong token: %v, want the refusal", err)
	}
	silent := relDialRaw(t, b.Addr, 0)
	start := time.Now()
	if err := relExpectClosed(silent, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second || d > 2*time.Second {
		t.Errorf("a client without a credential closed after %v, want about 1 s", d)
	}
	m := b.metrics(t)
	if m["hydrogen_auth_failures_total"] != 1 || closedBy(m, "handshake") != 2 {
		t.Errorf("auth failures %v, closed for the handshake %v; want 1, 2", m["hydrogen_auth_failures_total"], closedBy(m, "handshake"))
	}
	if !strings.Contains(b.Log(), `"msg":"authentication refused","remote":"127.0.0.1:`) {
		t.Errorf("the refusal is not logged with the address:\n%s", b.Log())
	}

	// SIGHUP: bob in, alice out; alice's open connection stays.
	secWrite(t, dir, "tokens", secBob+" bob publish=false\n")
	if err := b.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the token file re-read", 10*time.Second, func() bool {
		return strings.Contains(b.Log(), `"msg":"SIGHUP: re-read","flag":"--auth-token-file"`)
	})
	secEcho(t, alice, "still here")
	secDial(t, b.Addr, client.WithCredential([]byte(secBob)))
	if _, err := client.Dial(ctxWithin(t, 10*time.Second), b.Addr, client.WithCredential([]byte(secAlice))); !errors.Is(err, client.ErrAuthRefused) {
		t.Errorf("alice after her token was removed: %v", err)
	}

	// The command-line clients.
	bobFile := secWrite(t, dir, "bob", secBob+"\n")
	if out, errOut, code := run(t, 30*time.Second, "stats", "--addr", b.Addr, "--credential-file", bobFile, "--seconds", "0.1", "--json"); code != 0 || !strings.Contains(out, `"up_time"`) {
		t.Errorf("broker stats --credential-file: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := run(t, 60*time.Second, "bench", "echo", "--addr", b.Addr, "--credential-file", bobFile, "--conns", "4", "--count", "2000", "--quiet"); code != 0 {
		t.Errorf("broker bench echo --credential-file: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := run(t, 30*time.Second, "stats", "--addr", b.Addr, "--seconds", "0.1"); code == 0 || !strings.Contains(errOut, "credential refused") {
		t.Errorf("broker stats without a credential: exit %d, %s", code, errOut)
	}
}

// TestSecurityJWT runs the binary with --auth-jwt-key holding an HMAC
// secret: a token signed with it is the identity of its subject, an
// expired one and a forged one are refused.
func TestSecurityJWT(t *testing.T) {
	secret := []byte("a-secret-of-at-least-32-bytes-0123456789")
	key := secWrite(t, t.TempDir(), "jwt.key", string(secret))
	b := relStart(t, "--app", "echo", "--auth-jwt-key", key)
	sign := func(secret []byte, claims jwt.MapClaims) []byte {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(s)
	}
	c := secDial(t, b.Addr, client.WithCredential(sign(secret, jwt.MapClaims{"sub": "carol", "exp": time.Now().Add(time.Hour).Unix()})))
	if c.Identity() != "carol" {
		t.Errorf("identity %q, want carol", c.Identity())
	}
	secEcho(t, c, "jwt")
	for _, tc := range []struct {
		name, want string
		token      []byte
	}{
		{"expired", "auth: token expired", sign(secret, jwt.MapClaims{"sub": "carol", "exp": time.Now().Add(-time.Hour).Unix()})},
		{"forged", "auth: credential refused", sign([]byte("not-the-secret-but-just-as-long-0123456"), jwt.MapClaims{"sub": "mallory"})},
	} {
		_, err := client.Dial(ctxWithin(t, 10*time.Second), b.Addr, client.WithCredential(tc.token))
		var ae *client.AuthError
		if !errors.As(err, &ae) || ae.Reason != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestSecurityTLS runs the binary with --tls-cert and --tls-key: the Go
// client, `broker stats` and `broker bench` speak TLS with the CA; a
// client that does not trust it, or speaks plain TCP, is not served;
// SIGHUP swaps the certificate for new connections without dropping the
// open ones; with --tls-client-ca a client needs a certificate of that CA.
func TestSecurityTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "hydrogen e2e CA")
	caFile := ca.CAFile(t, dir, "ca")
	certFile, keyFile := testpki.Files(t, dir, "server", ca.Issue(t, "first", "127.0.0.1"))
	b := relStart(t, "--app", "echo", "--tls-cert", certFile, "--tls-key", keyFile)
	trust := client.WithTLS(&tls.Config{RootCAs: ca.Pool})

	c := secDial(t, b.Addr, trust)
	secEcho(t, c, "over TLS")
	big := strings.Repeat("x", 65535)
	secEcho(t, c, big)

	if _, err := client.Dial(ctxWithin(t, 10*time.Second), b.Addr, client.WithTLS(nil)); err == nil {
		t.Error("a client that does not trust the certificate connected")
	}
	plain := relDialRaw(t, b.Addr, 0)
	plain.Write(relFrame([]byte("plain")))
	if err := relExpectClosedLenient(plain, 10*time.Second); err != nil {
		t.Errorf("plain TCP to the TLS port: %v", err)
	}
	if out, errOut, code := run(t, 30*time.Second, "stats", "--addr", b.Addr, "--tls-ca", caFile, "--seconds", "0.1", "--json"); code != 0 || !strings.Contains(out, `"up_time"`) {
		t.Errorf("broker stats --tls-ca: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := run(t, 60*time.Second, "bench", "echo", "--addr", b.Addr, "--tls-ca", caFile, "--conns", "4", "--count", "2000", "--quiet"); code != 0 {
		t.Errorf("broker bench echo --tls-ca: exit %d\n%s%s", code, out, errOut)
	}

	// A new certificate on SIGHUP.
	testpki.Files(t, dir, "server", ca.Issue(t, "second", "127.0.0.1"))
	if err := b.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the certificate re-read", 10*time.Second, func() bool {
		return strings.Contains(b.Log(), `"msg":"SIGHUP: re-read","flag":"--tls-cert"`)
	})
	secEcho(t, c, "the open connection stays")
	conn, err := tls.Dial("tcp", b.Addr, &tls.Config{RootCAs: ca.Pool})
	if err != nil {
		t.Fatal(err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second" {
		t.Errorf("after SIGHUP the broker serves %q, want the new certificate", cn)
	}
	conn.Close()
	if m := b.metrics(t); m["hydrogen_tls_handshakes_total"] < 4 || m["hydrogen_tls_handshake_failures_total"] < 2 {
		t.Errorf("handshakes %v, failures %v", m["hydrogen_tls_handshakes_total"], m["hydrogen_tls_handshake_failures_total"])
	}
}

// TestSecurityMutualTLS: with --tls-client-ca a client without a
// certificate of that CA is refused; one with it is served.
func TestSecurityMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "hydrogen e2e CA")
	certFile, keyFile := testpki.Files(t, dir, "server", ca.Issue(t, "broker", "127.0.0.1"))
	b := relStart(t, "--app", "echo", "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", ca.CAFile(t, dir, "ca"))
	for name, certs := range map[string][]tls.Certificate{
		"no certificate": nil,
		"another CA's":   {testpki.NewCA(t, "other").Issue(t, "mallory")},
	} {
		c, err := client.Dial(ctxWithin(t, 10*time.Second), b.Addr, client.WithTLS(&tls.Config{RootCAs: ca.Pool, Certificates: certs}))
		if err == nil {
			// TLS 1.3 tells a client its certificate was refused on its first read.
			c.Send([]byte("x"))
			_, err = c.Recv(ctxWithin(t, 10*time.Second))
			c.Close()
		}
		if err == nil {
			t.Errorf("a client with %s was served", name)
		}
	}
	c := secDial(t, b.Addr, client.WithTLS(&tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Issue(t, "alice")}}))
	secEcho(t, c, "mutual")
}

// TestSecurityWarning: a client port open beyond this machine with
// neither authentication nor TLS is warned about at start; one with
// either is not.
func TestSecurityWarning(t *testing.T) {
	open := startBroker(t, "--addr", "0.0.0.0:0")
	tokens := secWrite(t, t.TempDir(), "tokens", secAlice+" alice\n")
	guarded := startBroker(t, "--addr", "0.0.0.0:0", "--auth-token-file", tokens)
	const warning = "open beyond this machine with neither authentication nor TLS"
	if !strings.Contains(open.Log(), warning) {
		t.Errorf("no warning for an open port:\n%s", open.Log())
	}
	if strings.Contains(guarded.Log(), warning) {
		t.Errorf("a warning for a port with authentication:\n%s", guarded.Log())
	}
}

// secTLS and secCred are client options of the security tests.
func secTLS(ca *testpki.CA) client.Option { return client.WithTLS(&tls.Config{RootCAs: ca.Pool}) }
func secCred(token string) client.Option  { return client.WithCredential([]byte(token)) }
