package telemetry

import (
	"errors"
	"math"
	"strconv"
	"time"
)

// ErrBadSpan is the error, wrapped, of a telemetry request whose span is
// not valid. The wrapping error's text is the bare reason ("span is NaN"),
// meant for the error reply.
var ErrBadSpan = errors.New("telemetry: bad span")

type spanError string

func (e spanError) Error() string { return string(e) }
func (e spanError) Unwrap() error { return ErrBadSpan }

// ParseSpan turns the seconds of a telemetry request into the span to wait.
// Valid spans are finite and in (0, limit]; any other gets an error that
// wraps ErrBadSpan and reads as a reason for the error reply.
//
// The span is rounded up to a whole nanosecond, so every positive float32,
// down to the smallest subnormal (about 1.4e-45), is a wait of at least
// 1 ns, and the broker never answers before the span asked for has passed.
// A limit of zero or less refuses every span.
func ParseSpan(seconds float32, limit time.Duration) (time.Duration, error) {
	s := float64(seconds) // exact: every float32 is a float64
	switch {
	case math.IsNaN(s):
		return 0, spanError("span is NaN")
	case math.IsInf(s, 0):
		return 0, spanError("span is infinite")
	case s <= 0: // -0 included
		return 0, spanError("span must be positive, got " + formatSeconds(seconds))
	}
	// Compared as float64 nanoseconds, before any conversion to an integer
	// could overflow (float32 reaches 3.4e38 s).
	ns := math.Ceil(s * float64(time.Second))
	if ns > float64(limit) {
		return 0, spanError("span " + formatSeconds(seconds) + "s exceeds the maximum " +
			strconv.FormatFloat(limit.Seconds(), 'g', -1, 64) + "s")
	}
	return time.Duration(ns), nil
}

// formatSeconds writes the float32 as its shortest decimal, so 60.001
// reads as 60.001 and not as its float64 widening 60.000999450683594.
func formatSeconds(f float32) string { return strconv.FormatFloat(float64(f), 'g', -1, 32) }
