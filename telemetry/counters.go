package telemetry

// Counters is a snapshot of the broker's counters, taken by the caller
// (the live counters are atomics sharded per event loop, in netpoll; the
// actor runtime keeps its own). Totals count since the broker started.
// BuildReply copies it into a Reply.
type Counters struct {
	// The counters the contract requires. Bytes are payload bytes, not
	// frame bytes; a broadcast to N streams counts N times.
	BytesRecv  uint64 // payload bytes of frames received
	BytesSent  uint64 // payload bytes of frames sent
	MsgRecv    uint64 // frames received
	MsgSent    uint64 // frames sent
	NumClients int64  // connections open now

	// More, for operators.
	Accepted          uint64 // connections accepted
	SlowConsumers     uint64 // connections closed for not reading their outbound queue
	ProtocolErrors    uint64 // connections closed for a framing error
	ClosedIdle        uint64 // connections closed for idleness
	ClosedLimit       uint64 // connections refused at the connection limit
	PausedReads       int64  // connections whose reading is paused now (inbound backpressure)
	TelemetryRequests uint64 // 0x0D requests received, refused ones included
	HandlerPanics     uint64 // panics recovered in application actors
}
