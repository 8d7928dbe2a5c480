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
	ClosedLimit       uint64 // connections refused at a connection limit (in all, or per address)
	ClosedMemory      uint64 // connections closed by the memory budget
	ClosedFrame       uint64 // connections closed for not completing a frame in time
	ClosedHandshake   uint64 // connections closed for a TLS handshake or authentication that failed or timed out
	AuthFailures      uint64 // credentials refused
	WebSocketRefused  uint64 // WebSocket upgrades refused (malformed, or an origin not allowed)
	FramesRefused     uint64 // frames the application refused with an error frame (publishing without the right, say)
	PausedReads       int64  // connections whose reading is paused now (inbound backpressure)
	ProducerStalls    uint64 // times a connection's reading stalled because a queue it fed filled
	StalledReads      int64  // connections whose reading is stalled so now
	TelemetryRequests uint64 // 0x0D requests received, refused ones included
	HandlerPanics     uint64 // panics recovered in application actors

	Memory Memory // the memory budget
	Groups Groups // the groups (rooms, topics) of streams
}

// Groups are the broker's groups of streams in figures.
type Groups struct {
	Count   int         `json:"count"`   // groups with members
	Members int64       `json:"members"` // members of all groups together
	Largest []GroupSize `json:"largest"` // the largest groups, at most 10, largest first
}

// GroupSize is one group's name and number of members.
type GroupSize struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
}

// Memory is the broker's memory budget: the bytes queued for clients plus
// the read buffers, against their bound.
type Memory struct {
	Used    int64  `json:"used_bytes"`  // counted now
	Limit   int64  `json:"limit_bytes"` // the budget (--max-memory)
	Stalls  uint64 `json:"stalls"`      // times every producer was stalled for it
	Stalled bool   `json:"stalled"`     // every producer is stalled for it now
}
