package mesh

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcresolver "google.golang.org/grpc/resolver"

	"github.com/meshlet/meshlet/internal/grpcadapter"
	"github.com/meshlet/meshlet/internal/xdspath"
)

// ErrNoPort is returned for a target without the service port.
var ErrNoPort = errors.New("mesh: target has no port")

// Dial returns a gRPC client for a mesh service. The target is the
// service's host and port: "reviews:9080" (a short name, in this workload's
// namespace), "reviews.prod:9080", or
// "reviews.prod.svc.cluster.local:9080". Routing, load balancing, timeouts
// and retries follow the control plane's config through meshlet's own
// data plane, the same one the HTTP client uses, with no proxy: the route
// is matched with the method as path and the outgoing metadata as
// headers, the cluster chosen by weight, the endpoint by the cluster's
// balancer (with outlier ejection and locality failover), and retries go
// to endpoints not tried yet. A stream is retried only before its first
// response message. Interceptors given in opts run inside meshlet's,
// once per attempt.
//
// Calls wait for the control plane's config of the target as ConfigWait
// says, rather than fail, and a call to a host the control plane says
// does not exist fails at once with Unavailable and an error that names
// the host (wrapping ErrUnknownHost). A call that fails because a cluster
// has no endpoint says which cluster and subset.
//
// An "xds:///host:port" target, or a mesh made WithGRPCGoXDS, uses
// gRPC-Go's own xDS client instead (each ClientConn then has its own xDS
// stream); with GRPC_XDS_BOOTSTRAP set, gRPC-Go alone decides there.
func (m *Mesh) Dial(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if m.opts.grpcGoXDS || strings.HasPrefix(target, "xds:") {
		return m.dialXDS(target, opts...)
	}
	name, err := m.listenerName(target)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(grpcadapter.Scheme+":///"+name, append(m.DialOptions(), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
	}
	return cc, nil
}

// DialOptions returns the options that make a ClientConn follow the mesh
// natively, for callers who call grpc.NewClient themselves with a
// "meshlet:///host:port" target ("meshlet:///reviews:9080"). Dial uses
// them.
func (m *Mesh) DialOptions() []grpc.DialOption {
	return m.grpc.DialOptions()
}

// dialXDS dials through gRPC-Go's own xDS client.
func (m *Mesh) dialXDS(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	p, err := m.xdsPath.get(m)
	if err != nil {
		return nil, err
	}
	t, err := m.xdsTarget(target)
	if err != nil {
		return nil, err
	}
	// The xDS credentials use TLS when the control plane puts a TLS
	// context on the cluster and plaintext otherwise, so mTLS is driven
	// by config, not by code.
	creds, err := p.path.ClientCredentials(insecure.NewCredentials())
	if err != nil {
		return nil, fmt.Errorf("mesh: xds credentials: %w", err)
	}
	all := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if tel, _ := m.xdsTelemetryOptions(p.path); tel != nil {
		all = append(all, tel)
	}
	if !bootstrapFromEnv() {
		all = append(all, grpc.WithResolvers(p.resolver))
		// An xds:// target with an authority is gRPC-Go's alone.
		if name, err := m.listenerName(target); err == nil {
			g := &rpcGate{m: m, target: target, name: name}
			all = append(all, grpc.WithChainUnaryInterceptor(g.unary), grpc.WithChainStreamInterceptor(g.stream))
		}
	}
	cc, err := grpc.NewClient(t, append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("mesh: dial %s: %w", target, err)
	}
	return cc, nil
}

// xdsPathOnce is gRPC-Go's xDS path, with its resolver for the mesh's
// bootstrap, made once.
type xdsPathOnce struct {
	once     sync.Once
	path     *xdspath.Path
	resolver grpcresolver.Builder // nil with the environment's bootstrap
	err      error
	lookup   func() *xdspath.Path // xdspath.Get, unless a test says otherwise
}

// errNoXDSPath says how to link gRPC-Go's xDS path.
var errNoXDSPath = fmt.Errorf("mesh: gRPC-Go's xDS path is not linked into this program: import _ %q", xdspath.Import)

func (o *xdsPathOnce) get(m *Mesh) (*xdsPathOnce, error) {
	o.once.Do(func() {
		lookup := o.lookup
		if lookup == nil {
			lookup = xdspath.Get
		}
		if o.path = lookup(); o.path == nil {
			o.err = errNoXDSPath
			return
		}
		var bootstrap []byte
		if !bootstrapFromEnv() {
			bootstrap = m.bootstrap
		}
		if o.resolver, o.err = o.path.Resolver(bootstrap); o.err != nil {
			o.err = fmt.Errorf("mesh: xds resolver: %w", o.err)
		}
	})
	return o, o.err
}

// xdsTarget turns a service target into gRPC's xds:/// form with the
// fully qualified host, which is the client Listener's name.
func (m *Mesh) xdsTarget(target string) (string, error) {
	if strings.HasPrefix(target, "xds:") {
		return target, nil
	}
	name, err := m.listenerName(target)
	if err != nil {
		return "", err
	}
	return "xds:///" + name, nil
}
