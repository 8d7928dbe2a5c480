package netpoll

import (
	"errors"
	"fmt"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// Reasons a connection closes, reported once to Handler.OnClose (wrapped
// where there is more to say), and errors of Send.
var (
	// ErrPeerClosed: the peer closed its side (read returned end of file).
	ErrPeerClosed = errors.New("netpoll: closed by peer")
	// ErrReset: the connection failed (RST, EPIPE, or another socket error,
	// wrapped).
	ErrReset = errors.New("netpoll: connection reset")
	// ErrProtocol: the peer broke the frame format; the wire error is
	// wrapped beside it.
	ErrProtocol = errors.New("netpoll: protocol error")
	// ErrSlowConsumer: the connection's outbound queue passed its byte
	// bound, or did not drain within the write timeout.
	ErrSlowConsumer = errors.New("netpoll: slow consumer")
	// ErrMemoryLimit: the server's memory budget (Config.MaxMemory) ran
	// out and this connection held the most bytes, or a Send to it would
	// have passed the budget. It is a kind of slow consumer: the reason
	// reported wraps ErrSlowConsumer too.
	ErrMemoryLimit = errors.New("netpoll: memory budget exhausted")
	// ErrIdle: no frame was completed within the idle timeout.
	ErrIdle = errors.New("netpoll: idle timeout")
	// ErrFrameTimeout: a frame was begun and not completed within the
	// frame timeout.
	ErrFrameTimeout = errors.New("netpoll: frame not completed in time")
	// ErrHandshake: the connection did not complete its handshake (the
	// TLS handshake, or the layer above's authentication, which sets a
	// deadline with SetDeadline) in time, or it failed. The cause is
	// wrapped beside it.
	ErrHandshake = errors.New("netpoll: handshake failed")
	// ErrLimit: the server was at its maximum number of connections, in
	// all or from the peer's address.
	ErrLimit = errors.New("netpoll: connection limit reached")
	// ErrShutdown: the server shut down.
	ErrShutdown = errors.New("netpoll: server shut down")
	// ErrClosed is returned by Send on a connection that is closed or
	// closing; nothing was queued.
	ErrClosed = errors.New("netpoll: connection closed")
	// ErrFrameTooLarge is returned by Send for a payload over the wire's
	// maximum; nothing was queued and the connection stays open. It wraps
	// wire.ErrPayloadTooLarge.
	ErrFrameTooLarge = fmt.Errorf("netpoll: %w", wire.ErrPayloadTooLarge)
)

// errMemoryLimit is the reason a connection closed by the memory budget
// reports: ErrMemoryLimit, and a slow consumer.
var errMemoryLimit = fmt.Errorf("%w: %w", ErrSlowConsumer, ErrMemoryLimit)
