package baseline

import "bufio"

// broadcastLoop reads one Broadcast connection's frames and queues each to
// every other connection.
func (s *Server) broadcastLoop(p *peer) {
	defer s.wg.Done()
	defer s.remove(p)
	r := bufio.NewReader(p.c)
	var full []*peer
	for {
		// A new buffer per frame: the bytes are shared by every queue
		// they go to, encoded once.
		f, err := readFrame(r, nil)
		if err != nil {
			s.readFailed(err)
			return
		}
		full = s.broadcast(p, f, full[:0])
		if len(full) > 0 {
			s.drop(full)
		}
	}
}

// broadcast queues f to every peer but from and returns (appended to full)
// the peers whose queue had no room.
func (s *Server) broadcast(from *peer, f []byte, full []*peer) []*peer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for p := range s.peers {
		if p == from {
			continue
		}
		select {
		case p.out <- f:
		default:
			full = append(full, p)
		}
	}
	return full
}

// drop closes subscribers whose queue is full. Waiting for them instead
// would let one client that stops reading stall every publisher and so
// every other subscriber; a bounded queue and a drop keep memory bounded
// and the others flowing. The dropped client sees its connection close.
func (s *Server) drop(full []*peer) {
	s.mu.Lock()
	for _, p := range full {
		if _, ok := s.peers[p]; ok {
			s.removeLocked(p)
			s.dropped.Add(1)
		}
	}
	s.mu.Unlock()
}

// writeLoop writes a Broadcast connection's queued frames, flushing when
// the queue is empty so a burst goes out in few writes. It ends when the
// queue is closed or a write fails.
func (s *Server) writeLoop(p *peer) {
	defer s.wg.Done()
	w := bufio.NewWriter(p.c)
	for f := range p.out {
		if _, err := w.Write(f); err != nil {
			break
		}
		if len(p.out) == 0 {
			if err := w.Flush(); err != nil {
				break
			}
		}
	}
	// After a failed write the reader may be blocked on a peer that is
	// still sending; remove closes the connection and so ends it.
	s.remove(p)
}
