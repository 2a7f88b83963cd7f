package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/meshlet/meshlet/controlplane/internal/ca"
	"github.com/meshlet/meshlet/controlplane/internal/config"
	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/controlplane/internal/xdsserver"
	"github.com/meshlet/meshlet/internal/registrypb"
)

// ServerListenerTemplate is the server_listener_resource_name_template that
// gRPC servers must have in their bootstrap: the name of the Listener a
// server listening on IP:port asks for. It is istiod's.
const ServerListenerTemplate = translate.ServerListenerTemplate

// Server is a running control plane: the xDS and registration gRPC port,
// the config watcher and the admin HTTP port.
type Server struct {
	opts    options
	log     *slog.Logger
	started time.Time

	xds     *xdsserver.Server
	ca      *ca.CA
	reg     *registry.Registry
	grpc    *grpc.Server
	xdsLis  net.Listener
	admin   *http.Server
	adminLn net.Listener

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	buildMu    sync.Mutex // serialises rebuilds so snapshots follow each other in order
	mu         sync.Mutex
	cfg        *model.Config
	cfgAt      time.Time
	lastErr    *ConfigError
	services   []translate.Service
	warming    bool          // endpoints are withheld while servers register again
	warmupDone chan struct{} // closed when the warm-up time is over
	warmed     bool          // warm-up happened or can no longer start
	built      bool
}

// ConfigError is a config change that was refused. The config before it
// stays in force.
type ConfigError struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

// Start loads the config directory, which must be valid, and starts
// serving. It returns once both ports listen. Close stops it.
func Start(ctx context.Context, opts ...Option) (*Server, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.configDir == "" {
		return nil, errors.New("controlplane: a config directory is required (WithConfigDir)")
	}
	cfg, err := config.Load(o.configDir)
	if err != nil {
		return nil, fmt.Errorf("controlplane: config %s is invalid:\n%w", o.configDir, err)
	}
	s := &Server{opts: o, log: o.log, started: time.Now(), cfg: cfg, cfgAt: time.Now(), warmupDone: make(chan struct{})}
	tokens := map[string]ca.Identity{}
	for t, id := range o.caTokens {
		tokens[t] = ca.Identity{Namespace: id.Namespace, ServiceAccount: id.ServiceAccount}
	}
	s.ca, err = ca.New(ca.Config{
		TrustDomain: o.trustDomain,
		Dir:         o.caDir,
		CertFile:    o.caCertFile,
		KeyFile:     o.caKeyFile,
		DefaultTTL:  o.svidTTL,
		MaxTTL:      max(o.svidTTL, ca.DefaultMaxTTL),
		TokensFile:  o.caTokensFile,
		Tokens:      tokens,
		InsecureDev: o.caInsecureDev,
		Log:         o.log,
	})
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	s.reg = registry.New(o.grace, s.rebuild)
	prefix, _, _ := strings.Cut(ServerListenerTemplate, "%s")
	s.xds = xdsserver.New(o.log, prefix, xdsserver.Hooks{
		InboundChanged: s.rebuild,
		EarlierVersion: s.restartDetected,
	})
	if err := s.rebuildErr(); err != nil {
		return nil, err
	}

	s.xdsLis, err = net.Listen("tcp", o.xdsAddress)
	if err != nil {
		return nil, fmt.Errorf("controlplane: xds address: %w", err)
	}
	s.grpc = grpc.NewServer(
		// gRPC's xDS client keeps its stream open with keepalives; allow them.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Find dead registrations quickly even when the peer vanished
		// without a FIN.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
	)
	s.xds.Register(s.grpc)
	wait := func(ctx context.Context) bool { return s.xds.WaitAcked(ctx, resource.EndpointType) }
	registrypb.RegisterRegistryServer(s.grpc, registry.NewService(s.reg, wait, o.drainTimeout, o.log))
	s.ca.Register(s.grpc)

	if o.adminAddress != "" {
		s.adminLn, err = net.Listen("tcp", o.adminAddress)
		if err != nil {
			s.xdsLis.Close()
			return nil, fmt.Errorf("controlplane: admin address: %w", err)
		}
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	w, err := newDirWatcher(o.configDir)
	if err != nil {
		cancel()
		s.xdsLis.Close()
		if s.adminLn != nil {
			s.adminLn.Close()
		}
		return nil, fmt.Errorf("controlplane: watch %s: %w", o.configDir, err)
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(s.xdsLis); err != nil {
			s.log.Error("xds server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.watchConfig(runCtx, w)
	}()
	go func() {
		defer s.wg.Done()
		s.endWarmup(runCtx)
	}()
	if s.admin != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin server stopped", "err", err)
			}
		}()
	}
	s.log.Info("control plane serving", "xds", s.xdsLis.Addr().String(), "admin", s.AdminAddr(), "config", o.configDir)
	return s, nil
}

// XDSAddr returns the address of the xDS and registration port.
func (s *Server) XDSAddr() string { return s.xdsLis.Addr().String() }

// AdminAddr returns the address of the admin HTTP port, or "" if it is off.
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// Close stops serving at once and waits for every goroutine to end.
// Connected clients keep their last config; servers keep their
// registrations' state until a control plane is back.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.grpc.Stop()
		if s.admin != nil {
			s.admin.Close()
		}
		s.wg.Wait()
		s.reg.Close()
	})
	return nil
}

// restartDetected is called when a client of an earlier control-plane
// process connects. If that happens soon after start, this process is a
// restart with an empty registry: services made by registrations are
// missing and endpoint sets are empty until servers register again. Such
// clients are answered when the warm-up ends (they keep the config they
// have until then), and endpoints are withheld from new clients meanwhile.
func (s *Server) restartDetected() <-chan struct{} {
	s.mu.Lock()
	if s.warmed || time.Since(s.started) >= s.opts.warmup {
		s.mu.Unlock()
		return nil
	}
	start := !s.warming
	s.warming = true
	s.mu.Unlock()
	if start {
		s.log.Info("clients of an earlier control plane are reconnecting; holding them, and endpoints, while servers register again",
			"until", s.started.Add(s.opts.warmup).Format(time.RFC3339Nano))
		s.rebuild()
	}
	return s.warmupDone
}

func (s *Server) endWarmup(ctx context.Context) {
	t := time.NewTimer(s.opts.warmup)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	s.mu.Lock()
	was := s.warming
	s.warming, s.warmed = false, true
	s.mu.Unlock()
	defer close(s.warmupDone) // after the rebuild: held clients get the whole view
	if was {
		s.log.Info("warm-up over; serving endpoints", "registered", len(s.reg.Serving()))
		s.rebuild()
	}
}

func (s *Server) rebuild() {
	if err := s.rebuildErr(); err != nil {
		s.log.Error("cannot build xDS resources", "err", err)
	}
}

// rebuildErr translates the current config and registry and serves the
// result.
func (s *Server) rebuildErr() error {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	in := translate.Input{Config: s.cfg, OmitEndpoints: s.warming, TrustDomain: s.opts.trustDomain, RootNamespace: s.opts.rootNamespace}
	s.mu.Unlock()
	in.Instances = s.reg.Serving()
	in.ServerAddresses = s.xds.InboundAddresses()
	in.Workloads = workloads(s.xds.InboundNodes())
	out, err := translate.Build(in)
	if err != nil {
		return fmt.Errorf("controlplane: translate: %w", err)
	}
	res := map[resource.Type][]types.Resource{}
	for _, l := range out.Listeners {
		res[resource.ListenerType] = append(res[resource.ListenerType], l)
	}
	for _, r := range out.Routes {
		res[resource.RouteType] = append(res[resource.RouteType], r)
	}
	for _, c := range out.Clusters {
		res[resource.ClusterType] = append(res[resource.ClusterType], c)
	}
	for _, e := range out.Endpoints {
		res[resource.EndpointType] = append(res[resource.EndpointType], e)
	}
	if err := s.xds.Update(context.Background(), res); err != nil {
		return err
	}
	s.mu.Lock()
	s.services = out.Services
	s.built = true
	s.mu.Unlock()
	return nil
}

// WaitSynced blocks until every connected xDS client has acknowledged the
// resources now served, of every type it watches, or ctx ends.
func (s *Server) WaitSynced(ctx context.Context) error {
	for _, typ := range xdsserver.Types {
		if !s.xds.WaitAcked(ctx, typ) {
			return fmt.Errorf("controlplane: clients not synced: %w", ctx.Err())
		}
	}
	return nil
}

// workloads reads who listens at each inbound address from the node
// metadata of the server's own xDS stream (istiod's keys, which meshlet's
// bootstrap uses).
func workloads(nodes map[string]*core.Node) map[string]translate.Workload {
	out := make(map[string]translate.Workload, len(nodes))
	for addr, n := range nodes {
		md := n.GetMetadata().GetFields()
		w := translate.Workload{
			Namespace:      md["NAMESPACE"].GetStringValue(),
			ServiceAccount: md["SERVICE_ACCOUNT"].GetStringValue(),
		}
		if labels := md["LABELS"].GetStructValue().GetFields(); len(labels) > 0 {
			w.Labels = make(map[string]string, len(labels))
			for k, v := range labels {
				w.Labels[k] = v.GetStringValue()
			}
		}
		out[addr] = w
	}
	return out
}
