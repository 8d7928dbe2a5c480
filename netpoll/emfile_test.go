package netpoll

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The EMFILE test runs its server in a child process, the test binary run
// again with emfileChildEnv set, because lowering RLIMIT_NOFILE would
// starve every other test of descriptors.
//
// The child talks to the parent in lines on stdout that start with
// emfilePrefix, and takes one command per line on stdin:
//
//	child:  ready <addr> <free fds>
//	parent: stats
//	child:  stats <AcceptBackoffs> <Accepted> <Open> <CPU time in ns>
//
// End of file on stdin ends the child.
const (
	emfileChildEnv = "NETPOLL_TEST_EMFILE_CHILD"
	emfilePrefix   = "emfile-child: "
	emfileFree     = 4 // descriptors left free for connections
)

type childStats struct {
	backoffs, accepted uint64
	open               int64
	cpu                time.Duration
}

// TestAcceptEMFILE: when accept runs out of descriptors, the server keeps
// serving the connections it has, backs off without spinning, and accepts
// again once descriptors are free.
func TestAcceptEMFILE(t *testing.T) {
	if os.Getenv(emfileChildEnv) == "1" {
		emfileChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptEMFILE$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), emfileChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var rest strings.Builder // the child's other output, for failures
	lines := make(chan string, 16)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), emfilePrefix); ok {
				lines <- s
			} else {
				fmt.Fprintln(&rest, sc.Text())
			}
		}
	}()
	childDone := false
	defer func() {
		if childDone {
			return
		}
		stdin.Close()
		cmd.Process.Kill()
		<-readDone
		cmd.Wait()
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				<-readDone
				t.Fatalf("the child ended:\n%s%s", &rest, &stderr)
			}
			return l
		case <-time.After(waitLong):
			t.Fatalf("no word from the child")
		}
		panic("unreachable")
	}
	stats := func() childStats {
		t.Helper()
		if _, err := io.WriteString(stdin, "stats\n"); err != nil {
			t.Fatal(err)
		}
		var st childStats
		var cpu int64
		if _, err := fmt.Sscanf(next(), "stats %d %d %d %d", &st.backoffs, &st.accepted, &st.open, &cpu); err != nil {
			t.Fatal(err)
		}
		st.cpu = time.Duration(cpu)
		return st
	}

	var addrStr string
	var free int
	if _, err := fmt.Sscanf(next(), "ready %s %d", &addrStr, &free); err != nil {
		t.Fatal(err)
	}
	addr, err := net.ResolveTCPAddr("tcp", addrStr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the child has %d descriptors free", free)

	// Use up the child's descriptors, then two more connections that the
	// kernel completes but the child cannot accept.
	var served []*net.TCPConn
	for i := range free {
		c := dial(t, addr)
		roundTrip(t, c, tricky(i, 8))
		served = append(served, c)
	}
	waiting := []*net.TCPConn{dial(t, addr), dial(t, addr)}
	var st childStats
	waitFor(t, "the child to back off", func() bool {
		st = stats()
		return st.backoffs > 0
	})
	if st.accepted != uint64(free) || st.open != int64(free) {
		t.Fatalf("the child accepted %d and has %d open, want %d", st.accepted, st.open, free)
	}

	// Backing off, the child serves what it has and does not spin.
	for i, c := range served {
		roundTrip(t, c, tricky(i, 9))
	}
	before := stats()
	time.Sleep(300 * time.Millisecond) // a window to measure, not a synchronisation
	after := stats()
	if used := after.cpu - before.cpu; used > 100*time.Millisecond {
		t.Errorf("the child used %v of CPU in 300ms of backing off", used)
	}
	if after.backoffs <= before.backoffs && after.accepted == uint64(free) {
		t.Logf("no retry within 300ms (backoffs %d)", after.backoffs)
	}

	// A waiting connection can send before it is accepted; the reply comes
	// once descriptors free up and the child accepts it.
	write(t, waiting[0], frame([]byte("queued in the backlog")))
	for _, c := range served[:2] {
		c.Close()
	}
	if got := readFrames(t, waiting[0], waiting[0], 1)[0]; string(got) != "queued in the backlog" {
		t.Fatalf("got %q", got)
	}
	roundTrip(t, waiting[1], []byte("second"))
	for i, c := range served[2:] {
		roundTrip(t, c, tricky(i, 10))
	}
	st = stats()
	if st.accepted != uint64(free)+2 {
		t.Errorf("the child accepted %d, want %d", st.accepted, free+2)
	}

	stdin.Close()
	<-readDone
	childDone = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s%s", err, &rest, &stderr)
	}
}

// emfileChild is the child's side of TestAcceptEMFILE.
func emfileChild(t *testing.T) {
	say := func(format string, args ...any) {
		fmt.Printf(emfilePrefix+format+"\n", args...)
	}
	// Let the runtime open its own poller now rather than after the
	// limit, when it could not.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()

	h := newHandler(t, replyEcho)
	s := startServer(t, Config{Logger: testLogger(t)}, h)

	// Fill the holes in the descriptor table (the process may have
	// inherited descriptors with high numbers) so that exactly emfileFree
	// numbers are free below the limit.
	_, highest, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		if int(f.Fd()) > highest {
			f.Close()
			break
		}
		defer f.Close()
	}
	lim := syscall.Rlimit{Cur: uint64(highest + 1 + emfileFree)}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim.Max = old.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	n, _, err := openFDs()
	if err != nil {
		t.Fatal(err)
	}
	say("ready %s %d", s.Addr(), int(lim.Cur)-n)

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "":
		case "stats":
			st := s.Stats()
			var ru syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
				t.Fatal(err)
			}
			say("stats %d %d %d %d", st.AcceptBackoffs, st.Accepted, st.Open, ru.Utime.Nano()+ru.Stime.Nano())
		default:
			t.Fatalf("unknown command %q", in.Text())
		}
	}
}
