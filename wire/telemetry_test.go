package wire_test

import (
	"bytes"
	"math"
	"testing"

	"github.com/hydrogen-mq/hydrogen/internal/wireref"
	"github.com/hydrogen-mq/hydrogen/wire"
)

var isTelemetryRequestTests = []struct {
	name    string
	payload []byte
	want    bool
}{
	{"nil", nil, false},
	{"empty", []byte{}, false},
	{"action only", []byte{0x0D}, false},
	{"4 bytes", []byte{0x0D, 0x3F, 0xC0, 0x00}, false},
	{"5 bytes", []byte{0x0D, 0x3F, 0xC0, 0x00, 0x00}, true},
	{"6 bytes", []byte{0x0D, 0x3F, 0xC0, 0x00, 0x00, 0x00}, false},
	{"action 0x0C", []byte{0x0C, 0x3F, 0xC0, 0x00, 0x00}, false},
	{"action 0x0E", []byte{0x0E, 0x3F, 0xC0, 0x00, 0x00}, false},
	{"0x0D not first", []byte{0x01, 0x0D, 0x3F, 0xC0, 0x00}, false},
	{"all 0x0D", []byte{0x0D, 0x0D, 0x0D, 0x0D, 0x0D}, true},
	{"zero span", []byte{0x0D, 0x00, 0x00, 0x00, 0x00}, true},
	{"text", []byte("hello"), false},
}

// An application message that is not a telemetry request must reach the
// handlers, so a false positive loses a message and a false negative leaks
// a request to them.
func TestIsTelemetryRequest(t *testing.T) {
	for _, tt := range isTelemetryRequestTests {
		if got := wire.IsTelemetryRequest(tt.payload); got != tt.want {
			t.Errorf("%s: IsTelemetryRequest(% x) = %v, want %v", tt.name, tt.payload, got, tt.want)
		}
		if _, ok := wire.ParseTelemetryRequest(tt.payload); ok != tt.want {
			t.Errorf("%s: ParseTelemetryRequest(% x) ok = %v, want %v", tt.name, tt.payload, ok, tt.want)
		}
	}
}

// Payloads are written out by hand, big-endian as docs/PROTOCOL.md §2 fixes
// it; the reverse entries show that the host's (little-endian) order would
// read something else. Spans are compared by bits, so NaN, -0 and the
// smallest denormal are exact.
var telemetryVectors = []struct {
	name    string
	seconds float32
	payload []byte
}{
	{"1.5", 1.5, []byte{0x0D, 0x3F, 0xC0, 0x00, 0x00}},
	{"1.5 little-endian is not 1.5", math.Float32frombits(0x0000C03F), []byte{0x0D, 0x00, 0x00, 0xC0, 0x3F}},
	{"60", 60, []byte{0x0D, 0x42, 0x70, 0x00, 0x00}},
	{"60 little-endian is not 60", math.Float32frombits(0x00007042), []byte{0x0D, 0x00, 0x00, 0x70, 0x42}},
	{"1", 1, []byte{0x0D, 0x3F, 0x80, 0x00, 0x00}},
	{"0.1", 0.1, []byte{0x0D, 0x3D, 0xCC, 0xCC, 0xCD}},
	{"-1", -1, []byte{0x0D, 0xBF, 0x80, 0x00, 0x00}},
	{"0", 0, []byte{0x0D, 0x00, 0x00, 0x00, 0x00}},
	{"-0", float32(math.Copysign(0, -1)), []byte{0x0D, 0x80, 0x00, 0x00, 0x00}},
	{"1e-45", 1e-45, []byte{0x0D, 0x00, 0x00, 0x00, 0x01}},
	{"largest", math.MaxFloat32, []byte{0x0D, 0x7F, 0x7F, 0xFF, 0xFF}},
	{"+Inf", float32(math.Inf(1)), []byte{0x0D, 0x7F, 0x80, 0x00, 0x00}},
	{"-Inf", float32(math.Inf(-1)), []byte{0x0D, 0xFF, 0x80, 0x00, 0x00}},
	{"NaN", math.Float32frombits(0x7FC00000), []byte{0x0D, 0x7F, 0xC0, 0x00, 0x00}},
	{"NaN with sign and payload", math.Float32frombits(0xFFC00001), []byte{0x0D, 0xFF, 0xC0, 0x00, 0x01}},
}

func TestParseTelemetryRequest(t *testing.T) {
	for _, tt := range telemetryVectors {
		got, ok := wire.ParseTelemetryRequest(tt.payload)
		if !ok || math.Float32bits(got) != math.Float32bits(tt.seconds) {
			t.Errorf("%s: ParseTelemetryRequest(% x) = %v (%#08x), %v; want %v (%#08x), true",
				tt.name, tt.payload, got, math.Float32bits(got), ok, tt.seconds, math.Float32bits(tt.seconds))
		}
	}
}

func TestAppendTelemetryRequest(t *testing.T) {
	prefix := []byte("queued")
	for _, tt := range telemetryVectors {
		if got := wire.AppendTelemetryRequest(nil, tt.seconds); !bytes.Equal(got, tt.payload) {
			t.Errorf("%s: AppendTelemetryRequest(nil, %v) = % x, want % x", tt.name, tt.seconds, got, tt.payload)
		}
		got := wire.AppendTelemetryRequest(bytes.Clone(prefix), tt.seconds)
		if want := cat(prefix, tt.payload); !bytes.Equal(got, want) {
			t.Errorf("%s: AppendTelemetryRequest(%q, %v) = % x, want % x", tt.name, prefix, tt.seconds, got, want)
		}
	}
}

// ParseTelemetryRequest returns the span as sent, whatever it is: judging
// it (finite, in (0, 60]) is the broker's job, and it can only give a
// readable reason if the value reaches it intact.
func TestTelemetryRequestRoundTrip(t *testing.T) {
	spans := []float32{
		float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		-1, 0, float32(math.Copysign(0, -1)), 60, 1e-45, 0.001, 59.999, 60.001, 1e9, -math.MaxFloat32,
	}
	for _, s := range spans {
		payload := wire.AppendTelemetryRequest(nil, s)
		if !wire.IsTelemetryRequest(payload) {
			t.Errorf("%v: AppendTelemetryRequest made % x, not a telemetry request", s, payload)
		}
		// Through the frame codec too: the broker meets the request only
		// as a decoded payload.
		got, err := decodePieces(wire.NewDecoder(wire.MaxPayload), frame(payload))
		if err != nil || len(got) != 1 {
			t.Fatalf("%v: decoding the framed request: %s, %v", s, wireref.Describe(got), err)
		}
		back, ok := wire.ParseTelemetryRequest(got[0])
		if !ok || math.Float32bits(back) != math.Float32bits(s) {
			t.Errorf("%v (%#08x): round trip gave %v (%#08x), %v", s, math.Float32bits(s), back, math.Float32bits(back), ok)
		}
	}
}
