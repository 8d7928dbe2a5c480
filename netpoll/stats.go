package netpoll

import "sync/atomic"

// Stats is a snapshot of a server's counters. Totals count since the
// server started. Bytes are payload bytes, not frame bytes, as the
// telemetry reply defines them.
type Stats struct {
	BytesRecv uint64 // payload bytes of frames received
	MsgRecv   uint64 // frames received
	BytesSent uint64 // payload bytes of frames handed to the kernel
	MsgSent   uint64 // frames handed to the kernel

	Accepted       uint64 // connections accepted (including ones refused at the limit)
	Open           int64  // connections open now
	PausedReads    int64  // connections whose reading is paused now by the layer above
	AcceptBackoffs uint64 // times accept backed off for lack of file descriptors

	// Flow control and the memory budget.
	ProducerStalls uint64 // times a connection's reading stalled because a queue it fed passed 3/4 of MaxPending
	StalledReads   int64  // connections whose reading is stalled so now
	MemoryUsed     int64  // bytes counted against Config.MaxMemory now
	MemoryLimit    int64  // Config.MaxMemory
	MemoryStalls   uint64 // times the memory budget stalled every producer
	MemoryStalled  bool   // the memory budget stalls every producer now

	TLSHandshakes        uint64 // TLS handshakes completed
	TLSHandshakeFailures uint64 // TLS handshakes that failed or timed out
	WebSocketUpgrades    uint64 // WebSocket upgrades accepted
	WebSocketRefused     uint64 // WebSocket upgrade requests refused (malformed, or an origin not allowed)

	// Closed connections by reason.
	ClosedPeer      uint64 // ErrPeerClosed
	ClosedReset     uint64 // ErrReset
	ClosedProtocol  uint64 // ErrProtocol: protocol errors
	ClosedSlow      uint64 // ErrSlowConsumer: slow consumers (those of the memory budget are ClosedMemory)
	ClosedMemory    uint64 // ErrMemoryLimit: closed by the memory budget
	ClosedIdle      uint64 // ErrIdle
	ClosedFrame     uint64 // ErrFrameTimeout
	ClosedHandshake uint64 // ErrHandshake: a TLS handshake or authentication that failed or timed out
	ClosedLimit     uint64 // ErrLimit: refused at MaxConns or MaxConnsPerIP
	ClosedShutdown  uint64 // ErrShutdown
	ClosedLocal     uint64 // closed by the layer above with its own reason
}

// counters are one loop's live counters. Each is written by its loop only
// (so the atomics are uncontended) and read by Stats from any goroutine.
type counters struct {
	bytesRecv, msgRecv, bytesSent, msgSent atomic.Uint64
	accepted, acceptBackoffs, stalls       atomic.Uint64
	handshakes, handshakeFailures          atomic.Uint64
	wsUpgrades, wsRefused                  atomic.Uint64
	open, paused, stalled                  atomic.Int64
	closed                                 [numReasons]atomic.Uint64
	_                                      [64]byte // keep loops' counters off each other's cache lines
}

type reason int

const (
	reasonPeer reason = iota
	reasonReset
	reasonProtocol
	reasonSlow
	reasonMemory
	reasonIdle
	reasonFrame
	reasonHandshake
	reasonLimit
	reasonShutdown
	reasonLocal
	numReasons
)

func (c *counters) addTo(s *Stats) {
	s.BytesRecv += c.bytesRecv.Load()
	s.MsgRecv += c.msgRecv.Load()
	s.BytesSent += c.bytesSent.Load()
	s.MsgSent += c.msgSent.Load()
	s.Accepted += c.accepted.Load()
	s.AcceptBackoffs += c.acceptBackoffs.Load()
	s.Open += c.open.Load()
	s.PausedReads += c.paused.Load()
	s.ProducerStalls += c.stalls.Load()
	s.StalledReads += c.stalled.Load()
	s.TLSHandshakes += c.handshakes.Load()
	s.TLSHandshakeFailures += c.handshakeFailures.Load()
	s.WebSocketUpgrades += c.wsUpgrades.Load()
	s.WebSocketRefused += c.wsRefused.Load()
	s.ClosedPeer += c.closed[reasonPeer].Load()
	s.ClosedReset += c.closed[reasonReset].Load()
	s.ClosedProtocol += c.closed[reasonProtocol].Load()
	s.ClosedSlow += c.closed[reasonSlow].Load()
	s.ClosedMemory += c.closed[reasonMemory].Load()
	s.ClosedIdle += c.closed[reasonIdle].Load()
	s.ClosedFrame += c.closed[reasonFrame].Load()
	s.ClosedHandshake += c.closed[reasonHandshake].Load()
	s.ClosedLimit += c.closed[reasonLimit].Load()
	s.ClosedShutdown += c.closed[reasonShutdown].Load()
	s.ClosedLocal += c.closed[reasonLocal].Load()
}
