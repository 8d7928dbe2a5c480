package telemetry

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The contract's required members, in order, and those of its objects.
var (
	requiredTop       = []string{"up_time", "bytes_recv", "bytes_sent", "msg_recv", "msg_sent", "num_clients", "resources"}
	requiredResources = []string{"ram", "cpu_overall", "cpu_per_core"}
	requiredRAM       = []string{"bytes_used", "bytes_available"}
)

// realReply builds and encodes a reply from the real /proc, with a busy
// goroutine's worth of span left out: the shape is what is under test.
func realReply(t *testing.T) []byte {
	t.Helper()
	s := NewSampler(time.Millisecond)
	before, err := s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	after, err := ReadCPU()
	if err != nil {
		t.Fatal(err)
	}
	mem, err := ReadMemInfo()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-90 * time.Minute)
	c := Counters{BytesRecv: 1 << 40, BytesSent: 7, MsgRecv: 3, MsgSent: math.MaxUint64, NumClients: 12}
	r := BuildReply(start, time.Now(), c, before, after, mem)
	b, err := r.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReplyJSONShape(t *testing.T) {
	raw := realReply(t)
	if !utf8.Valid(raw) || !json.Valid(raw) {
		t.Fatalf("not valid JSON: %s", raw)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep each number's text, to tell 12 from 12.0
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}

	for _, k := range requiredTop[:6] {
		checkCounter(t, k, doc[k])
	}
	res, ok := doc["resources"].(map[string]any)
	if !ok {
		t.Fatalf("resources is %T, want an object", doc["resources"])
	}
	ram, ok := res["ram"].(map[string]any)
	if !ok {
		t.Fatalf("resources.ram is %T, want an object", res["ram"])
	}
	for _, k := range requiredRAM {
		checkCounter(t, "resources.ram."+k, ram[k])
	}
	checkFraction(t, "resources.cpu_overall", res["cpu_overall"])
	cores, ok := res["cpu_per_core"].([]any)
	if !ok {
		t.Fatalf("resources.cpu_per_core is %T, want an array", res["cpu_per_core"])
	}
	var got []int
	for _, e := range cores {
		c, ok := e.(map[string]any)
		if !ok || len(c) != 2 {
			t.Fatalf("cpu_per_core entry %v, want an object of core and using", e)
		}
		n := checkCounter(t, "cpu_per_core.core", c["core"])
		got = append(got, int(n))
		checkFraction(t, "cpu_per_core.using", c["using"])
	}
	if want := coreLines(t); !reflect.DeepEqual(got, want) {
		t.Errorf("cpu_per_core cores %v, want one per cpuN line of /proc/stat: %v", got, want)
	}

	// The values made it through: MemTotal, and the counters at their
	// extremes.
	if n := checkCounter(t, "bytes_available", ram["bytes_available"]); n != memTotalKB(t)*1024 {
		t.Errorf("bytes_available %d, want MemTotal %d kB × 1024", n, memTotalKB(t))
	}
	if doc["msg_sent"].(json.Number).String() != "18446744073709551615" || doc["up_time"].(json.Number).String() != "5400" {
		t.Errorf("msg_sent %v, up_time %v; want 18446744073709551615 and 5400", doc["msg_sent"], doc["up_time"])
	}
	if _, ok := doc["cluster"]; ok {
		t.Error("cluster present for a broker running alone")
	}
}

// checkCounter checks that v is a JSON integer: a non-negative number
// written without a fraction or an exponent.
func checkCounter(t *testing.T, name string, v any) uint64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Errorf("%s is %T (%v), want a number", name, v, v)
		return 0
	}
	if strings.ContainsAny(n.String(), ".eE-") {
		t.Errorf("%s is %s, want an integer written as one", name, n)
	}
	var u uint64
	if err := json.Unmarshal([]byte(n), &u); err != nil {
		t.Errorf("%s: %v", name, err)
	}
	return u
}

func checkFraction(t *testing.T, name string, v any) {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Errorf("%s is %T (%v), want a number", name, v, v)
		return
	}
	if f, err := n.Float64(); err != nil || f < 0 || f > 1 {
		t.Errorf("%s is %s, want a number in [0, 1]", name, n)
	}
}

// The required members come first and in the contract's order.
func TestReplyJSONOrder(t *testing.T) {
	dec := json.NewDecoder(bytes.NewReader(realReply(t)))
	top := objectKeys(t, dec, "resources")
	if len(top.keys) < len(requiredTop) || !reflect.DeepEqual(top.keys[:len(requiredTop)], requiredTop) {
		t.Errorf("members %v, want %v first", top.keys, requiredTop)
	}
	if !reflect.DeepEqual(top.inner["resources"], requiredResources) {
		t.Errorf("resources members %v, want %v", top.inner["resources"], requiredResources)
	}
	if !reflect.DeepEqual(top.inner["resources.ram"], requiredRAM) {
		t.Errorf("ram members %v, want %v", top.inner["resources.ram"], requiredRAM)
	}
}

type keyOrder struct {
	keys  []string
	inner map[string][]string // the member names of nested objects, by path
}

// objectKeys reads one JSON object from dec and records the order of its
// members' names, and of the objects nested in the named member.
func objectKeys(t *testing.T, dec *json.Decoder, nested string) keyOrder {
	t.Helper()
	ko := keyOrder{inner: map[string][]string{}}
	var walk func(path string, record bool)
	walk = func(path string, record bool) {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					t.Fatal(err)
				}
				key := k.(string)
				child := key
				switch {
				case path == "":
					ko.keys = append(ko.keys, key)
				case record:
					ko.inner[path] = append(ko.inner[path], key)
					child = path + "." + key
				}
				walk(child, path == "" && key == nested || record)
			}
			if _, err := dec.Token(); err != nil {
				t.Fatal(err)
			}
		case json.Delim('['):
			for dec.More() {
				walk(path+"[]", false)
			}
			if _, err := dec.Token(); err != nil {
				t.Fatal(err)
			}
		}
	}
	walk("", false)
	return ko
}

// A reply from fixed input is exactly testdata/reply.golden.
func TestReplyGolden(t *testing.T) {
	before, err := ParseStat(strings.NewReader("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\ncpu2 50 0 50 400 0 0 0 0 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	after, err := ParseStat(strings.NewReader("cpu  200 0 150 900 50 0 0 0 0 0\ncpu0 150 0 50 400 0 0 0 0 0 0\ncpu2 50 0 100 500 50 0 0 0 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start.Add(2*time.Hour + 999*time.Millisecond)
	c := Counters{
		BytesRecv: 1000, BytesSent: 2000, MsgRecv: 10, MsgSent: 20, NumClients: 3,
		Accepted: 5, SlowConsumers: 1, ProtocolErrors: 2, ClosedIdle: 3, ClosedLimit: 4,
		ClosedMemory: 8, ClosedFrame: 9, ClosedHandshake: 14, AuthFailures: 15, WebSocketRefused: 17, FramesRefused: 16, PausedReads: 1, ProducerStalls: 10, StalledReads: 11,
		TelemetryRequests: 6, HandlerPanics: 7,
		Memory: Memory{Used: 12 << 20, Limit: 4 << 30, Stalls: 13, Stalled: true},
		Groups: Groups{Count: 2, Members: 5, Largest: []GroupSize{{"room1", 3}, {"room2", 2}}},
	}
	mem := MemInfo{Total: 16 << 30, Available: 12 << 30, RSS: 20 << 20}
	r := BuildReply(start, now, c, before, after, mem)
	if r.Process.Goroutines < 1 {
		t.Errorf("goroutines %d", r.Process.Goroutines)
	}
	r.Process.Goroutines = 9 // the one value that depends on the moment
	clients := int64(3)
	r.Cluster = &Cluster{Name: "eu", State: "ok", Members: []Member{
		{Address: "10.0.0.1:6000", Clients: &clients},
		{Address: "10.0.0.2:6000"}, // did not answer
	}}
	got, err := r.AppendJSON([]byte("prefix:"))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := bytes.CutPrefix(got, []byte("prefix:"))
	if !ok {
		t.Fatalf("AppendJSON lost the prefix: %s", got)
	}
	golden := filepath.Join("testdata", "reply.golden")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.TrimSuffix(want, []byte("\n"))) {
		t.Errorf("reply\n%s\nwant (testdata/reply.golden)\n%s", got, want)
	}
}

func TestBuildReply(t *testing.T) {
	start := time.Now()
	tests := []struct {
		name     string
		now      time.Time
		mem      MemInfo
		up       uint64
		used     uint64
		overall  float64
		before   CPUSample
		after    CPUSample
		perCore  []CoreUsage
		counters Counters
	}{{
		name: "truncates seconds",
		now:  start.Add(90*time.Second + 999*time.Millisecond),
		mem:  MemInfo{Total: 100, Available: 40},
		up:   90, used: 60,
		perCore: []CoreUsage{},
	}, {
		name: "clock before start",
		now:  start.Add(-time.Second),
		mem:  MemInfo{Total: 100, Available: 100},
		up:   0, used: 0,
		perCore: []CoreUsage{},
	}, {
		name: "MemAvailable above MemTotal",
		now:  start,
		mem:  MemInfo{Total: 100, Available: 120},
		up:   0, used: 0,
		perCore: []CoreUsage{},
	}, {
		name:    "fractions rounded to six decimals",
		now:     start,
		before:  CPUSample{Cores: []CoreTimes{{Core: 4}}},
		after:   CPUSample{All: CPUTimes{Busy: 1, Total: 3}, Cores: []CoreTimes{{4, CPUTimes{Busy: 2, Total: 3}}}},
		overall: 0.333333,
		perCore: []CoreUsage{{4, 0.666667}},
	}, {
		name:    "tiny fraction",
		now:     start,
		after:   CPUSample{All: CPUTimes{Busy: 1, Total: 1e8}},
		overall: 0,
		perCore: []CoreUsage{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := BuildReply(start, tt.now, tt.counters, tt.before, tt.after, tt.mem)
			if r.UpTime != tt.up || r.Resources.RAM.BytesUsed != tt.used || r.Resources.RAM.BytesAvailable != tt.mem.Total {
				t.Errorf("up_time %d, ram %+v; want %d, used %d of %d", r.UpTime, r.Resources.RAM, tt.up, tt.used, tt.mem.Total)
			}
			if r.Resources.CPUOverall != tt.overall || !reflect.DeepEqual(r.Resources.CPUPerCore, tt.perCore) {
				t.Errorf("cpu %v %+v, want %v %+v", r.Resources.CPUOverall, r.Resources.CPUPerCore, tt.overall, tt.perCore)
			}
			b, err := r.AppendJSON(nil)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte("e-")) {
				t.Errorf("a fraction in exponent form: %s", b)
			}
		})
	}
}

// A zero Reply still has the contract's shape: cpu_per_core is an array.
func TestReplyZero(t *testing.T) {
	var r Reply
	b, err := r.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"cpu_per_core":[]`)) {
		t.Errorf("zero reply %s, want cpu_per_core []", b)
	}
	if r.Resources.CPUPerCore != nil {
		t.Error("AppendJSON changed the reply")
	}
}

func TestReplyNaN(t *testing.T) {
	r := Reply{Resources: Resources{CPUOverall: math.NaN()}}
	dst := []byte("kept")
	b, err := r.AppendJSON(dst)
	if err == nil || string(b) != "kept" {
		t.Errorf("NaN fraction: %q, %v; want an error and dst untouched", b, err)
	}
}

func TestErrorReply(t *testing.T) {
	long := strings.Repeat("é", maxReason) // 2 bytes each: the cut lands inside one
	tests := []struct {
		reason string
		raw    string // what the encoding must hold, literally
		want   string // the reason decoded back
	}{
		{"span is NaN", `{"error":"span is NaN"}`, "span is NaN"},
		{`say "hi"`, `{"error":"say \"hi\""}`, `say "hi"`},
		{"two\nlines\r\tand a tab", `{"error":"two\nlines\r\tand a tab"}`, "two\nlines\r\tand a tab"},
		{`back\slash`, `{"error":"back\\slash"}`, `back\slash`},
		{"nul\x00", `{"error":"nul\u0000"}`, "nul\x00"},
		{"<b>&</b>", `{"error":"<b>&</b>"}`, "<b>&</b>"},
		{"", `{"error":""}`, ""},
		{"bad \xff utf-8", "", "bad \ufffd utf-8"},
		{long, "", long[:maxReason-4] + "..."},
	}
	for _, tt := range tests {
		b := ErrorReply(tt.reason)
		if tt.raw != "" && string(b) != tt.raw {
			t.Errorf("ErrorReply(%q) = %s, want %s", tt.reason, b, tt.raw)
		}
		var doc map[string]string
		if err := json.Unmarshal(b, &doc); err != nil || len(doc) != 1 {
			t.Errorf("ErrorReply(%.40q) = %.80s: %v, want one member", tt.reason, b, err)
			continue
		}
		if doc["error"] != tt.want {
			t.Errorf("ErrorReply(%.40q) decodes to %.40q, want %.40q", tt.reason, doc["error"], tt.want)
		}
		if len(doc["error"]) > maxReason || !utf8.ValidString(doc["error"]) {
			t.Errorf("ErrorReply(%.40q): reason of %d bytes, valid UTF-8 %t", tt.reason, len(doc["error"]), utf8.ValidString(doc["error"]))
		}
	}
}

// TestRefusalReply: a refusal is {"refused": reason}, escaped and cut as
// an error reply is, and never has an "error" member.
func TestRefusalReply(t *testing.T) {
	long := strings.Repeat("é", maxReason)
	for _, tt := range []struct{ reason, raw, want string }{
		{"not allowed to publish", `{"refused":"not allowed to publish"}`, "not allowed to publish"},
		{`say "hi"` + "\n", `{"refused":"say \"hi\"\n"}`, `say "hi"` + "\n"},
		{"bad \xff utf-8", "", "bad \ufffd utf-8"},
		{long, "", long[:maxReason-4] + "..."},
	} {
		b := RefusalReply(tt.reason)
		if tt.raw != "" && string(b) != tt.raw {
			t.Errorf("RefusalReply(%q) = %s, want %s", tt.reason, b, tt.raw)
		}
		var doc map[string]string
		if err := json.Unmarshal(b, &doc); err != nil || len(doc) != 1 || doc["refused"] != tt.want {
			t.Errorf("RefusalReply(%.40q) = %.80s (%v), want one member refused = %.40q", tt.reason, b, err, tt.want)
		}
	}
}
