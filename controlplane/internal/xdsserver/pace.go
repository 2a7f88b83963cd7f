package xdsserver

import "context"

// WaitEndpointsTaken blocks until no stream has an EDS response it has
// not answered (ACKed or NACKed), or ctx ends; it reports whether none
// has. The control plane waits on it, bounded, before it builds the next
// registry change: clients that cannot keep up with the pushes (too many
// of them, or starved of CPU) are then sent fewer, larger changes rather
// than every intermediate version. A stream is sent a version only after
// it answered the last, but each version is still built, and sent to
// every stream that is ready for it.
func (s *Server) WaitEndpointsTaken(ctx context.Context) bool {
	for {
		s.mu.Lock()
		busy := false
		for _, st := range s.streams {
			if st.eds.outstanding {
				busy = true
				break
			}
		}
		signal := s.ackSignal // closed on every ACK, EDS NACK and stream end
		s.mu.Unlock()
		if !busy {
			return true
		}
		select {
		case <-signal:
		case <-ctx.Done():
			return false
		}
	}
}
