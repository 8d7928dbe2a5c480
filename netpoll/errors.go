package netpoll

import "errors"

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
	// ErrIdle: nothing was received within the idle timeout.
	ErrIdle = errors.New("netpoll: idle timeout")
	// ErrLimit: the server was at its maximum number of connections.
	ErrLimit = errors.New("netpoll: connection limit reached")
	// ErrShutdown: the server shut down.
	ErrShutdown = errors.New("netpoll: server shut down")
	// ErrClosed is returned by Send on a connection that is closed or
	// closing; nothing was queued.
	ErrClosed = errors.New("netpoll: connection closed")
	// ErrFrameTooLarge is returned by Send for a payload over the wire's
	// maximum; nothing was queued and the connection stays open.
	ErrFrameTooLarge = errors.New("netpoll: payload too large for a frame")
)
