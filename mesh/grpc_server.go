package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/xds"

	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/security"
)

// GRPCServer is a gRPC server in the mesh. It is gRPC-Go's xDS server: the
// control plane's Listener for its address decides how it serves. Serve
// registers it with the control plane; GracefulStop takes it out of
// callers' endpoints before it stops.
type GRPCServer struct {
	*lifecycle
	gs *xds.GRPCServer
}

var _ grpc.ServiceRegistrar = (*GRPCServer)(nil)

// NewGRPCServer returns a mesh gRPC server. Register services on it as on a
// *grpc.Server, then call Serve.
func (m *Mesh) NewGRPCServer(opts ...ServerOption) (*GRPCServer, error) {
	s := &GRPCServer{lifecycle: newLifecycle(m, opts, "GRPC")}
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
			s.touch()
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			s.touch()
			return h(srv, ss)
		}),
	}
	if !bootstrapFromEnv() {
		gopts = append(gopts, xds.BootstrapContentsForTesting(m.bootstrap))
	}
	s.gs, err = xds.NewGRPCServer(append(gopts, s.opts.grpcOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("mesh: grpc server: %w", err)
	}
	if err := s.track(s); err != nil {
		s.gs.Stop()
		return nil, err
	}
	return s, nil
}

// RegisterService registers a service implementation, as on a
// *grpc.Server. Call it before Serve.
func (s *GRPCServer) RegisterService(sd *grpc.ServiceDesc, impl any) { s.gs.RegisterService(sd, impl) }

// Serve registers the server with the control plane and serves on lis
// until Stop or GracefulStop. The endpoint enters callers' endpoint sets
// only once the server has its config and serves.
func (s *GRPCServer) Serve(lis net.Listener) error {
	if _, err := s.register(lis); err != nil {
		if errors.Is(err, errServerStopped) {
			return grpc.ErrServerStopped
		}
		return err
	}
	return s.gs.Serve(lis)
}

// servingMode follows gRPC-Go's xDS server: an address serves once its
// Listener arrived and stops serving when it is removed.
func (s *GRPCServer) servingMode(addr net.Addr, args xds.ServingModeChangeArgs) {
	r := s.registration(addr.String())
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
// that and stopped sending (bounded by the drain timeout), then stops
// accepting RPCs and waits for the running ones to finish.
func (s *GRPCServer) GracefulStop() {
	regs := s.drain(context.Background())
	s.gs.GracefulStop()
	s.deregister(regs)
	s.untrack(s)
}

// Stop deregisters the server and stops it at once, failing the RPCs in
// flight. Prefer GracefulStop.
func (s *GRPCServer) Stop() {
	regs := s.markStopped()
	s.gs.Stop()
	s.deregister(regs)
	s.untrack(s)
}
