package controlplane

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/controlplane/internal/authn"
	"github.com/meshlet/meshlet/controlplane/internal/ca"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/xdsserver"
	"github.com/meshlet/meshlet/internal/capb"
	"github.com/meshlet/meshlet/internal/localtrust"
	"github.com/meshlet/meshlet/internal/wire"
)

// Full method names that need no client certificate: a workload's first
// CSR (authenticated by its token instead), and the health check that
// workloads use to see the control plane is there.
var anonymousMethods = map[string]bool{
	capb.CertificateAuthority_Sign_FullMethodName: true,
	healthpb.Health_Check_FullMethodName:          true,
}

// readOnlyMethods are what the plaintext xDS port serves.
var readOnlyMethods = map[string]bool{
	"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources": true,
}

// channelCredentials returns the transport credentials of the gRPC port,
// or nil in the development plaintext mode, which it checks is on a
// loopback address.
func (s *Server) channelCredentials() (credentials.TransportCredentials, error) {
	o := s.opts
	if o.insecurePlaintext {
		if !localtrust.Loopback(o.xdsAddress) {
			return nil, fmt.Errorf("controlplane: plaintext (insecure development mode) is refused on %s: it is only for a loopback address (127.0.0.1, ::1 or localhost)", o.xdsAddress)
		}
		s.log.Warn("INSECURE: the control plane's port is plaintext and believes what clients claim about themselves; any process that can reach it can take any identity's place. Development on loopback only.", "address", o.xdsAddress)
		return nil, nil
	}
	id, err := spiffeid.FromString(wire.ControlPlaneID(o.trustDomain, o.rootNamespace))
	if err != nil {
		return nil, fmt.Errorf("controlplane: the control plane's identity in trust domain %q, root namespace %q: %w", o.trustDomain, o.rootNamespace, err)
	}
	dns, ips := servingNames(o)
	s.serving, err = s.ca.NewServingCertificate(ca.ServingConfig{ID: id, DNSNames: dns, IPs: ips})
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	return credentials.NewTLS(authn.ServerTLSConfig(s.serving.GetCertificate, s.clientBundles())), nil
}

// clientBundles are the roots a client certificate may chain to: the CA's
// and WithTrustBundle's.
func (s *Server) clientBundles() x509bundle.Source { return clientBundles{s} }

type clientBundles struct{ s *Server }

func (b clientBundles) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != b.s.ca.TrustDomain() {
		return nil, fmt.Errorf("controlplane: no bundle for trust domain %q (this mesh is %q)", td.Name(), b.s.ca.TrustDomain().Name())
	}
	return x509bundle.FromX509Authorities(td, b.s.roots()), nil
}

// roots returns the CA's roots and WithTrustBundle's.
func (s *Server) roots() []*x509.Certificate {
	return append(s.ca.Bundle(), s.opts.trustBundle...)
}

// servingNames are the DNS names and IPs of the serving certificate.
func servingNames(o options) (dns []string, ips []net.IP) {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	if host, _, err := net.SplitHostPort(o.xdsAddress); err == nil && host != "" {
		names = append(names, host)
	}
	names = append(names, o.servingNames...)
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !ip.IsUnspecified() && !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if n != "" && !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

// newGRPCServer returns the gRPC server of the main port: TLS (creds) with
// every stream's identity proven, or plaintext that believes claims.
func (s *Server) newGRPCServer(creds credentials.TransportCredentials, opts ...grpc.ServerOption) *grpc.Server {
	pol := authn.Policy{TrustDomain: s.ca.TrustDomain(), Anonymous: anonymousMethods}
	if creds == nil {
		pol.Mode = authn.ModeInsecure
	} else {
		opts = append(opts, grpc.Creds(creds))
	}
	opts = append(opts,
		grpc.ChainUnaryInterceptor(pol.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(pol.StreamInterceptor()),
		grpc.MaxConcurrentStreams(s.limits.StreamsPerConnection),
	)
	opts = append(opts, grpcServerOptions()...)
	g := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(g, health.NewServer())
	return g
}

// grpcServerOptions are the options both gRPC servers share: the xDS
// send budget's codec.
func grpcServerOptions() []grpc.ServerOption {
	return xdsserver.ServerOptions()
}

// newReadOnlyServer returns the gRPC server of the plaintext xDS port.
func (s *Server) newReadOnlyServer(opts ...grpc.ServerOption) *grpc.Server {
	pol := authn.Policy{TrustDomain: s.ca.TrustDomain(), Mode: authn.ModeReadOnly, ReadOnly: readOnlyMethods}
	opts = append(opts,
		grpc.ChainUnaryInterceptor(pol.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(pol.StreamInterceptor()),
		grpc.MaxConcurrentStreams(s.limits.StreamsPerConnection),
	)
	opts = append(opts, grpcServerOptions()...)
	g := grpc.NewServer(opts...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.xds.ADS())
	return g
}

// admit decides whether the peer of ctx may register inst, and completes
// it with what is proven (identity, service account) and what the
// operator imposes (a WorkloadGroup's labels). Errors are gRPC statuses
// that name what was claimed, what is proven, and what would fix it.
func (s *Server) admit(ctx context.Context, inst *registry.Instance) error {
	id, proven := authn.FromContext(ctx)
	switch {
	case proven:
	case authn.ModeFromContext(ctx) == authn.ModeInsecure:
		sa := inst.ServiceAccount
		if sa == "" {
			sa = inst.Service
		}
		sid, err := spiffeid.FromSegments(s.ca.TrustDomain(), "ns", inst.Namespace, "sa", sa)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "registry: namespace %q, service account %q: %v", inst.Namespace, sa, err)
		}
		id = authn.Identity{ID: sid, Namespace: inst.Namespace, ServiceAccount: sa}
	default:
		return status.Error(codes.Unauthenticated, "registry: registering needs mTLS with the workload's SVID")
	}
	where := fmt.Sprintf("instance %s of %s.%s", inst.ID, inst.Service, inst.Namespace)
	if inst.Namespace != id.Namespace {
		return status.Errorf(codes.PermissionDenied, "registry: %s: namespace %q is claimed, but the certificate is %s (namespace %q)", where, inst.Namespace, id, id.Namespace)
	}
	if inst.ServiceAccount != "" && inst.ServiceAccount != id.ServiceAccount {
		return status.Errorf(codes.PermissionDenied, "registry: %s: service account %q is claimed, but the certificate is %s (service account %q)", where, inst.ServiceAccount, id, id.ServiceAccount)
	}
	inst.ServiceAccount = id.ServiceAccount
	inst.Identity = id.String()

	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	host := wire.ServiceHost(inst.Service, inst.Namespace)
	for _, se := range cfg.ServiceEntries {
		if slices.Contains(se.Spec.GetHosts(), host) && len(se.Spec.GetEndpoints()) > 0 && se.Spec.GetWorkloadSelector() == nil {
			return status.Errorf(codes.PermissionDenied, "registry: %s: host %s is a ServiceEntry with static endpoints (%s), which registrations cannot join (select instances with its workloadSelector instead)", where, host, se.Meta)
		}
	}
	imposed, ok := map[string]string(nil), id.ServiceAccount == inst.Service
	for _, wg := range cfg.WorkloadGroups {
		if wg.Namespace == inst.Namespace && wg.Service() == inst.Service && wg.Spec.GetTemplate().GetServiceAccount() == id.ServiceAccount {
			ok, imposed = true, wg.Spec.GetTemplate().GetLabels()
			break
		}
	}
	if !ok {
		return status.Errorf(codes.PermissionDenied,
			"registry: %s: %s may not serve %s: only service account %q may, or one that a WorkloadGroup in namespace %q binds to it (template.serviceAccount: %s, template.labels.app: %s)",
			where, id, host, inst.Service, inst.Namespace, id.ServiceAccount, inst.Service)
	}
	// The labels that select services and policies are the operator's:
	// app is the service, and a WorkloadGroup's template labels win.
	labels := make(map[string]string, len(inst.Labels)+len(imposed)+1)
	for k, v := range inst.Labels {
		labels[k] = v
	}
	labels["app"] = inst.Service
	for k, v := range imposed {
		labels[k] = v
	}
	inst.Labels = labels

	if !s.opts.trustAdvertised {
		if err := s.checkAddress(ctx, inst); err != nil {
			return status.Errorf(codes.PermissionDenied, "registry: %s: %v", where, err)
		}
	}
	return nil
}

// checkAddress refuses an address that is not the connection's own: a
// server may register where it can be reached, not where another one is.
// Over loopback, any address of this host is the peer's own.
func (s *Server) checkAddress(ctx context.Context, inst *registry.Instance) error {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return errors.New("the connection's address is unknown")
	}
	ap, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return fmt.Errorf("the connection's address %q: %w", p.Addr, err)
	}
	from := ap.Addr().Unmap()
	addr, err := netip.ParseAddr(inst.Address)
	if err != nil {
		return fmt.Errorf("address %q: %w", inst.Address, err)
	}
	addr = addr.Unmap()
	if addr == from || from.IsLoopback() && localAddress(addr) {
		return nil
	}
	return fmt.Errorf("address %s is not the address its connection comes from (%s); a server behind NAT needs the control plane's --trust-advertised-addresses", addr, from)
}

var (
	localOnce  sync.Once
	localAddrs []netip.Addr
)

// localAddress reports whether a is loopback or an address of this host.
func localAddress(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	localOnce.Do(func() {
		ifaddrs, err := net.InterfaceAddrs()
		if err != nil {
			return
		}
		for _, ia := range ifaddrs {
			if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
				localAddrs = append(localAddrs, pfx.Addr().Unmap())
			}
		}
	})
	return slices.Contains(localAddrs, a)
}

// inboundOwner returns the instance that id registered at addr ("ip:port"),
// the address it advertised or a wildcard it is bound to, for a stream
// from peer. Two hosts' servers of one identity bound to the same wildcard
// address are told apart by the stream's address: the instance whose
// advertised address it is (over loopback, any of this host's).
func inboundOwner(insts []registry.Instance, id authn.Identity, addr, peer string) (registry.Instance, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return registry.Instance{}, false
	}
	ip := ap.Addr().Unmap().String()
	var from netip.Addr
	if pp, err := netip.ParseAddrPort(peer); err == nil {
		from = pp.Addr().Unmap()
	}
	var wildcard []registry.Instance
	for _, inst := range insts {
		if inst.Namespace != id.Namespace || inst.ServiceAccount != id.ServiceAccount || inst.Port != uint32(ap.Port()) {
			continue
		}
		switch {
		case inst.Address == ip:
			return inst, true
		case inst.ListenAddress != "" && inst.ListenAddress == ip:
			wildcard = append(wildcard, inst)
		}
	}
	for _, inst := range wildcard {
		a, err := netip.ParseAddr(inst.Address)
		if err == nil && (a.Unmap() == from || from.IsLoopback() && localAddress(a.Unmap())) {
			return inst, true
		}
	}
	// One candidate is this stream's whatever its address (NAT, with
	// --trust-advertised-addresses); several that the address does not
	// tell apart are nobody's.
	if len(wildcard) == 1 {
		return wildcard[0], true
	}
	return registry.Instance{}, false
}
