package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

const benchUsage = `Usage: broker bench echo|fanout|conns [flags]

Generates load against a running broker and prints a summary: messages (or
deliveries) per second and latency percentiles from an HDR histogram.

  echo     connections each keep frames in flight against a broker run with
           --app echo; reports round trips per second and round-trip latency.
  fanout   publishers send to a broker run with --app broadcast, subscribers
           count what arrives; reports deliveries per second, publish-to-
           delivery latency, and any gap or reordering.
  conns    opens N connections to a broker run with --app echo, verifies
           each with a round trip, and reports the broker's num_clients.

The open-file limit (ulimit -n) is per process: run the load generator and
the broker as separate processes for many connections.`

func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		w := stdout
		if len(args) == 0 {
			w = stderr
		}
		fmt.Fprintln(w, benchUsage)
		fmt.Fprintln(w, "\nRun 'broker bench MODE --help' for a mode's flags.")
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	mode, args := args[0], args[1:]
	fs := flag.NewFlagSet("bench "+mode, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1337", "broker `address`")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.Bool("quiet", false, "no progress line")
	var cf clientFlags
	cf.register(fs)
	var cn loadgen.Connect // set from cf once the flags are parsed
	var dialOpts []client.Option
	var run func(ctx context.Context, progress func(loadgen.Progress)) (any, error)
	switch mode {
	case "echo":
		conns := fs.Int("conns", 50, "connections")
		inflight := fs.Int("inflight", 16, "frames in flight per connection")
		size := fs.Int("size", 64, "payload bytes per frame (at least 8)")
		dur := fs.Duration("duration", 10*time.Second, "how long to measure")
		count := fs.Int64("count", 0, "stop after this many round trips (0: run for --duration)")
		run = func(ctx context.Context, p func(loadgen.Progress)) (any, error) {
			return loadgen.Echo(ctx, loadgen.EchoConfig{Addr: *addr, Connect: cn, Conns: *conns, InFlight: *inflight, PayloadSize: *size, Duration: *dur, Count: *count, Progress: p})
		}
	case "fanout":
		pubs := fs.Int("publishers", 1, "publishing connections")
		subs := fs.Int("subscribers", 100, "subscribing connections")
		size := fs.Int("size", 64, "payload bytes per frame (at least 16)")
		window := fs.Int("window", 256, "frames a publisher may be ahead of its slowest subscriber")
		dur := fs.Duration("duration", 10*time.Second, "how long to publish")
		count := fs.Int64("count", 0, "publish this many frames in all (0: run for --duration)")
		run = func(ctx context.Context, p func(loadgen.Progress)) (any, error) {
			return loadgen.Fanout(ctx, loadgen.FanoutConfig{Addr: *addr, Connect: cn, Publishers: *pubs, Subscribers: *subs, PayloadSize: *size, Window: *window, Duration: *dur, Count: *count, Progress: p})
		}
	case "conns":
		n := fs.Int("n", 1000, "connections to open and verify")
		conc := fs.Int("concurrency", 100, "dials under way at once")
		hold := fs.Duration("hold", 0, "keep the connections open this long after they are verified")
		run = func(ctx context.Context, p func(loadgen.Progress)) (any, error) {
			set, err := loadgen.Open(ctx, loadgen.ConnsConfig{Addr: *addr, Connect: cn, N: *n, DialConcurrency: *conc, Progress: p})
			if err != nil {
				return nil, err
			}
			defer set.Close()
			res := connsReport{ConnsResult: set.Result(), NumClients: -1}
			// Ask the broker how many clients it sees while they are all
			// open; the telemetry connection itself is one of them.
			c, err := client.Dial(ctx, *addr, dialOpts...)
			if err == nil {
				if st, err := c.Stats(ctx, 0.1); err == nil {
					res.NumClients = int64(st.NumClients) - 1
				}
				c.Close()
			}
			if *hold > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(*hold):
				}
			}
			return res, nil
		}
	default:
		return usageError(stderr, "bench", "unknown mode %q: want echo, fanout or conns", mode)
	}
	withEnvHelp(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: broker bench %s [flags]\n\nFlags:\n", mode)
		fs.PrintDefaults()
	}
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "bench "+mode, "unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, lookupEnv); err != nil {
		return usageError(stderr, "bench "+mode, "%v", err)
	}
	var err error
	if cn, err = cf.connect(); err != nil {
		return usageError(stderr, "bench "+mode, "%v", err)
	}
	if dialOpts, err = cf.dialOptions(); err != nil {
		return usageError(stderr, "bench "+mode, "%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var progress func(loadgen.Progress)
	if !*quiet {
		progress = func(p loadgen.Progress) {
			fmt.Fprintf(stderr, "\r%s  %d conns  %d sent  %d received  %d errors   ",
				p.Elapsed.Round(time.Second), p.Conns, p.Sent, p.Received, p.Errors)
		}
	}
	res, err := run(ctx, progress)
	if progress != nil {
		fmt.Fprintln(stderr)
	}
	if errors.Is(err, loadgen.ErrConfig) {
		// A value the flags accept but the load cannot use, such as an
		// echo payload too small to carry its stamp.
		return usageError(stderr, "bench "+mode, "%v", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "broker bench %s: %s\n", mode, clientError(err))
		return exitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "broker bench %s: %s\n", mode, clientError(err))
			return exitError
		}
		return exitOK
	}
	fmt.Fprintln(stdout, res)
	return exitOK
}

// connsReport is the conns mode's result: the load generator's, and the
// broker's own count of its clients while they were all open (-1 if the
// broker did not answer).
type connsReport struct {
	loadgen.ConnsResult
	NumClients int64 `json:"num_clients"`
}

func (r connsReport) String() string {
	return fmt.Sprintf("%s; broker num_clients %d", r.ConnsResult, r.NumClients)
}
