package grpcadapter

import (
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"

	"github.com/meshlet/meshlet/policy"
)

// connLife retires a SubConn as its cluster's connection lifetime says:
// after maxRequestsPerConnection picks, for a new SubConn that connects
// at once, or after idleTimeout without an RPC, for a new SubConn that
// connects when a call next needs it. The old SubConn is shut down, which
// in gRPC-Go drains its connection (GracefulClose): RPCs already on it
// finish.
type connLife struct {
	max  uint32
	idle time.Duration

	uses     policy.ConnUses
	inflight atomic.Int32 // RPCs picked and not done, when idle is set
	last     atomic.Int64 // when the last RPC ended (UnixNano), when idle is set
	retired  atomic.Bool  // no more picks: it is being replaced

	timer *time.Timer // guarded by lb.mu
}

// newConnLife returns nil for the zero lifetime, which costs picks
// nothing.
func newConnLife(l policy.ConnLifetime) *connLife {
	if l == (policy.ConnLifetime{}) {
		return nil
	}
	return &connLife{max: l.MaxRequests, idle: l.IdleTimeout}
}

// use counts a pick of c, which has a lifetime, and reports whether c
// may carry it, and whether it is the last it carries: that pick's end
// replaces c.
func (p *picker) use(c *conn) (ok, last bool) {
	l := c.life
	if l.retired.Load() {
		return false, false
	}
	ok, last = l.uses.Use(l.max)
	if !ok {
		return false, false
	}
	if l.idle > 0 {
		l.inflight.Add(1)
	}
	if last && !l.retired.CompareAndSwap(false, true) {
		last = false
	}
	return true, last
}

// done ends an RPC that use counted.
func (l *connLife) done() {
	if l.idle > 0 {
		l.last.Store(time.Now().UnixNano())
		l.inflight.Add(-1)
	}
}

// watchIdleLocked starts c's idle timer once it is connected.
func (b *lb) watchIdleLocked(c *conn) {
	l := c.life
	if l == nil || l.idle == 0 || l.timer != nil {
		return
	}
	l.last.Store(time.Now().UnixNano())
	key := c.key
	l.timer = time.AfterFunc(l.idle, func() { b.checkIdle(key, l) })
}

// checkIdle replaces the SubConn of l, not connected, if it has had no
// RPC for its idle timeout; else it looks again when it could have.
func (b *lb) checkIdle(key connKey, l *connLife) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.conns[key] == nil || b.conns[key].life != l {
		return
	}
	idle := time.Since(time.Unix(0, l.last.Load()))
	if l.inflight.Load() > 0 || idle < l.idle {
		l.timer.Reset(max(l.idle-idle, time.Millisecond))
		return
	}
	if l.retired.CompareAndSwap(false, true) {
		b.replaceLocked(key, l, false)
	}
}

func (b *lb) replace(key connKey, l *connLife, connect bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.replaceLocked(key, l, connect)
}

// replaceLocked shuts down the SubConn of key if l is still its lifetime,
// and puts a new one for the same address in its place, connecting it
// now or on demand (the picker connects an idle SubConn).
func (b *lb) replaceLocked(key connKey, l *connLife, connect bool) {
	old := b.conns[key]
	if b.closed || old == nil || old.life != l {
		return
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	c := &conn{key: key, state: connectivity.Idle, dc: old.dc, addr: old.addr, life: newConnLife(key.conns)}
	sc, err := b.cc.NewSubConn([]resolver.Address{old.addr}, balancer.NewSubConnOptions{
		StateListener: func(st balancer.SubConnState) { b.onState(c, st) },
	})
	old.sc.Shutdown()
	// Its connection slot (tcp.maxConnections) goes to the new one if it
	// connects now; an idle replacement takes one when a pick connects it.
	b.releaseLocked(old)
	if err != nil {
		delete(b.conns, key) // gRPC is closing
	} else {
		c.sc = sc
		b.conns[key] = c
		if connect {
			b.connectLocked(c)
		}
	}
	b.updateLocked()
}
