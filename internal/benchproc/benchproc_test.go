package benchproc_test

import (
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
)

// burn is how much CPU the "burn" server spends for each connection.
const burn = 200 * time.Millisecond

func TestMain(m *testing.M) {
	benchproc.Main(benchproc.Servers{"burn": serveBurn})
	os.Exit(m.Run())
}

// serveBurn accepts connections; for each it spends burn of CPU time and
// then writes one byte and closes it.
func serveBurn() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			start := benchproc.SelfCPU()
			for benchproc.SelfCPU()-start < burn {
			}
			c.Write([]byte{1})
			c.Close()
		}
	}()
	return ln.Addr().String(), nil
}

// TestChildCPU: the CPU time Proc reports is the child's, not the
// parent's: it grows by what the child spent while the parent waited.
func TestChildCPU(t *testing.T) {
	p := benchproc.Start(t, "burn")
	before := p.CPU(t)
	parentBefore := benchproc.SelfCPU()

	c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 1 {
		t.Fatalf("read %v, %v; want one byte", b, err)
	}

	child := p.CPU(t) - before
	parent := benchproc.SelfCPU() - parentBefore
	if child < burn {
		t.Errorf("child CPU grew by %v, want at least %v", child, burn)
	}
	if parent >= burn {
		t.Errorf("parent CPU grew by %v while it waited: the burn was counted here", parent)
	}
}

// TestSelfCPUGrows: spinning shows in SelfCPU. On a loaded machine 50 ms
// of spinning may get a fifth of a core or less, so the test spins until
// 50 ms of CPU have shown (or fails after 10 s of wall time), and checks
// that it never shows more CPU than the machine's cores had in the time.
func TestSelfCPUGrows(t *testing.T) {
	start, began := benchproc.SelfCPU(), time.Now()
	deadline := began.Add(10 * time.Second)
	var grew time.Duration
	for grew < 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("SelfCPU grew by %v in 10 s of spinning", grew)
		}
		grew = benchproc.SelfCPU() - start
	}
	if wall := time.Since(began); grew > time.Duration(runtime.NumCPU())*wall+20*time.Millisecond {
		t.Fatalf("SelfCPU grew by %v in %v of wall time, on %d cores", grew, wall, runtime.NumCPU())
	}
}
