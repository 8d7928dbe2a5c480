// Package test holds the end-to-end tests: they build the broker binary
// once, run it as a subprocess on a free loopback port, and talk to it
// over real sockets with the Go client.
package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// brokerBin is the binary built for this run.
var brokerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hydrogen-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	brokerBin = filepath.Join(dir, "broker")
	build := exec.Command("go", "build", "-o", brokerBin, "./cmd/broker")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the broker:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		// goleak checks this process; the broker is another one.
		code = m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}
	}()
	os.Exit(code)
}

// proc is a running broker binary.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	Addr string

	mu   sync.Mutex
	log  strings.Builder
	done chan error
}

// startBroker runs `broker serve --addr 127.0.0.1:0 --log-format json`
// with extra arguments and waits for its "listening" line, which carries
// the address the kernel chose. The broker gets SIGTERM at cleanup.
func startBroker(t testing.TB, args ...string) *proc {
	t.Helper()
	all := append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	p := &proc{t: t, cmd: exec.Command(brokerBin, all...), done: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				select {
				case addr <- rec.Addr:
				default:
				}
			}
		}
		p.done <- p.cmd.Wait()
	}()
	select {
	case p.Addr = <-addr:
	case err := <-p.done:
		t.Fatalf("broker exited before listening (%v):\n%s", err, p.Log())
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("broker did not log its address:\n%s", p.Log())
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState != nil {
			return
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("broker did not stop on SIGTERM:\n%s", p.Log())
		}
	})
	return p
}

// Log is what the broker has logged so far.
func (p *proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop sends sig and returns the exit code.
func (p *proc) stop(sig os.Signal, timeout time.Duration) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("broker did not exit within %v of %v:\n%s", timeout, sig, p.Log())
	}
	return p.cmd.ProcessState.ExitCode()
}

// run runs the binary with args and returns stdout, stderr and the exit code.
func run(t testing.TB, timeout time.Duration, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, brokerBin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("broker %v timed out:\n%s%s", args, out.String(), errb.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("broker %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	waitForEvery(t, what, timeout, 5*time.Millisecond, cond)
}

// waitForEvery is waitFor for a cond that costs something to ask (a
// telemetry round trip, say): it asks every interval.
func waitForEvery(t testing.TB, what string, timeout, interval time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(interval)
	}
}
