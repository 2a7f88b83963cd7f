package mesh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	grpcresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/xds"

	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

// Mesh is a service's membership of the mesh: its identity, its connection
// to the control plane, and the factory of mesh-aware clients and servers.
// It is safe for concurrent use.
type Mesh struct {
	opts      options
	log       *slog.Logger
	nodeID    string
	bootstrap []byte
	// xdsResolver is nil when GRPC_XDS_BOOTSTRAP(_CONFIG) is set: then
	// gRPC-Go's global xds resolver, configured by the environment, is used.
	xdsResolver grpcresolver.Builder
	cpConn      *grpc.ClientConn
	registry    registrypb.RegistryClient
	identity    security.Source
	spiffeID    spiffeid.ID
	providerKey string   // the identity's key in meshlet's certificate provider
	closers     []func() // run by Close, last first

	rcMu sync.Mutex
	rc   *resolver.Client // meshlet's own xDS client, for HTTP; nil until used

	mu      sync.Mutex
	servers map[stopper]struct{}
	closed  bool
}

// New joins the mesh. It connects to the control plane and gets the
// workload's identity (an X.509 SVID from the control plane's CA, unless
// WithIdentity gives another source), and blocks until it has both, or ctx
// ends.
func New(ctx context.Context, opts ...Option) (*Mesh, error) {
	o := options{namespace: "default", log: slog.Default(), drainTimeout: 10 * time.Second, trustDomain: "cluster.local"}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.service == "" {
		return nil, errors.New("mesh: a service name is required (WithService)")
	}
	if o.serviceAccount == "" {
		o.serviceAccount = o.service
	}
	if o.labels == nil {
		o.labels = map[string]string{}
	}
	if _, ok := o.labels["app"]; !ok {
		o.labels["app"] = o.service
	}
	if o.controlPlane == "" {
		o.controlPlane = os.Getenv(EnvControlPlane)
	}
	if o.controlPlane == "" {
		return nil, fmt.Errorf("mesh: no control plane address: use WithControlPlane or set %s", EnvControlPlane)
	}
	m := &Mesh{opts: o, log: o.log, servers: map[stopper]struct{}{}}
	m.nodeID = fmt.Sprintf("meshlet~%s-%s.%s~%s.%s", o.service, randomSuffix(), o.namespace, o.namespace, wire.DomainSuffix)
	var err error
	m.cpConn, err = grpc.NewClient(o.controlPlane,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect fast after a control-plane restart so that servers
		// register again within its warm-up.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("mesh: control plane %s: %w", o.controlPlane, err)
	}
	if err := waitReady(ctx, m.cpConn); err != nil {
		m.cpConn.Close()
		return nil, fmt.Errorf("mesh: connect to control plane %s: %w", o.controlPlane, err)
	}
	m.registry = registrypb.NewRegistryClient(m.cpConn)
	if err := m.setupIdentity(ctx); err != nil {
		m.close()
		return nil, err
	}
	m.bootstrap, err = m.bootstrapJSON()
	if err != nil {
		m.close()
		return nil, err
	}
	if !bootstrapFromEnv() {
		m.xdsResolver, err = xds.NewXDSResolverWithConfigForTesting(m.bootstrap)
		if err != nil {
			m.close()
			return nil, fmt.Errorf("mesh: xds resolver: %w", err)
		}
	}
	return m, nil
}

func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
}

// NodeID returns the xDS node ID this process uses.
func (m *Mesh) NodeID() string { return m.nodeID }

// Close stops every server still running (abruptly; use
// Server.GracefulStop first to drain) and closes the control-plane
// connection. It waits for the goroutines it started.
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	servers := make([]stopper, 0, len(m.servers))
	for s := range m.servers {
		servers = append(servers, s)
	}
	m.mu.Unlock()
	for _, s := range servers {
		s.Stop()
	}
	return m.close()
}

// close releases what New set up, last first.
func (m *Mesh) close() error {
	m.mu.Lock()
	closers := m.closers
	m.closers = nil
	m.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]() // HTTP transports first: they cancel their watches
	}
	m.rcMu.Lock()
	if m.rc != nil {
		m.rc.Close()
	}
	m.rcMu.Unlock()
	return m.cpConn.Close()
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
