package testnet

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Broker is a broker binary running for one test.
type Broker struct {
	t    testing.TB
	Cmd  *exec.Cmd
	Addr string // the address it listens on, from its "listening" line

	mu   sync.Mutex
	log  strings.Builder
	done chan error
}

// StartBroker runs `bin serve --addr 127.0.0.1:0 --log-format json` with
// extra arguments and waits for its "listening" line, which carries the
// address the kernel chose. The broker gets SIGTERM at cleanup, and
// SIGKILL if it has not exited 15 s later.
func StartBroker(t testing.TB, bin string, args ...string) *Broker {
	t.Helper()
	all := append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	b := &Broker{t: t, Cmd: exec.Command(bin, all...), done: make(chan error, 1)}
	stderr, err := b.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.log.WriteString(line + "\n")
			b.mu.Unlock()
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
		b.done <- b.Cmd.Wait()
	}()
	select {
	case b.Addr = <-addr:
	case err := <-b.done:
		t.Fatalf("broker exited before listening (%v):\n%s", err, b.Log())
	case <-time.After(10 * time.Second):
		b.Cmd.Process.Kill()
		t.Fatalf("broker did not log its address:\n%s", b.Log())
	}
	t.Cleanup(func() {
		if b.Cmd.ProcessState != nil {
			return
		}
		b.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(15 * time.Second):
			b.Cmd.Process.Kill()
			<-b.done
			t.Errorf("broker did not stop on SIGTERM:\n%s", b.Log())
		}
	})
	return b
}

// Log is what the broker has logged so far.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// Stop sends sig and returns the exit code, failing the test if the
// broker has not exited within timeout.
func (b *Broker) Stop(sig os.Signal, timeout time.Duration) int {
	b.t.Helper()
	b.Cmd.Process.Signal(sig)
	select {
	case <-b.done:
	case <-time.After(timeout):
		b.Cmd.Process.Kill()
		<-b.done
		b.t.Fatalf("broker did not exit within %v of %v:\n%s", timeout, sig, b.Log())
	}
	return b.Cmd.ProcessState.ExitCode()
}
