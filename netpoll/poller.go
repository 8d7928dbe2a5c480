package netpoll

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Event masks a loop registers. Level-triggered on purpose: a loop reads
// at most one buffer per ready connection per wakeup and relies on the
// kernel to report the connection again while data remains, which keeps
// one busy connection from starving the others; pausing a connection is
// just removing evRead from its mask, with no lost edge to remember when
// it resumes.
const (
	evRead  = unix.EPOLLIN | unix.EPOLLRDHUP
	evWrite = unix.EPOLLOUT
)

// wakeMarker is the epoll data of the poller's eventfd; connection
// registrations carry a non-negative generation there instead.
const wakeMarker = -1

// poller is one epoll instance with an eventfd for wakeups from other
// goroutines. It is the only code here that calls epoll directly.
type poller struct {
	fd    int
	file  *os.File        // fd, registered with the runtime poller for sleeping
	rc    syscall.RawConn // file's, to park on
	wfd   int             // eventfd
	woken atomic.Int32    // 1 while a wakeup is pending: at most one eventfd write per batch
	wbuf  [8]byte

	// mu orders a trigger's eventfd write before close: once the loop has
	// ended, a late Quiesce or Shutdown must not write to a closed fd
	// whose number the process may have given to another file. Only the
	// one trigger that wins woken takes it, so it is not contended.
	mu     sync.Mutex
	closed bool

	// The parked wait's poll, bound once so that sleeping allocates
	// nothing, and what it found. Loop-only.
	parkedPoll func(uintptr) bool
	parkedEvs  []unix.EpollEvent
	parkedN    int
	parkedErr  error
	deadline   int64     // the read deadline set on file, on clock; 0 for none
	epoch      time.Time // clock's zero, with a monotonic reading
}

// openPoller opens a poller whose clock counts from epoch.
func openPoller(epoch time.Time) (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &poller{fd: fd, wfd: wfd, epoch: epoch}
	if err := p.control(unix.EPOLL_CTL_ADD, wfd, wakeMarker, unix.EPOLLIN); err != nil {
		p.close()
		return nil, err
	}
	// The epoll fd is itself pollable: it is readable when it has events.
	// Handing it to the runtime's poller lets a loop sleep by parking its
	// goroutine, which gives its P back at once, instead of blocking its
	// thread in epoll_wait while the P waits to be retaken.
	if err := unix.SetNonblock(fd, true); err != nil {
		p.close()
		return nil, os.NewSyscallError("fcntl", err)
	}
	p.file = os.NewFile(uintptr(fd), "epoll")
	rc, err := p.file.SyscallConn()
	if err != nil {
		p.close()
		return nil, err
	}
	p.rc = rc
	p.parkedPoll = p.pollParked
	return p, nil
}

// control adds, modifies or deletes fd's registration. gen is stored in
// the event data beside the fd so that a stale event for a closed fd can
// never be taken for a newer connection that got the same fd number.
func (p *poller) control(op, fd int, gen int32, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: gen}
	if err := unix.EpollCtl(p.fd, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// clock is the loop's time: nanoseconds since the poller opened, on the
// monotonic clock, so that a step of the wall clock moves no deadline.
func (p *poller) clock() int64 { return int64(time.Since(p.epoch)) }

// wait returns ready events. until is when to stop waiting for some, on
// clock: 0 or a time already passed means not at all, a negative value no
// limit. It never blocks the thread in epoll_wait: the goroutine parks on
// the runtime poller until the epoll fd turns readable or until passes,
// and every poll is a raw, non-blocking system call. An interrupted or
// timed out wait reports zero events.
//
// A waiting call polls once, inside the runtime poller's read, which must
// poll after it resets the fd's readiness anyway; a poll before it would
// be a second system call on every wait that finds nothing. The read
// deadline is set only when until changes (the loop waits for the same
// tick many times) or after it expired: an expired deadline fails the
// runtime's read before it polls at all.
func (p *poller) wait(events []unix.EpollEvent, until int64) (int, error) {
	if until == 0 || (until > 0 && until <= p.clock()) {
		return p.poll(events)
	}
	until = max(until, 0)
	if until != p.deadline {
		dl := time.Time{}
		if until > 0 {
			dl = p.epoch.Add(time.Duration(until))
		}
		if err := p.file.SetReadDeadline(dl); err != nil {
			return 0, err
		}
		p.deadline = until
	}
	p.parkedEvs, p.parkedN, p.parkedErr = events, 0, nil
	rerr := p.rc.Read(p.parkedPoll)
	n, err := p.parkedN, p.parkedErr
	p.parkedEvs, p.parkedErr = nil, nil
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		p.deadline = -1 // none that will not fail at once: set one again
		rerr = nil
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}

// pollParked is the parked wait's poll: done when it found events or an
// error, otherwise the runtime parks the loop until the epoll fd is
// readable.
func (p *poller) pollParked(uintptr) bool {
	p.parkedN, p.parkedErr = p.poll(p.parkedEvs)
	return p.parkedN != 0 || p.parkedErr != nil
}

// poll collects ready events without blocking.
func (p *poller) poll(events []unix.EpollEvent) (int, error) {
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(p.fd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno == unix.EINTR {
		return 0, nil
	}
	if errno != 0 {
		return 0, os.NewSyscallError("epoll_wait", errno)
	}
	return int(r), nil
}

// trigger wakes the loop blocked in wait. Callers that find a wakeup
// already pending skip the syscall; the loop clears the flag before it
// drains its queues, so no work queued after the clear goes unnoticed.
func (p *poller) trigger() {
	if !p.woken.CompareAndSwap(0, 1) {
		return
	}
	one := [8]byte{1}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	for {
		_, err := unix.Write(p.wfd, one[:])
		if err != unix.EINTR {
			// EAGAIN means the counter is already non-zero: the loop
			// will wake anyway.
			return
		}
	}
}

// drainWake consumes the eventfd counter. The loop re-arms trigger by
// clearing woken before it drains its queues.
func (p *poller) drainWake() {
	_, _ = unix.Read(p.wfd, p.wbuf[:])
}

func (p *poller) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	unix.Close(p.wfd)
	if p.file != nil {
		p.file.Close()
	} else {
		unix.Close(p.fd)
	}
}

// writev writes iovs to fd in one system call. x/sys's Writev builds its
// iovec array on every call; this one reuses the caller's.
func writev(fd int, iovs []unix.Iovec) (int, error) {
	if len(iovs) == 0 {
		return 0, nil
	}
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
	if errno != 0 {
		return int(n), errno
	}
	return int(n), nil
}
