package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hydrogen-mq/hydrogen/broker"
)

type serveFlags struct {
	addr          string
	app           string
	loops         int
	maxConns      int
	maxConnsPerIP int
	maxPayload    int
	maxPending    byteSize
	maxMemory     byteSize
	overflow      string
	maxInbound    int
	maxSpan       time.Duration
	idleTimeout   time.Duration
	frameTimeout  time.Duration
	tcpKeepAlive  time.Duration
	writeTimeout  time.Duration
	drainTimeout  time.Duration
	logLevel      string
	logFormat     string
	httpAddr      string
	wsAddr        string
	wsOrigins     string
	cluster       clusterFlags
	security      securityFlags
}

func serveFlagSet(f *serveFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f.maxPending = byteSize(broker.DefaultMaxPending)
	f.maxMemory = byteSize(broker.DefaultMaxMemory())
	fs.StringVar(&f.addr, "addr", broker.DefaultAddr, "TCP `address` to listen on; [::]:PORT for IPv6 and IPv4")
	fs.StringVar(&f.app, "app", "broadcast", "built-in application: echo (reply to the sender), broadcast (send to every other stream) or pubsub (topics: SUB, UNSUB, PUB; see docs/PROTOCOL.md)")
	fs.IntVar(&f.loops, "loops", runtime.GOMAXPROCS(0), "epoll event loops")
	fs.IntVar(&f.maxConns, "max-conns", 0, "maximum open connections; 0 means no limit but RLIMIT_NOFILE")
	fs.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", 0, "maximum open connections from one IP address; 0 means no limit")
	fs.IntVar(&f.maxPayload, "max-payload", 65535, "largest frame payload a client may send, in bytes (5-65535; a telemetry request is 5)")
	fs.Var(&f.maxPending, "max-pending", "outbound `bytes` queued per stream: past 3/4 its producers stall, past it (--overflow close) it is a slow consumer (e.g. 4MiB)")
	fs.Var(&f.maxMemory, "max-memory", "`bytes` of outbound queues and read buffers for the whole broker (by default a quarter of the machine's memory, at most 4GiB); past 3/4 producers stall, then the largest holders are closed")
	fs.StringVar(&f.overflow, "overflow", "close", "when a stream cannot read as fast as it is sent to: close (stall its producers briefly, then close it) or throttle (stall them while it reads; lossless)")
	fs.IntVar(&f.maxInbound, "max-inbound", 1024, "frames per stream waiting for the application before reading it pauses")
	fs.DurationVar(&f.maxSpan, "max-span", 60*time.Second, "longest telemetry span a 0x0D request may ask for")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 0, "close a stream that completes no frame for this long; 0 means never")
	fs.DurationVar(&f.frameTimeout, "frame-timeout", broker.DefaultFrameTimeout, "close a stream that began a frame and has not completed it within this long")
	fs.DurationVar(&f.tcpKeepAlive, "tcp-keepalive", broker.DefaultTCPKeepAlive, "TCP keepalive: probe a connection idle this long, every this long; 3 unanswered close it; 0 turns it off")
	fs.DurationVar(&f.writeTimeout, "write-timeout", broker.DefaultWriteTimeout, "close a stream as a slow consumer when its outbound queue has made no write progress for this long")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", broker.DefaultDrainTimeout, "how long a graceful shutdown may take to flush queued frames")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.wsAddr, "ws-addr", "", "also serve WebSocket clients on this `address` (wss with --tls-cert), e.g. 127.0.0.1:8080; off when empty")
	fs.StringVar(&f.wsOrigins, "ws-origins", "", "Origin `patterns` allowed to open a WebSocket, comma-separated (https://*.example.com, localhost:*, *); default: the page's own host")
	fs.StringVar(&f.httpAddr, "http-addr", "", "serve HTTP monitoring (/metrics, /healthz, /stats) on this `address`, e.g. 127.0.0.1:8222; off when empty")
	f.security.register(fs)
	f.cluster.register(fs)
	withEnvHelp(fs)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintln(w, "Usage: broker serve [flags]")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Serves the hydrogen broker. Every flag can also be set by the environment")
		fmt.Fprintln(w, "variable named beside it; a flag on the command line wins. SIGINT or SIGTERM")
		fmt.Fprintln(w, "drains gracefully (stop accepting, flush queued frames, close) and exits 0;")
		fmt.Fprintln(w, "a second signal exits at once.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "With --http-addr (or HYDROGEN_HTTP_ADDR), e.g. 127.0.0.1:8222, it also serves")
		fmt.Fprintln(w, "HTTP for operators: /metrics (Prometheus), /healthz (200 ok; 503 draining once")
		fmt.Fprintln(w, "a shutdown begins) and /stats (the telemetry reply as JSON, at once). It stays")
		fmt.Fprintln(w, "up while the broker drains and stops after it.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "With --auth-token-file FILE or --auth-jwt-key FILE every client authenticates:")
		fmt.Fprintln(w, "its first frame is its credential (a token or a JWT), answered before anything")
		fmt.Fprintln(w, "else of it is read. With --tls-cert and --tls-key the client port is TLS, and")
		fmt.Fprintln(w, "with --tls-client-ca clients must present certificates signed by that CA.")
		fmt.Fprintln(w, "SIGHUP re-reads the token file, keys and certificate without dropping anyone.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "With --ws-addr HOST:PORT it also serves WebSocket clients (browsers): each")
		fmt.Fprintln(w, "binary message is one payload, and a WebSocket stream is like any other.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "With --cluster NAME --cluster-addr HOST:PORT --peers HOST:PORT,... it joins a")
		fmt.Fprintln(w, "cluster of brokers (protoactor-go's; members found by probing the peers over")
		fmt.Fprintln(w, "the cluster port): a broadcast on any node reaches the streams of every node.")
		fmt.Fprintln(w, "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca make the traffic")
		fmt.Fprintln(w, "between nodes mutual TLS; SIGHUP re-reads the files.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Flags:")
		fs.PrintDefaults()
	}
	return fs
}

func runServe(args []string, stdout, stderr io.Writer) int {
	return serve(args, stdout, stderr, func(c chan<- os.Signal) (stop func()) {
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		return func() { signal.Stop(c) }
	})
}

// serve is runServe with the signal subscription handed in, so that tests
// can deliver a signal to the one serve they run rather than to the whole
// test process. notify arranges for SIGINT, SIGTERM and SIGHUP to reach
// c; the function it returns undoes that.
func serve(args []string, stdout, stderr io.Writer, notify func(c chan<- os.Signal) (stop func())) int {
	var f serveFlags
	fs := serveFlagSet(&f)
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "serve", "unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, lookupEnv); err != nil {
		return usageError(stderr, "serve", "%v", err)
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return usageError(stderr, "serve", "%v", err)
	}
	var app *actor.Props
	switch f.app {
	case "echo":
		app = broker.Echo()
	case "broadcast":
		app = broker.Broadcast()
	case "pubsub":
		app = broker.PubSub()
	default:
		return usageError(stderr, "serve", "--app %q: want echo, broadcast or pubsub", f.app)
	}
	switch {
	case f.loops < 1:
		return usageError(stderr, "serve", "--loops %d: want at least 1", f.loops)
	case f.maxConns < 0:
		return usageError(stderr, "serve", "--max-conns %d: want 0 or more", f.maxConns)
	case f.maxConnsPerIP < 0:
		return usageError(stderr, "serve", "--max-conns-per-ip %d: want 0 or more", f.maxConnsPerIP)
	case f.maxPayload < broker.MinMaxPayload || f.maxPayload > broker.MaxPayload:
		return usageError(stderr, "serve", "--max-payload %d: want %d (a telemetry request) to %d", f.maxPayload, broker.MinMaxPayload, broker.MaxPayload)
	case f.maxInbound < 1:
		return usageError(stderr, "serve", "--max-inbound %d: want at least 1", f.maxInbound)
	case f.maxSpan <= 0:
		return usageError(stderr, "serve", "--max-span %v: want a positive duration", f.maxSpan)
	case f.idleTimeout < 0:
		return usageError(stderr, "serve", "--idle-timeout %v: want 0 or a positive duration", f.idleTimeout)
	case f.frameTimeout <= 0:
		return usageError(stderr, "serve", "--frame-timeout %v: want a positive duration", f.frameTimeout)
	case f.tcpKeepAlive < 0 || (f.tcpKeepAlive > 0 && f.tcpKeepAlive < time.Second):
		return usageError(stderr, "serve", "--tcp-keepalive %v: want 0 (off) or at least 1s", f.tcpKeepAlive)
	case f.writeTimeout <= 0:
		return usageError(stderr, "serve", "--write-timeout %v: want a positive duration", f.writeTimeout)
	case f.drainTimeout <= 0:
		return usageError(stderr, "serve", "--drain-timeout %v: want a positive duration", f.drainTimeout)
	case int(f.maxPending) < 65539:
		return usageError(stderr, "serve", "--max-pending %v: want at least one largest frame, 65539 bytes", f.maxPending)
	case int64(f.maxMemory) < broker.MinMaxMemory:
		return usageError(stderr, "serve", "--max-memory %v: want at least %v", f.maxMemory, byteSizeOf(broker.MinMaxMemory))
	}
	overflow, err := broker.ParseOverflow(f.overflow)
	if err != nil {
		return usageError(stderr, "serve", "--overflow %q: want close or throttle", f.overflow)
	}
	keepAlive := f.tcpKeepAlive
	if keepAlive == 0 {
		keepAlive = -1 // off; broker.Config's zero is the default
	}
	if err := checkAddr("--addr", f.addr, "0.0.0.0:1337"); err != nil {
		return usageError(stderr, "serve", "%v", err)
	}
	if f.httpAddr != "" {
		if err := checkAddr("--http-addr", f.httpAddr, "127.0.0.1:8222"); err != nil {
			return usageError(stderr, "serve", "%v", err)
		}
	}
	if f.wsAddr != "" {
		if err := checkAddr("--ws-addr", f.wsAddr, "127.0.0.1:8080"); err != nil {
			return usageError(stderr, "serve", "%v", err)
		}
	}
	origins, err := wsOrigins(f.wsOrigins)
	if err != nil {
		return usageError(stderr, "serve", "%v", err)
	}
	clusterCfg, err := f.cluster.config()
	if err != nil {
		return usageError(stderr, "serve", "%v", err)
	}
	auth, reloaders, err := f.security.authenticator()
	if err != nil {
		return usageError(stderr, "serve", "%v", err)
	}
	tlsCfg, tlsReload, err := f.security.tlsConfig()
	if err != nil {
		return usageError(stderr, "serve", "%v", err)
	}
	reloaders = append(reloaders, tlsReload...)
	if clusterCfg != nil && clusterCfg.TLS != nil {
		reloaders = append(reloaders, clusterTLSReloader(clusterCfg.TLS, log))
	}

	// The monitoring address is bound before the broker's, so that a
	// failure to bind it leaves nothing to unwind but this listener.
	var httpLn net.Listener
	if f.httpAddr != "" {
		httpLn, err = net.Listen("tcp", f.httpAddr)
		if err != nil {
			log.Error("cannot start", "err", fmt.Errorf("--http-addr: %w", err))
			return exitError
		}
	}

	b, err := broker.New(broker.Config{
		Addr:          f.addr,
		Loops:         f.loops,
		MaxPayload:    f.maxPayload,
		MaxConns:      f.maxConns,
		MaxConnsPerIP: f.maxConnsPerIP,
		MaxPending:    int(f.maxPending),
		MaxMemory:     int64(f.maxMemory),
		Overflow:      overflow,
		WriteTimeout:  f.writeTimeout,
		MaxInbound:    f.maxInbound,
		MaxSpan:       f.maxSpan,
		IdleTimeout:   f.idleTimeout,
		FrameTimeout:  f.frameTimeout,
		TCPKeepAlive:  keepAlive,
		DrainTimeout:  f.drainTimeout,
		Logger:        log,
		Cluster:       clusterCfg,
		Authenticator: auth,
		AuthTimeout:   f.security.authTimeout,
		TLS:           tlsCfg,

		WebSocketAddr:    f.wsAddr,
		WebSocketOrigins: origins,
	})
	if err != nil {
		if httpLn != nil {
			httpLn.Close()
		}
		log.Error("cannot start", "err", err)
		return exitError
	}
	// The built-in applications do nothing on Connected and keep no
	// state in the actor: a stream's actors wait for its first frame and
	// are stopped again once it has gone quiet, so quiet streams stay
	// small whether or not they ever spoke.
	b.HandlePerStream(app, broker.OnEventLoop(), broker.SpawnOnFirstFrame(), broker.ReleaseWhenQuiet())
	stopMemLimit := limitHeap(b, int64(f.maxMemory), log)
	defer stopMemLimit()

	signals := make(chan os.Signal, 2)
	stopSignals := notify(signals)
	defer stopSignals()

	served := make(chan error, 1)
	go func() { served <- b.Serve(context.Background()) }()
	log.Info("listening", "addr", b.Addr().String(), "app", f.app, "loops", b.Loops(), "max_memory", f.maxMemory.String(), "overflow", overflow.String(), "auth", auth != nil, "tls", tlsCfg != nil, "version", versionString())
	warnIfOpen(log, b.Addr(), auth != nil, tlsCfg != nil)
	if ws := b.WebSocketAddr(); ws != nil {
		log.Info("websocket listening", "addr", ws.String(), "tls", tlsCfg != nil)
		warnIfOpen(log, ws, auth != nil, tlsCfg != nil)
	}
	// The monitoring server stops on the way out: after the broker has
	// drained and stopped, so /healthz answers 503 all through the drain;
	// at once after a second signal.
	httpStopTimeout := httpShutdownTimeout
	if httpLn != nil {
		stopHTTP := serveMonitor(newMonitorServer(b, log), httpLn, log)
		defer func() {
			// While requests in flight finish, signals are the process's
			// again: one more ends it at once.
			stopSignals()
			stopHTTP(httpStopTimeout)
		}()
		log.Info("http listening", "addr", httpLn.Addr().String())
	}

	var shutdown chan error
	for {
		select {
		case err := <-served:
			if shutdown != nil {
				err = errors.Join(err, <-shutdown)
			}
			if err != nil {
				log.Error("stopped", "err", err)
				return exitError
			}
			log.Info("stopped")
			return exitOK
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				reloadAll(reloaders, log)
				continue
			}
			if shutdown != nil {
				log.Warn("second signal; exiting at once", "signal", sig.String())
				httpStopTimeout = 0
				return exitError
			}
			st := b.Stats()
			log.Info("draining", "signal", sig.String(), "streams", st.IO.Open, "timeout", f.drainTimeout)
			shutdown = make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), f.drainTimeout)
				defer cancel()
				shutdown <- b.Shutdown(ctx)
			}()
		}
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		// Durations as people and flags write them ("10s"), not as
		// nanoseconds, which slog's JSON would print.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// wsOrigins checks --ws-origins: comma-separated path.Match patterns.
func wsOrigins(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("--ws-origins %q: a bad pattern: %v", p, err)
		}
		out = append(out, p)
	}
	return out, nil
}
