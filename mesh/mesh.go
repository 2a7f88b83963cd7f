package mesh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/internal/clock"
	"github.com/meshlet/meshlet/internal/grpcadapter"
	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/internal/xdspath"
	"github.com/meshlet/meshlet/security"
	"github.com/meshlet/meshlet/telemetry"
)

// Mesh is a service's membership of the mesh: its identity, its connection
// to the control plane, and the factory of mesh-aware clients and servers.
// It is safe for concurrent use.
type Mesh struct {
	opts        options
	log         *slog.Logger
	nodeID      string
	bootstrap   []byte
	xdsPath     xdsPathOnce      // gRPC-Go's xDS client, made on first use
	xdsTel      xdsTelemetry     // gRPC-Go's OpenTelemetry plugin on that path
	cpConn      *grpc.ClientConn // mTLS with the workload's SVID
	cpTrust     *cpTrust
	cpCredsKey  string // the bootstrap's channel creds
	registry    registrypb.RegistryClient
	identity    security.Source
	spiffeID    spiffeid.ID
	providerKey string                      // the identity's key in meshlet's certificate provider
	adminAddr   string                      // where WithAdminAddress serves, once it does
	closers     []func()                    // run by Close, last first
	transports  map[*HTTPTransport]struct{} // open HTTP transports, under mu

	xds  xdsConn // meshlet's own xDS client, connected on first use
	grpc *grpcadapter.Adapter
	tel  *telemetry.Recorder // nil: no telemetry
	wait ConfigWait

	mu      sync.Mutex
	servers map[stopper]struct{}
	closed  bool
}

// New joins the mesh. It connects to the control plane and gets the
// workload's identity (an X.509 SVID from the control plane's CA, unless
// WithIdentity gives another source), and blocks until it has both, or ctx
// ends.
func New(ctx context.Context, opts ...Option) (*Mesh, error) {
	o := options{namespace: wire.DefaultNamespace, log: slog.Default(), drainTimeout: 10 * time.Second, trustDomain: wire.DefaultTrustDomain, clock: clock.System{}}
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
	m := &Mesh{opts: o, log: o.log, servers: map[stopper]struct{}{}, wait: o.configWait.withDefaults()}
	m.nodeID = wire.NodeID(o.service, randomSuffix(), o.namespace)
	var err error
	if m.cpTrust, err = newCPTrust(o); err != nil {
		return nil, err
	}
	if err := m.setupIdentity(ctx); err != nil {
		m.close()
		return nil, err
	}
	// Everything after the first SVID is mTLS: xDS, registration and
	// renewals prove the workload's identity with it.
	creds := m.cpCredentials()
	if m.cpConn == nil {
		if m.cpConn, err = dialControlPlane(o.controlPlane, creds); err != nil {
			m.close()
			return nil, fmt.Errorf("mesh: control plane %s: %w", o.controlPlane, err)
		}
	}
	if err := checkControlPlane(ctx, m.cpConn, o.controlPlane, m.log); err != nil {
		m.close()
		return nil, fmt.Errorf("%w (the control plane %s is verified with: %s)", err, m.cpTrust.id, m.cpTrust.describe())
	}
	m.registry = registrypb.NewRegistryClient(m.cpConn)
	var unregister func()
	m.cpCredsKey, unregister = xdspath.AddChannelCreds(creds)
	m.closers = append(m.closers, unregister)
	m.bootstrap, err = m.bootstrapJSON()
	if err != nil {
		m.close()
		return nil, err
	}
	// meshlet's own xDS stream starts now, so that servers and clients
	// find it up rather than wait for it.
	m.startXDSClient()
	m.tel = o.telemetry.Recorder(telemetry.Workload{
		Name:      o.service,
		Namespace: o.namespace,
		App:       o.labels["app"],
		Version:   o.labels["version"],
		Principal: m.spiffeID.String(),
	}, wire.ServiceHost(o.service, o.namespace))
	if o.telemetry != nil {
		m.closers = append(m.closers, o.telemetry.AddStateSource(m.telemetryState))
	}
	m.grpc = grpcadapter.New(grpcadapter.Config{
		Telemetry:    m.tel,
		Core:         m.dataplane,
		ListenerName: m.listenerName,
		Identity:     m.identity,
		TrustDomain:  m.spiffeID.TrustDomain(),
		WaitTimeout:  m.wait.Timeout,
	})
	if o.adminAddr != "" {
		if err := m.serveAdmin(o.adminAddr); err != nil {
			m.close()
			return nil, err
		}
	}
	return m, nil
}

// NodeID returns the xDS node ID this process uses.
func (m *Mesh) NodeID() string { return m.nodeID }

// Close stops every server still running (abruptly; use
// GRPCServer.GracefulStop or HTTPServer.Shutdown first to drain) and
// closes the control-plane connection. It waits for the goroutines it
// started.
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
	transports := slices.Collect(maps.Keys(m.transports))
	m.mu.Unlock()
	for _, t := range transports {
		t.Close() // first: they cancel their watches
	}
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	m.closeXDSClient()
	if m.cpConn == nil {
		return nil
	}
	return m.cpConn.Close()
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
