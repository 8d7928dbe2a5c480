// Package test holds the end-to-end tests: they build the broker binary
// once, run it as a subprocess on a free loopback port, and talk to it
// over real sockets with the Go client.
package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/testnet"
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
type proc = testnet.Broker

// startBroker runs the broker built for this run; see testnet.StartBroker.
func startBroker(t testing.TB, args ...string) *proc {
	t.Helper()
	return testnet.StartBroker(t, brokerBin, args...)
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
