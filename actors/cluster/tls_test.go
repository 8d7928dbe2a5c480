package cluster

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/testpki"
)

func TestLoadTLSErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	caFile := ca.CAFile(t, dir, "ca")
	other := testpki.NewCA(t, "other")
	cert, key := ca.NodeFiles(t, dir, "n1", "127.0.0.1")
	_, key2 := ca.NodeFiles(t, dir, "n2", "127.0.0.1")
	stranger, strangerKey := other.NodeFiles(t, dir, "stranger", "127.0.0.1")
	old, oldKey := ca.ExpiredFiles(t, dir, "old", "127.0.0.1")
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("not pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	if _, err := LoadTLS(cert, key, caFile); err != nil {
		t.Fatalf("good files: %v", err)
	}
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want          error
	}{
		{"no cert file", missing, key, caFile, ErrTLSCert},
		{"no key file", cert, missing, caFile, ErrTLSKey},
		{"no CA file", cert, key, missing, ErrTLSCA},
		{"cert is junk", junk, key, caFile, ErrTLSCert},
		{"cert is a key", key, key, caFile, ErrTLSCert},
		{"another cert's key", cert, key2, caFile, ErrTLSKey},
		{"key is junk", cert, junk, caFile, ErrTLSKey},
		{"CA is junk", cert, key, junk, ErrTLSCA},
		{"cert of another CA", stranger, strangerKey, caFile, ErrTLSCert},
		{"expired cert", old, oldKey, caFile, ErrTLSCert},
	} {
		_, err := LoadTLS(tc.cert, tc.key, tc.ca)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

// handshake runs a TLS handshake between a node dialling with c and a
// node accepting with s, over loopback TCP, and returns the serial number
// of the client certificate the server saw.
func handshake(t *testing.T, c, s *TLS) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cerr := make(chan error, 1)
	go func() {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			cerr <- err
			return
		}
		cc := c.clientConfig()
		cc.ServerName = "127.0.0.1"
		tc := tls.Client(conn, cc)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3: the server checks the client's certificate after
			// the client is done; its verdict comes with the first read.
			tc.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = tc.Read(make([]byte, 1))
			if err == io.EOF {
				err = nil
			}
		}
		tc.Close()
		cerr <- err
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ts := tls.Server(conn, s.serverConfig())
	err = ts.Handshake()
	var serial string
	if err == nil {
		serial = ts.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	ts.Close()
	if e := <-cerr; err == nil {
		err = e
	}
	return serial, err
}

// TestTLSReload: after Reload, new handshakes present the new
// certificate; files that do not fit leave the last good ones in use.
func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	caFile := ca.CAFile(t, dir, "ca")
	other := testpki.NewCA(t, "other")
	otherFile := other.CAFile(t, dir, "other")
	certFile, keyFile := ca.NodeFiles(t, dir, "node", "127.0.0.1")
	server, err := LoadTLS(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	client, err := LoadTLS(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	first, err := handshake(t, client, server)
	if err != nil {
		t.Fatal(err)
	}
	if first != client.Certificate().SerialNumber.String() {
		t.Fatalf("server saw serial %s", first)
	}

	// A new certificate under the same names.
	c2, k2 := ca.NodeFiles(t, dir, "node2", "127.0.0.1")
	copyFile(t, c2, certFile)
	copyFile(t, k2, keyFile)
	if err := client.Reload(); err != nil {
		t.Fatal(err)
	}
	second, err := handshake(t, client, server)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second != client.Certificate().SerialNumber.String() {
		t.Fatalf("after Reload the server saw serial %s (first %s)", second, first)
	}

	// A certificate of another CA does not load; the last good one stays.
	c3, k3 := other.NodeFiles(t, dir, "node3", "127.0.0.1")
	copyFile(t, c3, certFile)
	copyFile(t, k3, keyFile)
	if err := client.Reload(); !errors.Is(err, ErrTLSCert) {
		t.Fatalf("Reload with a certificate of another CA: %v", err)
	}
	if third, err := handshake(t, client, server); err != nil || third != second {
		t.Fatalf("after a failed Reload: serial %s, %v; want %s", third, err, second)
	}

	// A node of another CA, or one that names another host, is refused.
	strangerCert, strangerKey := other.NodeFiles(t, dir, "stranger", "127.0.0.1")
	stranger, err := LoadTLS(strangerCert, strangerKey, otherFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, stranger, server); err == nil {
		t.Error("a client certificate of another CA was accepted")
	}
	if _, err := handshake(t, client, stranger); err == nil {
		t.Error("a server certificate of another CA was accepted")
	}
	elsewhereCert, elsewhereKey := ca.NodeFiles(t, dir, "elsewhere", "10.9.9.9")
	elsewhere, err := LoadTLS(elsewhereCert, elsewhereKey, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, client, elsewhere); err == nil {
		t.Error("a server certificate for another host was accepted")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
