package netpoll

import (
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// A socket closed while input it has not read waits in the kernel is
// reset, not closed: the peer gets an RST, and what was still on its way
// to the peer — the broker's last answer, a refusal or an error — may be
// thrown away with it. A client that pipelines (a credential and frames
// behind it, or frames sent as soon as it connects) would never see why
// it was closed. So a connection the broker closes lingers: its output
// is shut (FIN after the last byte queued), and what the peer still
// sends is read and dropped until the peer closes too or lingerFor has
// passed. Lingering sockets hold no Conn and no buffer, only their fd and
// the kernel's socket; at most maxLingering per loop, beyond which a
// socket is closed at once.
const (
	lingerFor    = 2 * time.Second
	maxLingering = 512
	// lingerMarker is the epoll data of a lingering socket.
	lingerMarker = math.MinInt32
	// lingerReads bounds the reads of one drain, for fairness; the
	// socket is level-triggered, so the loop comes back for the rest.
	lingerReads = 16
)

// lingers reports whether a connection closed for r lingers. Not when the
// peer is gone (reset, closed), nor when the close is meant to give memory
// back at once (a slow consumer, the memory budget: what waits in the
// kernel for a peer that does not read would wait out the linger too),
// nor at shutdown, when the loops end.
func lingers(r reason) bool {
	switch r {
	case reasonPeer, reasonReset, reasonSlow, reasonMemory, reasonShutdown:
		return false
	}
	return true
}

// linger closes fd gracefully (see lingerFor). registered says whether fd
// is in the loop's epoll set already (a connection's) or not (one refused
// at accept).
func (l *loop) linger(fd int, registered bool) {
	if len(l.lingering) >= maxLingering || l.draining || l.quiesced || l.noLinger {
		unix.Close(fd)
		return
	}
	if unix.Shutdown(fd, unix.SHUT_WR) != nil || l.discardInput(fd) {
		unix.Close(fd)
		return
	}
	op := unix.EPOLL_CTL_ADD
	if registered {
		op = unix.EPOLL_CTL_MOD
	}
	if l.p.control(op, fd, lingerMarker, unix.EPOLLIN|unix.EPOLLRDHUP) != nil {
		unix.Close(fd)
		return
	}
	if l.lingering == nil {
		l.lingering = map[int]int64{}
	}
	l.lingering[fd] = l.now + int64(lingerFor)
}

// discardInput reads what fd has and drops it, and reports whether the
// socket is finished: the peer closed its side, or it failed.
func (l *loop) discardInput(fd int) bool {
	for range lingerReads {
		n, err := unix.Read(fd, l.buf)
		switch {
		case err == unix.EAGAIN:
			return false
		case err == unix.EINTR:
		case err != nil || n == 0:
			return true
		}
	}
	return false
}

// lingerEvent handles readiness of a lingering socket.
func (l *loop) lingerEvent(fd int) {
	if _, ok := l.lingering[fd]; ok && l.discardInput(fd) {
		l.endLinger(fd)
	}
}

// endLinger closes a lingering socket.
func (l *loop) endLinger(fd int) {
	delete(l.lingering, fd)
	unix.Close(fd)
}

// expireLingering closes the lingering sockets whose time is up, and
// every one when all is true.
func (l *loop) expireLingering(all bool) {
	for fd, until := range l.lingering {
		if all || l.now >= until {
			l.endLinger(fd)
		}
	}
}
