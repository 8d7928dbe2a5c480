package loadgen

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Sentinel errors.
var (
	// ErrConfig reports an invalid configuration.
	ErrConfig = errors.New("loadgen: invalid configuration")
	// ErrStalled reports a run that made no progress for stallTimeout.
	ErrStalled = errors.New("loadgen: no progress")
)

// stallTimeout is how long a run may go without a frame received before
// it gives up with ErrStalled: a server that stopped answering must not
// hang a Count-bounded run forever.
const stallTimeout = 10 * time.Second

// drainTimeout bounds the wait, after the measured span, for the replies
// and deliveries of frames already sent, so connections close cleanly
// rather than with data in flight.
const drainTimeout = 5 * time.Second

// Progress is a snapshot of a run under way, handed to a Progress callback.
type Progress struct {
	Elapsed  time.Duration // since the measurement started (Conns: since the first dial)
	Conns    int           // connections open
	Sent     int64         // frames sent
	Received int64         // echo replies, fanout deliveries, or connections verified
	Errors   int64         // errors so far (Conns: connections failed)
}

// Latency is a latency distribution's summary.
type Latency struct {
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// String summarises l on one line.
func (l Latency) String() string {
	return fmt.Sprintf("p50 %v p99 %v p99.9 %v max %v", round(l.P50), round(l.P99), round(l.P999), round(l.Max))
}

// Result is what an Echo or a Fanout run measured.
type Result struct {
	Test        string `json:"test"` // "echo" or "fanout"
	Conns       int    `json:"conns"`
	InFlight    int    `json:"in_flight,omitempty"` // echo: frames outstanding per connection
	Publishers  int    `json:"publishers,omitempty"`
	Subscribers int    `json:"subscribers,omitempty"`
	Window      int    `json:"window,omitempty"` // fanout: frames a publisher may be ahead of its slowest subscriber
	PayloadSize int    `json:"payload_size"`

	// Sent is the number of frames sent: echo requests, fanout frames
	// published (warm-up frames not included).
	Sent int64 `json:"sent"`
	// Messages is the number of echo round trips completed in the
	// measured span; for fanout it equals Sent.
	Messages int64 `json:"messages"`
	// Deliveries is the number of fanout frames subscribers received.
	Deliveries int64 `json:"deliveries"`
	// Elapsed is the measured span: echo, from the first frame to the
	// last reply (Count) or the Duration; fanout, from the first frame to
	// the last delivery or the publishers' stop, whichever is later.
	Elapsed          time.Duration `json:"elapsed_ns"`
	MsgPerSec        float64       `json:"msg_per_sec"`        // Messages per second
	DeliveriesPerSec float64       `json:"deliveries_per_sec"` // Deliveries per second
	Latency                        // echo: round trip; fanout: publish to delivery

	// Gaps counts frames a subscriber never saw although it saw a later
	// frame of the same publisher; Lost counts frames still missing at
	// the end of the run (after a drain timeout, or to a subscriber that
	// failed). Both are zero against a correct broker.
	Gaps int64 `json:"gaps"`
	Lost int64 `json:"lost"`
	// Errors counts connection failures, protocol errors, and replies or
	// deliveries that were wrong: another connection's, out of order,
	// duplicated, malformed. FirstError describes the first.
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// String summarises r on one line.
func (r Result) String() string {
	var b strings.Builder
	switch r.Test {
	case "fanout":
		fmt.Fprintf(&b, "fanout %d pub → %d sub, %d B: %d sent, %d deliveries in %v, %.0f deliveries/s (%.0f msg/s published)",
			r.Publishers, r.Subscribers, r.PayloadSize, r.Sent, r.Deliveries, round(r.Elapsed), r.DeliveriesPerSec, r.MsgPerSec)
	default:
		fmt.Fprintf(&b, "%s %d conns × %d in flight, %d B: %d round trips in %v, %.0f msg/s",
			r.Test, r.Conns, r.InFlight, r.PayloadSize, r.Messages, round(r.Elapsed), r.MsgPerSec)
	}
	fmt.Fprintf(&b, "; latency %v", r.Latency)
	if r.Test == "fanout" {
		fmt.Fprintf(&b, "; %d gaps, %d lost", r.Gaps, r.Lost)
	}
	fmt.Fprintf(&b, "; %d errors", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(&b, " (first: %s)", r.FirstError)
	}
	return b.String()
}

// ConnsResult is what a Conns run measured.
type ConnsResult struct {
	Requested int `json:"requested"`
	Opened    int `json:"opened"`   // dials that succeeded
	Verified  int `json:"verified"` // connections whose echo round trip came back right
	Failed    int `json:"failed"`   // dials or verifications that failed
	Held      int `json:"held"`     // connections kept open: Verified, or Opened with SkipVerify
	// Elapsed is the time to open and verify them all, not counting the
	// hold.
	Elapsed     time.Duration `json:"elapsed_ns"`
	ConnsPerSec float64       `json:"conns_per_sec"` // Opened per second of Elapsed
	// Causes counts failures by cause ("dial: connection refused",
	// "verify: timeout", ...).
	Causes map[string]int `json:"causes,omitempty"`
}

// String summarises r on one line.
func (r ConnsResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "conns: %d requested, %d opened, %d verified, %d failed in %v (%.0f conns/s)",
		r.Requested, r.Opened, r.Verified, r.Failed, round(r.Elapsed), r.ConnsPerSec)
	if len(r.Causes) > 0 {
		b.WriteString("; failures:")
		for i, c := range slices.Sorted(maps.Keys(r.Causes)) {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %d × %s", r.Causes[c], c)
		}
	}
	return b.String()
}

// round shortens a duration for people to four significant digits.
func round(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for x := d / 10000; x > 0; x /= 10 {
		unit *= 10
	}
	return d.Round(unit)
}

// perSec is n per second of d, or 0 for an empty span.
func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
