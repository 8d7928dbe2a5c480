package telemetry

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"time"
)

// The files this package reads. Only tests and the functions below name
// them; everything else goes through a parser that takes a Reader.
const (
	statPath    = "/proc/stat"
	meminfoPath = "/proc/meminfo"
	statmPath   = "/proc/self/statm"
)

// statBufSize is the read buffer for /proc/stat. The cpu lines are about
// 60 bytes each, so 4 KiB holds dozens of them per read(2); a longer line
// (the intr line of a machine with thousands of interrupts) is skipped
// piece by piece rather than buffered whole.
const statBufSize = 4096

// CPUTimes is one cpu line of /proc/stat reduced to what usage needs, in
// clock ticks (USER_HZ, normally 100 a second) since boot.
type CPUTimes struct {
	Busy  uint64 // Total less idle and iowait
	Total uint64 // user + nice + system + idle + iowait + irq + softirq + steal, those present
}

// CoreTimes are the times of one cpuN line.
type CoreTimes struct {
	Core int // N of the line's name: the kernel's CPU number, not an index
	CPUTimes
}

// CPUSample is one reading of /proc/stat.
type CPUSample struct {
	// Seq numbers the samples one Sampler read, from 1; it is 0 for a
	// sample that did not come from a Sampler. Samples with the same
	// non-zero Seq from one Sampler are the same reading.
	Seq uint64
	// Time is when the reading finished; zero for parsed text. It keeps
	// the monotonic clock reading of time.Now.
	Time  time.Time
	All   CPUTimes    // the aggregate "cpu" line
	Cores []CoreTimes // one per cpuN line, in file order; offline cores have none
}

// ReadCPU reads /proc/stat into a sample with its Time set and Seq 0.
// Every call reads the file; a Sampler shares readings among callers.
func ReadCPU() (CPUSample, error) {
	var s CPUSample
	if err := readStat(statPath, bufio.NewReaderSize(nil, statBufSize), runtime.NumCPU(), &s); err != nil {
		return CPUSample{}, err
	}
	return s, nil
}

// readStat reads the stat file at path into s through br, which it resets,
// so that a Sampler can reuse one buffer. hint is the expected number of
// cores.
func readStat(path string, br *bufio.Reader, hint int, s *CPUSample) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer f.Close()
	br.Reset(f)
	err = parseStat(br, hint, s)
	br.Reset(nil) // drop the reference to the closed file
	s.Time = time.Now()
	return err
}

// ParseStat parses text in the format of /proc/stat. Lines other than the
// cpu lines (intr, ctxt, btime and the rest) are skipped.
func ParseStat(r io.Reader) (CPUSample, error) {
	var s CPUSample
	if err := parseStat(bufio.NewReaderSize(r, statBufSize), 0, &s); err != nil {
		return CPUSample{}, err
	}
	return s, nil
}

func parseStat(br *bufio.Reader, hint int, s *CPUSample) error {
	s.Cores = make([]CoreTimes, 0, hint)
	sawAll := false
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if bytes.HasPrefix(line, cpuPrefix) {
				return statError(n, fmt.Sprintf("cpu line longer than %d bytes", statBufSize))
			}
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("telemetry: reading %s: %w", statPath, err)
		}
		if bytes.HasPrefix(line, cpuPrefix) {
			core, t, perr := parseCPULine(line)
			switch {
			case perr != nil:
				return statError(n, perr.Error())
			case core >= 0:
				s.Cores = append(s.Cores, CoreTimes{Core: core, CPUTimes: t})
			case sawAll:
				return statError(n, "a second aggregate cpu line")
			default:
				s.All, sawAll = t, true
			}
		}
		if err == io.EOF {
			break
		}
	}
	if !sawAll {
		return fmt.Errorf("telemetry: parsing %s: no aggregate cpu line", statPath)
	}
	return nil
}

var cpuPrefix = []byte("cpu")

func statError(line int, what string) error {
	return fmt.Errorf("telemetry: parsing %s: line %d: %s", statPath, line, what)
}

// parseCPULine parses "cpu  u n s i ..." (core -1) or "cpuN u n s i ...".
//
// The columns are user nice system idle iowait irq softirq steal guest
// guest_nice; older kernels print fewer (idle is the fourth and the last
// one every kernel has), newer ones may print more. Total sums the first
// eight present. guest and guest_nice are left out because the kernel
// already counts them in user and nice (account_guest_time adds guest
// time to both), so adding them would count that time twice.
func parseCPULine(line []byte) (core int, t CPUTimes, err error) {
	name, rest := nextField(line)
	core = -1
	if len(name) > len(cpuPrefix) {
		n, ok := parseUint(name[len(cpuPrefix):])
		if !ok || n > math.MaxInt32 {
			return 0, t, fmt.Errorf("bad cpu name %s", excerpt(name))
		}
		core = int(n)
	}
	cols := 0
	for {
		var f []byte
		if f, rest = nextField(rest); f == nil {
			break
		}
		v, ok := parseUint(f)
		if !ok {
			return 0, t, fmt.Errorf("%s: bad number %s", name, excerpt(f))
		}
		if cols < 8 {
			if t.Total+v < t.Total {
				// Counters this size take millions of years of ticks; the
				// check keeps Busy ≤ Total an invariant of a parsed sample.
				return 0, t, fmt.Errorf("%s: the sum of the columns overflows", name)
			}
			t.Total += v
			if cols != 3 && cols != 4 { // idle and iowait are not busy
				t.Busy += v
			}
		}
		cols++
	}
	if cols < 4 {
		return 0, t, fmt.Errorf("%s: %d columns, want at least 4", name, cols)
	}
	return core, t, nil
}

// MemInfo is the machine's memory and the process's resident set, in bytes.
type MemInfo struct {
	Total     uint64 // MemTotal of /proc/meminfo
	Available uint64 // MemAvailable of /proc/meminfo: the kernel's estimate of memory available without swapping
	RSS       uint64 // resident set of this process, from /proc/self/statm; ReadMemInfo fills it, ParseMemInfo does not
}

// ReadMemInfo reads /proc/meminfo and /proc/self/statm.
func ReadMemInfo() (MemInfo, error) {
	f, err := os.Open(meminfoPath)
	if err != nil {
		return MemInfo{}, fmt.Errorf("telemetry: %w", err)
	}
	defer f.Close()
	// The two lines wanted are the first and third of the file, so a small
	// buffer usually means one read(2).
	m, err := parseMemInfo(bufio.NewReaderSize(f, 512))
	if err != nil {
		return MemInfo{}, err
	}
	m.RSS, err = readRSS(statmPath)
	return m, err
}

// ParseMemInfo parses text in the format of /proc/meminfo. It needs
// MemTotal and MemAvailable (Linux 3.14 and later) and reads no further
// than both.
func ParseMemInfo(r io.Reader) (MemInfo, error) {
	return parseMemInfo(bufio.NewReaderSize(r, 512))
}

func parseMemInfo(br *bufio.Reader) (MemInfo, error) {
	var m MemInfo
	var sawTotal, sawAvail bool
	for n := 1; !sawTotal || !sawAvail; n++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// No line of meminfo comes near this; do not guess at one.
			return MemInfo{}, memError(n, "line too long")
		}
		if err != nil && err != io.EOF {
			return MemInfo{}, fmt.Errorf("telemetry: reading %s: %w", meminfoPath, err)
		}
		var dst *uint64
		if key, rest, ok := bytes.Cut(line, []byte(":")); ok {
			switch string(key) { // compiled without a copy to the heap
			case "MemTotal":
				dst, sawTotal = &m.Total, true
			case "MemAvailable":
				dst, sawAvail = &m.Available, true
			}
			if dst != nil {
				v, err := parseKB(rest)
				if err != nil {
					return MemInfo{}, memError(n, fmt.Sprintf("%s: %v", key, err))
				}
				*dst = v
			}
		}
		if err == io.EOF {
			break
		}
	}
	switch {
	case !sawTotal:
		return MemInfo{}, fmt.Errorf("telemetry: parsing %s: no MemTotal", meminfoPath)
	case !sawAvail:
		return MemInfo{}, fmt.Errorf("telemetry: parsing %s: no MemAvailable (Linux before 3.14?)", meminfoPath)
	}
	return m, nil
}

func memError(line int, what string) error {
	return fmt.Errorf("telemetry: parsing %s: line %d: %s", meminfoPath, line, what)
}

// parseKB parses "   24683656 kB" into bytes.
func parseKB(b []byte) (uint64, error) {
	num, rest := nextField(b)
	unit, rest := nextField(rest)
	if extra, _ := nextField(rest); extra != nil {
		return 0, fmt.Errorf("unexpected %s after the unit", excerpt(extra))
	}
	v, ok := parseUint(num)
	switch {
	case !ok:
		return 0, fmt.Errorf("bad number %s", excerpt(num))
	case string(unit) != "kB": // the kernel's kB is KiB
		return 0, fmt.Errorf("unit %s, want kB", excerpt(unit))
	case v > math.MaxUint64/1024:
		return 0, fmt.Errorf("%d kB overflows", v)
	}
	return v * 1024, nil
}

// readRSS reads the resident set in bytes from a statm file.
func readRSS(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("telemetry: %w", err)
	}
	defer f.Close()
	// statm is seven numbers: at most 7×21 bytes, so one buffer holds it
	// and a full buffer means it is not statm.
	var buf [256]byte
	n, err := io.ReadFull(f, buf[:])
	switch {
	case err == nil:
		return 0, fmt.Errorf("telemetry: parsing %s: longer than %d bytes", path, len(buf))
	case !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		return 0, fmt.Errorf("telemetry: reading %s: %w", path, err)
	}
	rss, err := parseStatm(buf[:n], uint64(os.Getpagesize()))
	if err != nil {
		return 0, fmt.Errorf("telemetry: parsing %s: %w", path, err)
	}
	return rss, nil
}

// parseStatm takes the second field of statm, resident pages, to bytes.
func parseStatm(b []byte, pageSize uint64) (uint64, error) {
	size, rest := nextField(b)
	resident, _ := nextField(rest)
	if _, ok := parseUint(size); !ok {
		return 0, fmt.Errorf("bad size %s", excerpt(size))
	}
	pages, ok := parseUint(resident)
	if !ok {
		return 0, fmt.Errorf("bad resident %s", excerpt(resident))
	}
	if pageSize != 0 && pages > math.MaxUint64/pageSize {
		return 0, fmt.Errorf("%d pages overflow", pages)
	}
	return pages * pageSize, nil
}

// nextField returns the first run of bytes other than space, tab and line
// ends in b, and what follows it; field is nil when there is none.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSpace(b[j]) {
		j++
	}
	if i == j {
		return nil, nil
	}
	return b[i:j], b[j:]
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// parseUint parses decimal digits without allocating (strconv wants a
// string); false on anything else or on overflow.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > math.MaxUint64/10 { // a constant: no division per digit
			return 0, false
		}
		n *= 10
		d := uint64(c - '0')
		if n+d < n {
			return 0, false
		}
		n += d
	}
	return n, true
}

// excerpt quotes at most 32 bytes of b for an error message, so that a
// garbled file cannot make an error (and the error reply that may carry
// it) arbitrarily long.
func excerpt(b []byte) string {
	const limit = 32
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}
