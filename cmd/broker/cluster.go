package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/prometheus/client_golang/prometheus"
)

// clusterFlags are the flags of `broker serve` that configure clustering.
type clusterFlags struct {
	name      string
	addr      string
	advertise string
	peers     string
	tlsCert   string
	tlsKey    string
	tlsCA     string
}

func (f *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "cluster", "", "join the cluster of this `name` (see --cluster-addr, --peers); off when empty")
	fs.StringVar(&f.addr, "cluster-addr", "", "`HOST:PORT` this node listens on for the other nodes (protoactor remote: broadcasts and membership) and is reached at")
	fs.StringVar(&f.advertise, "cluster-advertise", "", "`HOST:PORT` the other nodes reach this one at, when not --cluster-addr (a NAT or proxy in between)")
	fs.StringVar(&f.peers, "peers", "", "the nodes' cluster addresses, `HOST:PORT,...`; this node's own may be listed")
	fs.StringVar(&f.tlsCert, "cluster-tls-cert", "", "PEM `file` of this node's certificate, for mutual TLS between nodes (with --cluster-tls-key and --cluster-tls-ca); re-read on SIGHUP")
	fs.StringVar(&f.tlsKey, "cluster-tls-key", "", "PEM `file` of the private key of --cluster-tls-cert")
	fs.StringVar(&f.tlsCA, "cluster-tls-ca", "", "PEM `file` of the CA that signs every node's certificate; only nodes it signed may join, send or receive")
}

// config checks the cluster flags and returns the cluster configuration,
// or nil when --cluster is not set.
func (f *clusterFlags) config() (*broker.ClusterConfig, error) {
	name, addr, peers := f.name, f.addr, f.peers
	tlsSet := f.tlsCert != "" || f.tlsKey != "" || f.tlsCA != ""
	if name == "" {
		if addr != "" || peers != "" || f.advertise != "" || tlsSet {
			return nil, fmt.Errorf("--cluster-addr, --cluster-advertise, --peers and --cluster-tls-* need --cluster NAME")
		}
		return nil, nil
	}
	if strings.TrimSpace(name) != name || strings.ContainsAny(name, " \t\n") {
		return nil, fmt.Errorf("--cluster %q: want a name without spaces", name)
	}
	if addr == "" {
		return nil, fmt.Errorf("--cluster %s needs --cluster-addr HOST:PORT, the address the other nodes reach this one at", name)
	}
	if err := clusterAddr("--cluster-addr", addr); err != nil {
		return nil, err
	}
	c := &broker.ClusterConfig{Name: name, Addr: addr}
	if f.advertise != "" {
		if err := clusterAddr("--cluster-advertise", f.advertise); err != nil {
			return nil, err
		}
		c.Advertise = f.advertise
	}
	for p := range strings.SplitSeq(peers, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if err := clusterAddr("--peers", p); err != nil {
			return nil, err
		}
		c.Peers = append(c.Peers, p)
	}
	if tlsSet {
		t, err := f.loadTLS()
		if err != nil {
			return nil, err
		}
		c.TLS = t
	}
	return c, nil
}

// loadTLS reads the three TLS files, and names the flag of the one that
// is missing or wrong.
func (f *clusterFlags) loadTLS() (*broker.ClusterTLS, error) {
	var missing []string
	for _, x := range []struct{ flag, v string }{{"--cluster-tls-cert", f.tlsCert}, {"--cluster-tls-key", f.tlsKey}, {"--cluster-tls-ca", f.tlsCA}} {
		if x.v == "" {
			missing = append(missing, x.flag)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("mutual TLS between nodes needs all of --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca; missing %s", strings.Join(missing, ", "))
	}
	t, err := broker.LoadClusterTLS(f.tlsCert, f.tlsKey, f.tlsCA)
	switch {
	case err == nil:
		return t, nil
	case errors.Is(err, broker.ErrClusterTLSCert):
		return nil, fmt.Errorf("--cluster-tls-cert %s: %v", f.tlsCert, err)
	case errors.Is(err, broker.ErrClusterTLSKey):
		return nil, fmt.Errorf("--cluster-tls-key %s: %v", f.tlsKey, err)
	case errors.Is(err, broker.ErrClusterTLSCA):
		return nil, fmt.Errorf("--cluster-tls-ca %s: %v", f.tlsCA, err)
	}
	return nil, err
}

// clusterTLSReloader re-reads the cluster's TLS files on SIGHUP. Files
// that do not fit are reported and the previous ones kept.
func clusterTLSReloader(t *broker.ClusterTLS, log *slog.Logger) reloader {
	return reloader{"--cluster-tls-cert", func() error {
		if err := t.Reload(); err != nil {
			return err
		}
		c := t.Certificate()
		log.Info("cluster: TLS files re-read", "subject", c.Subject.String(), "serial", c.SerialNumber.String(), "not_after", c.NotAfter)
		return nil
	}}
}

// clusterAddr checks one node's cluster address: a host the others can
// reach and a port from 1 to 65535.
func clusterAddr(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want HOST:PORT, such as 10.0.0.1:7946: %v", flag, addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("%s %q: want a host the other nodes can reach, not a wildcard", flag, addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n < 1 {
		return fmt.Errorf("%s %q: port %q: want 1 to 65535", flag, addr, port)
	}
	return nil
}

// clusterCollector is the hydrogen_cluster_ metrics of a clustered
// broker, read from the node's counters at scrape time.
type clusterCollector struct {
	node                                  *broker.ClusterView
	members, memberConns, backlog, state  *prometheus.Desc
	published, received, dropped          *prometheus.Desc
	batchesSent, batchesLost, gaps, dupes *prometheus.Desc
	refused, rejoins, spared, late        *prometheus.Desc
}

func newClusterCollector(n *broker.ClusterView) *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, prometheus.Labels{"cluster": n.Name()})
	}
	return &clusterCollector{
		node:        n,
		members:     d("hydrogen_cluster_members", "Members of the cluster now, this broker included."),
		memberConns: d("hydrogen_cluster_member_connections", "Open connections of each member, as it last told this broker.", "address"),
		backlog:     d("hydrogen_cluster_backlog_bytes", "Broadcast bytes queued for other nodes now: waiting for a batch, plus the longest peer backlog."),
		state:       d("hydrogen_cluster_state", "1 for the state this broker is in within its cluster (joining, ok, isolated), 0 for the others.", "state"),
		published:   d("hydrogen_cluster_published_total", "Broadcast frames handed to the cluster for the other nodes."),
		received:    d("hydrogen_cluster_received_total", "Broadcast frames received from other nodes and queued to this broker's streams."),
		dropped:     d("hydrogen_cluster_dropped_total", "Broadcast frames dropped for a node that could not keep up, counted once per node missed."),
		batchesSent: d("hydrogen_cluster_batches_sent_total", "Batches sent to other nodes, counted once per node."),
		batchesLost: d("hydrogen_cluster_batches_lost_total", "Batches sent and never acknowledged (node gone, or timed out)."),
		gaps:        d("hydrogen_cluster_gaps_total", "Batches from other nodes that never arrived here (dropped for this node, or lost)."),
		dupes:       d("hydrogen_cluster_duplicates_total", "Batches from other nodes refused as already seen."),
		refused:     d("hydrogen_cluster_refused_total", "Batches and membership messages refused because their sender is not a member of this cluster."),
		rejoins:     d("hydrogen_cluster_rejoins_total", "Times this broker, dropped by the other members (stopped or cut off too long), joined again as a new member."),
		spared:      d("hydrogen_cluster_group_frames_spared_total", "Group frames not sent to a node because it has no members of their group, counted once per node."),
		late:        d("hydrogen_cluster_interest_late_total", "Waits for the other nodes to acknowledge this broker's groups (a pubsub SUB's answer) that timed out."),
	}
}

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.members, c.memberConns, c.backlog, c.state, c.published, c.received, c.dropped, c.batchesSent, c.batchesLost, c.gaps, c.dupes, c.refused, c.rejoins, c.spared, c.late} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.node.Stats()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	k := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	g(c.members, float64(s.Members))
	g(c.backlog, float64(s.Backlog))
	for _, st := range broker.ClusterStates {
		v := 0.0
		if st == s.State {
			v = 1
		}
		g(c.state, v, st.String())
	}
	seen := map[string]bool{} // a restarted member may show twice for a moment
	for _, m := range c.node.Members() {
		if m.Conns >= 0 && !seen[m.Address] {
			seen[m.Address] = true
			g(c.memberConns, float64(m.Conns), m.Address)
		}
	}
	k(c.published, s.Published)
	k(c.received, s.Received)
	k(c.dropped, s.Dropped)
	k(c.batchesSent, s.BatchesSent)
	k(c.batchesLost, s.BatchesLost)
	k(c.gaps, s.Gaps)
	k(c.dupes, s.Duplicates)
	k(c.refused, s.Refused)
	k(c.rejoins, s.Rejoins)
	k(c.spared, s.Spared)
	k(c.late, s.InterestLate)
}

// printCluster adds a clustered broker's cluster object to the stats
// table: the name, then each member with its connections.
func printCluster(w io.Writer, raw json.RawMessage) {
	if raw == nil {
		return
	}
	var c struct {
		Name    string `json:"name"`
		State   string `json:"state"`
		Members []struct {
			Address string `json:"address"`
			Clients *int64 `json:"clients"`
		} `json:"members"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return
	}
	fmt.Fprintf(w, "cluster\t%s\t%d members, %s\n", c.Name, len(c.Members), c.State)
	for _, m := range c.Members {
		conns := "connections unknown"
		if m.Clients != nil {
			conns = fmt.Sprintf("%d connections", *m.Clients)
		}
		fmt.Fprintf(w, "  %s\t%s\t\n", m.Address, conns)
	}
}
