package broker

import (
	"time"

	"github.com/hydrogen-mq/hydrogen/actors/cluster"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/telemetry"
	"github.com/hydrogen-mq/hydrogen/wire"
)

// This file is what a program that runs a broker (cmd/broker) needs
// beyond the handler API: the limits of Config's fields, and the
// monitoring of a running broker.

// More defaults and bounds of Config.
const (
	// DefaultMaxPending is Config.MaxPending's default, 4 MiB.
	DefaultMaxPending = netpoll.DefaultMaxPending
	// DefaultWriteTimeout is Config.WriteTimeout's default.
	DefaultWriteTimeout = netpoll.DefaultWriteTimeout
	// DefaultFrameTimeout is Config.FrameTimeout's default.
	DefaultFrameTimeout = netpoll.DefaultFrameTimeout
	// DefaultTCPKeepAlive is Config.TCPKeepAlive's default.
	DefaultTCPKeepAlive = netpoll.DefaultTCPKeepAlive
	// MinMaxMemory is the smallest Config.MaxMemory, 16 MiB.
	MinMaxMemory = netpoll.MinMaxMemory
	// MinMaxPayload and MaxPayload bound Config.MaxPayload: a telemetry
	// request is 5 bytes, and a frame's payload at most 65,535.
	MinMaxPayload = wire.TelemetryRequestSize
	MaxPayload    = wire.MaxPayload
)

// ParseOverflow parses an overflow policy by name: "close" is
// OverflowClose, "throttle" OverflowThrottle.
func ParseOverflow(s string) (Overflow, error) { return netpoll.ParseOverflow(s) }

// The cluster's configuration and its node (Config.Cluster,
// Broker.Cluster) are package actors/cluster's, under these names.
type (
	// ClusterConfig configures the broker's cluster node (Config.Cluster).
	ClusterConfig = cluster.Config
	// ClusterTLS is mutual TLS between the nodes (ClusterConfig.TLS):
	// LoadClusterTLS reads it, and its Reload re-reads the files.
	ClusterTLS = cluster.TLS
	// ClusterMember is one member of the cluster (ClusterView.Members).
	ClusterMember = cluster.Member
	// ClusterStats are a cluster node's counters (ClusterView.Stats).
	ClusterStats = cluster.Stats
	// ClusterState is where a node stands in its cluster: ClusterJoining,
	// ClusterOK or ClusterIsolated.
	ClusterState = cluster.State
)

// The states of a cluster node (ClusterView.State).
const (
	ClusterJoining  = cluster.Joining
	ClusterOK       = cluster.OK
	ClusterIsolated = cluster.Isolated
)

// ClusterStates are every ClusterState, for those who list them (a metric
// per state).
var ClusterStates = cluster.States

// Errors of LoadClusterTLS and ClusterTLS.Reload, each wrapped with the
// file and the cause: which of the three files is missing or wrong.
var (
	ErrClusterTLSCert = cluster.ErrTLSCert
	ErrClusterTLSKey  = cluster.ErrTLSKey
	ErrClusterTLSCA   = cluster.ErrTLSCA
)

// LoadClusterTLS reads a node's certificate, its key and the cluster's CA
// from PEM files, for ClusterConfig.TLS.
func LoadClusterTLS(certFile, keyFile, caFile string) (*ClusterTLS, error) {
	return cluster.LoadTLS(certFile, keyFile, caFile)
}

// A StatsReader reads the telemetry document, the 0x0D reply's JSON
// (docs/PROTOCOL.md), at once, for an HTTP endpoint such as /stats: its
// CPU figures cover the latest interval or so, shared among callers,
// rather than a span that starts with the request. It is assembled by the
// same function as the 0x0D reply. Safe for concurrent use.
type StatsReader struct {
	b        *Broker
	sampler  *telemetry.Sampler
	interval time.Duration
}

// NewStatsReader returns a StatsReader over b's counters whose CPU figures
// cover about interval. It takes a first CPU sample now, so that the
// first document reports the usage since then rather than the average
// since the machine booted; it fails only when that sample cannot be
// read, and the reader is usable all the same.
func (b *Broker) NewStatsReader(interval time.Duration) (*StatsReader, error) {
	r := &StatsReader{b: b, sampler: telemetry.NewSampler(0), interval: interval}
	_, _, err := r.sampler.Recent(interval)
	return r, err
}

// AppendJSON appends the telemetry document, read now, to dst.
func (r *StatsReader) AppendJSON(dst []byte) ([]byte, error) {
	before, after, err := r.sampler.Recent(r.interval)
	if err != nil {
		return dst, err
	}
	doc, err := r.b.rt.telem.Document(time.Now())
	if err != nil {
		return dst, err
	}
	return doc.AppendJSON(dst, before, after)
}

// ErrorJSON is the error object a refused 0x0D request gets,
// {"error": reason} (docs/PROTOCOL.md).
func ErrorJSON(reason string) []byte { return telemetry.ErrorReply(reason) }
