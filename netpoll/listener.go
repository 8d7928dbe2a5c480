package netpoll

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// keepAliveProbes is how many unanswered keepalive probes close a
// connection.
const keepAliveProbes = 3

// listener is a non-blocking listening socket, with what its connections
// speak.
type listener struct {
	fd      int
	addr    *net.TCPAddr
	tls     *tls.Config // nil: no TLS
	ws      *WebSocket  // nil: frames on the socket
	refusal []byte      // what a connection over a limit gets before the close

	// Every loop accepts on the listener (registered with EPOLLEXCLUSIVE,
	// so that a connection wakes one loop, not all); the last loop to let
	// go of it closes the fd, so that no loop ever accepts on a number the
	// kernel has given to something else.
	holders atomic.Int32
}

// Listener is one more address a Server serves on (Config.Listeners),
// with the transport its connections speak. The Handler sees their
// connections as it sees any other.
type Listener struct {
	Addr      string      // "host:port"
	TLS       *tls.Config // TLS first, when set
	WebSocket *WebSocket  // WebSocket framing instead of frames, when set
}

// listen binds addr ("host:port"; an empty host or "::" listens on every
// IPv6 and IPv4 address, "0.0.0.0" on every IPv4 one). Accepted sockets
// inherit TCP_NODELAY and the keepalive settings from the listening one,
// which spares two to five system calls per connection: keepalive probes
// after keepAlive idle, every keepAlive, and 3 unanswered close the
// connection (a dead peer is found within 4 × keepAlive); a negative
// keepAlive turns it off.
func listen(addr string, keepAlive time.Duration) (*listener, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %q: %w", addr, err)
	}
	family := unix.AF_INET6
	if ip4 := ta.IP.To4(); ip4 != nil {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, os.NewSyscallError("socket", err))
	}
	fail := func(call string, err error) (*listener, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("listen on %s: %w", addr, os.NewSyscallError(call, err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt SO_REUSEADDR", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fail("setsockopt TCP_NODELAY", err)
	}
	if keepAlive > 0 {
		secs := int(keepAlive / time.Second)
		for _, o := range []struct {
			level, opt, v int
			name          string
		}{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs, "TCP_KEEPIDLE"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs, "TCP_KEEPINTVL"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveProbes, "TCP_KEEPCNT"},
		} {
			if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
				return fail("setsockopt "+o.name, err)
			}
		}
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		s := &unix.SockaddrInet4{Port: ta.Port}
		copy(s.Addr[:], ta.IP.To4())
		sa = s
	} else {
		// Dual stack for the wildcard address, as Go's net package does.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fail("setsockopt IPV6_V6ONLY", err)
		}
		s := &unix.SockaddrInet6{Port: ta.Port}
		if ta.IP != nil {
			copy(s.Addr[:], ta.IP.To16())
		}
		if ta.Zone != "" {
			if ifi, err := net.InterfaceByName(ta.Zone); err == nil {
				s.ZoneId = uint32(ifi.Index)
			}
		}
		sa = s
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, backlog()); err != nil {
		return fail("listen", err)
	}
	local, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return &listener{fd: fd, addr: tcpAddr(local)}, nil
}

// backlog is the kernel's cap on the accept queue; asking for more is
// silently truncated, asking for less drops connections in a burst.
func backlog() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n
		}
	}
	return unix.SOMAXCONN
}

func (l *listener) accept() (int, unix.Sockaddr, error) {
	return unix.Accept4(l.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
}

// release lets go of the listener for one loop; the last closes it.
func (l *listener) release() error {
	if l.holders.Add(-1) != 0 {
		return nil
	}
	return unix.Close(l.fd)
}

func tcpAddr(sa unix.Sockaddr) *net.TCPAddr {
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), s.Addr[:]...)), Port: s.Port}
	case *unix.SockaddrInet6:
		a := &net.TCPAddr{IP: net.IP(append([]byte(nil), s.Addr[:]...)), Port: s.Port}
		if s.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(s.ZoneId)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return a
	}
	return &net.TCPAddr{}
}
