package telemetry

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Edges the other tests pass over, each at the value where a comparison
// or a bound decides. Found by mutation testing (scripts/mutate): every
// one of these tests fails on a change to one comparison that the rest of
// the package's tests let through.

func TestCoreNumberEdge(t *testing.T) {
	base := "cpu  10 0 10 80 0 0 0 0 0 0\n"
	s, err := ParseStat(strings.NewReader(base + "cpu2147483647 1 0 1 8 0 0 0 0 0 0\n"))
	if err != nil || len(s.Cores) != 1 || s.Cores[0].Core != math.MaxInt32 {
		t.Fatalf("cpu%d: %+v, %v; want that core", math.MaxInt32, s.Cores, err)
	}
	if _, err := ParseStat(strings.NewReader(base + "cpu2147483648 1 0 1 8 0 0 0 0 0 0\n")); err == nil {
		t.Fatalf("cpu%d parsed; want an error", int64(math.MaxInt32)+1)
	}
}

func TestStatmOverflowEdge(t *testing.T) {
	const page = 4096
	most := uint64(math.MaxUint64 / page) // the most pages that fit in bytes
	got, err := parseStatm([]byte("1 "+strconv.FormatUint(most, 10)+" 0"), page)
	if err != nil || got != most*page {
		t.Fatalf("%d pages: %d, %v; want %d", most, got, err, most*page)
	}
	if _, err := parseStatm([]byte("1 "+strconv.FormatUint(most+1, 10)+" 0"), page); err == nil {
		t.Fatalf("%d pages of %d bytes did not overflow", most+1, page)
	}
}

func TestExcerptEdge(t *testing.T) {
	at := strings.Repeat("a", 32)
	if got := excerpt([]byte(at)); got != strconv.Quote(at) {
		t.Errorf("excerpt of 32 bytes = %s, want them whole", got)
	}
	if got := excerpt([]byte(at + "b")); got != strconv.Quote(at)+"..." {
		t.Errorf("excerpt of 33 bytes = %s, want 32 and ...", got)
	}
}

func TestErrorReplyCutEdges(t *testing.T) {
	at := strings.Repeat("a", maxReason)
	if got := string(ErrorReply(at)); got != `{"error":"`+at+`"}` {
		t.Errorf("a reason of exactly %d bytes was cut: %d bytes", maxReason, len(got))
	}
	// No character starts anywhere before the cut: nothing of it is kept,
	// and nothing reads before its start.
	if got := string(ErrorReply(strings.Repeat("\x80", 2*maxReason))); got != `{"error":"..."}` {
		t.Errorf("a reason of continuation bytes: %s", got)
	}
}

// TestCoreCameOnline: a later sample with more cores than the earlier
// (one came online) gives the new core no usage, and the others theirs.
func TestCoreCameOnline(t *testing.T) {
	before := CPUSample{All: CPUTimes{Busy: 10, Total: 100}, Cores: []CoreTimes{{0, CPUTimes{Busy: 5, Total: 50}}}}
	after := CPUSample{All: CPUTimes{Busy: 60, Total: 200}, Cores: []CoreTimes{
		{0, CPUTimes{Busy: 30, Total: 100}},
		{1, CPUTimes{Busy: 25, Total: 50}},
	}}
	u := CPUUsage(before, after)
	if len(u.Cores) != 2 || u.Cores[0] != (CoreUsage{0, 0.5}) || u.Cores[1] != (CoreUsage{1, 0}) || u.Overall != 0.5 {
		t.Fatalf("usage %+v", u)
	}
}

// TestBusyFractionEdges: a total that did not grow is no usage, even when
// busy time grew (the counters are not reliably monotonic).
func TestBusyFractionEdges(t *testing.T) {
	for _, tc := range []struct {
		b, a CPUTimes
		want float64
	}{
		{CPUTimes{Busy: 10, Total: 100}, CPUTimes{Busy: 20, Total: 100}, 0}, // total still
		{CPUTimes{Busy: 10, Total: 100}, CPUTimes{Busy: 10, Total: 200}, 0}, // busy still
		{CPUTimes{Busy: 10, Total: 100}, CPUTimes{Busy: 110, Total: 200}, 1},
		{CPUTimes{Busy: 10, Total: 100}, CPUTimes{Busy: 35, Total: 200}, 0.25},
	} {
		if got := busyFraction(tc.b, tc.a); got != tc.want {
			t.Errorf("busyFraction(%+v, %+v) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// TestRecentHoldsWithinTheInterval: within the interval Recent returns the
// same pair, even when the Sampler would read anew (granularity 1 ns).
func TestRecentHoldsWithinTheInterval(t *testing.T) {
	s := NewSampler(time.Nanosecond)
	b1, a1, err := s.Recent(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b, a, err := s.Recent(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if a.Seq != a1.Seq || b.Seq != b1.Seq {
			t.Fatalf("pair (%d, %d) within the interval of the first (%d, %d)", b.Seq, a.Seq, b1.Seq, a1.Seq)
		}
	}
}
