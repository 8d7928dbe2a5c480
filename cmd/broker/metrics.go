package main

import (
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newRegistry is the registry /metrics serves: the broker's collector and
// the Go runtime's and the process's. It is a registry of its own, not
// prometheus.DefaultRegisterer, so that nothing else in the process (a
// library registering metrics in an init) can change what operators see.
func newRegistry(b *broker.Broker) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(b),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if b != nil && b.Cluster() != nil { // (some tests pass no broker)
		n := b.Cluster()
		reg.MustRegister(newClusterCollector(n))
	}
	return reg
}

// snapshot is what one scrape reads from the broker, once, so that every
// metric of the scrape comes from the same moment.
type snapshot struct {
	st     broker.Stats
	queued int64
	groups broker.GroupStats
}

// metric is one hydrogen_ metric without labels: how to read its value
// from a snapshot.
type metric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(s *snapshot) float64
}

// collector is a prometheus.Collector over a broker's counters. It reads
// them at scrape time: the counters stay the atomics the event loops and
// actors already keep (broker.Stats, the same ones the 0x0D reply
// reports), so serving metrics adds no lock, channel send or
// allocation to the frame path — a scrape costs one pass over the loops'
// counters and one over the stream list (QueuedBytes).
type collector struct {
	b       *broker.Broker
	metrics []metric
	closed  *prometheus.Desc // hydrogen_connections_closed_total{reason}
	members *prometheus.Desc // hydrogen_group_members{group}, the largest groups
}

func newCollector(b *broker.Broker) *collector {
	counter := func(name, help string, v func(s *snapshot) uint64) metric {
		return metric{
			desc:  prometheus.NewDesc(name, help, nil, nil),
			typ:   prometheus.CounterValue,
			value: func(s *snapshot) float64 { return float64(v(s)) },
		}
	}
	gauge := func(name, help string, v func(s *snapshot) float64) metric {
		return metric{desc: prometheus.NewDesc(name, help, nil, nil), typ: prometheus.GaugeValue, value: v}
	}
	return &collector{
		b: b,
		metrics: []metric{
			counter("hydrogen_frames_received_total",
				"Frames received from clients since the broker started, telemetry requests included (msg_recv of the 0x0D reply).",
				func(s *snapshot) uint64 { return s.st.IO.MsgRecv }),
			counter("hydrogen_frames_sent_total",
				"Frames written to clients since the broker started; a broadcast to N streams counts N (msg_sent of the 0x0D reply).",
				func(s *snapshot) uint64 { return s.st.IO.MsgSent }),
			counter("hydrogen_received_bytes_total",
				"Payload bytes of the frames received, framing excluded (bytes_recv of the 0x0D reply).",
				func(s *snapshot) uint64 { return s.st.IO.BytesRecv }),
			counter("hydrogen_sent_bytes_total",
				"Payload bytes of the frames sent, framing excluded (bytes_sent of the 0x0D reply).",
				func(s *snapshot) uint64 { return s.st.IO.BytesSent }),
			counter("hydrogen_connections_accepted_total",
				"Connections accepted, those then refused at --max-conns included.",
				func(s *snapshot) uint64 { return s.st.IO.Accepted }),
			gauge("hydrogen_connections_open",
				"Connections open now (num_clients of the 0x0D reply).",
				func(s *snapshot) float64 { return float64(s.st.IO.Open) }),
			counter("hydrogen_slow_consumers_total",
				"Connections closed because their outbound queue passed --max-pending or made no write progress for --write-timeout (those closed by the memory budget are counted apart).",
				func(s *snapshot) uint64 { return s.st.IO.ClosedSlow }),
			counter("hydrogen_producer_stalls_total",
				"Times a connection's reading stalled because a stream it fed passed 3/4 of --max-pending (see --overflow).",
				func(s *snapshot) uint64 { return s.st.IO.ProducerStalls }),
			gauge("hydrogen_connections_read_stalled",
				"Connections whose reading is stalled now because a stream they feed is full.",
				func(s *snapshot) float64 { return float64(s.st.IO.StalledReads) }),
			gauge("hydrogen_memory_used_bytes",
				"Bytes counted against --max-memory now: queued for clients, and read buffers.",
				func(s *snapshot) float64 { return float64(s.st.IO.MemoryUsed) }),
			gauge("hydrogen_memory_limit_bytes",
				"The memory budget, --max-memory.",
				func(s *snapshot) float64 { return float64(s.st.IO.MemoryLimit) }),
			counter("hydrogen_auth_failures_total",
				"Credentials refused (a stream that sends none in time is closed{reason=\"handshake\"}).",
				func(s *snapshot) uint64 { return s.st.Actors.AuthFailures }),
			counter("hydrogen_frames_refused_total",
				"Frames the application refused with an error frame, such as those of an identity that may not publish.",
				func(s *snapshot) uint64 { return s.st.Actors.FramesRefused }),
			counter("hydrogen_streams_released_total",
				"Times a quiet stream's actors were stopped, to be made again at its next frame.",
				func(s *snapshot) uint64 { return s.st.Actors.StreamsReleased }),
			counter("hydrogen_tls_handshakes_total",
				"TLS handshakes completed on the client port.",
				func(s *snapshot) uint64 { return s.st.IO.TLSHandshakes }),
			counter("hydrogen_tls_handshake_failures_total",
				"TLS handshakes on the client port that failed or timed out.",
				func(s *snapshot) uint64 { return s.st.IO.TLSHandshakeFailures }),
			counter("hydrogen_websocket_upgrades_total",
				"WebSocket upgrades accepted on --ws-addr.",
				func(s *snapshot) uint64 { return s.st.IO.WebSocketUpgrades }),
			counter("hydrogen_websocket_refused_total",
				"WebSocket upgrade requests refused on --ws-addr: malformed (400), or from an origin not allowed (403).",
				func(s *snapshot) uint64 { return s.st.IO.WebSocketRefused }),
			gauge("hydrogen_groups",
				"Groups (rooms, topics) of streams with members now.",
				func(s *snapshot) float64 { return float64(s.groups.Groups) }),
			gauge("hydrogen_group_memberships",
				"Members of all groups together now: a stream in three groups counts three.",
				func(s *snapshot) float64 { return float64(s.groups.Memberships) }),
			counter("hydrogen_memory_stalls_total",
				"Times the memory budget passed 3/4 and every connection's reading stalled.",
				func(s *snapshot) uint64 { return s.st.IO.MemoryStalls }),
			counter("hydrogen_protocol_errors_total",
				"Connections closed for breaking the frame format (bad start or end byte, payload over --max-payload).",
				func(s *snapshot) uint64 { return s.st.IO.ClosedProtocol }),
			counter("hydrogen_accept_backoffs_total",
				"Times accepting backed off for lack of file descriptors (EMFILE, ENFILE).",
				func(s *snapshot) uint64 { return s.st.IO.AcceptBackoffs }),
			counter("hydrogen_telemetry_requests_total",
				"Telemetry (0x0D) requests received, refused ones included.",
				func(s *snapshot) uint64 { return s.st.Actors.TelemetryRequests }),
			gauge("hydrogen_telemetry_requests_waiting",
				"Telemetry (0x0D) requests waiting now for their span to pass.",
				func(s *snapshot) float64 { return float64(s.st.Actors.TelemetryWaiting) }),
			gauge("hydrogen_outbound_queued_bytes",
				"Bytes queued for clients and not yet written to their sockets, summed over every open connection.",
				func(s *snapshot) float64 { return float64(s.queued) }),
			gauge("hydrogen_connections_read_paused",
				"Connections whose reading is paused now by inbound backpressure (--max-inbound frames waiting for the application).",
				func(s *snapshot) float64 { return float64(s.st.IO.PausedReads) }),
			counter("hydrogen_handler_panics_total",
				"Panics recovered in application actors.",
				func(s *snapshot) uint64 { return s.st.Actors.HandlerPanics }),
			counter("hydrogen_handler_restarts_total",
				"Restarts of application actors by their supervisor.",
				func(s *snapshot) uint64 { return s.st.Actors.HandlerRestarts }),
			gauge("hydrogen_uptime_seconds",
				"Seconds since the broker started.",
				func(s *snapshot) float64 { return s.st.UpTime.Seconds() }),
		},
		closed: prometheus.NewDesc("hydrogen_connections_closed_total",
			"Connections closed, by reason: peer (end of file), reset (RST or other socket error), protocol_error, slow_consumer, memory (closed by the memory budget), limit (refused at --max-conns or --max-conns-per-ip), idle (--idle-timeout), frame_timeout (--frame-timeout), handshake (a TLS handshake or authentication that failed or timed out), shutdown, local (closed by the application).",
			[]string{"reason"}, nil),
		members: prometheus.NewDesc("hydrogen_group_members",
			"Members of each of the ten largest groups now.",
			[]string{"group"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
	ch <- c.closed
	ch <- c.members
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := snapshot{st: c.b.Stats(), queued: c.b.QueuedBytes(), groups: c.b.Streams().GroupStats()}
	for _, g := range s.groups.Largest {
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(g.Members), g.Name)
	}
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(&s))
	}
	n := &s.st.IO // the loops' counters, closed-by-reason among them
	for _, r := range []struct {
		reason string
		n      uint64
	}{
		{"peer", n.ClosedPeer},
		{"reset", n.ClosedReset},
		{"protocol_error", n.ClosedProtocol},
		{"slow_consumer", n.ClosedSlow},
		{"memory", n.ClosedMemory},
		{"limit", n.ClosedLimit},
		{"idle", n.ClosedIdle},
		{"frame_timeout", n.ClosedFrame},
		{"handshake", n.ClosedHandshake},
		{"shutdown", n.ClosedShutdown},
		{"local", n.ClosedLocal},
	} {
		ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(r.n), r.reason)
	}
}
