// Command broker is the hydrogen broker and its tools: serve the broker,
// query a broker's telemetry, and generate load.
//
//	broker                  serve on the defaults (0.0.0.0:1337, the broadcast application)
//	broker serve [flags]    serve, configured by flags or HYDROGEN_* variables
//	broker stats [flags]    ask a broker for telemetry (the 0x0D request)
//	broker bench MODE ...   load a broker: echo, fanout or conns
//	broker version          print the version
//	broker help [COMMAND]   print help
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "serve the broker (the default command)", runServe},
		{"stats", "ask a broker for its telemetry", runStats},
		{"bench", "generate load against a broker: echo, fanout or conns", runBench},
		{"version", "print the version", runVersion},
		{"help", "print help for a command", runHelp},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return runServe(nil, stdout, stderr)
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	if len(name) > 0 && name[0] == '-' {
		// Flags without a command are flags of serve.
		return runServe(args, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "broker: unknown command %q\n\n", name)
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Hydrogen is an actor-style message broker for long-lived TCP connections.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage:")
	fmt.Fprintln(w, "  broker [COMMAND] [FLAGS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "With no command, broker serves on the defaults. Run 'broker help COMMAND' or")
	fmt.Fprintln(w, "'broker COMMAND --help' for a command's flags.")
}

func runHelp(args []string, stdout, stderr io.Writer) int {
	// help is a command like the others: help --help, help -h and
	// help help print the list of commands.
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run([]string{"--help"}, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "broker help: unknown command %q\n", args[0])
	return exitUsage
}

// parse parses a command's flags, printing help to stdout on --help and a
// clear error to stderr otherwise. It returns the exit code to end with,
// or -1 to carry on.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "broker %s: %v\n", fs.Name(), err)
		fmt.Fprintf(stderr, "Run 'broker %s --help' for usage.\n", fs.Name())
		return exitUsage
	}
	return -1
}

func usageError(stderr io.Writer, cmd, format string, a ...any) int {
	fmt.Fprintf(stderr, "broker %s: %s\n", cmd, fmt.Sprintf(format, a...))
	fmt.Fprintf(stderr, "Run 'broker %s --help' for usage.\n", cmd)
	return exitUsage
}
