package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
	"github.com/hydrogen-mq/hydrogen/wire"
)

func dial(t testing.TB, addr string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t testing.TB, c *client.Client) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return p
}

func TestEcho(t *testing.T) {
	b := startBroker(t, "--app", "echo")
	c := dial(t, b.Addr)
	for _, p := range [][]byte{{}, []byte("ping"), bytes.Repeat([]byte{wire.Start, wire.End, wire.ActionTelemetry, 0}, 1000), make([]byte, wire.MaxPayload)} {
		if err := c.Send(p); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, c); !bytes.Equal(got, p) {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(p), len(got))
		}
	}
}

func TestBroadcastToMany(t *testing.T) {
	b := startBroker(t) // broadcast is the default application
	const n = 50
	cs := make([]*client.Client, n)
	for i := range cs {
		cs[i] = dial(t, b.Addr)
	}
	// Every stream is registered once one of them counts n clients.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "all clients registered", 10*time.Second, func() bool {
		st, err := cs[0].Stats(ctx, 0.01)
		return err == nil && st.NumClients == n
	})
	if err := cs[0].Send([]byte("hello all")); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs[1:] {
		if got := string(recv(t, c)); got != "hello all" {
			t.Fatalf("client %d got %q", i+1, got)
		}
	}
	// The publisher is not sent its own frame: the next thing it sees is
	// another client's broadcast.
	cs[1].Send([]byte("second"))
	if got := string(recv(t, cs[0])); got != "second" {
		t.Fatalf("publisher got %q, want the next broadcast", got)
	}
}

func TestStatsSchemaAndSpan(t *testing.T) {
	b := startBroker(t, "--app", "echo")
	c := dial(t, b.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const span = 0.5
	start := time.Now()
	st, err := c.Stats(ctx, span)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Duration(span*float64(time.Second)) {
		t.Fatalf("reply after %v, before its %vs span", el, span)
	}
	if st.NumClients != 1 || st.MsgRecv != 1 || st.BytesRecv != wire.TelemetryRequestSize {
		t.Errorf("num_clients %d msg_recv %d bytes_recv %d; want 1, 1, 5", st.NumClients, st.MsgRecv, st.BytesRecv)
	}
	if st.Resources.RAM.BytesAvailable != memTotal(t) {
		t.Errorf("bytes_available %d, want MemTotal %d", st.Resources.RAM.BytesAvailable, memTotal(t))
	}
	if u := st.Resources.CPUOverall; u < 0 || u > 1 {
		t.Errorf("cpu_overall %v", u)
	}
	cores := cpuLines(t)
	if len(st.Resources.CPUPerCore) != len(cores) {
		t.Fatalf("%d cpu_per_core entries, /proc/stat has %d", len(st.Resources.CPUPerCore), len(cores))
	}
	for i, cu := range st.Resources.CPUPerCore {
		if cu.Core != cores[i] || cu.Using < 0 || cu.Using > 1 {
			t.Errorf("core entry %d: %+v", i, cu)
		}
	}
	// Integers stay integers in the raw JSON.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(st.Raw, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"up_time", "bytes_recv", "bytes_sent", "msg_recv", "msg_sent", "num_clients"} {
		if bytes.ContainsAny(raw[k], ".eE") {
			t.Errorf("%s = %s is not an integer", k, raw[k])
		}
	}
}

func TestBadSpansAnsweredWithErrors(t *testing.T) {
	b := startBroker(t, "--app", "echo", "--max-span", "2s")
	c := dial(t, b.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range []float32{float32(math.NaN()), float32(math.Inf(1)), 0, -1, 3} {
		_, err := c.Stats(ctx, s)
		var be *client.BrokerError
		if !errors.As(err, &be) || be.Reason == "" {
			t.Fatalf("span %v: %v, want a broker error", s, err)
		}
	}
	c.Send([]byte("still here"))
	if got := string(recv(t, c)); got != "still here" {
		t.Fatalf("got %q", got)
	}
}

func TestBadInputClosesOnlyTheOffender(t *testing.T) {
	b := startBroker(t, "--app", "echo", "--max-payload", "100")
	good := dial(t, b.Addr)
	for name, raw := range map[string][]byte{
		"bad start": {0x02, 0, 1, 'x', wire.End},
		"bad end":   {wire.Start, 0, 1, 'x', 0x18},
		"too long":  {wire.Start, 0, 101},
	} {
		nc, err := net.Dial("tcp", b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(raw)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(nc); err != nil {
			t.Fatalf("%s: the broker did not close the connection: %v", name, err)
		}
		nc.Close()
		good.Send([]byte(name))
		if got := string(recv(t, good)); got != name {
			t.Fatalf("%s: the good client got %q", name, got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := good.Stats(ctx, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(st.Extra["protocol_errors"]); got != "3" {
		t.Fatalf("protocol_errors = %s, want 3", got)
	}
}

func TestSIGTERMDeliversQueuedFrames(t *testing.T) {
	b := startBroker(t, "--max-pending", "64MiB", "--drain-timeout", "20s")
	sub, err := net.Dial("tcp", b.Addr) // reads only after the signal
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub := dial(t, b.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "both clients registered", 10*time.Second, func() bool {
		st, err := pub.Stats(ctx, 0.01)
		return err == nil && st.NumClients == 2
	})
	// 16 MiB: more than the kernel's socket buffers on both ends hold, so
	// most of it is still in the broker's queue when the signal comes.
	const frames, size = 512, 32 << 10
	for i := range frames {
		p := bytes.Repeat([]byte{byte(i)}, size)
		if err := pub.Send(p); err != nil {
			t.Fatal(err)
		}
	}
	// Give the broker the frames before the signal: the publisher's
	// telemetry reply comes after every frame it sent was read.
	if _, err := pub.Stats(ctx, 0.01); err != nil {
		t.Fatal(err)
	}
	exit := make(chan int, 1)
	go func() { exit <- b.Stop(syscall.SIGTERM, 30*time.Second) }()
	r := bufio.NewReaderSize(sub, 64<<10)
	d := wire.NewDecoder(wire.MaxPayload)
	buf := make([]byte, 64<<10)
	got := 0
	sub.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got < frames {
		n, err := r.Read(buf)
		if err != nil {
			t.Fatalf("subscriber got %d of %d frames before %v", got, frames, err)
		}
		d.Feed(buf[:n])
		for {
			p, ok, err := d.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if len(p) != size || p[0] != byte(got) {
				t.Fatalf("frame %d wrong: %d bytes starting %d", got, len(p), p[0])
			}
			got++
		}
	}
	if _, err := r.Read(buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
	if code := <-exit; code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, b.Log())
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	b := startBroker(t, "--max-pending", "64MiB", "--drain-timeout", "1m")
	stuck, err := net.Dial("tcp", b.Addr) // never reads: the drain cannot finish
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	pub := dial(t, b.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "both clients registered", 10*time.Second, func() bool {
		st, err := pub.Stats(ctx, 0.01)
		return err == nil && st.NumClients == 2
	})
	for range 512 {
		pub.Send(make([]byte, 32<<10))
	}
	if _, err := pub.Stats(ctx, 0.01); err != nil {
		t.Fatal(err)
	}
	b.Cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "the drain to start", 10*time.Second, func() bool { return strings.Contains(b.Log(), `"msg":"draining"`) })
	start := time.Now()
	if code := b.Stop(syscall.SIGINT, 5*time.Second); code == 0 {
		t.Fatalf("exit code 0 after a second signal cut the drain short")
	}
	t.Logf("exited %v after the second signal", time.Since(start))
}

func TestStatsCommand(t *testing.T) {
	b := startBroker(t, "--app", "echo")
	out, errOut, code := run(t, 20*time.Second, "stats", "--addr", b.Addr, "--seconds", "0.2", "--json")
	if code != 0 {
		t.Fatalf("stats --json exit %d: %s", code, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("stats --json printed %q: %v", out, err)
	}
	for _, k := range []string{"up_time", "bytes_recv", "bytes_sent", "msg_recv", "msg_sent", "num_clients", "resources"} {
		if _, ok := m[k]; !ok {
			t.Errorf("stats --json lacks %s", k)
		}
	}
	out, errOut, code = run(t, 20*time.Second, "stats", "--addr", b.Addr, "--seconds", "0.2")
	if code != 0 || !strings.Contains(out, "connections") || !strings.Contains(out, "cpu0") {
		t.Fatalf("stats table (exit %d):\n%s%s", code, out, errOut)
	}
}

func TestBenchCommands(t *testing.T) {
	echo := startBroker(t, "--app", "echo")
	out, errOut, code := run(t, 60*time.Second, "bench", "echo", "--addr", echo.Addr, "--conns", "4", "--duration", "1s", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("bench echo exit %d: %s", code, errOut)
	}
	var res struct {
		MsgPerSec float64 `json:"msg_per_sec"`
		Errors    int64   `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.MsgPerSec <= 0 || res.Errors != 0 {
		t.Fatalf("bench echo: %v %+v\n%s", err, res, out)
	}
	out, errOut, code = run(t, 60*time.Second, "bench", "conns", "--addr", echo.Addr, "--n", "200", "--json", "--quiet")
	var conns struct {
		Verified   int   `json:"verified"`
		NumClients int64 `json:"num_clients"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &conns) != nil || conns.Verified != 200 || conns.NumClients != 200 {
		t.Fatalf("bench conns exit %d: %+v\n%s%s", code, conns, out, errOut)
	}
	bc := startBroker(t, "--app", "broadcast")
	out, errOut, code = run(t, 60*time.Second, "bench", "fanout", "--addr", bc.Addr, "--subscribers", "10", "--duration", "1s", "--json", "--quiet")
	var fan struct {
		DeliveriesPerSec float64 `json:"deliveries_per_sec"`
		Gaps, Lost       int64
		Errors           int64 `json:"errors"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &fan) != nil || fan.DeliveriesPerSec <= 0 || fan.Gaps != 0 || fan.Lost != 0 || fan.Errors != 0 {
		t.Fatalf("bench fanout exit %d: %+v\n%s%s", code, fan, out, errOut)
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout+stderr
	}{
		{[]string{"version"}, 0, "hydrogen broker"},
		{[]string{"help"}, 0, "serve"},
		{[]string{"--help"}, 0, "stats"},
		{[]string{"serve", "--help"}, 0, "HYDROGEN_MAX_PENDING"},
		{[]string{"stats", "--help"}, 0, "-seconds"},
		{[]string{"bench", "--help"}, 0, "fanout"},
		{[]string{"bench", "echo", "--help"}, 0, "-inflight"},
		{[]string{"help", "bench"}, 0, "conns"},
		{[]string{"serve", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"serve", "--app", "nope"}, 2, "want echo, broadcast or pubsub"},
		{[]string{"serve", "--max-payload", "70000"}, 2, "--max-payload"},
		{[]string{"serve", "--loops", "0"}, 2, "--loops"},
		{[]string{"serve", "--max-pending", "lots"}, 2, "max-pending"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		// help is a command like the others.
		{[]string{"help", "--help"}, 0, "Commands:"},
		{[]string{"help", "-h"}, 0, "Commands:"},
		{[]string{"help", "help"}, 0, "Commands:"},
		// A malformed address is a bad flag value (2); one that cannot
		// be bound is not (1).
		{[]string{"serve", "--addr", "nonsense"}, 2, `--addr "nonsense"`},
		{[]string{"serve", "--addr", "127.0.0.1:99999"}, 2, "99999"},
		{[]string{"serve", "--max-payload", "4"}, 2, "telemetry request"},
		// Values a command takes but cannot use.
		{[]string{"stats", "--seconds", "NaN"}, 2, "--seconds NaN"},
		{[]string{"stats", "--timeout", "-1s"}, 2, "--timeout -1s"},
		{[]string{"stats", "--timeout", "0s"}, 2, "--timeout 0s"},
		{[]string{"bench", "echo", "--addr", "127.0.0.1:1", "--size", "4", "--quiet"}, 2, "size 4"},
		// Cluster flags are checked before anything starts.
		{[]string{"serve", "--cluster-addr", "127.0.0.1:7946"}, 2, "need --cluster NAME"},
		{[]string{"serve", "--cluster", "c"}, 2, "needs --cluster-addr"},
		{[]string{"serve", "--cluster", "c", "--cluster-addr", "0.0.0.0:7946"}, 2, "not a wildcard"},
		{[]string{"serve", "--cluster", "c", "--cluster-addr", "127.0.0.1:7946", "--peers", "nonsense"}, 2, `--peers "nonsense"`},
		{[]string{"serve", "--cluster", "two words", "--cluster-addr", "127.0.0.1:7946"}, 2, "without spaces"},
	} {
		out, errOut, code := run(t, 10*time.Second, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("broker %v: exit %d, want %d with %q:\n%s%s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
}

func TestEnvironmentAndFlags(t *testing.T) {
	t.Setenv("HYDROGEN_APP", "echo")
	b := startBroker(t) // echo, from the environment
	c := dial(t, b.Addr)
	c.Send([]byte("env"))
	if got := string(recv(t, c)); got != "env" {
		t.Fatalf("HYDROGEN_APP=echo: got %q", got)
	}
	// A flag beats the environment: with --app broadcast a lone client
	// gets nothing back.
	b2 := startBroker(t, "--app", "broadcast")
	c2 := dial(t, b2.Addr)
	c2.Send([]byte("nobody"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if p, err := c2.Recv(ctx); err == nil {
		t.Fatalf("--app broadcast echoed %q to its only client", p)
	}
	if !strings.Contains(b2.Log(), `"app":"broadcast"`) {
		t.Fatalf("listening line does not name the app:\n%s", b2.Log())
	}
}

func TestTenThousandConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	b := startBroker(t, "--app", "echo")
	before := rss(t, b.Cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 10_000
	set, err := loadgen.Open(ctx, loadgen.ConnsConfig{Addr: b.Addr, N: n, DialConcurrency: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if res := set.Result(); res.Verified != n {
		t.Fatalf("%d of %d connections verified: %v", res.Verified, n, res)
	}
	c := dial(t, b.Addr)
	st, err := c.Stats(ctx, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	if st.NumClients != n+1 {
		t.Fatalf("num_clients %d, want %d", st.NumClients, n+1)
	}
	after := rss(t, b.Cmd.Process.Pid)
	per := float64(after-before) / n
	// Measured, 4.1 KB each (the actors a connection's first frame makes,
	// its Conn and Stream, garbage from the round trips). The bound
	// allows about a third more, so a connection that keeps a buffer of
	// 1.5 KiB or more fails it (one that kept its 4 KiB outbound arena
	// did, at 7.8 KB). A race-built broker measured 27.8 KB each; its
	// bound is as much over.
	bound := racePick(11<<9, 36<<10)
	t.Logf("broker RSS %d KiB before, %d KiB with %d idle connections: %.0f bytes each (bound %d)", before>>10, after>>10, n, per, bound)
	if per > float64(bound) {
		t.Fatalf("%.0f bytes of RSS per idle connection, more than %d", per, bound)
	}
}

func rss(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if n, _ := fmt.Sscanf(line, "VmRSS: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func memTotal(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb uint64
		if n, _ := fmt.Sscanf(line, "MemTotal: %d kB", &kb); n == 1 {
			return kb * 1024
		}
	}
	t.Fatal("no MemTotal")
	return 0
}

func cpuLines(t testing.TB) []int {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	var cores []int
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) < 4 || !strings.HasPrefix(line, "cpu") || line[3] < '0' || line[3] > '9' {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(line, "cpu%d ", &n); err != nil {
			t.Fatal(err)
		}
		cores = append(cores, n)
	}
	return cores
}

// TestQuietStreamsReleased: the binary releases the actors of a stream
// that spoke and went quiet (about a second), counts it, and the stream's
// next frame is echoed by actors made again.
func TestQuietStreamsReleased(t *testing.T) {
	b := relStart(t, "--app", "echo")
	c := dial(t, b.Addr)
	for round := range 2 {
		if err := c.Send([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if got := string(recv(t, c)); got != "ping" {
			t.Fatalf("round %d: echo %q", round, got)
		}
		waitFor(t, "the quiet stream released", 10*time.Second, func() bool {
			return b.metric(t, "hydrogen_streams_released_total") == float64(round+1)
		})
	}
}
