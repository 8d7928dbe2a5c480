package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hydrogen-mq/hydrogen/client"
)

func runStats(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1337", "broker `address` to ask")
	seconds := fs.Float64("seconds", 1, "span of the reading: the broker measures CPU over this many seconds before it answers")
	asJSON := fs.Bool("json", false, "print the reply's JSON exactly as received")
	watch := fs.Bool("watch", false, "keep asking and show a live view (rates per second, connections, CPU per core) until interrupted")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait to connect, and for a reply beyond the span")
	var cf clientFlags
	cf.register(fs)
	withEnvHelp(fs)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintln(w, "Usage: broker stats [flags]")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Sends the telemetry request (0x0D) to a broker and prints the reply: counters,")
		fmt.Fprintln(w, "connections, machine memory, and CPU overall and per core over the span.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Flags:")
		fs.PrintDefaults()
	}
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "stats", "unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, lookupEnv); err != nil {
		return usageError(stderr, "stats", "%v", err)
	}
	if math.IsNaN(*seconds) || *seconds <= 0 || *seconds > 3600 {
		return usageError(stderr, "stats", "--seconds %v: want a span above 0 (the broker allows up to its --max-span)", *seconds)
	}
	if *timeout <= 0 {
		return usageError(stderr, "stats", "--timeout %v: want a positive duration", *timeout)
	}
	if *asJSON && *watch {
		return usageError(stderr, "stats", "--json and --watch do not go together")
	}
	opts, err := cf.dialOptions()
	if err != nil {
		return usageError(stderr, "stats", "%v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	c, err := client.Dial(dctx, *addr, opts...)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "broker stats: %s\n", clientError(err))
		return exitError
	}
	defer c.Close()

	span := float32(*seconds)
	ask := func() (*client.Stats, error) {
		rctx, cancel := context.WithTimeout(ctx, time.Duration(*seconds*float64(time.Second))+*timeout)
		defer cancel()
		return c.Stats(rctx, span)
	}
	if !*watch {
		st, err := ask()
		if err != nil {
			fmt.Fprintf(stderr, "broker stats: %s\n", clientError(err))
			return exitError
		}
		if *asJSON {
			stdout.Write(st.Raw)
			fmt.Fprintln(stdout)
			return exitOK
		}
		printStats(stdout, *addr, st, nil, 0)
		return exitOK
	}

	clear := isTerminal(stdout)
	var prev *client.Stats
	var prevAt time.Time
	for {
		st, err := ask()
		if ctx.Err() != nil {
			return exitOK // interrupted: the normal end of a watch
		}
		if err != nil {
			fmt.Fprintf(stderr, "broker stats: %s\n", clientError(err))
			return exitError
		}
		now := time.Now()
		if clear {
			fmt.Fprint(stdout, "\033[H\033[2J")
		}
		printStats(stdout, *addr, st, prev, now.Sub(prevAt))
		if !clear {
			fmt.Fprintln(stdout)
		}
		prev, prevAt = st, now
	}
}

// printStats prints a reading as a table. With a previous reading it adds
// rates per second over the time between the two.
func printStats(w io.Writer, addr string, st, prev *client.Stats, elapsed time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "broker\t%s\tup %s\n", addr, time.Duration(st.UpTime)*time.Second)
	fmt.Fprintf(tw, "connections\t%d\t\n", st.NumClients)
	rate := func(cur, old uint64) string {
		if prev == nil || elapsed <= 0 || cur < old {
			return ""
		}
		return fmt.Sprintf("%.0f/s", float64(cur-old)/elapsed.Seconds())
	}
	var o client.Stats
	if prev != nil {
		o = *prev
	}
	fmt.Fprintf(tw, "frames received\t%d\t%s\n", st.MsgRecv, rate(st.MsgRecv, o.MsgRecv))
	fmt.Fprintf(tw, "frames sent\t%d\t%s\n", st.MsgSent, rate(st.MsgSent, o.MsgSent))
	fmt.Fprintf(tw, "bytes received\t%s\t%s\n", humanBytes(st.BytesRecv), rateBytes(prev != nil, st.BytesRecv, o.BytesRecv, elapsed))
	fmt.Fprintf(tw, "bytes sent\t%s\t%s\n", humanBytes(st.BytesSent), rateBytes(prev != nil, st.BytesSent, o.BytesSent, elapsed))
	ram := st.Resources.RAM
	fmt.Fprintf(tw, "machine RAM\t%s used of %s\t\n", humanBytes(ram.BytesUsed), humanBytes(ram.BytesAvailable))
	fmt.Fprintf(tw, "CPU overall\t%s\t\n", percent(st.Resources.CPUOverall))
	for _, c := range st.Resources.CPUPerCore {
		fmt.Fprintf(tw, "  cpu%d\t%s\t%s\n", c.Core, percent(c.Using), bar(c.Using))
	}
	for _, k := range []string{"connections_accepted", "slow_consumers", "closed_memory", "protocol_errors", "telemetry_requests", "handler_panics", "paused_reads", "producer_stalls"} {
		if v, ok := st.Extra[k]; ok {
			fmt.Fprintf(tw, "%s\t%s\t\n", strings.ReplaceAll(k, "_", " "), v)
		}
	}
	printMemory(tw, st.Extra["memory"])
	printCluster(tw, st.Extra["cluster"])
	tw.Flush()
}

func rateBytes(ok bool, cur, old uint64, elapsed time.Duration) string {
	if !ok || elapsed <= 0 || cur < old {
		return ""
	}
	return humanBytes(uint64(float64(cur-old)/elapsed.Seconds())) + "/s"
}

func percent(f float64) string { return fmt.Sprintf("%5.1f%%", 100*f) }

func bar(f float64) string {
	n := int(f*20 + 0.5)
	n = max(0, min(n, 20))
	return "[" + strings.Repeat("#", n) + strings.Repeat(" ", 20-n) + "]"
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// isTerminal reports whether w is a terminal, where the live view redraws
// the screen instead of printing one reading after another.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// printMemory adds the memory budget to the stats table.
func printMemory(w io.Writer, raw json.RawMessage) {
	var m struct {
		Used    int64 `json:"used_bytes"`
		Limit   int64 `json:"limit_bytes"`
		Stalled bool  `json:"stalled"`
	}
	if raw == nil || json.Unmarshal(raw, &m) != nil || m.Limit <= 0 {
		return
	}
	state := ""
	if m.Stalled {
		state = "stalling producers"
	}
	fmt.Fprintf(w, "memory budget\t%s used of %s\t%s\n", humanBytes(uint64(max(m.Used, 0))), humanBytes(uint64(m.Limit)), state)
}

// clientError is err's text without the client's "hydrogen: " prefix: the
// command names itself already.
func clientError(err error) string { return strings.TrimPrefix(err.Error(), "hydrogen: ") }
