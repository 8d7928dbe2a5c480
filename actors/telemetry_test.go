package actors

import "testing"

// TestTelemetryShare: a stream's share of the 16,384 places is
// floor(64 × free / 16,384), never below 1 (docs/PROTOCOL.md). The
// expectations are worked by hand from that rule.
func TestTelemetryShare(t *testing.T) {
	for _, tc := range []struct {
		waiting int64
		share   int32
	}{
		{0, 64},    // all free
		{1, 63},    // 64 × 16,383 / 16,384 = 63.996
		{256, 63},  // 64 × 16,128 / 16,384 = 63 exactly
		{257, 62},  // 62.996
		{512, 62},  // 62 exactly
		{513, 61},  // 61.998
		{8192, 32}, // half the places taken: half the share
		{16128, 1}, // 256 free: 1 exactly
		{15872, 2}, // 512 free: 2 exactly
		{15873, 1}, // 511 free: 1.996
		{16383, 1}, // 1 free: 0.0039, but at least 1
		{16384, 1}, // none free
		{20000, 1}, // over the bound (transiently, between Add and undo)
		{-5, 64},   // under 0 (likewise): 64.02, so 64
	} {
		if got := telemetryShare(tc.waiting); got != tc.share {
			t.Errorf("telemetryShare(%d) = %d, want %d", tc.waiting, got, tc.share)
		}
	}
}
