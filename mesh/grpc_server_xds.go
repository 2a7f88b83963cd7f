package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/xdspath"
	"github.com/meshlet/meshlet/security"
)

// This file is gRPC-Go's xDS server as a backend of GRPCServer. The
// server itself comes from package mesh/grpcxds, which a program imports
// to link google.golang.org/grpc/xds; mesh does not.

// WithXDSServer makes NewGRPCServer return gRPC-Go's xDS server
// (google.golang.org/grpc/xds) instead of meshlet's native one. It follows
// the same server Listener, with gRPC-Go's own xDS client, over an ADS
// stream of its own, and applies it with gRPC-Go's xDS credentials and
// RBAC. Use it to check meshlet's control plane against the standard
// server; the native server is faster, and does not need a second stream.
// HTTP servers ignore it. The program must import mesh/grpcxds
// (import _ "github.com/meshlet/meshlet/mesh/grpcxds"); without it
// NewGRPCServer says so.
func WithXDSServer() ServerOption {
	return serverOptionFunc(func(o *serverOptions) { o.grpcBackend = newXDSGRPC })
}

// xdsGRPC is gRPC-Go's xDS server: the control plane's Listener for its
// address decides how it serves.
type xdsGRPC struct {
	l  *lifecycle
	gs xdspath.Server
}

func newXDSGRPC(l *lifecycle) (grpcBackend, error) {
	p, err := l.m.xdsPath.get(l.m)
	if err != nil {
		return nil, err
	}
	s := &xdsGRPC{l: l}
	cfg := xdspath.ServerConfig{
		// As on the client, the xDS credentials follow what the control
		// plane says about TLS for this listener: STRICT puts a TLS
		// context on it. Without one (PERMISSIVE), one port takes both
		// plaintext and mTLS.
		Fallback: security.PermissiveCredentials(l.m.identity),
		Serving:  s.servingMode,
		Options: append([]grpc.ServerOption{
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				l.touch()
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				l.touch()
				return h(srv, ss)
			}),
		}, l.opts.grpcOpts...),
	}
	if _, tel := l.m.xdsTelemetryOptions(p.path); tel != nil {
		cfg.Options = append([]grpc.ServerOption{tel}, cfg.Options...)
	}
	if !bootstrapFromEnv() {
		cfg.Bootstrap = l.m.bootstrap
	}
	if s.gs, err = p.path.NewServer(cfg); err != nil {
		return nil, fmt.Errorf("mesh: grpc xds server: %w", err)
	}
	return s, nil
}

func (s *xdsGRPC) RegisterService(sd *grpc.ServiceDesc, impl any) { s.gs.RegisterService(sd, impl) }

func (s *xdsGRPC) serve(lis net.Listener) error {
	if _, err := s.l.register(lis); err != nil {
		if errors.Is(err, errServerStopped) {
			return grpc.ErrServerStopped
		}
		return err
	}
	return s.gs.Serve(lis)
}

// servingMode follows gRPC-Go's xDS server: an address serves once its
// Listener arrived and stops serving when it is removed.
func (s *xdsGRPC) servingMode(addr net.Addr, serving bool, err error) {
	r := s.l.registration(addr.String())
	if r == nil {
		return
	}
	if serving {
		r.setState(registrypb.State_SERVING)
	} else {
		s.l.m.log.Warn("mesh server not serving", "address", addr.String(), "err", err)
		r.setState(registrypb.State_NOT_SERVING)
	}
}

func (s *xdsGRPC) gracefulStop() { s.gs.GracefulStop() }

func (s *xdsGRPC) stop() { s.gs.Stop() }
