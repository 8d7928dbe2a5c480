package client_test

// Cases of docs/CONFORMANCE.md that the Go client's other tests do not
// cover, against servers these tests own on 127.0.0.1 (C1, C16) or a
// broker that scripts/test-clients runs (C19). The cases against the
// broker binary are in conformance_broker_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// rawServer accepts one connection on 127.0.0.1 and runs serve on it; the
// listener and the connection are closed, and serve waited for, when the
// test ends.
func rawServer(t *testing.T, ln net.Listener, serve func(net.Conn)) string {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	return ln.Addr().String()
}

func frameOf(t *testing.T, payloads ...[]byte) []byte {
	t.Helper()
	var out []byte
	for _, p := range payloads {
		var err error
		if out, err = wire.AppendFrame(out, p); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestConformanceC01SplitAtEveryByteOverASocket: a server writes its
// reply one byte at a time, then cut at every point, and the client
// receives every frame intact.
func TestConformanceC01SplitAtEveryByteOverASocket(t *testing.T) {
	payloads := [][]byte{{}, {0x01, 0x17, 0x0d, 0x00, 0x17}, bytes.Repeat([]byte{0x0d}, 300), []byte(`{"up_time":1}`)}
	stream := frameOf(t, payloads...)
	addr := rawServer(t, listen(t), func(c net.Conn) {
		if _, err := readOne(bufio.NewReader(c)); err != nil {
			return
		}
		for i := range stream { // one byte at a time
			if _, err := c.Write(stream[i : i+1]); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		for k := 1; k < len(stream); k++ { // and cut at every point
			if _, err := c.Write(stream[:k]); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
			if _, err := c.Write(stream[k:]); err != nil {
				return
			}
		}
		done, _ := wire.Encode([]byte("done"))
		c.Write(done)
	})
	c, err := client.Dial(ctx5(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send([]byte("go")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for r := 0; r < len(stream); r++ {
		for i, want := range payloads {
			got, err := c.Recv(ctx)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("round %d, frame %d: %q, %v; want %q", r, i, got, err, want)
			}
		}
	}
	if got, err := c.Recv(ctx); err != nil || string(got) != "done" {
		t.Fatalf("last frame %q, %v", got, err)
	}
}

// TestConformanceC16TLSVerification: echo through a TLS server whose
// certificate names localhost and 127.0.0.1, trusted through its CA, by
// host name (the server name taken from the address) and by IP with a
// server name; an untrusted CA, the system roots and a name the
// certificate lacks all fail Dial.
func TestConformanceC16TLSVerification(t *testing.T) {
	ca := testpki.NewCA(t, "C16 CA")
	cert := ca.Issue(t, "localhost", "localhost", "127.0.0.1")
	echo := func(c net.Conn) {
		r := bufio.NewReader(c)
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
	}
	tlsListen := func() string {
		return rawServer(t, tls.NewListener(listen(t), &tls.Config{Certificates: []tls.Certificate{cert}}), echo)
	}
	for _, tc := range []struct {
		name, host string
		cfg        *tls.Config
	}{
		{"by host name", "localhost", &tls.Config{RootCAs: ca.Pool}},
		{"by IP with a server name", "127.0.0.1", &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}},
		{"by IP", "127.0.0.1", &tls.Config{RootCAs: ca.Pool}},
	} {
		_, port, _ := net.SplitHostPort(tlsListen())
		c, err := client.Dial(ctx5(t), net.JoinHostPort(tc.host, port), client.WithTLS(tc.cfg))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := c.Send([]byte(tc.name)); err != nil {
			t.Fatal(err)
		}
		if p, err := c.Recv(ctx5(t)); err != nil || string(p) != tc.name {
			t.Errorf("%s: echo %q, %v", tc.name, p, err)
		}
		c.Close()
	}
	other := testpki.NewCA(t, "another CA")
	for _, tc := range []struct {
		name, host string
		cfg        *tls.Config
		want       string
	}{
		{"an untrusted CA", "localhost", &tls.Config{RootCAs: other.Pool}, "unknown authority"},
		{"the system roots", "localhost", nil, "unknown authority"},
		{"a name the certificate lacks", "127.0.0.1", &tls.Config{RootCAs: ca.Pool, ServerName: "not-localhost"}, "not-localhost"},
	} {
		_, port, _ := net.SplitHostPort(tlsListen())
		c, err := client.Dial(ctx5(t), net.JoinHostPort(tc.host, port), client.WithTLS(tc.cfg))
		if err == nil {
			c.Close()
			t.Errorf("%s: Dial succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), "TLS handshake") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want a TLS handshake error with %q", tc.name, err, tc.want)
		}
	}
}

// TestConformanceC19CrossClient is the Go side of the cross-client check
// that scripts/test-clients runs: with HYDROGEN_C19_ADDR (the broker),
// HYDROGEN_C19_NAME, HYDROGEN_C19_PEERS (comma-separated) and, when the
// broker authenticates, HYDROGEN_C19_TOKEN (which the broker must know as
// NAME), it waits until every peer is
// connected, broadcasts "hello from NAME" and expects "hello from PEER"
// from each peer. Without HYDROGEN_C19_ADDR it is skipped.
func TestConformanceC19CrossClient(t *testing.T) {
	addr := os.Getenv("HYDROGEN_C19_ADDR")
	if addr == "" {
		t.Skip("HYDROGEN_C19_ADDR not set: scripts/test-clients runs this side of C19")
	}
	name, peers := os.Getenv("HYDROGEN_C19_NAME"), strings.Split(os.Getenv("HYDROGEN_C19_PEERS"), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var opts []client.Option
	token := os.Getenv("HYDROGEN_C19_TOKEN")
	if token != "" {
		opts = append(opts, client.WithCredential([]byte(token)))
	}
	c, err := client.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if token != "" && c.Identity() != name {
		t.Fatalf("%s: the broker knows this client as %q", name, c.Identity())
	}
	for {
		st, err := c.Stats(ctx, 0.05)
		if err != nil {
			t.Fatalf("%s: the peers did not all connect: %v", name, err)
		}
		if st.NumClients >= uint64(len(peers)+1) {
			break
		}
	}
	if err := c.Send([]byte("hello from " + name)); err != nil {
		t.Fatal(err)
	}
	want := make(map[string]bool)
	for _, p := range peers {
		want["hello from "+p] = true
	}
	for len(want) > 0 {
		p, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("%s: still waiting for %v: %v", name, want, err)
		}
		if !want[string(p)] {
			t.Fatalf("%s: unexpected %q", name, p)
		}
		delete(want, string(p))
	}
	fmt.Printf("%s: heard from %s\n", name, strings.Join(peers, ", "))
}

// errorsIsAny reports whether err is any of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
