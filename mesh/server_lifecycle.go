package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/resolver"
)

// lifecycle is what gRPC and HTTP servers share: one registration per
// listening address, draining, and knowing when callers have moved off.
type lifecycle struct {
	m        *Mesh
	opts     serverOptions
	protocol string // Istio port protocol: GRPC or HTTP

	// lastRequest is when the newest request started (unix nanoseconds):
	// once callers have moved off, it stops advancing.
	lastRequest atomic.Int64

	mu      sync.Mutex
	regs    map[string]*registration // by listening address
	stopped bool
}

// stopper is a server Mesh.Close stops.
type stopper interface{ Stop() }

func newLifecycle(m *Mesh, opts []ServerOption, protocol string) *lifecycle {
	l := &lifecycle{m: m, protocol: protocol, regs: map[string]*registration{}}
	for _, opt := range opts {
		opt.applyServer(&l.opts)
	}
	return l
}

// track adds s to the servers Mesh.Close stops.
func (l *lifecycle) track(s stopper) error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.m.closed {
		return errors.New("mesh: closed")
	}
	l.m.servers[s] = struct{}{}
	return nil
}

func (l *lifecycle) untrack(s stopper) {
	l.m.mu.Lock()
	delete(l.m.servers, s)
	l.m.mu.Unlock()
}

// touch records that a request started.
func (l *lifecycle) touch() { l.lastRequest.Store(l.m.opts.clock.Now().UnixNano()) }

// register starts keeping the listening address lis registered, not yet
// serving.
func (l *lifecycle) register(lis net.Listener) (*registration, error) {
	tcp, ok := lis.Addr().(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("mesh: Serve needs a TCP listener, got %T", lis.Addr())
	}
	inst, err := l.instance(tcp)
	if err != nil {
		return nil, err
	}
	r := newRegistration(l.m, inst)
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return nil, errServerStopped
	}
	l.regs[lis.Addr().String()] = r
	l.mu.Unlock()
	r.start()
	return r, nil
}

var errServerStopped = errors.New("mesh: server stopped")

// waitXDSClient returns the mesh's xDS client, which New started
// connecting. A wait that is not short is logged, not hidden: the server
// cannot serve policy before it has the stream.
func (l *lifecycle) waitXDSClient(addr net.Addr) (*resolver.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	rc, err := l.m.xdsClient(ctx)
	cancel()
	if err == nil {
		return rc, nil
	}
	l.m.log.Warn("mesh: "+l.protocol+" server waiting for the xDS stream to the control plane", "address", addr.String(), "control_plane", l.m.opts.controlPlane, "up_to", xdsWaitLimit)
	ctx, cancel = context.WithTimeout(context.Background(), xdsWaitLimit)
	defer cancel()
	return l.m.xdsClient(ctx)
}

// What a server answers, over either transport, when its policy refuses a
// request for want of a Listener, or for being plaintext under STRICT.
const (
	msgNoPolicy  = "mesh: this server has no policy from the control plane yet"
	msgPlaintext = "mesh: plaintext is refused: this server's PeerAuthentication is STRICT"
)

// xdsWaitLimit bounds how long Serve waits for the xDS stream.
const xdsWaitLimit = 30 * time.Second

// watchInbound follows the server Listener of listener lis, registered as
// reg: the control plane knows the server by the address it registered
// (the advertised IP), whatever lis is bound to. The registration serves
// once the Listener arrives, and stops serving when the control plane
// removes it. updated, if not nil, is called after each new Listener takes
// effect.
func (l *lifecycle) watchInbound(rc *resolver.Client, lis net.Listener, reg *registration, updated func(*resolver.Listener)) *dataplane.Inbound {
	registered := net.JoinHostPort(reg.inst.GetAddress(), strconv.FormatUint(uint64(reg.inst.GetPort()), 10))
	return dataplane.WatchInbound(rc, registered, dataplane.InboundOptions{
		Serving: func(serving bool, _ error) {
			if serving {
				reg.setState(registrypb.State_SERVING)
			} else {
				reg.setState(registrypb.State_NOT_SERVING)
			}
		},
		Updated: updated,
		Log:     l.m.log.With("server", l.protocol, "address", lis.Addr().String()),
	})
}

// registration returns the registration of a listening address.
func (l *lifecycle) registration(addr string) *registration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.regs[addr]
}

func (l *lifecycle) instance(addr *net.TCPAddr) (*registrypb.Instance, error) {
	o := l.m.opts
	ip := l.opts.advertise
	if ip == "" {
		ip = addr.IP.String()
		if addr.IP.IsUnspecified() {
			var err error
			if ip, err = hostIP(); err != nil {
				return nil, err
			}
		}
	}
	var listen string
	if bound := addr.IP.String(); bound != ip {
		listen = bound // a wildcard bind: its server Listener is asked for by this address too
	}
	return &registrypb.Instance{
		ListenAddress:  listen,
		Id:             fmt.Sprintf("%s/%s:%d", l.m.nodeID, ip, addr.Port),
		Service:        o.service,
		Namespace:      o.namespace,
		ServiceAccount: o.serviceAccount,
		Address:        ip,
		Port:           uint32(addr.Port),
		ServicePort:    l.opts.servicePort,
		Protocol:       l.protocol,
		Labels:         o.labels,
		Locality:       &registrypb.Locality{Region: o.locality.Region, Zone: o.locality.Zone, SubZone: o.locality.SubZone},
		Weight:         l.opts.weight,
	}, nil
}

// hostIP returns the first non-loopback unicast address of this host.
func hostIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("mesh: find an address to advertise: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("mesh: no address to advertise: bind to an IP or use WithAdvertiseAddress")
}

// markStopped refuses new Serve calls and returns the registrations.
func (l *lifecycle) markStopped() []*registration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	regs := make([]*registration, 0, len(l.regs))
	for _, r := range l.regs {
		regs = append(regs, r)
	}
	return regs
}

// drain takes every address out of callers' endpoints and waits until
// they have moved off, bounded by the mesh's drain timeout.
// drain is bounded by the drain timeout and by ctx, the caller's.
func (l *lifecycle) drain(ctx context.Context) []*registration {
	regs := l.markStopped()
	ctx, cancel := context.WithTimeout(ctx, l.m.opts.drainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range regs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.drain(ctx)
		}()
	}
	wg.Wait()
	l.waitQuiet(ctx)
	return regs
}

// quietPeriod is how long no new request may start before a draining
// server takes callers to have moved off. The control plane's "drained"
// means callers acknowledged the endpoint update; their pickers follow a
// moment later.
const quietPeriod = 200 * time.Millisecond

// waitQuiet waits until no request has started for quietPeriod, or ctx
// ends.
func (l *lifecycle) waitQuiet(ctx context.Context) {
	clock := l.m.opts.clock
	for {
		idle := clock.Now().Sub(time.Unix(0, l.lastRequest.Load()))
		if idle >= quietPeriod {
			return
		}
		woke := make(chan struct{})
		stop := clock.AfterFunc(quietPeriod-idle, func() { close(woke) })
		select {
		case <-ctx.Done():
			stop()
			return
		case <-woke:
		}
	}
}

// deregister ends every registration, cleanly when the control plane is
// there.
func (l *lifecycle) deregister(regs []*registration) {
	for _, r := range regs {
		r.stop()
	}
}
