package benchproc

import (
	"os"
	"strconv"
	"testing"
)

// FDs is the number of file descriptors the child has open, from /proc:
// a server's connections, listeners and pollers, and the three of its
// standard streams.
func (p *Proc) FDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/fd")
	if err != nil {
		tb.Fatalf("benchproc: %v", err)
	}
	return len(ents)
}
