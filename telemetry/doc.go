// Package telemetry owns what the broker reports about itself: the snapshot
// of its counters, the machine's CPU and memory read from /proc, and the
// reply document to a telemetry request (docs/PROTOCOL.md §2).
// It imports no other package of the project.
//
// The pieces, in the order a reply is made:
//
//   - Counters is a plain snapshot of the broker's counters. The live
//     counters stay where they are counted (netpoll keeps them per event
//     loop, as atomics); the caller copies them into a Counters once per
//     reply.
//   - ReadCPU reads /proc/stat into a CPUSample: the aggregate cpu line and
//     one entry per cpuN line, in file order. CPUUsage turns two samples into
//     busy fractions in [0, 1]. A Sampler shares samples among requests that
//     arrive close together, so a flood of requests costs a bounded number of
//     reads of /proc/stat.
//   - ReadMemInfo reads MemTotal and MemAvailable from /proc/meminfo and the
//     process's resident set from /proc/self/statm.
//   - BuildReply assembles a Reply; Reply.AppendJSON encodes it with
//     github.com/goccy/go-json. ErrorReply encodes the {"error": ...} reply to
//     a request the broker refuses, and ParseSpan decides which spans are
//     refused.
//
// The parsers (ParseStat, ParseMemInfo) take an io.Reader, so that fixed
// text can stand in for the kernel's; ReadCPU and ReadMemInfo are the thin
// functions that open the real files. Errors name the file they came from.
//
// Concurrency: every function is safe for concurrent use, and so are a
// Sampler's methods; the package has no mutable state of its own. A
// CPUSample handed out by a Sampler may be handed to other callers too: its
// Cores slice is shared and must be treated as read-only. Reply and the other
// plain data types are values; guard them as any other value if goroutines
// share one.
package telemetry
