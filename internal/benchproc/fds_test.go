package benchproc_test

import (
	"net"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/benchproc"
)

// TestFDs: the count is the child's — its standard streams and its
// listener at least — and follows a connection it holds.
func TestFDs(t *testing.T) {
	p := benchproc.Start(t, "burn")
	before := p.FDs(t)
	if before < 4 {
		t.Fatalf("the child has %d fds open, want at least stdin, stdout, stderr and its listener", before)
	}
	c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The burn server holds the connection for a while of CPU time
	// before it closes it.
	for end := time.Now().Add(5 * time.Second); p.FDs(t) <= before; {
		if time.Now().After(end) {
			t.Fatalf("the child still has %d fds open with a connection accepted, as before it", p.FDs(t))
		}
		time.Sleep(time.Millisecond)
	}
}
