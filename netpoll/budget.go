package netpoll

import (
	"bufio"
	"bytes"
	"cmp"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The memory budget bounds, for the whole server, the bytes queued for
// writing plus the bytes held for reading: frames split across reads
// (wire.Decoder's carry buffers) and the payload copies of batches the
// Handler has not released. Every connection's own bound (MaxPending)
// sits inside it. As the total rises the server acts in steps:
//
//   - at 3/4 of the budget every loop stops reading (producers stall
//     first; writes go on, so queues drain and TCP pushes back on the
//     senders), and reading resumes below 1/2;
//   - if the stall does not bring the total below 1/2 within
//     reclaimAfter, or the total passes 7/8, connections are closed
//     (reason ErrMemoryLimit, a kind of slow consumer) to bring it to 3/8:
//     on each loop those holding the most bytes, largest first, until the
//     loop holds its share (its part of the total, times 3/8 over the
//     total), so the outcome does not depend on which loop acts first;
//   - a Send that would take the total past the budget is refused, and
//     its connection closed the same way, so the total never passes it.
//
// A frame shared by many queues (a broadcast) is counted once per queue,
// as if each held a copy: the budget is an upper bound on what the
// queues pin, never an underestimate.
type budget struct {
	limit     int64
	stallAt   int64 // 3/4
	reclaimAt int64 // 7/8
	resumeAt  int64 // 1/2

	used    atomic.Int64
	stalled atomic.Bool
	since   atomic.Int64 // server clock when the current stall began
	stalls  atomic.Uint64

	// A reclaim is decided once for all loops: the fraction of its
	// holdings each loop keeps, published under a new sequence number.
	nextReclaim atomic.Int64 // server clock before which no new reclaim is decided
	reclaimSeq  atomic.Uint64
	reclaimKeep atomic.Uint64 // math.Float64bits of the fraction to keep
}

// reclaimAfter is how long a stall may last before the largest holders
// are closed: long enough for readers that keep up to drain a burst,
// short enough that a broker full of clients that never read does not
// keep everyone else waiting.
const reclaimAfter = 100 * time.Millisecond

func newBudget(limit int64) *budget {
	return &budget{limit: limit, stallAt: limit / 4 * 3, reclaimAt: limit / 8 * 7, resumeAt: limit / 2}
}

// reserve counts n more bytes, unless that would take the total past the
// budget.
func (b *budget) reserve(n int64) bool {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *budget) release(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// DefaultMaxMemory is the memory budget when none is set: a quarter of
// the memory the process may use (the machine's, or its cgroup's limit
// when that is lower), at most 4 GiB and at least MinMaxMemory.
func DefaultMaxMemory() int64 {
	total := memTotal()
	if cg := cgroupLimit(); cg > 0 && (total == 0 || cg < total) {
		total = cg
	}
	if total <= 0 {
		return 1 << 30 // nothing readable: a conservative gigabyte
	}
	return min(max(total/4, MinMaxMemory), 4<<30)
}

// memTotal reads MemTotal from /proc/meminfo, in bytes; 0 when it cannot.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte("MemTotal:")); ok {
			fields := strings.Fields(string(rest))
			if len(fields) == 2 && fields[1] == "kB" {
				if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					return kb << 10
				}
			}
			return 0
		}
	}
	return 0
}

// cgroupLimit reads the cgroup v2 memory limit of this process, in bytes;
// 0 when there is none or it cannot be read.
func cgroupLimit() int64 {
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// checkMemory moves the server between serving and stalled as the total
// crosses the marks, applies the state to this loop's connections, and
// reclaims when a stall does not resolve. Every loop calls it once per
// iteration; a change of state wakes the other loops, so each applies it
// at once.
func (l *loop) checkMemory() {
	b := l.srv.mem
	used := b.used.Load()
	if !b.stalled.Load() {
		if used >= b.stallAt && b.stalled.CompareAndSwap(false, true) {
			b.since.Store(l.now)
			b.stalls.Add(1)
			l.srv.memLog.warn(l.log, "memory budget: stalling every producer", "used", used, "max_memory", b.limit)
			l.srv.wakeLoops(l)
		}
	} else if used < b.resumeAt && b.stalled.CompareAndSwap(true, false) {
		l.srv.wakeLoops(l)
	}
	stalled := b.stalled.Load()
	if stalled != l.memStalled {
		l.memStalled = stalled
		for _, c := range l.byFD {
			if c != nil {
				if !stalled {
					c.resumed(l.now)
				}
				l.updateMask(c)
			}
		}
	}
	if stalled && used > 0 && (used >= b.reclaimAt || l.now-b.since.Load() > int64(reclaimAfter)) {
		if next := b.nextReclaim.Load(); l.now >= next && b.nextReclaim.CompareAndSwap(next, l.now+int64(reclaimAfter)) {
			b.reclaimKeep.Store(math.Float64bits(float64(b.limit/8*3) / float64(used)))
			b.reclaimSeq.Add(1)
			l.srv.wakeLoops(l)
		}
	}
	if seq := b.reclaimSeq.Load(); seq != l.reclaimSeen {
		l.reclaimSeen = seq
		l.reclaim(math.Float64frombits(b.reclaimKeep.Load()))
	}
}

// reclaim closes this loop's connections that hold the most bytes, the
// largest first, until the loop holds at most keep of what it held.
func (l *loop) reclaim(keep float64) {
	cands := l.reclaimBuf[:0]
	var held int64
	for _, c := range l.byFD {
		if c != nil {
			if h := c.held(); h > 0 {
				cands = append(cands, holder{c, h})
				held += h
			}
		}
	}
	slices.SortFunc(cands, func(x, y holder) int { return cmp.Compare(y.bytes, x.bytes) })
	target := int64(float64(held) * keep)
	closed := 0
	for _, h := range cands {
		if held <= target {
			break
		}
		l.close(h.c, errMemoryLimit, reasonMemory)
		held -= h.bytes
		closed++
	}
	if closed > 0 {
		l.srv.memLog.warn(l.log, "memory budget: closed the connections holding the most bytes", "closed", closed, "used", l.srv.mem.used.Load(), "max_memory", l.srv.mem.limit)
	}
	clear(cands)
	l.reclaimBuf = cands[:0]
}

type holder struct {
	c     *Conn
	bytes int64
}

// held is what closing c gives back to the budget now: its queue and its
// carry buffer. (Batches it delivered are given back when the handler
// releases them, closed or not.) Loop-only.
func (c *Conn) held() int64 { return c.queued.Load() + int64(c.carry) }
