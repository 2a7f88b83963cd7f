package xdsserver

import (
	"errors"
	"net"
	"sync"
)

// The ADS service tracks the connections it is served on, by the
// client's address (what gRPC puts in a stream's peer): a stream whose
// response is not written in time has its connection closed, and when a
// connection closes, for whatever reason, the room its unwritten
// responses held in the send budget is given back (gRPC does not free
// what its writer still queued for a closed connection).

var errConnClosed = errors.New("xdsserver: connection closed")

// Listener returns l with its connections tracked; serve the ADS service
// on it (both ports), so that a client that does not read can be cut off.
func (s *Server) Listener(l net.Listener) net.Listener {
	return &trackedListener{Listener: l, t: s.flow.conns}
}

type connTracker struct {
	mu     sync.Mutex
	byPeer map[string]*trackedConn
}

func newConnTracker() *connTracker { return &connTracker{byPeer: map[string]*trackedConn{}} }

// lookup returns the open connection from peer, or nil.
func (t *connTracker) lookup(peer string) *trackedConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byPeer[peer]
}

type trackedListener struct {
	net.Listener
	t *connTracker
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: l.t, peer: c.RemoteAddr().String(), tokens: map[*sendToken]struct{}{}}
	l.t.mu.Lock()
	l.t.byPeer[tc.peer] = tc
	l.t.mu.Unlock()
	return tc, nil
}

// trackedConn is one client connection and the send tokens of responses
// queued on it.
type trackedConn struct {
	net.Conn
	t    *connTracker
	peer string

	mu     sync.Mutex
	closed bool
	tokens map[*sendToken]struct{}
}

// hold records tok as queued on the connection. It reports false when
// the connection is closed. A nil connection (not tracked) holds
// nothing.
func (c *trackedConn) hold(tok *sendToken) bool {
	if c == nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	tok.conn = c
	c.tokens[tok] = struct{}{}
	return true
}

// drop forgets a released token.
func (c *trackedConn) drop(tok *sendToken) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.tokens, tok)
	c.mu.Unlock()
}

// close closes the connection, as gRPC does when it ends it.
func (c *trackedConn) close() {
	if c != nil {
		c.Close()
	}
}

// Close closes the connection and gives back the room of the responses
// still queued on it.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	tokens := c.tokens
	c.tokens = map[*sendToken]struct{}{}
	c.mu.Unlock()
	if first {
		c.t.mu.Lock()
		if c.t.byPeer[c.peer] == c {
			delete(c.t.byPeer, c.peer)
		}
		c.t.mu.Unlock()
	}
	for tok := range tokens {
		tok.release()
	}
	return err
}
