package mesh

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
	"github.com/meshlet/meshlet/telemetry"
)

// GRPCServer is a gRPC server in the mesh. It follows the control plane's
// server Listener for its address through the mesh's own xDS client, as
// the HTTP server does: PeerAuthentication decides whether plaintext is
// accepted, AuthorizationPolicy decides who may call what, and it serves
// mTLS with the workload's identity. Serve registers it with the control
// plane; GracefulStop takes it out of callers' endpoints before it stops.
//
// WithXDSServer makes it gRPC-Go's xDS server instead, which follows the
// same Listener over an ADS stream of its own.
type GRPCServer struct {
	*lifecycle
	srv grpcBackend
}

var _ grpc.ServiceRegistrar = (*GRPCServer)(nil)

// grpcBackend is the server under a GRPCServer: meshlet's native one, or
// gRPC-Go's xDS server (grpc_server_xds.go). Its methods are those of a
// *grpc.Server; serve also registers lis with the control plane, and
// tracks requests for draining.
type grpcBackend interface {
	grpc.ServiceRegistrar
	serve(lis net.Listener) error
	gracefulStop()
	stop()
}

// newGRPCBackend returns the backend of a server whose lifecycle is l:
// newNativeGRPC unless a ServerOption chose another.
type newGRPCBackend func(l *lifecycle) (grpcBackend, error)

// NewGRPCServer returns a mesh gRPC server. Register services on it as on a
// *grpc.Server, then call Serve.
func (m *Mesh) NewGRPCServer(opts ...ServerOption) (*GRPCServer, error) {
	s := &GRPCServer{lifecycle: newLifecycle(m, opts, "GRPC")}
	newBackend := s.opts.grpcBackend
	if newBackend == nil {
		newBackend = newNativeGRPC
	}
	var err error
	if s.srv, err = newBackend(s.lifecycle); err != nil {
		return nil, err
	}
	if err := s.track(s); err != nil {
		s.srv.stop()
		return nil, err
	}
	return s, nil
}

// RegisterService registers a service implementation, as on a
// *grpc.Server. Call it before Serve.
func (s *GRPCServer) RegisterService(sd *grpc.ServiceDesc, impl any) { s.srv.RegisterService(sd, impl) }

// Serve registers the server with the control plane and serves on lis
// until Stop or GracefulStop. The endpoint enters callers' endpoint sets
// only once the server has its config and serves.
func (s *GRPCServer) Serve(lis net.Listener) error { return s.srv.serve(lis) }

// GracefulStop drains and stops the server: it takes its endpoints out of
// the control plane's endpoint sets, waits until callers have acknowledged
// that and stopped sending (bounded by the drain timeout), then stops
// accepting RPCs and waits for the running ones to finish.
func (s *GRPCServer) GracefulStop() {
	regs := s.drain(context.Background())
	s.srv.gracefulStop()
	s.deregister(regs)
	s.untrack(s)
}

// Stop deregisters the server and stops it at once, failing the RPCs in
// flight. Prefer GracefulStop.
func (s *GRPCServer) Stop() {
	regs := s.markStopped()
	s.srv.stop()
	s.deregister(regs)
	s.untrack(s)
}

// nativeGRPC is meshlet's gRPC server: a *grpc.Server whose credentials
// and interceptors follow the server Listener of each listening address
// (dataplane.Inbound), as the HTTP server's listener and middleware do.
type nativeGRPC struct {
	l       *lifecycle
	gs      *grpc.Server
	inbound dataplane.InboundSet
	creds   *inboundCreds
}

func newNativeGRPC(l *lifecycle) (grpcBackend, error) {
	n := &nativeGRPC{l: l}
	// The workload's identity, for any member of its trust domain (which
	// IDs may call what is AuthorizationPolicy's to decide), or plaintext
	// while the Listener is not STRICT.
	n.creds = newInboundCreds(security.PermissiveCredentials(l.m.identity), &n.inbound)
	opts := []grpc.ServerOption{
		grpc.Creds(n.creds),
		grpc.ChainUnaryInterceptor(n.unary),
		grpc.ChainStreamInterceptor(n.stream),
	}
	n.gs = grpc.NewServer(append(opts, l.opts.grpcOpts...)...)
	return n, nil
}

func (n *nativeGRPC) RegisterService(sd *grpc.ServiceDesc, impl any) { n.gs.RegisterService(sd, impl) }

func (n *nativeGRPC) serve(lis net.Listener) error {
	rc, err := n.l.waitXDSClient(lis.Addr())
	if err != nil {
		lis.Close()
		return err
	}
	reg, err := n.l.register(lis)
	if err != nil {
		lis.Close()
		if errors.Is(err, errServerStopped) {
			return grpc.ErrServerStopped
		}
		return err
	}
	// A Listener that becomes STRICT cuts the plaintext connections it
	// no longer accepts.
	if !n.inbound.Add(lis.Addr(), n.l.watchInbound(rc, lis, reg, func(*resolver.Listener) { n.creds.cut() })) {
		lis.Close() // stopped meanwhile
		return grpc.ErrServerStopped
	}
	return n.gs.Serve(lis)
}

func (n *nativeGRPC) gracefulStop() {
	n.gs.GracefulStop()
	n.inbound.Close()
}

func (n *nativeGRPC) stop() {
	n.gs.Stop()
	n.inbound.Close()
}

func (n *nativeGRPC) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if tr := startServerGRPC(n.l.m.tel, ctx, info.FullMethod); tr != nil {
		return n.unaryTraced(tr, ctx, req, info, h)
	}
	if err := n.authorize(ctx, info.FullMethod, nil); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (n *nativeGRPC) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if tr := startServerGRPC(n.l.m.tel, ss.Context(), info.FullMethod); tr != nil {
		return n.streamTraced(tr, srv, ss, info, h)
	}
	if err := n.authorize(ss.Context(), info.FullMethod, nil); err != nil {
		return err
	}
	return h(srv, ss)
}

// authorize tracks an RPC for draining and decides on it under the
// Listener of the address it came in on, in gRPC-Go's words: an RPC that
// AuthorizationPolicy refuses gets PermissionDenied with the reason, one
// that comes before the server has its policy gets Unavailable.
func (n *nativeGRPC) authorize(ctx context.Context, method string, tr *telemetry.Request) error {
	n.l.touch()
	req := grpcRequest(ctx, method)
	err := n.inbound.Authorize(&req)
	if err == nil {
		err = n.inbound.RateLimit(&req)
	}
	if err == nil {
		return nil
	}
	var d *resolver.Denial
	var rl *dataplane.InboundRateLimitError
	switch {
	case errors.As(err, &rl):
		tr.Flag(telemetry.FlagRateLimited, "incoming RPC "+rl.Error())
		return status.Error(rateLimitCode(rl), "incoming RPC "+rl.Error())
	case errors.As(err, &d):
		tr.Denied("incoming RPC " + d.Reason())
		return status.Error(codes.PermissionDenied, "incoming RPC "+d.Reason())
	case errors.Is(err, dataplane.ErrInboundPlaintext):
		tr.Flag(0, msgPlaintext)
		return status.Error(codes.Unavailable, msgPlaintext)
	}
	tr.Flag(0, msgNoPolicy)
	return status.Error(codes.Unavailable, msgNoPolicy)
}

// grpcRequest is what the server's policy sees of an RPC, as gRPC-Go's
// RBAC sees it (gRFC A41): a POST of the full method name, with the
// request's metadata for headers, except TE. Headers are looked up when a
// policy asks, not copied for every RPC.
func grpcRequest(ctx context.Context, method string) dataplane.InboundRequest {
	req := dataplane.InboundRequest{
		Method: "POST",
		Path:   method,
		Header: func(name string) []string {
			if name == "te" {
				return nil
			}
			return metadata.ValueFromIncomingContext(ctx, name)
		},
	}
	if a := metadata.ValueFromIncomingContext(ctx, ":authority"); len(a) > 0 {
		req.Authority = a[0]
	}
	if p, ok := peer.FromContext(ctx); ok {
		req.Local, req.Remote = p.LocalAddr, dataplane.AddrPort(p.Addr)
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			req.PeerCertificates = ti.State.PeerCertificates
			req.ServerName = ti.State.ServerName
		}
	}
	return req
}
