package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hydrogen-mq/hydrogen/internal/testnet"
)

// The C ABI is tested as C uses it: the library built with
// -buildmode=c-shared, C programs compiled against hydrogen.h and linked
// with it, run against the broker binary on a loopback port.

// root is the module root, where the go commands run.
const root = "../.."

// TestCABI builds the library, the broker and the C programs once, then
// runs each program against a broker of its own.
func TestCABI(t *testing.T) {
	cc := cCompiler(t)
	dir := t.TempDir()
	lib := filepath.Join(dir, "libhydrogen.so")
	broker := filepath.Join(dir, "broker")
	// The library is built without -race whatever the test runs with: a
	// c-shared library has no business carrying the race runtime into a C
	// program.
	goBuild(t, "-buildmode=c-shared", "-o", lib, "./cmd/libhydrogen")
	goBuild(t, "-o", broker, "./cmd/broker")
	// The command line examples/c/README.md gives, plus warnings as errors.
	for _, prog := range []string{"pingpong", "threads"} {
		run(t, root, cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread",
			"-o", filepath.Join(dir, prog), filepath.Join("examples", "c", prog+".c"),
			"-I", filepath.Join("cmd", "libhydrogen"), "-L", dir, "-lhydrogen", "-Wl,-rpath,$ORIGIN")
	}

	t.Run("Header", func(t *testing.T) { testHeader(t, cc, dir) })

	t.Run("Pingpong", func(t *testing.T) {
		b := startBroker(t, broker)
		stdout, stderr, code := runProgram(t, filepath.Join(dir, "pingpong"), b.Addr)
		if code != 0 {
			t.Fatalf("pingpong exited %d\nstdout:\n%s\nstderr:\n%s\nbroker log:\n%s", code, stdout, stderr, b.Log())
		}
		checkPingpong(t, stdout, 2)
		if stderr != "" {
			t.Errorf("pingpong wrote to stderr:\n%s", stderr)
		}
	})

	t.Run("PingpongFails", func(t *testing.T) {
		// A port nobody listens on: the listener is closed before the
		// program runs, so the connection is refused.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		stdout, stderr, code := runProgram(t, filepath.Join(dir, "pingpong"), addr)
		const want = "pingpong: connect: error -7: hy_connect: " // -7 is HY_EIO
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "refused") {
			t.Errorf("pingpong %s: exit %d, stdout %q, stderr %q; want 1, nothing, %q... refused", addr, code, stdout, stderr, want)
		}
		if _, stderr, code := runProgram(t, filepath.Join(dir, "pingpong")); code != 2 || !strings.Contains(stderr, "usage") {
			t.Errorf("pingpong without an address: exit %d, stderr %q; want 2 and the usage", code, stderr)
		}
	})

	t.Run("PingpongSecure", func(t *testing.T) { testPingpongSecure(t, dir, broker) })

	t.Run("Threads", func(t *testing.T) {
		b := startBroker(t, broker)
		stdout, stderr, code := runProgram(t, filepath.Join(dir, "threads"), b.Addr)
		if code != 0 || !strings.HasSuffix(stdout, "threads: all checks passed\n") {
			t.Fatalf("threads exited %d\nstdout:\n%s\nstderr:\n%s\nbroker log:\n%s", code, stdout, stderr, b.Log())
		}
		t.Logf("threads:\n%s", stdout)
	})
}

// checkPingpong checks the example's output line by line: the exchange,
// the reply as received, and the fields it parsed out of it.
func checkPingpong(t *testing.T, stdout string, msgRecv uint64) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("pingpong printed %d lines, want 6:\n%s", len(lines), stdout)
	}
	if lines[0] != "sent: ping" || lines[1] != "received: ping" {
		t.Errorf("pingpong's exchange:\n%s\n%s\nwant:\nsent: ping\nreceived: ping", lines[0], lines[1])
	}
	raw, found := strings.CutPrefix(lines[2], "telemetry: ")
	if !found {
		t.Fatalf("line 3 is %q, want telemetry: {...}", lines[2])
	}
	var reply struct {
		UpTime     *uint64         `json:"up_time"`
		NumClients *uint64         `json:"num_clients"`
		MsgRecv    *uint64         `json:"msg_recv"`
		Resources  json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal([]byte(raw), &reply); err != nil {
		t.Fatalf("telemetry line is not a JSON object: %v\n%s", err, raw)
	}
	if reply.UpTime == nil || reply.NumClients == nil || reply.MsgRecv == nil || reply.Resources == nil {
		t.Fatalf("telemetry reply lacks a required field:\n%s", raw)
	}
	// A fresh broker, and this program its only client: it has received
	// the ping and the telemetry request (and the credential, if any).
	want := []string{
		fmt.Sprintf("up_time: %d", *reply.UpTime),
		"num_clients: 1",
		fmt.Sprintf("msg_recv: %d", msgRecv),
	}
	if got := lines[3:]; !slices.Equal(got, want) {
		t.Errorf("parsed fields:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if *reply.NumClients != 1 || *reply.MsgRecv != msgRecv {
		t.Errorf("reply has num_clients %d, msg_recv %d; want 1 and %d", *reply.NumClients, *reply.MsgRecv, msgRecv)
	}
}

var (
	// declRE matches a function declaration of hydrogen.h.
	declRE = regexp.MustCompile(`(?m)^(?:int32_t|int64_t) (hy_\w+)\(`)
	// exportRE matches a prototype cgo wrote into libhydrogen.h.
	exportRE = regexp.MustCompile(`(?m)^extern \w+ (hy_\w+)\(`)
)

// testHeader checks that hydrogen.h declares exactly the functions the
// library exports, and that a C file including both headers compiles with
// every function taken as the type hydrogen.h documents. (The library's
// build already fails if a declaration and its export disagree: the cgo
// preamble includes hydrogen.h.)
func testHeader(t *testing.T, cc, dir string) {
	public, err := os.ReadFile("hydrogen.h")
	if err != nil {
		t.Fatal(err)
	}
	generated, err := os.ReadFile(filepath.Join(dir, "libhydrogen.h"))
	if err != nil {
		t.Fatal(err)
	}
	names := func(re *regexp.Regexp, src []byte) []string {
		var out []string
		for _, m := range re.FindAllSubmatch(src, -1) {
			out = append(out, string(m[1]))
		}
		slices.Sort(out)
		return out
	}
	declared, exported := names(declRE, public), names(exportRE, generated)
	if len(declared) == 0 || !slices.Equal(declared, exported) {
		t.Errorf("hydrogen.h declares %v; the library exports %v", declared, exported)
	}
	// Every function must be in the compiled check too.
	check, err := os.ReadFile(filepath.Join("testdata", "header.c"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range declared {
		if !bytes.Contains(check, []byte("= "+name+";")) {
			t.Errorf("testdata/header.c does not check %s", name)
		}
	}
	for _, std := range []string{"-std=c99", "-std=c11"} {
		run(t, ".", cc, std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", ".", "-I", dir,
			"-c", "-o", filepath.Join(dir, "header.o"), filepath.Join("testdata", "header.c"))
	}
}

// cCompiler returns the C compiler to use: $CC, or cc, or gcc. It skips
// the test when there is none, or when cgo is off (the library cannot be
// built then) — unless HYDROGEN_REQUIRE_C=1, as scripts/test sets, when
// it fails instead.
func cCompiler(t *testing.T) string {
	t.Helper()
	skip := t.Skip
	if os.Getenv("HYDROGEN_REQUIRE_C") == "1" {
		skip = t.Fatal
	}
	out, err := exec.Command("go", "env", "CGO_ENABLED").Output()
	if err != nil {
		t.Fatalf("go env CGO_ENABLED: %v", err)
	}
	if strings.TrimSpace(string(out)) != "1" {
		skip("cgo is disabled: the C library cannot be built")
	}
	candidates := []string{"cc", "gcc"}
	if f := strings.Fields(os.Getenv("CC")); len(f) > 0 {
		candidates = append([]string{f[0]}, candidates...)
	}
	for _, c := range candidates {
		if path, err := exec.LookPath(c); err == nil {
			return path
		}
	}
	skip("no C compiler (cc or gcc) found")
	return ""
}

// goBuild runs go build with args in the module root, without inheriting
// -race or other build flags from the environment.
func goBuild(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"build"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// run runs a build command in dir and fails the test if it fails.
func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// runProgram runs a C program with a deadline and returns its stdout,
// stderr and exit code.
func runProgram(t *testing.T, prog string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runProgramEnv(t, nil, prog, args...)
}

// runProgramEnv is runProgram with env added to the environment.
func runProgramEnv(t *testing.T, env []string, prog string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within a minute\nstdout:\n%s\nstderr:\n%s", filepath.Base(prog), &out, &errOut)
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("%s: %v", filepath.Base(prog), err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// startBroker runs the echo broker built at bin on a free loopback port.
func startBroker(t *testing.T, bin string) *testnet.Broker {
	t.Helper()
	return testnet.StartBroker(t, bin, "--app", "echo")
}
