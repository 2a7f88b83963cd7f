package grpcadapter

import (
	"google.golang.org/grpc/connectivity"

	"github.com/meshlet/meshlet/internal/dataplane"
)

// A cluster's tcp.maxConnections (Envoy's max_connections) bounds its
// SubConns that are connected or connecting, across every channel and
// the HTTP transport: each holds one of the cluster's connection slots.
// A SubConn that finds none free stays IDLE, unconnected, until one is
// given back. A pick that lands on such an endpoint tries a connected one
// instead, as Envoy, which would not open the connection, cannot; only
// when none is found does the call fail, UNAVAILABLE naming the limit.

// connectLocked connects c if it holds a slot or can take one; otherwise
// it stays IDLE.
func (b *lb) connectLocked(c *conn) {
	if !c.slot && c.dc != nil {
		if c.dc.StartConnection() != nil {
			return
		}
		c.slot = true
	}
	c.sc.Connect()
}

// releaseLocked gives back c's slot, if it holds one, and reports whether
// it did.
func (b *lb) releaseLocked(c *conn) bool {
	if !c.slot {
		return false
	}
	c.slot = false
	c.dc.EndConnection()
	return true
}

// limitConnectionsLocked follows c's new state: a SubConn that is not
// connected (IDLE, or backing off in TRANSIENT_FAILURE) gives back its
// slot, an IDLE one then connects again at once if it can (a connection
// that went away comes back), and the cluster's other IDLE SubConns are
// given what is free.
func (b *lb) limitConnectionsLocked(c *conn) {
	if c.state != connectivity.Idle && c.state != connectivity.TransientFailure {
		return
	}
	freed := b.releaseLocked(c)
	if c.state == connectivity.Idle {
		b.connectLocked(c)
	}
	if freed && !c.slot {
		b.wakeLocked(c.key.cluster)
	}
}

// wakeLocked connects the cluster's IDLE SubConns while slots are free.
func (b *lb) wakeLocked(cluster string) {
	for _, o := range b.conns {
		if o.key.cluster != cluster || o.state != connectivity.Idle || o.slot {
			continue
		}
		b.connectLocked(o)
		if !o.slot {
			return // none free
		}
	}
}

// idle decides for a pick of an IDLE SubConn: nil if it holds a slot
// (it was told to connect and is not CONNECTING yet); the cluster's
// limit error if its connections are all open, so that the pick tries
// another endpoint; else nil, and the SubConn connects (a slot was given
// back elsewhere, by another channel say) for the pick to wait for.
func (p *picker) idle(c *conn, cl *dataplane.Cluster) error {
	if c.slot {
		return nil // told to connect, and not CONNECTING yet
	}
	if err := cl.ConnectionsFull(); err != nil {
		return err
	}
	go func() { // not under gRPC's picker lock
		b := p.lb
		b.mu.Lock()
		defer b.mu.Unlock()
		if cur := b.conns[c.key]; cur != nil && !b.closed && cur.state == connectivity.Idle {
			b.connectLocked(cur)
		}
	}()
	return nil
}
