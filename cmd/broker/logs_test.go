package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// JSON logs write durations as flags and people do ("10s"), not as
// nanoseconds; text logs did already.
func TestLogDurations(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, err := newLogger(&buf, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("draining", "timeout", 10*time.Second)
		if out := buf.String(); !strings.Contains(out, "10s") || strings.Contains(out, "10000000000") {
			t.Errorf("%s: %s", format, out)
		}
	}
}

// The commands name themselves: the client's own prefix goes.
func TestClientErrorPrefix(t *testing.T) {
	if got := clientError(errors.New("hydrogen: dial: refused")); got != "dial: refused" {
		t.Errorf("clientError = %q", got)
	}
}
