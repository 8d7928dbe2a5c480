package baseline

import (
	"bufio"
	"errors"
	"io"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// errFrame marks a malformed frame; the connection is closed on it.
var errFrame = errors.New("baseline: malformed frame")

// echoLoop serves one Echo connection: read a frame, write it back, and
// flush only when no further request is already buffered, so a client
// that pipelines gets its replies in one write.
func (s *Server) echoLoop(p *peer) {
	defer s.wg.Done()
	defer s.remove(p)
	r := bufio.NewReader(p.c)
	w := bufio.NewWriter(p.c)
	buf := make([]byte, 0, 4096)
	for {
		f, err := readFrame(r, buf)
		if err != nil {
			s.readFailed(err)
			return
		}
		buf = f
		if _, err := w.Write(f); err != nil {
			return
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// readFrame reads one whole frame, START to END, into buf (replaced by a
// new buffer of exactly the frame's size when too small) and returns it.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	hdr, err := r.Peek(wire.HeaderSize)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if hdr[0] != wire.Start {
		return nil, errFrame
	}
	size := wire.FrameSize(int(hdr[1])<<8 | int(hdr[2]))
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	f := buf[:size]
	if _, err := io.ReadFull(r, f); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if f[size-1] != wire.End {
		return nil, errFrame
	}
	return f, nil
}

// readFailed counts a protocol error. Anything else that ends a read —
// the peer closing, a reset, Close — is the normal end of a connection.
func (s *Server) readFailed(err error) {
	if errors.Is(err, errFrame) {
		s.protocolErrors.Add(1)
	}
}
