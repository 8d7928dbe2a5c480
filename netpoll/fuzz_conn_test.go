package netpoll

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/wireref"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// fuzzMaxPayload is the fuzz server's MaxPayload: small, so that the
// fuzzer reaches "length over the maximum" from a few bytes, and large
// enough for frames split across many reads.
const fuzzMaxPayload = 300

// fuzzMaxInput bounds the stream one input writes.
const fuzzMaxInput = 64 << 10

// fuzzRecord is what the fuzz server saw of one connection.
type fuzzRecord struct {
	fd     int // the loop's fd, copied in OnOpen
	frames [][]byte
	closed bool
	err    error
	done   chan struct{} // closed in OnClose
}

// fuzzHandler records every connection's frames and close, keyed by the
// client's port, and replies nothing.
type fuzzHandler struct {
	mu     sync.Mutex
	byPort map[int]*fuzzRecord
	conns  map[*Conn]*fuzzRecord
	cond   *sync.Cond
}

func newFuzzHandler() *fuzzHandler {
	h := &fuzzHandler{byPort: make(map[int]*fuzzRecord), conns: make(map[*Conn]*fuzzRecord)}
	h.cond = sync.NewCond(&h.mu)
	return h
}

func (h *fuzzHandler) OnOpen(c *Conn) {
	r := &fuzzRecord{fd: c.fd, done: make(chan struct{})}
	h.mu.Lock()
	h.conns[c] = r
	h.byPort[c.RemoteAddr().(*net.TCPAddr).Port] = r
	h.cond.Broadcast()
	h.mu.Unlock()
}

func (h *fuzzHandler) OnFrames(c *Conn, b *Batch) {
	h.mu.Lock()
	r := h.conns[c]
	for _, f := range b.Frames {
		r.frames = append(r.frames, bytes.Clone(f))
	}
	h.cond.Broadcast()
	h.mu.Unlock()
	b.Release()
}

func (h *fuzzHandler) OnClose(c *Conn, err error) {
	h.mu.Lock()
	r := h.conns[c]
	delete(h.conns, c)
	r.closed, r.err = true, err
	close(r.done)
	h.cond.Broadcast()
	h.mu.Unlock()
}

// record waits for the connection from the client port to be opened.
func (h *fuzzHandler) record(port int) (*fuzzRecord, bool) {
	deadline := time.Now().Add(waitLong)
	timer := time.AfterFunc(waitLong, func() {
		h.mu.Lock()
		h.cond.Broadcast()
		h.mu.Unlock()
	})
	defer timer.Stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		if r, ok := h.byPort[port]; ok {
			delete(h.byPort, port)
			return r, true
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		h.cond.Wait()
	}
}

// state reports how many frames r has delivered so far, and whether it
// has closed.
func (h *fuzzHandler) state(r *fuzzRecord) (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(r.frames), r.closed
}

// fuzzChunks cuts s into pieces whose lengths are the bytes of cuts (a
// zero skips), the rest of s being the last piece.
func fuzzChunks(s, cuts []byte) [][]byte {
	var pieces [][]byte
	for _, c := range cuts {
		if len(s) == 0 {
			break
		}
		n := min(int(c), len(s))
		if n == 0 {
			continue
		}
		pieces = append(pieces, s[:n])
		s = s[n:]
	}
	if len(s) > 0 {
		pieces = append(pieces, s)
	}
	return pieces
}

// FuzzConnReadPath fuzzes the whole read path of a connection: the
// fuzzer's bytes are written to a real loopback connection of a real
// Server in chunks the input chooses, each chunk waiting until the loop
// has read the one before (so the chunks are, as far as the kernel lets
// them be, separate reads). The frames the Handler receives must be
// exactly those a reference decode of the whole stream gives; on a
// protocol error the connection must close with ErrProtocol wrapping the
// reference's error at the reference's offset, and nothing after the
// error may be delivered; without one it stays open until the client
// closes (ErrPeerClosed). One server serves every input of the process.
func FuzzConnReadPath(f *testing.F) {
	f.Add(frames([]byte("hello"), nil, []byte{wire.Start, wire.End, wire.ActionTelemetry}), []byte{1, 2, 3, 4})
	f.Add(frames(bytes.Repeat([]byte("split"), 50)), []byte{2, 1, 100, 50})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte(nil))
	f.Add([]byte{wire.Start, 0xff, 0xff, 'x'}, []byte{1, 1})
	f.Add(append(frames([]byte("ok")), wire.Start, 0, 1, 'x', 0x18, wire.Start, 0, 0, wire.End), []byte{6})
	f.Add(append(frames([]byte("ok")), wire.Start, 0, 10, 'h', 'a', 'l', 'f'), []byte{3, 3})

	var (
		once    sync.Once
		srv     *Server
		h       *fuzzHandler
		served  chan error
		started bool
	)
	f.Cleanup(func() {
		if !started {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			f.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			f.Errorf("Serve: %v", err)
		}
	})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		once.Do(func() {
			h = newFuzzHandler()
			s, err := Listen(Config{
				Addr:       "127.0.0.1:0",
				Loops:      2,
				MaxPayload: fuzzMaxPayload,
				Logger:     slog.New(slog.DiscardHandler),
			}, h)
			if err != nil {
				t.Fatalf("Listen: %v", err)
			}
			srv, served, started = s, make(chan error, 1), true
			go func() { served <- s.Serve() }()
		})
		if srv == nil {
			t.Skip("the fuzz server did not start")
		}
		if len(data) > fuzzMaxInput {
			data = data[:fuzzMaxInput]
		}
		want, _, wantErr := wireref.Decode(data, fuzzMaxPayload)

		c, err := net.DialTimeout("tcp", srv.Addr().String(), waitLong)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		r, ok := h.record(c.LocalAddr().(*net.TCPAddr).Port)
		if !ok {
			t.Fatal("the server never opened the connection")
		}

		for _, chunk := range fuzzChunks(data, cuts) {
			if _, closed := h.state(r); closed {
				break // the rest would only be refused
			}
			c.SetWriteDeadline(time.Now().Add(waitLong))
			if _, err := c.Write(chunk); err != nil {
				break // closed by the server after a protocol error
			}
			// Let the loop read this chunk before the next one is written,
			// so that the chunk boundaries are read boundaries.
			deadline := time.Now().Add(waitLong)
			for {
				if _, closed := h.state(r); closed {
					break
				}
				if n, err := inq(r.fd); err != nil || n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the loop did not read a chunk")
				}
				time.Sleep(20 * time.Microsecond)
			}
		}

		if wantErr == nil {
			// Every complete frame arrives and the connection stays open;
			// the client's close then ends it as a peer close (a trailing
			// partial frame is simply dropped).
			deadline := time.Now().Add(waitLong)
			for {
				n, closed := h.state(r)
				if closed {
					t.Fatalf("closed with %v after %d of %d frames on a stream without a protocol error", r.err, n, len(want))
				}
				if n >= len(want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("got %d of %d frames", n, len(want))
				}
				time.Sleep(50 * time.Microsecond)
			}
			c.Close()
		}
		select {
		case <-r.done:
		case <-time.After(waitLong):
			t.Fatalf("no OnClose (protocol error expected: %v)", wantErr)
		}
		h.mu.Lock()
		got, cerr := r.frames, r.err
		h.mu.Unlock()
		if !wireref.Equal(got, want) {
			t.Fatalf("delivered %s, want %s", wireref.Describe(got), wireref.Describe(want))
		}
		if wantErr == nil {
			if !errors.Is(cerr, ErrPeerClosed) {
				t.Fatalf("closed with %v, want ErrPeerClosed", cerr)
			}
			return
		}
		var pe *wire.ProtocolError
		if !errors.Is(cerr, ErrProtocol) || !errors.Is(cerr, wantErr.Err) || !errors.As(cerr, &pe) {
			t.Fatalf("closed with %v, want ErrProtocol and %v", cerr, wantErr)
		}
		if pe.Offset != wantErr.Offset {
			t.Fatalf("protocol error %v at offset %d, want offset %d (%v)", pe, pe.Offset, wantErr.Offset, wantErr)
		}
		if wantErr.Err == wire.ErrTooLarge {
			if pe.Length != wantErr.Length || pe.Max != wantErr.Max {
				t.Fatalf("protocol error %v, want %v", pe, wantErr)
			}
		} else if pe.Byte != wantErr.Byte {
			t.Fatalf("protocol error %v, want %v", pe, wantErr)
		}
	})
}
