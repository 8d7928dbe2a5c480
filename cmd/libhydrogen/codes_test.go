//go:build cgo

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/wire"
)

func TestCodeOf(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("hydrogen: op: %w", err) }
	tests := []struct {
		name string
		err  error
		want int32
	}{
		{"nil", nil, codeOK},
		{"too small", &tooSmallError{what: "message", need: 15, cap: 4}, codeTooSmall},
		{"refused span", wrap(&client.BrokerError{Reason: "span is NaN"}), codeBroker},
		{"our timeout", errTimeout, codeTimeout},
		{"context deadline", wrap(context.DeadlineExceeded), codeTimeout},
		{"i/o deadline", wrap(os.ErrDeadlineExceeded), codeTimeout},
		{"dial timeout", &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, codeTimeout},
		{"telemetry-shaped payload", wrap(client.ErrTelemetryPayload), codeInval},
		{"payload too large", wrap(wire.ErrPayloadTooLarge), codeInval},
		{"closed by hy_close", wrap(net.ErrClosed), codeClosed},
		{"closed by the broker", wrap(io.EOF), codeClosed},
		{"closed inside a frame", wrap(io.ErrUnexpectedEOF), codeClosed},
		{"protocol error", wrap(&wire.ProtocolError{Err: wire.ErrBadEnd}), codeProto},
		{"malformed reply", wrap(client.ErrBadReply), codeProto},
		{"credential refused", wrap(&client.AuthError{Reason: "auth: credential refused"}), codeAuth},
		{"certificate not trusted", wrap(&tls.CertificateVerificationError{Err: errors.New("unknown authority")}), codeAuth},
		{"refused connection", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, codeIO},
		{"other", errors.New("something else"), codeIO},
	}
	for _, tt := range tests {
		if got := codeOf(tt.err); got != tt.want {
			t.Errorf("%s: codeOf(%v) = %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
}

// The message lives in C thread-local storage, so each test that reads it
// keeps its goroutine on one thread.

func TestGuarded(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	if got := guarded("hy_test", func() int32 { return succeed(7) }); got != 7 || lastMessage() != "" {
		t.Errorf("guarded without a panic = %d, message %q; want 7, empty", got, lastMessage())
	}
	if got := guarded("hy_test", func() int32 { panic("boom") }); got != codeInternal {
		t.Errorf("guarded with a panic = %d, want %d", got, codeInternal)
	}
	if msg := lastMessage(); !strings.HasPrefix(msg, "hy_test: internal error") || !strings.Contains(msg, "boom") {
		t.Errorf("message after a panic: %q", msg)
	}
	var nilMap map[string]int
	if got := guarded("hy_test64", func() int64 { nilMap["x"] = 1; return 1 }); got != int64(codeInternal) {
		t.Errorf("guarded[int64] with a runtime panic = %d, want %d", got, codeInternal)
	}
	if msg := lastMessage(); !strings.Contains(msg, "nil map") {
		t.Errorf("message after a runtime panic: %q", msg)
	}
}

func TestFailErr(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	tests := []struct {
		err  error
		code int32
		msg  string
	}{
		{fmt.Errorf("hydrogen: stats: %w", &client.BrokerError{Reason: "span is NaN"}), codeBroker,
			"hy_stats: the broker refused the telemetry request: span is NaN"},
		{fmt.Errorf("hydrogen: broker closed the connection: %w", io.EOF), codeClosed,
			"hy_stats: broker closed the connection: EOF"},
	}
	for _, tt := range tests {
		if got := failErr("hy_stats", tt.err); got != tt.code || lastMessage() != tt.msg {
			t.Errorf("failErr(%v) = %d, %q; want %d, %q", tt.err, got, lastMessage(), tt.code, tt.msg)
		}
	}
}

func TestMessageCut(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	long := strings.Repeat("€", maxMessage) // 3 bytes a rune: never ends on a boundary at maxMessage+1
	setMessage("x" + long)
	msg := lastMessage()
	if len(msg) > maxMessage || len(msg) < maxMessage-3 || !utf8.ValidString(msg) || msg[0] != 'x' {
		t.Errorf("a %d-byte message was kept as %d bytes, valid UTF-8 %v", 1+len(long), len(msg), utf8.ValidString(msg))
	}
	setMessage("")
	if msg := lastMessage(); msg != "" {
		t.Errorf("cleared message is %q", msg)
	}
}

// TestMessagePerThread sets a message on several threads, and only once
// all are set reads them back: each thread must read its own.
func TestMessagePerThread(t *testing.T) {
	const threads = 4
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i := range threads {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread() // this goroutine alone runs on the thread until it returns
			defer runtime.UnlockOSThread()
			want := fmt.Sprintf("thread %d", i)
			setMessage(want)
			ready.Done()
			<-start
			if got := lastMessage(); got != want {
				t.Errorf("thread %d reads %q", i, got)
			}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}
