package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The serve command with --http-addr, run in the test process as the
// binary runs it: flags, environment, the order of a graceful stop.

// syncBuffer is an io.Writer safe for serve's goroutines to log to
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// logged returns the value of key in the first JSON log line whose msg is
// msg, and whether there is one.
func (s *syncBuffer) logged(msg, key string) (string, bool) {
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			v, _ := line[key].(string)
			return v, true
		}
	}
	return "", false
}

// served is one run of serve in the background.
type served struct {
	t      *testing.T
	stderr *syncBuffer
	code   chan int
	sigs   chan chan<- os.Signal
	sigc   chan<- os.Signal
}

// startServe runs serve with args in the background, with the signals it
// subscribes to delivered by signal rather than by the process. If it is
// still running when the test ends, two signals stop it.
func startServe(t *testing.T, args ...string) *served {
	s := &served{t: t, stderr: &syncBuffer{}, code: make(chan int, 1), sigs: make(chan chan<- os.Signal, 1)}
	notify := func(c chan<- os.Signal) func() {
		s.sigs <- c
		return func() {}
	}
	go func() { s.code <- serve(args, io.Discard, s.stderr, notify) }()
	t.Cleanup(func() {
		select {
		case <-s.code:
			return
		default:
		}
		s.signal(syscall.SIGTERM)
		s.signal(syscall.SIGTERM)
		select {
		case <-s.code:
		case <-time.After(waitTimeout):
			t.Errorf("serve did not return after two signals")
		}
	})
	return s
}

func (s *served) signal(sig os.Signal) {
	if s.sigc == nil {
		select {
		case s.sigc = <-s.sigs:
		case <-time.After(waitTimeout):
			s.t.Fatalf("serve never subscribed to signals; log:\n%s", s.stderr)
		}
	}
	s.sigc <- sig
}

// exit waits for serve's exit code.
func (s *served) exit() int {
	s.t.Helper()
	select {
	case code := <-s.code:
		s.code <- code // for the cleanup
		return code
	case <-time.After(waitTimeout):
		s.t.Fatalf("serve still running after %v; log:\n%s", waitTimeout, s.stderr)
		return -1
	}
}

// addrs waits for serve's two "listening" log lines and returns the
// broker's address and the monitoring URL.
func (s *served) addrs() (brokerAddr, base string) {
	s.t.Helper()
	var httpAddr string
	waitFor(s.t, func() string { return "no listening lines in the log:\n" + s.stderr.String() }, func() bool {
		var ok1, ok2 bool
		brokerAddr, ok1 = s.stderr.logged("listening", "addr")
		httpAddr, ok2 = s.stderr.logged("http listening", "addr")
		return ok1 && ok2
	})
	return brokerAddr, "http://" + httpAddr
}

// TestServeDrain runs serve as the binary does and checks the order of a
// graceful stop: on SIGTERM /healthz turns 503 and stays reachable while
// a stalled client holds the drain; once the broker has drained, serve
// exits 0 and the monitoring server is gone.
func TestServeDrain(t *testing.T) {
	s := startServe(t, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--app", "echo", "--loops", "2",
		"--log-format", "json", "--max-pending", "1GiB", "--write-timeout", "1h", "--drain-timeout", "1m")
	addr, base := s.addrs()
	hc := httpClient(t)
	if code, _, body := get(t, hc, base+"/healthz"); code != http.StatusOK || string(body) != "ok" {
		t.Fatalf("/healthz: %d %q, want 200 \"ok\"", code, body)
	}

	c := stall(t, addr, func() bool {
		_, mfs := scrape(t, hc, base)
		return metricValue(t, mfs, "hydrogen_outbound_queued_bytes") >= stallQueued
	})
	s.signal(syscall.SIGTERM)
	// From here on, each request on a new connection, as a load
	// balancer's health check makes them: the server must still accept.
	hc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitTimeout}
	var last string
	waitFor(t, func() string { return "/healthz still " + last }, func() bool {
		code, _, body, err := fetch(hc, http.MethodGet, base+"/healthz")
		if err != nil {
			t.Fatalf("/healthz after SIGTERM: %v; log:\n%s", err, s.stderr)
		}
		last = fmt.Sprintf("%d %q", code, body)
		return code == http.StatusServiceUnavailable && string(body) == "draining"
	})
	select {
	case code := <-s.code:
		s.code <- code
		t.Fatalf("serve exited (%d) while a client held the drain; log:\n%s", code, s.stderr)
	default:
	}
	// Every endpoint still answers during the drain.
	if _, mfs := scrape(t, hc, base); metricValue(t, mfs, "hydrogen_outbound_queued_bytes") < stallQueued {
		t.Errorf("queued bytes fell below %d while the client held the drain", stallQueued)
	}
	if code, _, _ := get(t, hc, base+"/stats"); code != http.StatusOK {
		t.Errorf("/stats during the drain: %d", code)
	}

	c.Close()
	if code := s.exit(); code != exitOK {
		t.Fatalf("serve exited %d, want 0; log:\n%s", code, s.stderr)
	}
	if _, _, _, err := fetch(hc, http.MethodGet, base+"/healthz"); err == nil {
		t.Errorf("the monitoring server still answers after serve returned")
	}
	log := s.stderr.String()
	if i, j := strings.Index(log, `"msg":"draining"`), strings.Index(log, `"msg":"stopped"`); i < 0 || j < i {
		t.Errorf("want a draining line then a stopped line; log:\n%s", log)
	}
}

// TestServeSecondSignal checks that a second signal during the drain
// ends serve at once, monitoring server included.
func TestServeSecondSignal(t *testing.T) {
	s := startServe(t, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--app", "echo",
		"--log-format", "json", "--max-pending", "1GiB", "--write-timeout", "1h", "--drain-timeout", "1m")
	addr, base := s.addrs()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitTimeout}
	// Closed at the end of the test, after serve has left the broker
	// draining behind: that ends the drain and the broker's goroutines.
	stall(t, addr, func() bool {
		_, mfs := scrape(t, hc, base)
		return metricValue(t, mfs, "hydrogen_outbound_queued_bytes") >= stallQueued
	})
	s.signal(syscall.SIGTERM)
	waitFor(t, func() string { return "/healthz never turned 503" }, func() bool {
		code, _, _ := get(t, hc, base+"/healthz")
		return code == http.StatusServiceUnavailable
	})
	s.signal(syscall.SIGINT)
	if code := s.exit(); code != exitError {
		t.Fatalf("serve exited %d after a second signal, want %d; log:\n%s", code, exitError, s.stderr)
	}
	if _, _, _, err := fetch(hc, http.MethodGet, base+"/healthz"); err == nil {
		t.Errorf("the monitoring server still answers after serve returned")
	}
}

// TestServeEnv sets the monitoring address by HYDROGEN_HTTP_ADDR.
func TestServeEnv(t *testing.T) {
	t.Setenv("HYDROGEN_HTTP_ADDR", "127.0.0.1:0")
	s := startServe(t, "--addr", "127.0.0.1:0", "--log-format", "json")
	_, base := s.addrs()
	if code, _, body := get(t, httpClient(t), base+"/healthz"); code != http.StatusOK || string(body) != "ok" {
		t.Fatalf("/healthz: %d %q, want 200 \"ok\"", code, body)
	}
	s.signal(syscall.SIGTERM)
	if code := s.exit(); code != exitOK {
		t.Fatalf("serve exited %d, want 0; log:\n%s", code, s.stderr)
	}
}

func TestServeHTTPAddrErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		flag string // --http-addr, if not empty
		env  string // HYDROGEN_HTTP_ADDR, if not empty
		code int
		want string // in stderr
	}{
		{"no port", "localhost", "", exitUsage, "want HOST:PORT"},
		{"port only", "8222", "", exitUsage, "want HOST:PORT"},
		{"named port", "127.0.0.1:http", "", exitUsage, "not a number from 0 to 65535"},
		{"port too big", "127.0.0.1:65536", "", exitUsage, "not a number from 0 to 65535"},
		{"negative port", "127.0.0.1:-1", "", exitUsage, "not a number from 0 to 65535"},
		{"env malformed", "", "nonsense", exitUsage, "--http-addr \"nonsense\""},
		{"in use", busy.Addr().String(), "", exitError, "address already in use"},
		{"env in use", "", busy.Addr().String(), exitError, "address already in use"},
		{"not an address of this machine", "192.0.2.1:0", "", exitError, "--http-addr: listen tcp 192.0.2.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("HYDROGEN_HTTP_ADDR", tt.env)
			}
			args := []string{"--addr", "127.0.0.1:0"}
			if tt.flag != "" {
				args = append(args, "--http-addr", tt.flag)
			}
			s := startServe(t, args...)
			if code := s.exit(); code != tt.code || !strings.Contains(s.stderr.String(), tt.want) {
				t.Errorf("exit %d, want %d, with %q in:\n%s", code, tt.code, tt.want, s.stderr)
			}
		})
	}
}

func TestServeHelp(t *testing.T) {
	for _, args := range [][]string{{"serve", "--help"}, {"help", "serve"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		for _, want := range []string{"--http-addr", "-http-addr address", "HYDROGEN_HTTP_ADDR", "127.0.0.1:8222", "/metrics", "/healthz", "/stats"} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("%v: no %q in:\n%s", args, want, stdout.String())
			}
		}
	}
}
