// Package wire is the hydrogen frame codec: encoding frames, a streaming
// Decoder that cuts frames out of bytes as they arrive, and the codec of the
// 0x0D telemetry request. It does no I/O.
//
// A frame is START (0x01), a 16-bit big-endian payload length N, N payload
// bytes, and END (0x17). The payload is opaque; it may hold any byte,
// 0x01, 0x17 and 0x0D included. The full contract is docs/PROTOCOL.md.
//
// Concurrency: the functions are safe for concurrent use. A Decoder is not;
// each byte stream (each connection) has its own.
//
// Allocation: AppendFrame and AppendTelemetryRequest append to the caller's
// buffer; a Decoder in steady state allocates nothing per frame (it keeps
// one carry buffer for a frame split across reads and reuses it).
package wire
