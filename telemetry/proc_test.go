package telemetry

import (
	"bufio"
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// statTwoCores is /proc/stat of a two-core machine (Linux 6.x), shortened.
const statTwoCores = `cpu  60997 0 18582 485959 763 0 2746 898 0 0
cpu0 30937 0 8503 243922 102 0 1054 471 0 0
cpu1 30059 0 10079 242037 660 0 1692 427 0 0
intr 3549803 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 10166359
btime 1795845662
processes 18094
procs_running 12
procs_blocked 0
softirq 5914277 0 58674 8 5594465 79187 0 343 110189 16 71395
`

func TestParseStat(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		all   CPUTimes
		cores []CoreTimes
	}{{
		name: "two cores",
		text: statTwoCores,
		// busy: user nice system irq softirq steal; total adds idle, iowait.
		all: CPUTimes{Busy: 60997 + 18582 + 2746 + 898, Total: 60997 + 18582 + 485959 + 763 + 2746 + 898},
		cores: []CoreTimes{
			{0, CPUTimes{Busy: 30937 + 8503 + 1054 + 471, Total: 30937 + 8503 + 243922 + 102 + 1054 + 471}},
			{1, CPUTimes{Busy: 30059 + 10079 + 1692 + 427, Total: 30059 + 10079 + 242037 + 660 + 1692 + 427}},
		},
	}, {
		// cpu1 is offline: the kernel prints only online cores, so the
		// second entry is core 2, not core 1. Other lines are in between.
		name: "offline core",
		text: "cpu  30 0 10 100 5 0 0 0 0 0\n" +
			"cpu0 10 0 5 50 2 0 0 0 0 0\n" +
			"intr 12 0 1\n" +
			"cpu2 20 0 5 50 3 0 0 0 0 0\n" +
			"ctxt 99\n",
		all: CPUTimes{Busy: 40, Total: 145},
		cores: []CoreTimes{
			{0, CPUTimes{Busy: 15, Total: 67}},
			{2, CPUTimes{Busy: 25, Total: 78}},
		},
	}, {
		// guest and guest_nice are already in user and nice: not added.
		name:  "guest columns ignored",
		text:  "cpu  100 10 20 1000 5 1 2 3 60 7\ncpu0 100 10 20 1000 5 1 2 3 60 7\n",
		all:   CPUTimes{Busy: 136, Total: 1141},
		cores: []CoreTimes{{0, CPUTimes{Busy: 136, Total: 1141}}},
	}, {
		name:  "columns after guest_nice ignored",
		text:  "cpu  1 1 1 1 1 1 1 1 1 1 9 9 9\n",
		all:   CPUTimes{Busy: 6, Total: 8},
		cores: []CoreTimes{},
	}, {
		name:  "Linux 2.4: four columns",
		text:  "cpu  1 2 3 40\ncpu0 1 2 3 40\n",
		all:   CPUTimes{Busy: 6, Total: 46},
		cores: []CoreTimes{{0, CPUTimes{Busy: 6, Total: 46}}},
	}, {
		name:  "five columns: iowait is not busy",
		text:  "cpu  1 2 3 40 7\n",
		all:   CPUTimes{Busy: 6, Total: 53},
		cores: []CoreTimes{},
	}, {
		name:  "no final newline",
		text:  "cpu  1 2 3 4 5 6 7 8 0 0\ncpu7 1 2 3 4 5 6 7 8 0 0",
		all:   CPUTimes{Busy: 27, Total: 36},
		cores: []CoreTimes{{7, CPUTimes{Busy: 27, Total: 36}}},
	}, {
		name:  "tabs and carriage returns",
		text:  "cpu\t1 2 3 4\r\ncpu3\t1\t2 3  4\r\n",
		all:   CPUTimes{Busy: 6, Total: 10},
		cores: []CoreTimes{{3, CPUTimes{Busy: 6, Total: 10}}},
	}, {
		name: "cores as the file orders them",
		text: "cpu  1 1 1 1\ncpu10 1 1 1 1\ncpu2 1 1 1 1\n",
		all:  CPUTimes{Busy: 3, Total: 4},
		cores: []CoreTimes{
			{10, CPUTimes{Busy: 3, Total: 4}},
			{2, CPUTimes{Busy: 3, Total: 4}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseStat(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			checkSample(t, s, tt.all, tt.cores)
			// The parser must not depend on how the file arrives.
			s, err = ParseStat(iotest.OneByteReader(strings.NewReader(tt.text)))
			if err != nil {
				t.Fatal(err)
			}
			checkSample(t, s, tt.all, tt.cores)
		})
	}
}

func checkSample(t *testing.T, s CPUSample, all CPUTimes, cores []CoreTimes) {
	t.Helper()
	if s.All != all {
		t.Errorf("All = %+v, want %+v", s.All, all)
	}
	if !reflect.DeepEqual(s.Cores, cores) {
		t.Errorf("Cores = %+v, want %+v", s.Cores, cores)
	}
	if s.Seq != 0 || !s.Time.IsZero() {
		t.Errorf("Seq, Time = %d, %v; want zero for parsed text", s.Seq, s.Time)
	}
}

func TestParseStatErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "no aggregate cpu line"},
		{"only cores", "cpu0 1 2 3 4\n", "no aggregate cpu line"},
		{"no cpu lines", "intr 1 2\nctxt 5\n", "no aggregate cpu line"},
		{"bad number", "cpu  1 2 x 4\n", `line 1: cpu: bad number "x"`},
		{"negative", "cpu  1 2 3 4\ncpu0 1 -2 3 4\n", `line 2: cpu0: bad number "-2"`},
		{"overflow", "cpu  1 2 3 18446744073709551616\n", `bad number "18446744073709551616"`},
		{"sum overflows", "cpu  1 2 3 18446744073709551615\n", "cpu: the sum of the columns overflows"},
		{"too few columns", "cpu  1 2 3\n", "line 1: cpu: 3 columns, want at least 4"},
		{"bad core name", "cpu  1 2 3 4\ncpux 1 2 3 4\n", `line 2: bad cpu name "cpux"`},
		{"core number too large", "cpu  1 2 3 4\ncpu99999999999 1 2 3 4\n", `bad cpu name "cpu99999999999"`},
		{"two aggregates", "cpu  1 2 3 4\ncpu  1 2 3 4\n", "line 2: a second aggregate cpu line"},
		{"cpu line too long", "cpu  1 2 3 4\ncpu0" + strings.Repeat(" 1", statBufSize) + "\n", "line 2: cpu line longer than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseStat(strings.NewReader(tt.text))
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "/proc/stat") {
				t.Errorf("error %q, want one naming /proc/stat and containing %q", err, tt.want)
			}
		})
	}
}

// A machine with thousands of interrupts has an intr line longer than the
// read buffer; it is skipped, and the lines after it still parse.
func TestParseStatLongLine(t *testing.T) {
	long := "intr" + strings.Repeat(" 0", 3*statBufSize) + "\n"
	for _, text := range []string{
		"cpu  1 2 3 4\n" + long + "cpu1 1 2 3 4\n",
		"cpu  1 2 3 4\ncpu1 1 2 3 4\n" + long,
		"cpu  1 2 3 4\ncpu1 1 2 3 4\n" + long[:len(long)-1], // no final newline
	} {
		s, err := ParseStat(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		checkSample(t, s, CPUTimes{Busy: 6, Total: 10}, []CoreTimes{{1, CPUTimes{Busy: 6, Total: 10}}})
	}
}

func TestParseStatReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ParseStat(iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader(statTwoCores))))
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("error %v, want it to wrap the reader's", err)
	}
	_, err = ParseStat(iotest.ErrReader(boom))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "/proc/stat") {
		t.Fatalf("error %v, want it to wrap %v and name /proc/stat", err, boom)
	}
}

// coreLines scans /proc/stat on its own, without the parser: the N of each
// cpuN line, in order.
func coreLines(t *testing.T) []int {
	t.Helper()
	data, err := os.ReadFile(statPath)
	if err != nil {
		t.Fatal(err)
	}
	var cores []int
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(f[0], "cpu"))
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		cores = append(cores, n)
	}
	if len(cores) == 0 {
		t.Fatal("no cpuN line in /proc/stat")
	}
	return cores
}

func TestReadCPU(t *testing.T) {
	s, err := ReadCPU()
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, c := range s.Cores {
		got = append(got, c.Core)
		if c.Busy > c.Total || c.Total == 0 {
			t.Errorf("core %d: busy %d of total %d", c.Core, c.Busy, c.Total)
		}
	}
	// Cores can go offline between the two reads only by an operator's
	// hand; a test machine does not do that.
	if want := coreLines(t); !reflect.DeepEqual(got, want) {
		t.Errorf("cores %v, want %v as /proc/stat lists them", got, want)
	}
	if s.All.Busy > s.All.Total || s.All.Total == 0 {
		t.Errorf("aggregate: busy %d of total %d", s.All.Busy, s.All.Total)
	}
	if s.Time.IsZero() || s.Seq != 0 {
		t.Errorf("Time %v, Seq %d: want a time and no Seq", s.Time, s.Seq)
	}
}

func TestReadCPUMissingFile(t *testing.T) {
	var s CPUSample
	err := readStat("/proc/no-such-file", bufio.NewReader(nil), 1, &s)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/proc/no-such-file") {
		t.Fatalf("error %v, want a not-exist error naming the file", err)
	}
}

const meminfoText = `MemTotal:       24683656 kB
MemFree:        23572960 kB
MemAvailable:   24165752 kB
Buffers:           12204 kB
HugePages_Total:       0
`

func TestParseMemInfo(t *testing.T) {
	tests := []struct {
		name string
		text string
		want MemInfo
	}{
		{"Linux 6", meminfoText, MemInfo{Total: 24683656 * 1024, Available: 24165752 * 1024}},
		{"other order", "MemAvailable: 2 kB\nMemFree: 9 kB\nMemTotal: 3 kB\n", MemInfo{Total: 3072, Available: 2048}},
		{"no final newline", "MemTotal: 3 kB\nMemAvailable: 2 kB", MemInfo{Total: 3072, Available: 2048}},
		{"stops at both", "MemTotal: 3 kB\nMemAvailable: 2 kB\ngarbage", MemInfo{Total: 3072, Available: 2048}},
		{"zero", "MemTotal: 0 kB\nMemAvailable: 0 kB\n", MemInfo{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMemInfo(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			got, err = ParseMemInfo(iotest.OneByteReader(strings.NewReader(tt.text)))
			if err != nil || got != tt.want {
				t.Errorf("one byte at a time: got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseMemInfoErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "no MemTotal"},
		{"no MemAvailable", "MemTotal: 3 kB\nMemFree: 1 kB\n", "no MemAvailable"},
		{"no MemTotal", "MemAvailable: 3 kB\n", "no MemTotal"},
		{"bad number", "MemTotal: 3x kB\n", `line 1: MemTotal: bad number "3x"`},
		{"no number", "MemTotal:\n", "line 1: MemTotal: bad number"},
		{"bad unit", "MemTotal: 3 MB\n", `line 1: MemTotal: unit "MB", want kB`},
		{"no unit", "MemFree: 1 kB\nMemTotal: 3\n", `line 2: MemTotal: unit "", want kB`},
		{"trailing field", "MemTotal: 3 kB x\n", `unexpected "x" after the unit`},
		{"overflow", "MemTotal: 18014398509481984 kB\n", "overflows"},
		{"line too long", "MemTotal: 3 kB\nX" + strings.Repeat(" ", 600) + "\n", "line 2: line too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMemInfo(strings.NewReader(tt.text))
			if err == nil {
				t.Fatalf("no error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "/proc/meminfo") {
				t.Errorf("error %q, want one naming /proc/meminfo and containing %q", err, tt.want)
			}
		})
	}
}

// memTotalKB reads MemTotal from /proc/meminfo without the parser.
func memTotalKB(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile(meminfoPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}

func TestReadMemInfo(t *testing.T) {
	m, err := ReadMemInfo()
	if err != nil {
		t.Fatal(err)
	}
	// MemTotal is fixed while the machine runs; MemAvailable and the
	// RSS move, so they are only checked for sense.
	if want := memTotalKB(t) * 1024; m.Total != want {
		t.Errorf("Total = %d, want %d", m.Total, want)
	}
	if m.Available == 0 || m.Available > m.Total {
		t.Errorf("Available = %d of Total %d", m.Available, m.Total)
	}
	// A Go test binary is resident in at least a few pages, and far less
	// than the machine.
	if m.RSS < 4*uint64(os.Getpagesize()) || m.RSS >= m.Total || m.RSS%uint64(os.Getpagesize()) != 0 {
		t.Errorf("RSS = %d bytes", m.RSS)
	}
}

func TestParseStatm(t *testing.T) {
	tests := []struct {
		text    string
		page    uint64
		want    uint64
		wantErr bool
	}{
		{"765 427 399 5 0 123 0\n", 4096, 427 * 4096, false},
		{"765 427 399 5 0 123 0", 65536, 427 * 65536, false},
		{"1 0 0 0 0 0 0\n", 4096, 0, false},
		{"765\n", 4096, 0, true},
		{"", 4096, 0, true},
		{"x 427 399 5 0 123 0\n", 4096, 0, true},
		{"765 -1 399 5 0 123 0\n", 4096, 0, true},
		{"1 18446744073709551615 0 0 0 0 0\n", 4096, 0, true},
	}
	for _, tt := range tests {
		got, err := parseStatm([]byte(tt.text), tt.page)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseStatm(%q, %d) = %d, %v; want %d, error %t", tt.text, tt.page, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReadRSSErrors(t *testing.T) {
	if _, err := readRSS("/proc/no-such-file"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want not-exist", err)
	}
	// /proc/self/status is much longer than any statm.
	if _, err := readRSS("/proc/self/status"); err == nil || !strings.Contains(err.Error(), "/proc/self/status: longer than") {
		t.Errorf("long file: %v, want a too-long error naming it", err)
	}
	// /proc/self/cmdline is short, but not numbers.
	if _, err := readRSS("/proc/self/cmdline"); err == nil || !strings.Contains(err.Error(), "parsing /proc/self/cmdline") {
		t.Errorf("not statm: %v, want a parse error naming the file", err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statTwoCores))
	f.Add([]byte("cpu  1 2 3 4\ncpu2 5 6 7 8 9 10 11 12 13 14 15\n"))
	f.Add([]byte("cpu  18446744073709551615 1 1 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseStat(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		if s.All.Busy > s.All.Total {
			t.Errorf("aggregate: busy %d > total %d", s.All.Busy, s.All.Total)
		}
		for _, c := range s.Cores {
			if c.Core < 0 || c.Busy > c.Total {
				t.Errorf("core %d: busy %d, total %d", c.Core, c.Busy, c.Total)
			}
		}
	})
}

func FuzzParseMemInfo(f *testing.F) {
	f.Add([]byte(meminfoText))
	f.Add([]byte("MemAvailable: 2 kB\nMemTotal: 3 kB"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMemInfo(strings.NewReader(string(data)))
		if err == nil && (m.Total%1024 != 0 || m.Available%1024 != 0 || m.RSS != 0) {
			t.Errorf("%+v: not whole KiB, or an RSS from meminfo", m)
		}
	})
}
