package telemetry

// CoreUsage is how busy one core was over a span.
type CoreUsage struct {
	Core  int     `json:"core"`  // N of the core's cpuN line
	Using float64 `json:"using"` // busy fraction, 0..1
}

// Usage is how busy the CPUs were between two samples.
type Usage struct {
	Overall float64     // busy fraction of all CPUs together, 0..1, from the aggregate line
	Cores   []CoreUsage // one per core of the later sample, in its order; never nil
}

// CPUUsage reports how busy the CPUs were from before to after.
//
// Cores are matched by their number N, not by their place in the file, so
// a core going offline or coming online between the samples does not shift
// the others. A core only in after has no measurement over the span and
// reports 0; a core only in before is gone and is left out. A core whose
// counters did not move reports 0.
func CPUUsage(before, after CPUSample) Usage {
	u := Usage{
		Overall: busyFraction(before.All, after.All),
		Cores:   make([]CoreUsage, len(after.Cores)),
	}
	for i, a := range after.Cores {
		u.Cores[i].Core = a.Core
		if b, ok := findCore(before.Cores, i, a.Core); ok {
			u.Cores[i].Using = busyFraction(b, a.CPUTimes)
		}
	}
	return u
}

// findCore finds core n in cores, looking first at index i: the kernel
// prints the online cores in ascending order, so unless the set of online
// cores changed, the core is where it was.
func findCore(cores []CoreTimes, i, n int) (CPUTimes, bool) {
	if i < len(cores) && cores[i].Core == n {
		return cores[i].CPUTimes, true
	}
	for _, c := range cores {
		if c.Core == n {
			return c.CPUTimes, true
		}
	}
	return CPUTimes{}, false
}

// busyFraction is the share of the ticks from b to a that were busy,
// clamped to [0, 1].
//
// The counters are not reliably monotonic: the kernel documents that
// iowait can decrease (Documentation/filesystems/proc.rst), and the idle
// time of a core that went offline and came back can restart. So a total
// that did not grow gives 0 rather than a division by zero or a negative
// fraction, busy time that went backwards counts as none, and busy time
// that grew more than the total counts as all.
func busyFraction(b, a CPUTimes) float64 {
	if a.Total <= b.Total || a.Busy <= b.Busy {
		return 0
	}
	total, busy := a.Total-b.Total, a.Busy-b.Busy
	if busy >= total {
		return 1
	}
	return float64(busy) / float64(total)
}
