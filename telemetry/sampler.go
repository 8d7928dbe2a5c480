package telemetry

import (
	"bufio"
	"runtime"
	"sync"
	"time"
)

// DefaultGranularity is the Sampler granularity NewSampler uses when given
// none: samples requested within 10 ms of each other share one reading, so
// a flood of telemetry requests costs at most about 100 reads of /proc/stat
// a second. The kernel's counters move in ticks of 10 ms (USER_HZ is 100),
// so a fresher reading would seldom differ anyway.
const DefaultGranularity = 10 * time.Millisecond

// Sampler takes CPU samples on demand and shares them: a sample younger
// than the granularity is handed out again instead of reading /proc/stat.
//
// Its methods are safe for concurrent use. A caller that finds the latest
// sample stale reads /proc/stat holding the Sampler's lock, so callers
// arriving meanwhile wait for that reading (tens of microseconds) and share
// it, rather than each reading the file.
type Sampler struct {
	granularity time.Duration

	mu     sync.Mutex
	br     *bufio.Reader // one read buffer for every reading
	seq    uint64        // the Seq of latest
	latest CPUSample     // the newest reading

	// older and newer are the pair Recent reports on; see Recent.
	older, newer CPUSample
}

// NewSampler returns a Sampler that shares a sample among requests within
// granularity of its reading; zero or less means DefaultGranularity.
func NewSampler(granularity time.Duration) *Sampler {
	if granularity <= 0 {
		granularity = DefaultGranularity
	}
	return &Sampler{
		granularity: granularity,
		br:          bufio.NewReaderSize(nil, statBufSize),
	}
}

// Sample returns the latest sample if it was read within the granularity,
// and otherwise reads /proc/stat. Samples that share a reading have the
// same Seq. A failed reading is not cached: the next call tries again.
func (s *Sampler) Sample() (CPUSample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sampleLocked()
}

func (s *Sampler) sampleLocked() (CPUSample, error) {
	if s.seq > 0 && time.Since(s.latest.Time) < s.granularity {
		return s.latest, nil
	}
	hint := len(s.latest.Cores)
	if hint == 0 {
		hint = runtime.NumCPU()
	}
	var n CPUSample
	if err := readStat(statPath, s.br, hint, &n); err != nil {
		return CPUSample{}, err
	}
	s.seq++
	n.Seq = s.seq
	s.latest = n
	return n, nil
}

// Recent returns two samples for a view of "now" that has no span of its
// own, such as an HTTP stats endpoint: CPUUsage(before, after) is the usage
// over the last interval or so.
//
// Recent keeps its own pair of samples. When the newer one is older than
// interval, it takes a sample (through Sample's sharing) and the pair moves
// on by one; otherwise it returns the pair as it is. So after is never much
// older than interval, and after − before is about interval or more: a
// caller polling every 15 s with an interval of 1 s sees the usage since its
// previous poll, and one polling every millisecond sees the same pair for
// an interval at a time rather than noise over a few ticks.
//
// The first call has no earlier sample: before is then the boot baseline,
// with zero counters and a zero Time, and the usage is the average since
// the machine booted.
func (s *Sampler) Recent(interval time.Duration) (before, after CPUSample, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.newer.Seq == 0 || time.Since(s.newer.Time) >= interval {
		n, serr := s.sampleLocked()
		if serr != nil {
			return CPUSample{}, CPUSample{}, serr
		}
		// With an interval below the granularity the shared sample can be
		// the one the pair already ends with; moving on then would make
		// both ends the same reading.
		if n.Seq != s.newer.Seq {
			if s.newer.Seq == 0 {
				s.older = bootBaseline(n)
			} else {
				s.older = s.newer
			}
			s.newer = n
		}
	}
	return s.older, s.newer, nil
}

// bootBaseline is the sample the counters had at boot: zero, for the cores
// of n.
func bootBaseline(n CPUSample) CPUSample {
	b := CPUSample{Cores: make([]CoreTimes, len(n.Cores))}
	for i, c := range n.Cores {
		b.Cores[i].Core = c.Core
	}
	return b
}
