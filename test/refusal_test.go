package test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// readUntilClose reads c to its end and returns what it got and how it
// ended: nil for an orderly close (EOF), else the error (a reset).
func readUntilClose(c net.Conn, timeout time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	got, err := io.ReadAll(c)
	return got, err
}

// TestRefusalReachesAPipeliningClient: a client that sends its (wrong)
// credential and, without waiting for the answer, a burst of frames
// behind it, and one that connects over --max-conns and starts sending
// at once, both get the broker's answer whole and an orderly close. The
// broker reads and drops what they sent before it closes: a socket
// closed with unread input is reset, and a reset can take the answer
// with it.
func TestRefusalReachesAPipeliningClient(t *testing.T) {
	dir := t.TempDir()
	tokens := secWrite(t, dir, "tokens", secAlice+" alice\n")
	b := relStart(t, "--app", "echo", "--auth-token-file", tokens, "--max-conns", "2")
	frame := func(p string) []byte {
		f, err := wire.Encode([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	burst := bytes.Repeat(frame(string(bytes.Repeat([]byte{'x'}, 100))), 2000)
	const tries = 20
	for i := range tries {
		c := relDialRaw(t, b.Addr, 0)
		cred := frame(fmt.Sprintf("wrong-token-%02d-0123456789", i))
		if _, err := c.Write(append(cred, burst...)); err != nil {
			t.Fatalf("try %d: writing: %v", i, err)
		}
		got, err := readUntilClose(c, 10*time.Second)
		want := frame(`{"error":"auth: credential refused"}`)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("try %d: got %q and %v; want %q and an orderly close", i, got, err, want)
		}
		c.Close()
	}

	// Two clients hold the --max-conns places.
	for range 2 {
		secDial(t, b.Addr, client.WithCredential([]byte(secAlice)))
	}
	for i := range tries {
		c := relDialRaw(t, b.Addr, 0)
		if _, err := c.Write(burst); err != nil {
			t.Fatalf("try %d over the limit: writing: %v", i, err)
		}
		got, err := readUntilClose(c, 10*time.Second)
		want := frame(`{"error":"connection limit reached"}`)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("try %d over the limit: got %q and %v; want %q and an orderly close", i, got, err, want)
		}
		c.Close()
	}
}
