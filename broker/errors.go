package broker

import (
	"errors"

	"github.com/hydrogen-mq/hydrogen/netpoll"
)

// Why a stream closed: Closed.Reason is one of these, or wraps one where
// there is more to say (the socket error of a reset, the wire error of a
// protocol error, an authenticator's refusal). Compare with errors.Is:
//
//	case *broker.Closed:
//		if errors.Is(m.Reason, broker.ErrSlowConsumer) { ... }
//
// The reason of a stream the application closed is the error it gave
// Stream.Close (nil gives ErrClosed).
var (
	// ErrPeerClosed: the client closed its side of the connection.
	ErrPeerClosed = netpoll.ErrPeerClosed
	// ErrReset: the connection failed (RST, EPIPE, or another socket
	// error, wrapped).
	ErrReset = netpoll.ErrReset
	// ErrProtocol: the client broke the frame format (docs/PROTOCOL.md);
	// the wire error is wrapped beside it.
	ErrProtocol = netpoll.ErrProtocol
	// ErrSlowConsumer: the stream's outbound queue passed
	// Config.MaxPending, or made no write progress for
	// Config.WriteTimeout.
	ErrSlowConsumer = netpoll.ErrSlowConsumer
	// ErrMemoryLimit: the broker's memory budget (Config.MaxMemory) ran
	// out and this stream held the most bytes, or a send to it would have
	// passed the budget. It is a kind of slow consumer: the reason wraps
	// ErrSlowConsumer too.
	ErrMemoryLimit = netpoll.ErrMemoryLimit
	// ErrIdle: the stream completed no frame within Config.IdleTimeout.
	ErrIdle = netpoll.ErrIdle
	// ErrFrameTimeout: the stream began a frame and did not complete it
	// within Config.FrameTimeout.
	ErrFrameTimeout = netpoll.ErrFrameTimeout
	// ErrHandshake: the TLS handshake, or authentication, failed or did
	// not complete in time (Config.TLSHandshakeTimeout,
	// Config.AuthTimeout). The cause is wrapped beside it; a refused
	// credential is also ErrAuth.
	ErrHandshake = netpoll.ErrHandshake
	// ErrLimit: the broker was at Config.MaxConns, or at
	// Config.MaxConnsPerIP for the client's address.
	ErrLimit = netpoll.ErrLimit
	// ErrShutdown: the broker shut down.
	ErrShutdown = netpoll.ErrShutdown

	// ErrAuth is the reason a stream closes when its credential is
	// refused; the authenticator's error is wrapped beside it. It is a
	// kind of ErrHandshake.
	ErrAuth = errors.New("broker: authentication failed")
	// ErrAppStopped is the reason a stream closes when its application
	// actor stopped itself (the per-stream one, or the shared one, which
	// ends every stream): no one is left to handle its frames. Serve
	// returns it when the shared one did.
	ErrAppStopped = errors.New("broker: the stream's application actor stopped")
)

// Errors of sending to a stream, and of joining a group.
var (
	// ErrClosed is what Stream.Send, Refuse and Group.Join return once
	// the stream is closed or closing; nothing was queued. It is also the
	// reason of a stream closed with Stream.Close(nil).
	ErrClosed = netpoll.ErrClosed
	// ErrFrameTooLarge is what Stream.Send returns for a payload over the
	// largest frame, 65,535 bytes; nothing was queued and the stream stays
	// open.
	ErrFrameTooLarge = netpoll.ErrFrameTooLarge
	// ErrGroupName is Group.Join's error for the group named "", which has
	// no members.
	ErrGroupName = errors.New("broker: a group's name must not be empty")
)
