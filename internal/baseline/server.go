package baseline

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode selects what a Server does with the frames it receives.
type Mode int

const (
	// Echo writes each frame back to the connection that sent it.
	Echo Mode = iota
	// Broadcast writes each frame to every connection except its sender.
	Broadcast
)

// String returns the mode's name: "echo" or "broadcast".
func (m Mode) String() string {
	switch m {
	case Echo:
		return "echo"
	case Broadcast:
		return "broadcast"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// QueueLen is the bound, in frames, of each connection's outbound queue in
// Broadcast mode. A load generator that paces itself keeps fewer than this
// many frames in flight to any one subscriber; 1024 frames of 64 bytes is
// 68 KiB a connection, which also bounds the memory a stalled one pins.
const QueueLen = 1024

// Stats are a Server's counters.
type Stats struct {
	Conns          int   // connections open now
	Accepted       int64 // connections accepted since Listen
	Dropped        int64 // Broadcast subscribers closed because their queue was full
	ProtocolErrors int64 // connections closed for a malformed frame
}

// Server is a running baseline server. Create it with Listen; stop it with
// Close.
type Server struct {
	ln   net.Listener
	mode Mode
	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	// mu guards peers and closed. Broadcasts hold it for reading while they
	// queue a frame to every peer; registering, dropping and closing take it
	// for writing, so no queue is closed while a broadcast may send to it.
	mu     sync.RWMutex
	peers  map[*peer]struct{}
	closed bool

	accepted       atomic.Int64
	dropped        atomic.Int64
	protocolErrors atomic.Int64
}

// peer is one connection. out is nil in Echo mode.
type peer struct {
	c   net.Conn
	out chan []byte // frames to write, shared with other peers' queues: read-only
}

// Listen starts a server on addr (host:port; port 0 picks a free one) in
// the given mode.
func Listen(addr string, mode Mode) (*Server, error) { return ListenTLS(addr, mode, nil) }

// ListenTLS is Listen with every connection over TLS (crypto/tls, one
// goroutine per connection, as a Go server is usually written); a nil cfg
// means plain TCP.
func ListenTLS(addr string, mode Mode, cfg *tls.Config) (*Server, error) {
	if mode != Echo && mode != Broadcast {
		return nil, fmt.Errorf("baseline: unknown mode %d", int(mode))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	s := &Server{
		ln:    ln,
		mode:  mode,
		done:  make(chan struct{}),
		peers: make(map[*peer]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the address the server listens on, as host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Mode returns the server's mode.
func (s *Server) Mode() Mode { return s.mode }

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.RLock()
	n := len(s.peers)
	s.mu.RUnlock()
	return Stats{
		Conns:          n,
		Accepted:       s.accepted.Load(),
		Dropped:        s.dropped.Load(),
		ProtocolErrors: s.protocolErrors.Load(),
	}
}

// Close stops accepting, closes every connection and waits for all the
// server's goroutines to finish. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	close(s.done)
	err := s.ln.Close()
	for p := range s.peers {
		s.removeLocked(p)
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("baseline: close listener: %w", err)
	}
	return nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, ok := accept(s.ln, s.done)
		if !ok {
			return
		}
		s.accepted.Add(1)
		p := &peer{c: c}
		if s.mode == Broadcast {
			p.out = make(chan []byte, QueueLen)
		}
		if !s.register(p) {
			c.Close()
			return
		}
		if s.mode == Broadcast {
			s.wg.Add(2)
			go s.writeLoop(p)
			go s.broadcastLoop(p)
		} else {
			s.wg.Add(1)
			go s.echoLoop(p)
		}
	}
}

// accept waits for the next connection. When accept fails for want of
// file descriptors and the like it backs off and tries again, as net/http
// does, 5 ms doubling to 1 s. It reports false once the listener is
// closed or done is.
func accept(ln net.Listener, done <-chan struct{}) (net.Conn, bool) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			return c, true
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, false
		}
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-done:
			t.Stop()
			return nil, false
		}
	}
}

// register adds p to the peers, unless the server is closed.
func (s *Server) register(p *peer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.peers[p] = struct{}{}
	return true
}

// remove closes p and forgets it; it does nothing if p is already gone.
func (s *Server) remove(p *peer) {
	s.mu.Lock()
	if _, ok := s.peers[p]; ok {
		s.removeLocked(p)
	}
	s.mu.Unlock()
}

// removeLocked closes p's queue, which ends its writer once the queued
// frames are written, and its connection, which ends its reader and any
// write blocked on a peer that does not read. s.mu is held for writing.
func (s *Server) removeLocked(p *peer) {
	delete(s.peers, p)
	if p.out != nil {
		close(p.out)
	}
	p.c.Close()
}
