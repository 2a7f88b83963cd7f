package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/xds"

	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/security"
)

// Server is a gRPC server in the mesh. It is gRPC-Go's xDS server: the
// control plane's Listener for its address decides how it serves. Serve
// registers it with the control plane; GracefulStop takes it out of
// callers' endpoints before it stops.
type Server struct {
	m    *Mesh
	opts serverOptions
	gs   *xds.GRPCServer

	// lastRPC is when the newest RPC started (unix nanoseconds): once
	// callers have moved off, it stops advancing.
	lastRPC atomic.Int64

	mu      sync.Mutex
	regs    map[string]*registration // by listening address
	stopped bool
}

var _ grpc.ServiceRegistrar = (*Server)(nil)

// NewGRPCServer returns a mesh gRPC server. Register services on it as on a
// *grpc.Server, then call Serve.
func (m *Mesh) NewGRPCServer(opts ...ServerOption) (*Server, error) {
	var o serverOptions
	for _, opt := range opts {
		opt.applyServer(&o)
	}
	s := &Server{m: m, opts: o, regs: map[string]*registration{}}
	// As on the client, the xDS credentials follow what the control plane
	// says about TLS for this listener: STRICT puts a TLS context on it.
	// Without one (PERMISSIVE), one port takes both plaintext and mTLS.
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: security.PermissiveCredentials(m.identity)})
	if err != nil {
		return nil, fmt.Errorf("mesh: xds server credentials: %w", err)
	}
	gopts := []grpc.ServerOption{
		grpc.Creds(creds),
		xds.ServingModeCallback(s.servingMode),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			s.lastRPC.Store(time.Now().UnixNano())
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			s.lastRPC.Store(time.Now().UnixNano())
			return h(srv, ss)
		}),
	}
	if !bootstrapFromEnv() {
		gopts = append(gopts, xds.BootstrapContentsForTesting(m.bootstrap))
	}
	s.gs, err = xds.NewGRPCServer(append(gopts, o.grpcOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("mesh: grpc server: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		s.gs.Stop()
		return nil, errors.New("mesh: closed")
	}
	m.servers[s] = struct{}{}
	return s, nil
}

// RegisterService registers a service implementation, as on a
// *grpc.Server. Call it before Serve.
func (s *Server) RegisterService(sd *grpc.ServiceDesc, impl any) { s.gs.RegisterService(sd, impl) }

// Serve registers the server with the control plane and serves on lis
// until Stop or GracefulStop. The endpoint enters callers' endpoint sets
// only once the server has its config and serves.
func (s *Server) Serve(lis net.Listener) error {
	tcp, ok := lis.Addr().(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("mesh: Serve needs a TCP listener, got %T", lis.Addr())
	}
	inst, err := s.instance(tcp)
	if err != nil {
		return err
	}
	r := newRegistration(s.m, inst)
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return grpc.ErrServerStopped
	}
	s.regs[lis.Addr().String()] = r
	s.mu.Unlock()
	r.start()
	return s.gs.Serve(lis)
}

func (s *Server) instance(addr *net.TCPAddr) (*registrypb.Instance, error) {
	o := s.m.opts
	ip := s.opts.advertise
	if ip == "" {
		ip = addr.IP.String()
		if addr.IP.IsUnspecified() {
			var err error
			if ip, err = hostIP(); err != nil {
				return nil, err
			}
		}
	}
	return &registrypb.Instance{
		Id:             fmt.Sprintf("%s/%s:%d", s.m.nodeID, ip, addr.Port),
		Service:        o.service,
		Namespace:      o.namespace,
		ServiceAccount: o.serviceAccount,
		Address:        ip,
		Port:           uint32(addr.Port),
		ServicePort:    s.opts.servicePort,
		Protocol:       "GRPC",
		Labels:         o.labels,
		Locality:       &registrypb.Locality{Region: o.locality.Region, Zone: o.locality.Zone, SubZone: o.locality.SubZone},
		Weight:         s.opts.weight,
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

// servingMode follows gRPC-Go's xDS server: an address serves once its
// Listener arrived and stops serving when it is removed.
func (s *Server) servingMode(addr net.Addr, args xds.ServingModeChangeArgs) {
	s.mu.Lock()
	r := s.regs[addr.String()]
	s.mu.Unlock()
	if r == nil {
		return
	}
	if args.Mode == connectivity.ServingModeServing {
		r.setState(registrypb.State_SERVING)
	} else {
		s.m.log.Warn("mesh server not serving", "address", addr.String(), "err", args.Err)
		r.setState(registrypb.State_NOT_SERVING)
	}
}

// GracefulStop drains and stops the server: it takes its endpoints out of
// the control plane's endpoint sets, waits until callers have acknowledged
// that (bounded by the drain timeout), then stops accepting RPCs and waits
// for the running ones to finish.
func (s *Server) GracefulStop() {
	regs := s.markStopped()
	ctx, cancel := context.WithTimeout(context.Background(), s.m.opts.drainTimeout)
	var wg sync.WaitGroup
	for _, r := range regs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.drain(ctx)
		}()
	}
	wg.Wait()
	s.waitQuiet(ctx)
	cancel()
	s.gs.GracefulStop()
	for _, r := range regs {
		r.stop()
	}
	s.forget()
}

// quietPeriod is how long no new RPC may start before a draining server
// takes callers to have moved off. The control plane's "drained" means
// callers acknowledged the endpoint update; their pickers follow a moment
// later.
const quietPeriod = 200 * time.Millisecond

// waitQuiet waits until no RPC has started for quietPeriod, or ctx ends.
func (s *Server) waitQuiet(ctx context.Context) {
	for {
		idle := time.Since(time.Unix(0, s.lastRPC.Load()))
		if idle >= quietPeriod {
			return
		}
		t := time.NewTimer(quietPeriod - idle)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Stop deregisters the server and stops it at once, failing the RPCs in
// flight. Prefer GracefulStop.
func (s *Server) Stop() {
	regs := s.markStopped()
	s.gs.Stop()
	for _, r := range regs {
		r.stop()
	}
	s.forget()
}

func (s *Server) markStopped() []*registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	regs := make([]*registration, 0, len(s.regs))
	for _, r := range s.regs {
		regs = append(regs, r)
	}
	return regs
}

func (s *Server) forget() {
	s.m.mu.Lock()
	delete(s.m.servers, s)
	s.m.mu.Unlock()
}
