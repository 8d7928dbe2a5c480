package telemetry

import (
	"fmt"
	"math"
	"runtime"
	"time"
	"unicode/utf8"

	"github.com/goccy/go-json"
)

// Reply is the JSON document answering a telemetry request. The field
// order is the encoding's order: the contract's required fields come
// first, exactly as docs/PROTOCOL.md §2 names and types them, and the
// extra fields follow.
type Reply struct {
	UpTime     uint64    `json:"up_time"`     // whole seconds since the broker started
	BytesRecv  uint64    `json:"bytes_recv"`  // payload bytes received
	BytesSent  uint64    `json:"bytes_sent"`  // payload bytes sent
	MsgRecv    uint64    `json:"msg_recv"`    // frames received
	MsgSent    uint64    `json:"msg_sent"`    // frames sent
	NumClients int64     `json:"num_clients"` // connections open now
	Resources  Resources `json:"resources"`

	// Beyond the contract; see Counters for their meaning.
	Process             Process `json:"process"`
	ConnectionsAccepted uint64  `json:"connections_accepted"`
	SlowConsumers       uint64  `json:"slow_consumers"`
	ProtocolErrors      uint64  `json:"protocol_errors"`
	ClosedIdle          uint64  `json:"closed_idle"`
	ClosedLimit         uint64  `json:"closed_limit"`
	ClosedMemory        uint64  `json:"closed_memory"`
	ClosedFrameTimeout  uint64  `json:"closed_frame_timeout"`
	ClosedHandshake     uint64  `json:"closed_handshake"`
	AuthFailures        uint64  `json:"auth_failures"`
	WebSocketRefused    uint64  `json:"websocket_refused"`
	FramesRefused       uint64  `json:"frames_refused"`
	PausedReads         int64   `json:"paused_reads"`
	ProducerStalls      uint64  `json:"producer_stalls"`
	StalledReads        int64   `json:"stalled_reads"`
	TelemetryRequests   uint64  `json:"telemetry_requests"`
	HandlerPanics       uint64  `json:"handler_panics"`
	Memory              Memory  `json:"memory"`
	Groups              Groups  `json:"groups"`

	// Cluster describes the cluster this broker belongs to; nil, and left
	// out of the JSON, when it runs alone.
	Cluster *Cluster `json:"cluster,omitempty"`
}

// Resources is the machine's memory and CPU.
type Resources struct {
	RAM        RAM         `json:"ram"`
	CPUOverall float64     `json:"cpu_overall"`  // busy fraction of all CPUs over the span, 0..1
	CPUPerCore []CoreUsage `json:"cpu_per_core"` // one per cpuN line of /proc/stat, in its order
}

// RAM is the machine's memory, in bytes.
type RAM struct {
	BytesUsed uint64 `json:"bytes_used"` // MemTotal − MemAvailable
	// BytesAvailable is MemTotal, the machine's whole RAM: the contract
	// names the total "bytes_available" (an inheritance from the original
	// server), and clients rely on that meaning. It is not MemAvailable.
	BytesAvailable uint64 `json:"bytes_available"`
}

// Process is the broker process itself.
type Process struct {
	RSSBytes   uint64 `json:"rss_bytes"`  // resident set, from /proc/self/statm
	Goroutines int    `json:"goroutines"` // goroutines when the reply was built
}

// Cluster is the cluster a broker belongs to.
type Cluster struct {
	Name string `json:"name"`
	// State is where this broker stands in its cluster: "joining" (not
	// yet admitted by every member that answers it, or rejoining),
	// "ok" (it exchanges broadcasts with every member that answers, and
	// they are most of the cluster) or "isolated" (cut off from most of
	// the cluster: its clients get only its own broadcasts).
	State   string   `json:"state"`
	Members []Member `json:"members"` // every member, this broker included
}

// Member is one broker of a cluster.
type Member struct {
	Address string `json:"address"`
	// Clients is the member's open connections; nil when they are not
	// known (the member did not answer in time), and then the JSON leaves
	// the field out, so that "unknown" never reads as zero.
	Clients *int64 `json:"clients,omitempty"`
}

// fractionDigits is how many decimals the fractions keep. The counters
// move in ticks of 10 ms, so even a 60 s span over 16 cores (96,000 ticks)
// resolves only about 1e-5; more digits would be noise. Rounding also keeps
// a tiny fraction from being written in exponent form (1e-07), which is
// valid JSON but surprises people reading it.
const fractionDigits = 1e6

func roundFraction(f float64) float64 { return math.Round(f*fractionDigits) / fractionDigits }

// BuildReply assembles the reply for a span from before to after, made at
// now by a broker that started at start. It reads nothing but the number
// of goroutines.
func BuildReply(start, now time.Time, c Counters, before, after CPUSample, mem MemInfo) Reply {
	u := CPUUsage(before, after)
	for i := range u.Cores {
		u.Cores[i].Using = roundFraction(u.Cores[i].Using)
	}
	var up uint64
	if d := now.Sub(start); d > 0 {
		up = uint64(d / time.Second)
	}
	var used uint64
	if mem.Available < mem.Total { // MemAvailable is an estimate; never let it wrap
		used = mem.Total - mem.Available
	}
	return Reply{
		UpTime:     up,
		BytesRecv:  c.BytesRecv,
		BytesSent:  c.BytesSent,
		MsgRecv:    c.MsgRecv,
		MsgSent:    c.MsgSent,
		NumClients: c.NumClients,
		Resources: Resources{
			RAM:        RAM{BytesUsed: used, BytesAvailable: mem.Total},
			CPUOverall: roundFraction(u.Overall),
			CPUPerCore: u.Cores,
		},
		Process:             Process{RSSBytes: mem.RSS, Goroutines: runtime.NumGoroutine()},
		ConnectionsAccepted: c.Accepted,
		SlowConsumers:       c.SlowConsumers,
		ProtocolErrors:      c.ProtocolErrors,
		ClosedIdle:          c.ClosedIdle,
		ClosedLimit:         c.ClosedLimit,
		ClosedMemory:        c.ClosedMemory,
		ClosedFrameTimeout:  c.ClosedFrame,
		ClosedHandshake:     c.ClosedHandshake,
		AuthFailures:        c.AuthFailures,
		WebSocketRefused:    c.WebSocketRefused,
		FramesRefused:       c.FramesRefused,
		PausedReads:         c.PausedReads,
		ProducerStalls:      c.ProducerStalls,
		StalledReads:        c.StalledReads,
		TelemetryRequests:   c.TelemetryRequests,
		HandlerPanics:       c.HandlerPanics,
		Memory:              c.Memory,
		Groups:              c.Groups,
	}
}

// AppendJSON appends the reply's JSON encoding to dst. It fails only if a
// float field is NaN or infinite, which BuildReply never produces.
func (r *Reply) AppendJSON(dst []byte) ([]byte, error) {
	v := r
	if r.Resources.CPUPerCore == nil {
		// The contract's type is an array: write [] rather than null.
		c := *r
		c.Resources.CPUPerCore = []CoreUsage{}
		v = &c
	}
	b, err := json.MarshalWithOption(v, json.DisableHTMLEscape())
	if err != nil {
		return dst, fmt.Errorf("telemetry: encoding the reply: %w", err)
	}
	if dst == nil {
		return b, nil
	}
	return append(dst, b...), nil
}

// maxReason bounds the reason in an error reply, in bytes, so that the
// reply fits a frame whatever error text a caller passes along.
const maxReason = 1024

// ErrorReply returns the JSON {"error": reason}, the reply to a telemetry
// request the broker refuses. The reason is escaped as JSON requires
// (quotes, backslashes, control characters; invalid UTF-8 becomes U+FFFD)
// and cut to 1024 bytes, at a character boundary, with "..." to show it.
func ErrorReply(reason string) []byte {
	b, err := json.MarshalWithOption(errorDoc{cutReason(reason)}, json.DisableHTMLEscape())
	if err != nil {
		// A struct of one string always encodes; should the library ever
		// refuse, the client still gets a well-formed error reply.
		return []byte(`{"error":"the reason could not be encoded"}`)
	}
	return b
}

// RefusalReply returns the JSON {"refused": reason}, the answer to a frame
// the application will not act on (a publish by an identity that may
// not publish, say). Its member is not "error", so that a client waiting
// for a telemetry reply never takes it for a refused request. The reason
// is escaped and cut as ErrorReply's is.
func RefusalReply(reason string) []byte {
	b, err := json.MarshalWithOption(refusalDoc{cutReason(reason)}, json.DisableHTMLEscape())
	if err != nil {
		return []byte(`{"refused":"the reason could not be encoded"}`)
	}
	return b
}

// cutReason cuts reason to maxReason bytes at a character boundary, with
// "..." to show it.
func cutReason(reason string) string {
	if len(reason) > maxReason {
		cut := maxReason - len("...")
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut] + "..."
	}
	return reason
}

type errorDoc struct {
	Error string `json:"error"`
}

type refusalDoc struct {
	Refused string `json:"refused"`
}
