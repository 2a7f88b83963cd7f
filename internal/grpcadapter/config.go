package grpcadapter

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/security"
	"github.com/meshlet/meshlet/telemetry"
)

// Scheme is the gRPC target scheme of the native path:
// "meshlet:///reviews.default.svc.cluster.local:9080".
const Scheme = "meshlet"

// Config is what the adapter needs from the mesh.
type Config struct {
	// Core returns the data plane once meshlet's xDS client is
	// connected, or an error when ctx ends first.
	Core func(ctx context.Context) (*dataplane.Core, error)
	// ListenerName turns a target's host:port into its client Listener
	// name (the qualified host and port).
	ListenerName func(target string) (string, error)
	// Identity is the workload's, for mTLS.
	Identity    security.Source
	TrustDomain spiffeid.TrustDomain
	// WaitTimeout bounds a call's wait for the control plane's config,
	// unless the call waits for ready.
	WaitTimeout time.Duration
	// Telemetry records each call; nil records nothing.
	Telemetry *telemetry.Recorder
}

// Adapter is one mesh's native gRPC client path.
type Adapter struct {
	cfg   Config
	creds *clientCreds
	hosts sync.Map // target (as in ClientConn.Target) -> *target
}

// New returns the adapter for a mesh.
func New(cfg Config) *Adapter {
	return &Adapter{cfg: cfg, creds: newClientCreds(cfg.Identity, cfg.TrustDomain)}
}

// DialOptions are the options that make a ClientConn for a
// "meshlet:///host:port" target follow the data plane.
func (a *Adapter) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithResolvers(&resolverBuilder{a: a}),
		grpc.WithTransportCredentials(a.creds),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithChainUnaryInterceptor(a.unary),
		grpc.WithChainStreamInterceptor(a.stream),
	}
}

// serviceConfig selects the adapter's LB policy.
const serviceConfig = `{"loadBalancingConfig":[{"` + lbName + `":{}}]}`

// endpointName returns the Listener name of a meshlet target's endpoint
// ("meshlet:///reviews:9080" -> "reviews.default.svc.cluster.local:9080"),
// or false for a target of another scheme.
func (a *Adapter) endpointName(target string) (string, bool, error) {
	rest, ok := strings.CutPrefix(target, Scheme+":///")
	if !ok {
		return "", false, nil
	}
	name, err := a.cfg.ListenerName(rest)
	return name, true, err
}
