package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The monitoring server's bounds. It runs on Go's net/http, apart from
// the event loops, so a scraper can never hold up client traffic; these
// bound what one can cost the process. A scraper sends its request at once
// and reads the answer at once, so the limits are generous for it and
// short for a connection that dawdles on purpose.
const (
	// httpReadHeaderTimeout drops a connection that has not sent its
	// request headers in time: one that connects and says nothing holds
	// a goroutine and a file descriptor for this long at most.
	httpReadHeaderTimeout = 5 * time.Second
	// httpReadTimeout bounds reading a whole request; ours have no body.
	httpReadTimeout = 10 * time.Second
	// httpWriteTimeout bounds answering one request, so a client that
	// does not read its answer is dropped. It is above httpHandlerTimeout,
	// which cuts a slow collection short with a 503 before this ends the
	// connection silently, and above Prometheus's default scrape_timeout
	// (10 s).
	httpWriteTimeout = 15 * time.Second
	// httpHandlerTimeout bounds one /metrics collection.
	httpHandlerTimeout = 12 * time.Second
	// httpIdleTimeout closes a kept-alive connection idle this long. It
	// is above the usual scrape intervals (15 s to 1 min), so a scraper
	// reuses its connection instead of reconnecting every time.
	httpIdleTimeout = 2 * time.Minute
	// httpMaxHeaderBytes bounds request headers; a scraper's are a few
	// hundred bytes.
	httpMaxHeaderBytes = 8 << 10
	// httpMaxScrapes bounds concurrent /metrics collections; more are
	// answered 503 at once rather than queued.
	httpMaxScrapes = 8
	// httpShutdownTimeout bounds the wait for requests in flight when the
	// server stops, after the broker has drained.
	httpShutdownTimeout = 5 * time.Second
	// statsInterval is the span /stats reports CPU usage over: the latest
	// interval or so (broker.StatsReader), so it answers at once
	// instead of waiting for a span as the 0x0D request does.
	statsInterval = time.Second
)

// checkAddr checks that the address given to flag is HOST:PORT with a port
// from 0 to 65535, naming the flag and an example otherwise.
// HOST may be empty (every interface), an IP address or a name; whether it
// can be bound is for net.Listen to say.
func checkAddr(flag, addr, example string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want HOST:PORT, such as %s: %v", flag, addr, example, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s %q: port %q is not a number from 0 to 65535", flag, addr, port)
	}
	return nil
}

// monitor answers the HTTP monitoring endpoints of one broker.
type monitor struct {
	b       *broker.Broker
	log     *slog.Logger
	reader  *broker.StatsReader
	metrics http.Handler
}

func newMonitor(b *broker.Broker, log *slog.Logger) *monitor {
	m := &monitor{
		b:   b,
		log: log,
		metrics: promhttp.HandlerFor(newRegistry(b), promhttp.HandlerOpts{
			ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelError),
			ErrorHandling:       promhttp.ContinueOnError,
			MaxRequestsInFlight: httpMaxScrapes,
			Timeout:             httpHandlerTimeout,
		}),
	}
	// A first sample now, so that /stats reports CPU usage since the
	// monitor started rather than the average since boot.
	var err error
	if m.reader, err = b.NewStatsReader(statsInterval); err != nil {
		log.Warn("http /stats: reading CPU usage", "err", err)
	}
	return m
}

// handler routes the endpoints. The GET patterns answer HEAD too, and
// other methods get 405 with an Allow header.
func (m *monitor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.metrics)
	mux.HandleFunc("GET /healthz", m.healthz)
	mux.HandleFunc("GET /stats", m.stats)
	mux.HandleFunc("GET /{$}", m.index)
	return mux
}

// healthz is 200 "ok" while the broker serves and 503 "draining" from the
// moment a shutdown begins, so a load balancer stops sending new clients
// while the broker flushes what it queued. A clustered broker is also 503,
// "cluster joining" or "cluster isolated", while it does not exchange
// broadcasts with the members that answer it, or they are not most of its
// cluster: a client sent there would miss the other nodes' broadcasts, so
// new clients belong on another node. The broker keeps serving the clients
// it has, and turns 200 by itself once it is back.
func (m *monitor) healthz(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if m.b.Draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "draining")
		return
	}
	if n := m.b.Cluster(); n != nil {
		if st := n.State(); st != broker.ClusterOK {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "cluster "+st.String())
			return
		}
	}
	io.WriteString(w, "ok")
}

// stats is the 0x0D reply's document, answered at once: its CPU figures
// cover the latest statsInterval or so, shared among callers by the
// Sampler, rather than a span starting with the request.
func (m *monitor) stats(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	doc, err := m.reader.AppendJSON(make([]byte, 0, 1024))
	if err != nil {
		m.statsError(w, err)
		return
	}
	w.Write(append(doc, '\n'))
}

// statsError answers 500 with the error object a refused 0x0D request
// gets, {"error": "..."}, and logs the cause.
func (m *monitor) statsError(w http.ResponseWriter, err error) {
	m.log.Error("http /stats", "err", err)
	w.WriteHeader(http.StatusInternalServerError)
	w.Write(append(broker.ErrorJSON(err.Error()), '\n'))
}

func (m *monitor) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "hydrogen broker monitoring\n\n"+
		"/metrics  Prometheus metrics\n"+
		"/healthz  200 ok while serving; 503 draining during shutdown, or cluster joining/isolated\n"+
		"/stats    the telemetry reply (0x0D) as JSON\n")
}

// newMonitorServer is the HTTP server of the monitoring endpoints of b,
// with every timeout set (see the constants above).
func newMonitorServer(b *broker.Broker, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           newMonitor(b, log).handler(),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serveMonitor serves srv on ln in a goroutine it owns. The returned stop
// shuts srv down, letting requests in flight finish within timeout (0:
// not at all) and then closing what remains, and returns once the
// goroutine has ended.
// Serving failing on its own (accept failing for good) is logged, and the
// broker carries on without its monitoring.
func serveMonitor(srv *http.Server, ln net.Listener, log *slog.Logger) (stop func(timeout time.Duration)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return func(timeout time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			if timeout > 0 {
				log.Warn("http shutdown: closing requests still in flight", "err", err)
			}
			srv.Close()
		}
		<-done
	}
}
