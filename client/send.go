package client

import (
	"fmt"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// flushThreshold bounds the write buffer: a writer that finds this many
// bytes buffered writes them even while other writers are pending, so a
// steady stream of concurrent Sends cannot grow the buffer without end. It
// is a size that one write(2) to a loopback or LAN socket takes whole.
const flushThreshold = 64 << 10

// Send frames payload and writes it to the broker. It returns once the frame
// is written to the socket or handed to a concurrent Send that will write
// it; it blocks while the socket is full, that is while the broker is not
// reading. Frames sent by one goroutine reach the broker in the order sent;
// frames of concurrent Sends are interleaved whole.
//
// Concurrent Sends are coalesced: each appends its frame to a shared buffer,
// and only the last of a burst writes the buffer, in one system call. A
// single goroutine sending many frames does better with SendBatch.
//
// payload may be reused once Send returns. Send fails without sending for a
// payload longer than wire.MaxPayload (wrapping wire.ErrPayloadTooLarge) or
// shaped like a telemetry request (ErrTelemetryPayload). A write error ends
// the connection: that Send and every later call return it (see Err). Send
// may return nil for a frame whose write by a concurrent Send then failed;
// the failure surfaces in the next call.
func (c *Client) Send(payload []byte) error {
	if err := checkPayload(payload); err != nil {
		return fmt.Errorf("hydrogen: send: %w", err)
	}
	return c.write(payload)
}

// SendBatch sends the payloads in order, as Send would one after another,
// but with one lock and, when they fit in 64 KiB, one system call. If any
// payload is invalid, none is sent.
func (c *Client) SendBatch(payloads ...[]byte) error {
	for i, p := range payloads {
		if err := checkPayload(p); err != nil {
			return fmt.Errorf("hydrogen: send batch: payload %d: %w", i, err)
		}
	}
	return c.write(payloads...)
}

func checkPayload(p []byte) error {
	if len(p) > wire.MaxPayload {
		return fmt.Errorf("%w: %d bytes", wire.ErrPayloadTooLarge, len(p))
	}
	if wire.IsTelemetryRequest(p) {
		return ErrTelemetryPayload
	}
	return nil
}

// write frames the payloads into the write buffer and writes the buffer
// unless another writer has announced itself: that one will find these
// frames in the buffer and write them with its own. The announcement
// (pending) comes before the lock, so the last writer of a burst is the one
// that sees pending fall to zero, and nothing is left unwritten.
func (c *Client) write(payloads ...[]byte) error {
	select {
	case <-c.done:
		return c.terminal()
	default:
	}
	c.pending.Add(1)
	c.wmu.Lock()
	if c.werr == nil {
		for _, p := range payloads {
			c.wbuf, _ = wire.AppendFrame(c.wbuf, p) // lengths checked by the caller
			if len(c.wbuf) >= flushThreshold {
				c.flushLocked()
			}
		}
	}
	if c.pending.Add(-1) == 0 {
		c.flushLocked()
	}
	failed := c.werr != nil
	c.wmu.Unlock()
	if failed {
		return c.terminal() // end has run: done is closed
	}
	return nil
}

// flushLocked writes the buffer; c.wmu must be held. The first write error
// is sticky and ends the connection.
func (c *Client) flushLocked() {
	if len(c.wbuf) == 0 || c.werr != nil {
		return
	}
	_, err := c.conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if err != nil {
		c.werr = err
		c.end(fmt.Errorf("hydrogen: write: %w", err))
	}
}
