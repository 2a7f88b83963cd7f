package grpcadapter

import (
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	meshbalancer "github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/policy"
)

// lbName is the adapter's LB policy, which the resolver's service config
// selects.
const lbName = "meshlet_dataplane"

func init() { balancer.Register(lbBuilder{}) }

type lbBuilder struct{}

func (lbBuilder) Name() string { return lbName }

func (lbBuilder) Build(cc balancer.ClientConn, _ balancer.BuildOptions) balancer.Balancer {
	return &lb{cc: cc, conns: map[connKey]*conn{}}
}

// connKey is one SubConn: an endpoint of a cluster, with the cluster's
// TLS settings.
type connKey struct {
	cluster, addr, tlsKey string
	conns                 policy.ConnLifetime
}

// pickKey is what a picker looks SubConns up by.
type pickKey struct{ cluster, addr string }

// conn is a SubConn and its last state.
type conn struct {
	key   connKey
	sc    balancer.SubConn
	state connectivity.State
	err   error
	dc    *dataplane.Cluster // nil in tests without a data plane
	slot  bool               // holds one of dc's connection slots
	addr  resolver.Address
	life  *connLife // nil when the cluster's connections live as long as they can
}

// lb keeps one SubConn per cluster and endpoint the resolver gives, and
// hands out pickers that let each call's plan choose.
type lb struct {
	cc balancer.ClientConn

	mu     sync.Mutex // the state listeners run on gRPC's serializer too; the lock keeps Close simple
	conns  map[connKey]*conn
	closed bool
}

func (b *lb) UpdateClientConnState(s balancer.ClientConnState) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	want := map[connKey]resolver.Address{}
	for _, a := range s.ResolverState.Addresses {
		u := upstreamOf(a.Attributes)
		if u == nil {
			continue
		}
		want[connKey{cluster: u.cluster, addr: a.Addr, tlsKey: u.tlsKey, conns: u.conns}] = a
	}
	for k, c := range b.conns {
		if _, ok := want[k]; !ok {
			c.sc.Shutdown()
			delete(b.conns, k)
			if b.releaseLocked(c) {
				b.wakeLocked(k.cluster)
			}
		}
	}
	for k, a := range want {
		if b.conns[k] != nil {
			continue
		}
		c := &conn{key: k, state: connectivity.Idle, dc: upstreamOf(a.Attributes).dc, addr: a, life: newConnLife(k.conns)}
		sc, err := b.cc.NewSubConn([]resolver.Address{a}, balancer.NewSubConnOptions{
			StateListener: func(st balancer.SubConnState) { b.onState(c, st) },
		})
		if err != nil {
			continue // gRPC is closing
		}
		c.sc = sc
		b.conns[k] = c
		// Connect now, as round_robin does: the first calls then find
		// their endpoints ready.
		b.connectLocked(c)
	}
	b.updateLocked()
	return nil
}

func (b *lb) onState(c *conn, st balancer.SubConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.conns[c.key] != c {
		return
	}
	c.state, c.err = st.ConnectivityState, st.ConnectionError
	if c.state == connectivity.Ready {
		b.watchIdleLocked(c)
	}
	b.limitConnectionsLocked(c)
	b.updateLocked()
}

// updateLocked gives gRPC a new picker over the SubConns as they stand,
// and the channel's state: ready if any endpoint is.
func (b *lb) updateLocked() {
	p := &picker{lb: b, conns: make(map[pickKey]*conn, len(b.conns))}
	state := connectivity.TransientFailure
	connecting := len(b.conns) == 0
	for k, c := range b.conns {
		cp := *c
		p.conns[pickKey{k.cluster, k.addr}] = &cp
		switch c.state {
		case connectivity.Ready:
			state = connectivity.Ready
		case connectivity.Connecting, connectivity.Idle:
			connecting = true
		}
	}
	if state != connectivity.Ready && connecting {
		state = connectivity.Connecting
	}
	b.cc.UpdateState(balancer.State{ConnectivityState: state, Picker: p})
}

func (b *lb) ResolverError(error) {
	// The data plane keeps what is in force; the interceptor says why a
	// call cannot go.
}

func (b *lb) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

func (b *lb) ExitIdle() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		if c.state == connectivity.Idle {
			b.connectLocked(c)
		}
	}
}

func (b *lb) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for k, c := range b.conns {
		c.sc.Shutdown()
		delete(b.conns, k)
		b.releaseLocked(c)
	}
}

// picker asks the call's plan for the endpoint, and gives gRPC the
// SubConn for it.
type picker struct {
	lb    *lb
	conns map[pickKey]*conn
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	cs, _ := info.Ctx.Value(callKey{}).(*callState)
	if cs == nil {
		return balancer.PickResult{}, status.Error(codes.Internal, "mesh: a call without meshlet's interceptors (use Mesh.DialOptions)")
	}
	var lastErr error
	for range envoydefaults.PreviousHostsTries {
		res, err := cs.call.Pick()
		if err != nil {
			cs.setNoEndpoints(errors.Is(err, meshbalancer.ErrNoEndpoints))
			return balancer.PickResult{}, status.Error(codes.Unavailable, "mesh: "+err.Error())
		}
		cs.setNoEndpoints(false)
		c := p.conns[pickKey{cs.call.Cluster.Name(), res.Endpoint.Address}]
		if c == nil {
			res.Done(dataplane.NotSent)
			if !cs.host.State().RoutesTo(cs.call.Cluster) {
				// The routes changed since the call was planned, and the
				// cluster went with them: plan it again.
				cs.setReplan()
				return balancer.PickResult{}, errReplan
			}
			// The resolver has not given gRPC this endpoint yet: wait
			// for the next picker.
			return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
		}
		switch c.state {
		case connectivity.Ready:
			last := false
			if c.life != nil {
				var ok bool
				if ok, last = p.use(c); !ok {
					// Its last request was picked: wait for its replacement.
					res.Done(dataplane.NotSent)
					return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
				}
			}
			cs.call.Tried(res.Endpoint.Address)
			cs.tel.Attempt(res.Endpoint.Address)
			start := time.Now()
			return balancer.PickResult{SubConn: c.sc, Done: func(di balancer.DoneInfo) {
				if c.life != nil {
					c.life.done()
					if last {
						// Replaced once its last RPC is over: shut down
						// earlier, the RPC could find the connection
						// closing and go to the replacement instead.
						go p.lb.replace(c.key, c.life, true)
					}
				}
				o := cs.outcome(di)
				dataplane.Report(res, o, start)
			}}, nil
		case connectivity.TransientFailure:
			// It could not connect: a local-origin failure, as an
			// Envoy connect failure is. Try another endpoint.
			cs.call.Tried(res.Endpoint.Address)
			lastErr = c.err
			dataplane.Report(res, dataplane.Outcome{Err: c.err, IsGRPC: true, GRPC: codes.Unavailable}, time.Now())
			continue
		case connectivity.Idle:
			// Not connected: a connection replaced for being idle, or
			// one waiting for a connection slot (tcp.maxConnections).
			if err := p.idle(c, cs.call.Cluster); err != nil {
				// Not connected, and the cluster's maxConnections are:
				// try a connected endpoint instead.
				cs.call.Tried(res.Endpoint.Address)
				res.Done(dataplane.NotSent)
				lastErr = err
				continue
			}
			res.Done(dataplane.NotSent)
			return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
		default:
			res.Done(dataplane.NotSent)
			return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
		}
	}
	if errors.Is(lastErr, policy.ErrCircuitOpen) {
		return balancer.PickResult{}, refusal(lastErr)
	}
	return balancer.PickResult{}, status.Errorf(codes.Unavailable, "mesh: %s: no endpoint could be connected to; last error: %v", dataplane.DescribeCluster(cs.call.Cluster.Name()), lastErr)
}
