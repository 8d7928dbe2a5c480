package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/client"
)

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 20 * time.Second

// testLogger logs warnings and errors to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startBroker serves an echo broker on a free loopback port until the
// test ends. Fields of cfg left zero keep the broker's defaults.
func startBroker(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	return startBrokerApp(t, cfg, broker.Echo())
}

// startBrokerApp is startBroker with app, run per stream.
func startBrokerApp(t *testing.T, cfg broker.Config, app *actor.Props) *broker.Broker {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	cfg.Logger = testLogger(t)
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	b.HandlePerStream(app)
	served := make(chan error, 1)
	go func() { served <- b.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b
}

// startMonitor serves b's monitoring endpoints with the server serve
// uses, on a free loopback port, until the test ends, and returns its
// base URL. adjust, if not nil, changes the server before it serves.
func startMonitor(t *testing.T, b *broker.Broker, adjust func(*http.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t)
	srv := newMonitorServer(b, log)
	if adjust != nil {
		adjust(srv)
	}
	stop := serveMonitor(srv, ln, log)
	t.Cleanup(func() { stop(time.Second) })
	return "http://" + ln.Addr().String()
}

// httpClient is a client for one test; its idle connections close when
// the test ends.
func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

// fetch GETs url and returns the status, the headers and the body.
func fetch(hc *http.Client, method, url string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

func get(t *testing.T, hc *http.Client, url string) (int, http.Header, []byte) {
	t.Helper()
	code, h, body, err := fetch(hc, http.MethodGet, url)
	if err != nil {
		t.Fatal(err)
	}
	return code, h, body
}

// waitFor polls cond until it holds, failing the test with what() after
// waitTimeout.
func waitFor(t *testing.T, what func() string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("gave up waiting after %v: %s", waitTimeout, what())
		}
	}
}

// stallQueued is the outbound queue that shows a client has stopped
// reading. Every echo is queued for a moment before the loop writes it,
// so a small figure is seen in passing; a mebibyte piles up only once
// the socket buffers are full.
const stallQueued = 1 << 20

// stall connects a client to the echo broker at addr that sends 60 KiB
// frames and reads none of the echoes (its receive queue holds one
// frame, then it stops reading the socket), until full reports that the
// broker holds stallQueued bytes or more for it that it cannot write. A
// broker draining then waits for this client until it reads or goes
// away. Close it to release the broker; it is closed when the test ends
// anyway.
func stall(t *testing.T, addr string, full func() bool) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.WithRecvBuffer(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	payload := bytes.Repeat([]byte("stall"), 12<<10)
	deadline := time.Now().Add(waitTimeout)
	for !full() {
		if time.Now().After(deadline) {
			t.Fatalf("the broker queued nothing for a client that reads nothing after %v", waitTimeout)
		}
		if err := c.Send(payload); err != nil {
			t.Fatalf("stalling client: %v", err)
		}
	}
	return c
}

func TestHealthzDraining(t *testing.T) {
	// A stalled client must hold the drain: nothing may close it as a
	// slow consumer first.
	b := startBroker(t, broker.Config{MaxPending: 1 << 30, WriteTimeout: time.Hour})
	base := startMonitor(t, b, nil)
	hc := httpClient(t)

	code, h, body := get(t, hc, base+"/healthz")
	if code != http.StatusOK || string(body) != "ok" {
		t.Fatalf("before shutdown: %d %q, want 200 \"ok\"", code, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}

	c := stall(t, b.Addr().String(), func() bool { return b.QueuedBytes() >= stallQueued })
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		shutdown <- b.Shutdown(ctx)
	}()
	var last string
	waitFor(t, func() string { return "/healthz still " + last }, func() bool {
		code, _, body := get(t, hc, base+"/healthz")
		last = fmt.Sprintf("%d %q", code, body)
		return code == http.StatusServiceUnavailable && string(body) == "draining"
	})
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) while a client held the drain: the 503 was not seen during a drain", err)
	default:
	}

	c.Close()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Shutdown did not return once the stalled client went away")
	}
	if code, _, body := get(t, hc, base+"/healthz"); code != http.StatusServiceUnavailable || string(body) != "draining" {
		t.Errorf("after shutdown: %d %q, want 503 \"draining\"", code, body)
	}
}

// jsonKeys returns the members of the JSON object doc in order.
func jsonKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	var keys []string
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// wholeNumber checks that v, decoded with UseNumber, is a JSON integer
// of 0 or more.
func wholeNumber(t *testing.T, name string, v any) uint64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Errorf("%s = %#v, want a number", name, v)
		return 0
	}
	var u uint64
	if _, err := fmt.Sscan(n.String(), &u); err != nil || strings.ContainsAny(n.String(), ".eE-") {
		t.Errorf("%s = %s, want a whole number", name, n)
	}
	return u
}

// fraction checks that v, decoded with UseNumber, is a number in [0, 1].
func fraction(t *testing.T, name string, v any) {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Errorf("%s = %#v, want a number", name, v)
		return
	}
	f, err := n.Float64()
	if err != nil || f < 0 || f > 1 {
		t.Errorf("%s = %s, want a number in [0, 1]", name, n)
	}
}

func object(t *testing.T, name string, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s = %#v, want an object", name, v)
	}
	return m
}

func TestStats(t *testing.T) {
	b := startBroker(t, broker.Config{})
	base := startMonitor(t, b, nil)
	hc := httpClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	c, err := client.Dial(ctx, b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const frames = 25
	var payloadBytes uint64
	for i := range frames {
		p := bytes.Repeat([]byte{'s'}, i*7)
		payloadBytes += uint64(len(p))
		if err := c.Send(p); err != nil {
			t.Fatal(err)
		}
	}
	for range frames {
		if _, err := c.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The 0x0D reply and /stats report the same counters: after it,
	// frames+1 each way, the request's 5 bytes and the reply's.
	tele, err := c.Stats(ctx, 0.05)
	if err != nil {
		t.Fatal(err)
	}

	var (
		doc  map[string]any
		raw  []byte
		last string
	)
	waitFor(t, func() string { return "/stats: " + last }, func() bool {
		code, h, body := get(t, hc, base+"/stats")
		last = fmt.Sprintf("%d %s", code, body)
		if code != http.StatusOK {
			t.Fatalf("/stats: %s", last)
		}
		if ct := h.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q, want application/json", ct)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		doc = nil
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("/stats is not a JSON object: %v: %s", err, body)
		}
		raw = body
		return doc["msg_recv"] == json.Number(fmt.Sprint(frames+1)) && doc["msg_sent"] == json.Number(fmt.Sprint(frames+1))
	})

	// Fields and types, as the contract (docs/PROTOCOL.md §2) gives them.
	want := map[string]uint64{
		"msg_recv":             frames + 1,
		"msg_sent":             frames + 1,
		"bytes_recv":           payloadBytes + 5,
		"bytes_sent":           payloadBytes + uint64(len(tele.Raw)),
		"num_clients":          1,
		"connections_accepted": 1,
		"telemetry_requests":   1,
		"slow_consumers":       0,
		"protocol_errors":      0,
		"handler_panics":       0,
	}
	for name, w := range want {
		if got := wholeNumber(t, name, doc[name]); got != w {
			t.Errorf("%s = %d, want %d", name, got, w)
		}
	}
	if up := wholeNumber(t, "up_time", doc["up_time"]); up > uint64(time.Since(b.StartTime())/time.Second) {
		t.Errorf("up_time = %d, beyond the broker's age %v", up, time.Since(b.StartTime()))
	}
	res := object(t, "resources", doc["resources"])
	ram := object(t, "resources.ram", res["ram"])
	used := wholeNumber(t, "bytes_used", ram["bytes_used"])
	total := wholeNumber(t, "bytes_available", ram["bytes_available"])
	if total == 0 || used > total {
		t.Errorf("ram: %d used of %d", used, total)
	}
	fraction(t, "cpu_overall", res["cpu_overall"])
	cores, ok := res["cpu_per_core"].([]any)
	if !ok || len(cores) == 0 {
		t.Fatalf("cpu_per_core = %#v, want a non-empty array", res["cpu_per_core"])
	}
	if len(cores) != len(tele.Resources.CPUPerCore) {
		t.Errorf("%d cores, the 0x0D reply has %d", len(cores), len(tele.Resources.CPUPerCore))
	}
	for i, e := range cores {
		core := object(t, "cpu_per_core entry", e)
		n := wholeNumber(t, "core", core["core"])
		if i < len(tele.Resources.CPUPerCore) && int(n) != tele.Resources.CPUPerCore[i].Core {
			t.Errorf("cpu_per_core[%d].core = %d, the 0x0D reply has %d", i, n, tele.Resources.CPUPerCore[i].Core)
		}
		fraction(t, "using", core["using"])
	}

	// The same document as the 0x0D reply: the same members in the same
	// order.
	if got, want := jsonKeys(t, raw), jsonKeys(t, tele.Raw); !reflect.DeepEqual(got, want) {
		t.Errorf("/stats members %v,\nthe 0x0D reply's %v", got, want)
	}
	// And the same counters as Broker.Counters, which feeds both.
	cs := b.Counters()
	if cs.MsgRecv != frames+1 || cs.MsgSent != frames+1 || cs.BytesRecv != want["bytes_recv"] || cs.BytesSent != want["bytes_sent"] {
		t.Errorf("Counters() = %+v, /stats %s", cs, raw)
	}
}

func TestMethods(t *testing.T) {
	b := startBroker(t, broker.Config{})
	base := startMonitor(t, b, nil)
	hc := httpClient(t)
	tests := []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodHead, "/metrics", http.StatusOK},
		{http.MethodGet, "/healthz", http.StatusOK},
		{http.MethodHead, "/healthz", http.StatusOK},
		{http.MethodGet, "/stats", http.StatusOK},
		{http.MethodHead, "/stats", http.StatusOK},
		{http.MethodPost, "/stats", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodGet, "/nowhere", http.StatusNotFound},
		{http.MethodGet, "/stats/more", http.StatusNotFound},
	}
	for _, tt := range tests {
		code, _, _, err := fetch(hc, tt.method, base+tt.path)
		if err != nil {
			t.Errorf("%s %s: %v", tt.method, tt.path, err)
		} else if code != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, code, tt.code)
		}
	}
}

func TestMonitorServerBounds(t *testing.T) {
	srv := newMonitorServer(nil, testLogger(t))
	for name, v := range map[string]int64{
		"ReadHeaderTimeout": int64(srv.ReadHeaderTimeout),
		"ReadTimeout":       int64(srv.ReadTimeout),
		"WriteTimeout":      int64(srv.WriteTimeout),
		"IdleTimeout":       int64(srv.IdleTimeout),
		"MaxHeaderBytes":    int64(srv.MaxHeaderBytes),
	} {
		if v <= 0 {
			t.Errorf("%s is %d: unbounded", name, v)
		}
	}
	if srv.WriteTimeout <= httpHandlerTimeout {
		t.Errorf("WriteTimeout %v is not above the /metrics handler's timeout %v: a slow collection would be cut off without its 503", srv.WriteTimeout, httpHandlerTimeout)
	}
}

// TestSlowClient opens connections to the monitoring port that send
// nothing, or half a request, and checks that a scrape meanwhile is
// answered while they are still open (so it did not wait for them to be
// dropped), and that the server drops them after ReadHeaderTimeout.
//
// A scrape that waits behind the slow connections ends only when they are
// dropped, ReadHeaderTimeout after they opened; one served beside them
// takes milliseconds (tens under -race on a loaded machine). So scrapes
// that take the whole ReadHeaderTimeout are the bug this test is for, and
// fail it: there is no "too slow a machine to tell" at 2 s.
func TestSlowClient(t *testing.T) {
	b := startBroker(t, broker.Config{})
	const headerTimeout = 2 * time.Second
	base := startMonitor(t, b, func(s *http.Server) { s.ReadHeaderTimeout = headerTimeout })
	addr := strings.TrimPrefix(base, "http://")
	hc := httpClient(t)

	var slow []net.Conn
	for i := range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if i%2 == 1 { // half a request: the headers never end
			if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
				t.Fatal(err)
			}
		}
		slow = append(slow, c)
	}
	opened := time.Now()

	var wg sync.WaitGroup
	for _, path := range []string{"/metrics", "/stats", "/healthz", "/metrics"} {
		wg.Go(func() {
			code, _, body, err := fetch(hc, http.MethodGet, base+path)
			if err != nil || code != http.StatusOK || len(body) == 0 {
				t.Errorf("GET %s beside slow connections: %d, %d bytes, %v", path, code, len(body), err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(opened); took >= headerTimeout {
		t.Fatalf("the scrapes took %v, past ReadHeaderTimeout (%v): they waited for the slow connections to be dropped", took, headerTimeout)
	}
	for i, c := range slow {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("slow connection %d: %v before the header timeout; want it still open", i, err)
		}
	}

	// The server drops them: each read ends (EOF, or a 408 and then EOF)
	// rather than waiting until our deadline.
	for i, c := range slow {
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		_, err := io.ReadAll(c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("slow connection %d: not dropped within %v", i, waitTimeout)
		}
	}
}

func TestHugeHeaders(t *testing.T) {
	b := startBroker(t, broker.Config{})
	base := startMonitor(t, b, nil)
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("x", 64<<10))
	resp, err := httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: %d, want 431", resp.StatusCode)
	}
}
