package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// hydrogenMetrics are the broker's own metrics and their types.
var hydrogenMetrics = map[string]dto.MetricType{
	"hydrogen_frames_received_total":        dto.MetricType_COUNTER,
	"hydrogen_frames_sent_total":            dto.MetricType_COUNTER,
	"hydrogen_received_bytes_total":         dto.MetricType_COUNTER,
	"hydrogen_sent_bytes_total":             dto.MetricType_COUNTER,
	"hydrogen_connections_accepted_total":   dto.MetricType_COUNTER,
	"hydrogen_connections_open":             dto.MetricType_GAUGE,
	"hydrogen_connections_closed_total":     dto.MetricType_COUNTER,
	"hydrogen_slow_consumers_total":         dto.MetricType_COUNTER,
	"hydrogen_protocol_errors_total":        dto.MetricType_COUNTER,
	"hydrogen_accept_backoffs_total":        dto.MetricType_COUNTER,
	"hydrogen_telemetry_requests_total":     dto.MetricType_COUNTER,
	"hydrogen_telemetry_requests_waiting":   dto.MetricType_GAUGE,
	"hydrogen_outbound_queued_bytes":        dto.MetricType_GAUGE,
	"hydrogen_connections_read_paused":      dto.MetricType_GAUGE,
	"hydrogen_handler_panics_total":         dto.MetricType_COUNTER,
	"hydrogen_handler_restarts_total":       dto.MetricType_COUNTER,
	"hydrogen_uptime_seconds":               dto.MetricType_GAUGE,
	"hydrogen_producer_stalls_total":        dto.MetricType_COUNTER,
	"hydrogen_connections_read_stalled":     dto.MetricType_GAUGE,
	"hydrogen_memory_used_bytes":            dto.MetricType_GAUGE,
	"hydrogen_memory_limit_bytes":           dto.MetricType_GAUGE,
	"hydrogen_memory_stalls_total":          dto.MetricType_COUNTER,
	"hydrogen_auth_failures_total":          dto.MetricType_COUNTER,
	"hydrogen_frames_refused_total":         dto.MetricType_COUNTER,
	"hydrogen_streams_released_total":       dto.MetricType_COUNTER,
	"hydrogen_tls_handshakes_total":         dto.MetricType_COUNTER,
	"hydrogen_tls_handshake_failures_total": dto.MetricType_COUNTER,
	"hydrogen_websocket_upgrades_total":     dto.MetricType_COUNTER,
	"hydrogen_websocket_refused_total":      dto.MetricType_COUNTER,
	"hydrogen_groups":                       dto.MetricType_GAUGE,
	"hydrogen_group_memberships":            dto.MetricType_GAUGE,
}

// closeReasons are the values of hydrogen_connections_closed_total's
// reason label.
var closeReasons = []string{"peer", "reset", "protocol_error", "slow_consumer", "memory", "limit", "idle", "frame_timeout", "handshake", "shutdown", "local"}

// scrapeErr GETs /metrics and parses the text exposition.
func scrapeErr(hc *http.Client, base string) ([]byte, map[string]*dto.MetricFamily, error) {
	code, h, body, err := fetch(hc, http.MethodGet, base+"/metrics")
	if err != nil {
		return nil, nil, err
	}
	if code != http.StatusOK {
		return nil, nil, fmt.Errorf("/metrics: %d %s", code, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, nil, fmt.Errorf("/metrics Content-Type %q, want the text exposition", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	return body, mfs, nil
}

func scrape(t *testing.T, hc *http.Client, base string) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	body, mfs, err := scrapeErr(hc, base)
	if err != nil {
		t.Fatal(err)
	}
	return body, mfs
}

// value is the value of the metric name with the given label pairs, and
// whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

func metricValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	v, ok := value(mfs, name, labels...)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, labels)
	}
	return v
}

// TestMetricsTraffic scrapes /metrics while clients exchange frames with
// an echo broker and checks that the counters come to exactly what the
// clients sent and received.
func TestMetricsTraffic(t *testing.T) {
	b := startBroker(t, broker.Config{})
	base := startMonitor(t, b, nil)
	hc := httpClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	const conns, frames = 4, 400
	var clients []*client.Client
	for range conns {
		c, err := client.Dial(ctx, b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}

	// Scrape all through the traffic: each scrape parses, and the frame
	// counters never go back.
	trafficDone := make(chan struct{})
	scraped := make(chan int, 1)
	go func() {
		n := 0
		var lastRecv, lastSent float64
		defer func() { scraped <- n }()
		for {
			_, mfs, err := scrapeErr(hc, base)
			if err != nil {
				t.Errorf("scrape during traffic: %v", err)
				return
			}
			n++
			recv, _ := value(mfs, "hydrogen_frames_received_total")
			sent, _ := value(mfs, "hydrogen_frames_sent_total")
			if recv < lastRecv || sent < lastSent {
				t.Errorf("frame counters went back: received %v after %v, sent %v after %v", recv, lastRecv, sent, lastSent)
			}
			lastRecv, lastSent = recv, sent
			select {
			case <-trafficDone:
				return
			default:
			}
		}
	}()

	var (
		wg                  sync.WaitGroup
		mu                  sync.Mutex
		sentBytes, gotBytes uint64
		gotFrames           uint64
	)
	for i, c := range clients {
		wg.Go(func() {
			var mine uint64
			for j := range frames {
				p := bytes.Repeat([]byte{byte('a' + i)}, (i*frames+j)%700)
				mine += uint64(len(p))
				if err := c.Send(p); err != nil {
					t.Errorf("client %d: send: %v", i, err)
					return
				}
			}
			var got, n uint64
			for j := range frames {
				p, err := c.Recv(ctx)
				if err != nil {
					t.Errorf("client %d: frame %d: %v", i, j, err)
					return
				}
				if want := (i*frames + j) % 700; len(p) != want {
					t.Errorf("client %d: frame %d has %d bytes, want %d", i, j, len(p), want)
				}
				got += uint64(len(p))
				n++
			}
			mu.Lock()
			sentBytes += mine
			gotBytes += got
			gotFrames += n
			mu.Unlock()
		})
	}
	wg.Wait()
	close(trafficDone)
	if n := <-scraped; n == 0 {
		t.Error("no scrape completed during the traffic")
	}
	if t.Failed() {
		t.FailNow()
	}
	if gotFrames != conns*frames || gotBytes != sentBytes {
		t.Fatalf("clients received %d frames, %d bytes; sent %d, %d", gotFrames, gotBytes, conns*frames, sentBytes)
	}

	// A frame counts as sent once the broker's write returns, which can
	// be a moment after the client has read it: wait for the counters
	// to come to the clients' figures, then check every one exactly.
	var mfs map[string]*dto.MetricFamily
	waitFor(t, func() string {
		return fmt.Sprintf("frames received %v, sent %v; want %d each",
			metricValue(t, mfs, "hydrogen_frames_received_total"), metricValue(t, mfs, "hydrogen_frames_sent_total"), conns*frames)
	}, func() bool {
		_, mfs = scrape(t, hc, base)
		return metricValue(t, mfs, "hydrogen_frames_received_total") >= conns*frames &&
			metricValue(t, mfs, "hydrogen_frames_sent_total") >= conns*frames
	})
	want := map[string]float64{
		"hydrogen_frames_received_total":      conns * frames,
		"hydrogen_frames_sent_total":          conns * frames,
		"hydrogen_received_bytes_total":       float64(sentBytes),
		"hydrogen_sent_bytes_total":           float64(gotBytes),
		"hydrogen_connections_accepted_total": conns,
		"hydrogen_connections_open":           conns,
		"hydrogen_slow_consumers_total":       0,
		"hydrogen_protocol_errors_total":      0,
		"hydrogen_telemetry_requests_total":   0,
		"hydrogen_telemetry_requests_waiting": 0,
		"hydrogen_handler_panics_total":       0,
		"hydrogen_handler_restarts_total":     0,
	}
	for name, w := range want {
		if got := metricValue(t, mfs, name); got != w {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
	// The 0x0D reply's counters are the same.
	if c := b.Counters(); float64(c.MsgRecv) != want["hydrogen_frames_received_total"] ||
		float64(c.MsgSent) != want["hydrogen_frames_sent_total"] ||
		float64(c.BytesRecv) != want["hydrogen_received_bytes_total"] ||
		float64(c.BytesSent) != want["hydrogen_sent_bytes_total"] {
		t.Errorf("Counters() = %+v, unlike the metrics", c)
	}

	// Closing the clients moves them from open to closed.
	for _, c := range clients {
		c.Close()
	}
	var open, closed float64
	waitFor(t, func() string { return fmt.Sprintf("%v open, %v closed; want 0 and %d", open, closed, conns) }, func() bool {
		_, mfs = scrape(t, hc, base)
		open, closed = metricValue(t, mfs, "hydrogen_connections_open"), 0
		for _, r := range closeReasons {
			closed += metricValue(t, mfs, "hydrogen_connections_closed_total", "reason", r)
		}
		return open == 0 && closed == conns
	})
}

// TestMetricsBroadcast tells frames received from frames sent: a frame
// broadcast to two other streams is received once and sent twice.
func TestMetricsBroadcast(t *testing.T) {
	b := startBrokerApp(t, broker.Config{}, broker.Broadcast())
	base := startMonitor(t, b, nil)
	hc := httpClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var clients []*client.Client
	for range 3 {
		c, err := client.Dial(ctx, b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	// Every stream must be open before the first frame is broadcast.
	waitFor(t, func() string { return fmt.Sprintf("%d streams open, want 3", b.Streams().Len()) },
		func() bool { return b.Streams().Len() == 3 })

	const frames, size = 100, 33
	for range frames {
		if err := clients[0].Send(bytes.Repeat([]byte{'b'}, size)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients[1:] {
		for j := range frames {
			if _, err := c.Recv(ctx); err != nil {
				t.Fatalf("frame %d: %v", j, err)
			}
		}
	}
	var mfs map[string]*dto.MetricFamily
	waitFor(t, func() string { return "frames sent short of 200" }, func() bool {
		_, mfs = scrape(t, hc, base)
		return metricValue(t, mfs, "hydrogen_frames_sent_total") >= 2*frames
	})
	for name, want := range map[string]float64{
		"hydrogen_frames_received_total": frames,
		"hydrogen_frames_sent_total":     2 * frames,
		"hydrogen_received_bytes_total":  frames * size,
		"hydrogen_sent_bytes_total":      2 * frames * size,
	} {
		if got := metricValue(t, mfs, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestMetricsExposition checks the scraped exposition as a whole: every
// hydrogen_ metric with its type and help, the Go and process collectors,
// and no problem promlint can find.
func TestMetricsExposition(t *testing.T) {
	b := startBroker(t, broker.Config{})
	base := startMonitor(t, b, nil)
	hc := httpClient(t)
	// A little traffic, so that the counters are not all zero.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(ctx); err != nil {
		t.Fatal(err)
	}

	body, mfs := scrape(t, hc, base)
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	for name, typ := range hydrogenMetrics {
		mf, ok := mfs[name]
		switch {
		case !ok:
			t.Errorf("no %s", name)
		case mf.GetType() != typ:
			t.Errorf("%s is a %v, want a %v", name, mf.GetType(), typ)
		case len(mf.GetHelp()) < 10:
			t.Errorf("%s: help %q", name, mf.GetHelp())
		}
	}
	for name := range mfs {
		if _, ok := hydrogenMetrics[name]; strings.HasPrefix(name, "hydrogen_") && !ok {
			t.Errorf("%s is not in the documented list", name)
		}
	}
	if n := len(mfs["hydrogen_connections_closed_total"].GetMetric()); n != len(closeReasons) {
		t.Errorf("hydrogen_connections_closed_total has %d series, want one per reason (%d)", n, len(closeReasons))
	}
	for _, r := range closeReasons {
		metricValue(t, mfs, "hydrogen_connections_closed_total", "reason", r)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("no %s: the Go or process collector is missing", name)
		}
	}
	if up := metricValue(t, mfs, "hydrogen_uptime_seconds"); up <= 0 {
		t.Errorf("hydrogen_uptime_seconds = %v", up)
	}
}

// TestCollector checks the collector on its own: its Describe agrees with
// its Collect (a pedantic registry checks that), and it lints clean.
func TestCollector(t *testing.T) {
	b := startBroker(t, broker.Config{})
	c := newCollector(b)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("pedantic Gather: %v", err)
	}
	if len(mfs) != len(hydrogenMetrics) {
		t.Errorf("%d metric families, want %d", len(mfs), len(hydrogenMetrics))
	}
	if n := testutil.CollectAndCount(c); n != len(hydrogenMetrics)-1+len(closeReasons) {
		t.Errorf("%d series, want %d", n, len(hydrogenMetrics)-1+len(closeReasons))
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// The registry /metrics serves holds it with the Go and process
	// collectors, without a conflict.
	if _, err := newRegistry(b).Gather(); err != nil {
		t.Errorf("newRegistry: %v", err)
	}
}
