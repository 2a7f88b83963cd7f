package xdsclient

import "sync"

// serializer runs queued functions one at a time, in order, on its own
// goroutine, so that watchers are never called with a lock held and never
// concurrently. Its queue is unbounded: put never blocks.
type serializer struct {
	mu     sync.Mutex
	queue  []func()
	signal chan struct{}
	done   chan struct{}
	closed bool
}

func newSerializer() *serializer {
	return &serializer{signal: make(chan struct{}, 1), done: make(chan struct{})}
}

func (s *serializer) put(f func()) {
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, f)
	}
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *serializer) run() {
	for {
		select {
		case <-s.done:
			return
		case <-s.signal:
		}
		for {
			s.mu.Lock()
			if s.closed || len(s.queue) == 0 {
				s.mu.Unlock()
				break
			}
			f := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.mu.Unlock()
			f()
		}
	}
}

// close drops what is queued and stops run after the call in progress.
func (s *serializer) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.queue = nil
		close(s.done)
	}
	s.mu.Unlock()
}
