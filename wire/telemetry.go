package wire

import (
	"encoding/binary"
	"math"
)

// The telemetry request (docs/PROTOCOL.md §2): a frame whose payload is
// exactly TelemetryRequestSize bytes, the first being ActionTelemetry, the
// other four the span in seconds as a big-endian IEEE-754 float32.
const (
	ActionTelemetry      = 0x0D
	TelemetryRequestSize = 5
)

// IsTelemetryRequest reports whether payload is a telemetry request rather
// than an application message.
func IsTelemetryRequest(payload []byte) bool {
	return len(payload) == TelemetryRequestSize && payload[0] == ActionTelemetry
}

// ParseTelemetryRequest returns the span a telemetry request asks for. ok is
// false when payload is not a telemetry request. The span is returned as
// sent, NaN and infinities included; judging it is the broker's business.
func ParseTelemetryRequest(payload []byte) (seconds float32, ok bool) {
	if !IsTelemetryRequest(payload) {
		return 0, false
	}
	return math.Float32frombits(binary.BigEndian.Uint32(payload[1:])), true
}

// AppendTelemetryRequest appends the payload of a telemetry request for the
// given span to dst. Frame it with AppendFrame to send it.
func AppendTelemetryRequest(dst []byte, seconds float32) []byte {
	dst = append(dst, ActionTelemetry)
	return binary.BigEndian.AppendUint32(dst, math.Float32bits(seconds))
}
