package telemetry

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestParseSpan(t *testing.T) {
	tests := []struct {
		seconds float32
		limit   time.Duration
		want    time.Duration
		err     string // the reason, exactly; "" for a valid span
	}{
		{float32(math.NaN()), time.Minute, 0, "span is NaN"},
		{float32(math.Inf(1)), time.Minute, 0, "span is infinite"},
		{float32(math.Inf(-1)), time.Minute, 0, "span is infinite"},
		{0, time.Minute, 0, "span must be positive, got 0"},
		{float32(math.Copysign(0, -1)), time.Minute, 0, "span must be positive, got -0"},
		{-1, time.Minute, 0, "span must be positive, got -1"},
		{-math.MaxFloat32, time.Minute, 0, "span must be positive, got -3.4028235e+38"},
		{1e-45, time.Minute, 1, ""}, // the smallest float32 still waits 1 ns
		{1e-9, time.Minute, 1, ""},
		{0.5, time.Minute, 500 * time.Millisecond, ""},
		{1, time.Minute, time.Second, ""},
		{60, time.Minute, time.Minute, ""},
		{60.001, time.Minute, 0, "span 60.001s exceeds the maximum 60s"},
		{61, time.Minute, 0, "span 61s exceeds the maximum 60s"},
		{math.MaxFloat32, time.Minute, 0, "span 3.4028235e+38s exceeds the maximum 60s"},
		// A custom limit.
		{5, 5 * time.Second, 5 * time.Second, ""},
		{5.5, 5 * time.Second, 0, "span 5.5s exceeds the maximum 5s"},
		{0.25, 250 * time.Millisecond, 250 * time.Millisecond, ""},
		{0.3, 250 * time.Millisecond, 0, "span 0.3s exceeds the maximum 0.25s"},
		{3600, time.Hour, time.Hour, ""},
		{1, 0, 0, "span 1s exceeds the maximum 0s"},
		// 0.1 is not a float32; the wait rounds up, never short of it.
		{0.1, time.Minute, 100000002, ""},
	}
	for _, tt := range tests {
		got, err := ParseSpan(tt.seconds, tt.limit)
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseSpan(%v, %v) = %v, %v; want %v", tt.seconds, tt.limit, got, err, tt.want)
			}
			continue
		}
		if err == nil || err.Error() != tt.err || !errors.Is(err, ErrBadSpan) || got != 0 {
			t.Errorf("ParseSpan(%v, %v) = %v, %v; want error %q wrapping ErrBadSpan", tt.seconds, tt.limit, got, err, tt.err)
		}
	}
}
