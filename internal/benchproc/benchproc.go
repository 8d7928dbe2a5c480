// Package benchproc runs a benchmark's server in a process of its own —
// a second copy of the test binary — so that the server's CPU time is
// measured apart from the load generator's while both still share the
// machine's cores.
//
// In one process the two are inseparable: the Go scheduler runs server and
// client goroutines on the same threads, and getrusage sums them. A child
// process answers for its own CPU time, and a benchmark can report the
// server's cost per message beside the throughput of the whole.
//
// A package's TestMain calls Main first; a benchmark calls Start with the
// name of a server Main knows:
//
//	func TestMain(m *testing.M) {
//		benchproc.Main(benchproc.Servers{"echo": startEcho})
//		os.Exit(m.Run())
//	}
//
//	p := benchproc.Start(b, "echo")
//	cpu0 := p.CPU(b)
//	// ... load p.Addr ...
//	serverCPU := p.CPU(b) - cpu0
package benchproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envServer names the server a child process runs; unset in a parent.
const envServer = "HYDROGEN_BENCH_SERVER"

// The child's protocol on its stdin and stdout, one line each way: it
// writes addrPrefix and its address once started, then answers each
// cpuRequest line with cpuPrefix and its CPU time in nanoseconds. It
// exits when stdin closes. The prefixes tell its answers from anything
// else that writes to stdout — the test framework's PASS, should a
// package's TestMain not hand the process to Main.
const (
	cpuRequest = "cpu"
	addrPrefix = "benchproc addr "
	cpuPrefix  = "benchproc cpu "
)

// replyTimeout bounds the wait for any answer of the child's.
const replyTimeout = 10 * time.Second

// Servers maps a server's name to a function that starts it listening on
// 127.0.0.1 and returns its address. The server runs until the process
// exits.
type Servers map[string]func() (addr string, err error)

// Main runs the named server and never returns when the process is a
// child started by Start; otherwise it returns at once. Call it first in
// TestMain.
func Main(servers Servers) {
	name, ok := os.LookupEnv(envServer)
	if !ok {
		return
	}
	start, ok := servers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "benchproc: no server named %q\n", name)
		os.Exit(2)
	}
	addr, err := start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchproc: starting %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(serve(addr, os.Stdin, os.Stdout))
}

// serve is the child's side of the protocol; it returns the exit code.
func serve(addr string, in io.Reader, out io.Writer) int {
	if _, err := fmt.Fprintln(out, addrPrefix+addr); err != nil {
		return 1
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() != cpuRequest {
			fmt.Fprintf(os.Stderr, "benchproc: unknown request %q\n", sc.Text())
			return 2
		}
		if _, err := fmt.Fprintf(out, "%s%d\n", cpuPrefix, int64(SelfCPU())); err != nil {
			return 1
		}
	}
	return 0
}

// SelfCPU is the user and system CPU time of the calling process.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Proc is a server running in a child process.
type Proc struct {
	Addr string // the server's listening address

	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// RSS is the child's resident set, in bytes, from /proc.
func (p *Proc) RSS(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		tb.Fatalf("benchproc: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("benchproc: VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	tb.Fatal("benchproc: no VmRSS")
	return 0
}

// Start runs the server name in a child copy of the test binary and
// waits for its address. The child is stopped when tb's test ends.
func Start(tb testing.TB, name string) *Proc {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatalf("benchproc: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), envServer+"="+name)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatalf("benchproc: %v", err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("benchproc: %v", err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("benchproc: starting %s: %v", name, err)
	}
	p := &Proc{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	tb.Cleanup(func() {
		if err := p.stop(); err != nil {
			tb.Errorf("benchproc: %s: %v", name, err)
		}
	})

	addr, err := p.reply(addrPrefix)
	if err != nil {
		tb.Fatalf("benchproc: %s did not report its address: %v", name, err)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		tb.Fatalf("benchproc: %s reported the address %q: %v", name, addr, err)
	}
	p.Addr = addr
	return p
}

// CPU returns the child's user and system CPU time so far.
func (p *Proc) CPU(tb testing.TB) time.Duration {
	tb.Helper()
	if _, err := fmt.Fprintln(p.in, cpuRequest); err != nil {
		tb.Fatalf("benchproc: asking for CPU time: %v", err)
	}
	s, err := p.reply(cpuPrefix)
	if err != nil {
		tb.Fatalf("benchproc: reading CPU time: %v", err)
	}
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		tb.Fatalf("benchproc: CPU time %q: %v", s, err)
	}
	return time.Duration(ns)
}

// reply reads the child's next line, which must start with prefix, and
// returns the rest; it gives up after replyTimeout. A child that does not
// answer in time is killed, which ends the read.
func (p *Proc) reply(prefix string) (string, error) {
	type line struct {
		s   string
		err error
	}
	got := make(chan line, 1)
	go func() {
		s, err := p.out.ReadString('\n')
		got <- line{s, err}
	}()
	var l line
	select {
	case l = <-got:
	case <-time.After(replyTimeout):
		p.cmd.Process.Kill()
		<-got
		return "", fmt.Errorf("no answer within %v; killed", replyTimeout)
	}
	if l.err != nil {
		if errors.Is(l.err, io.EOF) {
			return "", errors.New("the child exited")
		}
		return "", l.err
	}
	s := strings.TrimSuffix(l.s, "\n")
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", fmt.Errorf("unexpected line %q (does the package's TestMain call benchproc.Main first?)", s)
	}
	return rest, nil
}

// stop closes the child's stdin, which ends it, and waits for it; a child
// that does not end within replyTimeout is killed.
func (p *Proc) stop() error {
	p.in.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(replyTimeout):
		p.cmd.Process.Kill()
		<-done
		return fmt.Errorf("did not exit within %v; killed", replyTimeout)
	}
}
