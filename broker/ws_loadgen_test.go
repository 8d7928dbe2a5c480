package broker_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
	"github.com/hydrogen-mq/hydrogen/internal/testpki"
)

// TestLoadgenWebSocket: the load generator's WebSocket connections
// against the broker's WebSocket listener, as the benchmarks use them:
// echo, broadcast, over TLS (wss), with a credential, and many
// connections opened and verified. loadgen checks every reply (its
// connection, its order, its bytes).
func TestLoadgenWebSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ws := loadgen.Connect{WebSocket: true}
	wsAddr := func(b *broker.Broker) string { return b.WebSocketAddr().String() }
	echo := func(t *testing.T, addr string, cn loadgen.Connect, payload int) {
		t.Helper()
		res, err := loadgen.Echo(ctx, loadgen.EchoConfig{Addr: addr, Connect: cn, Conns: 4, InFlight: 16, PayloadSize: payload, Count: 4_000})
		if err != nil || res.Errors != 0 || res.Messages != 4_000 {
			t.Fatalf("Echo: %v; %v", err, res)
		}
	}

	t.Run("echo", func(t *testing.T) {
		b := start(t, broker.Config{WebSocketAddr: "127.0.0.1:0"}, broker.Echo(), true, broker.OnEventLoop(), broker.SpawnOnFirstFrame())
		echo(t, wsAddr(b), ws, 64)
		echo(t, wsAddr(b), ws, 4096)
		set, err := loadgen.Open(ctx, loadgen.ConnsConfig{Addr: wsAddr(b), N: 200, Connect: ws})
		if err != nil {
			t.Fatal(err)
		}
		if r := set.Result(); r.Verified != 200 || r.Held != 200 {
			t.Fatalf("Open: %v", r)
		}
		if err := set.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("broadcast", func(t *testing.T) {
		b := start(t, broker.Config{WebSocketAddr: "127.0.0.1:0"}, broker.Broadcast(), true, broker.OnEventLoop(), broker.SpawnOnFirstFrame())
		res, err := loadgen.Fanout(ctx, loadgen.FanoutConfig{Addr: wsAddr(b), Connect: ws, Publishers: 2, Subscribers: 5, Count: 4_000})
		if err != nil || res.Errors != 0 || res.Gaps != 0 || res.Lost != 0 || res.Deliveries != res.Sent*5 {
			t.Fatalf("Fanout: %v; %v", err, res)
		}
	})

	t.Run("wss", func(t *testing.T) {
		ca := testpki.NewCA(t, "test CA")
		cert := ca.Issue(t, "127.0.0.1", "127.0.0.1")
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		b := start(t, broker.Config{WebSocketAddr: "127.0.0.1:0", TLS: cfg}, broker.Echo(), true, broker.OnEventLoop())
		echo(t, wsAddr(b), loadgen.Connect{WebSocket: true, TLS: &tls.Config{RootCAs: ca.Pool}}, 64)
	})

	t.Run("credential", func(t *testing.T) {
		const token = "0123456789abcdef0123456789abcdef"
		b := start(t, broker.Config{WebSocketAddr: "127.0.0.1:0", Authenticator: tokens(t, token+" alice\n")}, broker.Echo(), true, broker.OnEventLoop())
		echo(t, wsAddr(b), loadgen.Connect{WebSocket: true, Credential: []byte(token)}, 64)
		_, err := loadgen.Echo(ctx, loadgen.EchoConfig{Addr: wsAddr(b), Connect: loadgen.Connect{WebSocket: true, Credential: []byte("not the token at all")}, Count: 1})
		if err == nil || !strings.Contains(err.Error(), "credential refused") {
			t.Fatalf("a wrong credential: %v; want it refused", err)
		}
	})
}
