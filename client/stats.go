package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hydrogen-mq/hydrogen/wire"
)

// Stats is the broker's telemetry reading over the span a request asked
// for: the reply object of docs/PROTOCOL.md §2, decoded.
type Stats struct {
	UpTime     uint64    `json:"up_time"`     // whole seconds since the broker started
	BytesRecv  uint64    `json:"bytes_recv"`  // payload bytes of all frames received since start
	BytesSent  uint64    `json:"bytes_sent"`  // payload bytes of all frames sent since start; a broadcast to N streams adds N times
	MsgRecv    uint64    `json:"msg_recv"`    // frames received since start
	MsgSent    uint64    `json:"msg_sent"`    // frames sent since start
	NumClients uint64    `json:"num_clients"` // connections open at the moment of the reply
	Resources  Resources `json:"resources"`

	// Extra holds the top-level members beyond the required ones (this
	// broker adds process, connections_accepted, slow_consumers,
	// protocol_errors, telemetry_requests, handler_panics, paused_reads
	// and, clustered, cluster), undecoded; nil if there are none. Members
	// a broker adds inside resources are only in Raw.
	Extra map[string]json.RawMessage `json:"-"`

	// Raw is the reply's JSON exactly as received.
	Raw []byte `json:"-"`
}

// Resources is the machine's resource use in a Stats reading.
type Resources struct {
	RAM        RAM         `json:"ram"`
	CPUOverall float64     `json:"cpu_overall"`  // fraction 0..1 of all CPUs busy during the span
	CPUPerCore []CoreUsage `json:"cpu_per_core"` // one per cpuN line of /proc/stat, in order
}

// RAM is the machine's memory, from /proc/meminfo.
type RAM struct {
	BytesUsed      uint64 `json:"bytes_used"`      // MemTotal − MemAvailable
	BytesAvailable uint64 `json:"bytes_available"` // MemTotal: the machine's RAM in total, despite the name
}

// CoreUsage is one CPU's busy fraction during the span.
type CoreUsage struct {
	Core  int     `json:"core"`  // N of the cpuN line of /proc/stat
	Using float64 `json:"using"` // fraction 0..1 busy
}

// statsCall is one outstanding telemetry request. The reader hands it the
// reply through a channel with room for exactly that one reply, so it
// never blocks on a caller that has gone away.
type statsCall struct {
	reply chan []byte
}

// Stats asks the broker for a telemetry reading over the next seconds
// seconds and waits for it, which takes that long. The span is sent as
// given; the broker refuses one that is not finite or not in (0, 60] (the
// upper bound is its configuration), and Stats then returns an error
// wrapping a *BrokerError.
//
// A Client has at most one telemetry request outstanding: concurrent Stats
// calls wait their turn. This is what lets Stats recognise its reply among
// the application frames (see the package documentation). If ctx is done
// before the reply arrives, Stats returns an error wrapping ctx.Err(), but
// the request stays outstanding until its reply arrives, and is then
// discarded; a later Stats call waits for that. The reply is read by the
// Client's reader like any frame, behind the frames queued for Recv: a
// Client whose Recv queue is full receives it only once Recv makes room.
//
// A reply that has an "up_time" member but lacks a required field, or has
// one of the wrong type, is an error wrapping ErrBadReply.
func (c *Client) Stats(ctx context.Context, seconds float32) (*Stats, error) {
	if c.closed.Load() {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hydrogen: stats: %w", err)
	}
	select {
	case c.statsSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("hydrogen: stats: %w", ctx.Err())
	case <-c.done:
		return nil, c.terminal()
	}
	call := &statsCall{reply: make(chan []byte, 1)}
	c.statsCall.Store(call) // before the request goes out, so the reply cannot beat it
	var req [wire.TelemetryRequestSize]byte
	if err := c.write(wire.AppendTelemetryRequest(req[:0], seconds)); err != nil {
		if c.statsCall.CompareAndSwap(call, nil) {
			<-c.statsSlot
		}
		return nil, err
	}
	select {
	case raw := <-call.reply:
		return parseReply(raw)
	case <-ctx.Done():
		select {
		case raw := <-call.reply: // it arrived after all
			return parseReply(raw)
		default:
		}
		// The slot stays held: the reader releases it when the reply
		// arrives, and discards the reply.
		return nil, fmt.Errorf("hydrogen: stats: %w", ctx.Err())
	case <-c.done:
		return nil, c.terminal()
	}
}

// isReply applies the recognition rule of the package documentation: p is
// a JSON object with an "up_time" member, or with exactly one member,
// "error", holding a string. It is called only while a request is
// outstanding, and parses only payloads that start like an object.
func isReply(p []byte) bool {
	p = bytes.TrimLeft(p, " \t\r\n")
	if len(p) == 0 || p[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(p, &m) != nil {
		return false
	}
	if _, ok := m["up_time"]; ok {
		return true
	}
	v, ok := m["error"]
	return ok && len(m) == 1 && len(v) > 0 && v[0] == '"'
}

// topLevel is the set of members of docs/PROTOCOL.md §2 at the top level
// of a reply; the others go to Stats.Extra.
var topLevel = []string{"up_time", "bytes_recv", "bytes_sent", "msg_recv", "msg_sent", "num_clients", "resources"}

// parseReply decodes a reply that isReply accepted.
func parseReply(raw []byte) (*Stats, error) {
	top, err := members(raw, "reply")
	if err != nil {
		return nil, err
	}
	if _, ok := top["up_time"]; !ok {
		var reason string
		if err := json.Unmarshal(top["error"], &reason); err != nil {
			return nil, fmt.Errorf("hydrogen: stats: %w: error member: %w", ErrBadReply, err)
		}
		return nil, fmt.Errorf("hydrogen: stats: %w", &BrokerError{Reason: reason})
	}
	if err := require(top, "", topLevel...); err != nil {
		return nil, err
	}
	res, err := members(top["resources"], "resources")
	if err != nil {
		return nil, err
	}
	if err := require(res, "resources.", "ram", "cpu_overall", "cpu_per_core"); err != nil {
		return nil, err
	}
	ram, err := members(res["ram"], "resources.ram")
	if err != nil {
		return nil, err
	}
	if err := require(ram, "resources.ram.", "bytes_used", "bytes_available"); err != nil {
		return nil, err
	}
	var cores []json.RawMessage
	if err := json.Unmarshal(res["cpu_per_core"], &cores); err != nil {
		return nil, fmt.Errorf("hydrogen: stats: %w: resources.cpu_per_core is not an array", ErrBadReply)
	}
	for i, core := range cores {
		path := fmt.Sprintf("resources.cpu_per_core[%d]", i)
		m, err := members(core, path)
		if err != nil {
			return nil, err
		}
		if err := require(m, path+".", "core", "using"); err != nil {
			return nil, err
		}
	}

	s := &Stats{Raw: raw}
	if err := json.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("hydrogen: stats: %w: %w", ErrBadReply, err)
	}
	for k, v := range top {
		if !slices.Contains(topLevel, k) {
			if s.Extra == nil {
				s.Extra = make(map[string]json.RawMessage)
			}
			s.Extra[k] = v
		}
	}
	return s, nil
}

// members decodes a JSON object's members, undecoded.
func members(raw []byte, path string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, fmt.Errorf("hydrogen: stats: %w: %s is not a JSON object", ErrBadReply, path)
	}
	return m, nil
}

// require checks that the required members are present and not null
// (encoding/json would leave a null field at zero without a word).
func require(m map[string]json.RawMessage, prefix string, names ...string) error {
	for _, n := range names {
		if v, ok := m[n]; !ok || string(v) == "null" {
			return fmt.Errorf("hydrogen: stats: %w: %s%s is missing", ErrBadReply, prefix, n)
		}
	}
	return nil
}
