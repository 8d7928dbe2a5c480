//go:build cgo

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hydrogen-mq/hydrogen/internal/testnet"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
)

// testPingpongSecure runs the C example against a broker that requires
// TLS and a token: with the CA and the token in its environment it works
// as over plain TCP; with a wrong token, or without trusting the CA, it
// fails with HY_EAUTH and the reason.
func testPingpongSecure(t *testing.T, dir, broker string) {
	ca := testpki.NewCA(t, "libhydrogen test CA")
	certFile, keyFile := testpki.Files(t, t.TempDir(), "server", ca.Issue(t, "127.0.0.1", "127.0.0.1"))
	caFile := ca.CAFile(t, t.TempDir(), "ca")
	tokens := filepath.Join(t.TempDir(), "tokens")
	const token = "c-client-token-0123456789"
	if err := os.WriteFile(tokens, []byte(token+" c-client\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := testnet.StartBroker(t, broker, "--app", "echo", "--tls-cert", certFile, "--tls-key", keyFile, "--auth-token-file", tokens)
	prog := filepath.Join(dir, "pingpong")

	stdout, stderr, code := runProgramEnv(t, []string{"HYDROGEN_TLS_CA=" + caFile, "HYDROGEN_CREDENTIAL=" + token}, prog, b.Addr)
	if code != 0 {
		t.Fatalf("pingpong over TLS with a token exited %d\nstdout:\n%s\nstderr:\n%s\nbroker log:\n%s", code, stdout, stderr, b.Log())
	}
	checkPingpong(t, stdout, 3) // the credential, the ping and the telemetry request

	for _, c := range []struct {
		name string
		env  []string
		want string
	}{
		{"a wrong token", []string{"HYDROGEN_TLS_CA=" + caFile, "HYDROGEN_CREDENTIAL=not-the-token-0123456789"}, "error -10: hy_connect_secure: authentication refused: auth: credential refused"},
		{"an untrusted certificate", []string{"HYDROGEN_TLS_CA=" + testpki.NewCA(t, "another CA").CAFile(t, t.TempDir(), "other"), "HYDROGEN_CREDENTIAL=" + token}, "error -10: hy_connect_secure: TLS handshake"},
	} {
		stdout, stderr, code := runProgramEnv(t, c.env, prog, b.Addr)
		if code != 1 || stdout != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("pingpong with %s: exit %d, stdout %q, stderr %q; want 1 and %q", c.name, code, stdout, stderr, c.want)
		}
	}
	// Plain TCP to the TLS port: connected, then closed by the broker.
	if _, stderr, code := runProgramEnv(t, nil, prog, b.Addr); code != 1 || !strings.Contains(stderr, "error -3") {
		t.Errorf("pingpong over plain TCP: exit %d, stderr %q; want 1 and HY_ECLOSED", code, stderr)
	}
}
