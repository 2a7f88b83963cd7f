package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/meshlet/meshlet/controlplane/internal/ca"
	"github.com/meshlet/meshlet/controlplane/internal/config"
	"github.com/meshlet/meshlet/controlplane/internal/debounce"
	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/controlplane/internal/xdsserver"
	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/localtrust"
	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
)

// Server is a running control plane: the xDS and registration gRPC port,
// the config watcher and the admin HTTP port.
type Server struct {
	opts    options
	log     *slog.Logger
	started time.Time

	xds      *xdsserver.Server
	ca       *ca.CA
	serving  *ca.ServingCertificate // nil in the plaintext development mode
	limits   Limits
	reg      *registry.Registry
	regSvc   *registry.Service
	grpc     *grpc.Server
	xdsLis   net.Listener
	plain    *grpc.Server // the read-only plaintext xDS port, if on
	plainLis net.Listener
	admin    *http.Server
	adminLn  net.Listener
	untrust  func() // ends the in-process trust of this control plane
	metrics  *metrics
	loader   *config.Loader // parses again only the config documents that changed
	// translator reuses what the last build made from inputs that did
	// not change; under buildMu.
	translator *translate.Builder

	kick      chan struct{} // a registry change asks for a rebuild
	builtGen  uint64        // rebuilds done, under mu
	wantGen   uint64        // rebuilds asked for, under mu
	kickAt    time.Time     // when the oldest registry change not yet built was made, under mu
	builtCond *sync.Cond    // signalled when builtGen grows

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	buildMu    sync.Mutex // serialises rebuilds so snapshots follow each other in order
	mu         sync.Mutex
	cfg        *model.Config
	cfgAt      time.Time
	lastErr    *ConfigError
	prevErr    *PreviousRefusal // the last refusal a good load replaced
	services   []translate.Service
	warming    bool          // endpoints are withheld while servers register again
	warmupDone chan struct{} // closed when the warm-up time is over
	warmed     bool          // warm-up happened or can no longer start
	built      bool
	warnings   []string // of the last translation
}

// ConfigError is a config change that was refused. The config before it
// stays in force.
type ConfigError struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

// Start loads the config directory, which must be valid, and starts
// serving. It returns once both ports listen. ctx bounds the start: if it
// ends first, Start fails with its error and leaves nothing running. The
// control plane then runs until Close.
func Start(ctx context.Context, opts ...Option) (s *Server, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("controlplane: start: %w", err)
	}
	defer func() {
		// A start that ctx cut short stops what it started.
		if err == nil && ctx.Err() != nil {
			s.Close()
			s, err = nil, fmt.Errorf("controlplane: start: %w", ctx.Err())
		}
	}()
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.configDir == "" {
		return nil, errors.New("controlplane: a config directory is required (WithConfigDir)")
	}
	loader := config.NewLoader(logSkipped(o.log))
	cfg, err := loader.Load(o.configDir)
	if err != nil {
		return nil, fmt.Errorf("controlplane: config %s is invalid:\n%w", o.configDir, err)
	}
	s = &Server{opts: o, log: o.log, started: o.clock.Now(), loader: loader, translator: translate.NewBuilder(), cfg: cfg, cfgAt: time.Now(), warmupDone: make(chan struct{}),
		limits: o.limits.withDefaults(), kick: make(chan struct{}, 1)}
	s.builtCond = sync.NewCond(&s.mu)
	caDir := o.caDir
	if caDir == "" && o.caCertFile == "" && !o.caInMemory {
		stateDir := o.stateDir
		if stateDir == "" {
			if stateDir, err = DefaultStateDir(); err != nil {
				return nil, err
			}
		}
		caDir = filepath.Dir(CARootPath(stateDir))
	}
	tokens := map[string]ca.Identity{}
	for t, id := range o.caTokens {
		tokens[t] = ca.Identity{Namespace: id.Namespace, ServiceAccount: id.ServiceAccount}
	}
	s.ca, err = ca.New(ca.Config{
		TrustDomain: o.trustDomain,
		Dir:         caDir,
		CertFile:    o.caCertFile,
		KeyFile:     o.caKeyFile,
		DefaultTTL:  o.svidTTL,
		MaxTTL:      o.svidTTL, // the operator's TTL caps what a CSR may ask
		TokensFile:  o.caTokensFile,
		Tokens:      tokens,
		InsecureDev: o.caInsecureDev,
		Log:         o.log,
	})
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	if s.metrics, err = newMetrics(s); err != nil {
		return nil, fmt.Errorf("controlplane: metrics: %w", err)
	}
	s.reg = registry.New(o.grace, s.kickRebuild, o.clock.AfterFunc)
	prefix, _, _ := strings.Cut(wire.ServerListenerTemplate, "%s")
	versionKey, err := s.ca.VersionKey("xds versions")
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	observe := s.metrics.observer()
	if synced := observe.Synced; synced != nil {
		// The last stage of a config change, for the operator who made
		// it: one line per reload (registry changes are too many to log).
		observe.Synced = func(c xdsserver.Change, took time.Duration) {
			synced(c, took)
			if c.Cause == causeConfig {
				s.log.Info("config change acknowledged by every client", "since_change", took.Round(time.Microsecond))
			}
		}
	}
	s.xds = xdsserver.New(o.log, prefix, versionKey, xdsserver.Limits{
		Streams:          s.limits.Streams,
		NamesPerRequest:  s.limits.NamesPerRequest,
		InboundPerStream: s.limits.InboundPerStream,
		Send:             xdsserver.Flow{Budget: max(s.limits.SendBytes, 0), SendTimeout: max(s.limits.SendTimeout, 0)},
	}, xdsserver.Hooks{
		InboundChanged: func() { s.rebuild(change(causeInbound)) },
		EarlierVersion: s.restartDetected,
		Observe:        observe,
		Unsupported:    translate.Unsupported,
		Judges:         translate.Judges,
	})
	if err := s.rebuildErr(change(causeStart)); err != nil {
		return nil, err
	}
	creds, err := s.channelCredentials()
	if err != nil {
		return nil, err
	}

	s.xdsLis, err = net.Listen("tcp", o.xdsAddress)
	if err != nil {
		return nil, fmt.Errorf("controlplane: xds address: %w", err)
	}
	keepalives := []grpc.ServerOption{
		// gRPC's xDS client keeps its stream open with keepalives; allow them.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Find dead registrations quickly even when the peer vanished
		// without a FIN.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
	}
	s.grpc = s.newGRPCServer(creds, keepalives...)
	s.xds.Register(s.grpc)
	wait := func(ctx context.Context) bool {
		// The drain's change must be built before callers are waited on.
		if !s.waitBuilt(ctx) {
			return false
		}
		return s.xds.WaitAcked(ctx, resource.EndpointType)
	}
	s.regSvc = registry.NewService(s.reg, wait, s.admit, s.limits.RegistrationsPerIdentity, o.drainAck, o.log, s.metrics.registrationRefused)
	registrypb.RegisterRegistryServer(s.grpc, s.regSvc)
	s.ca.Register(s.grpc)
	if o.plaintextXDS != "" {
		if s.plainLis, err = net.Listen("tcp", o.plaintextXDS); err != nil {
			s.xdsLis.Close()
			return nil, fmt.Errorf("controlplane: plaintext xds address: %w", err)
		}
		s.plain = s.newReadOnlyServer(keepalives...)
	}
	closeListeners := func() {
		s.xdsLis.Close()
		if s.plainLis != nil {
			s.plainLis.Close()
		}
	}

	if o.adminAddress != "" {
		s.adminLn, err = net.Listen("tcp", o.adminAddress)
		if err != nil {
			closeListeners()
			return nil, fmt.Errorf("controlplane: admin address: %w", err)
		}
		s.admin = &http.Server{
			Handler:           s.adminHandler(),
			ReadHeaderTimeout: s.limits.AdminReadHeaderTimeout,
			IdleTimeout:       s.limits.AdminIdleTimeout,
			// net/http reads 4 KiB past MaxHeaderBytes before it refuses.
			MaxHeaderBytes: max(s.limits.AdminMaxHeaderBytes-4096, 1),
		}
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	w, err := newDirWatcher(o.configDir)
	if err != nil {
		cancel()
		closeListeners()
		if s.adminLn != nil {
			s.adminLn.Close()
		}
		return nil, fmt.Errorf("controlplane: watch %s: %w", o.configDir, err)
	}
	// The warm-up runs from the start on any clock: its timer is set
	// before Start returns.
	warmupOver := make(chan struct{})
	stopWarmup := o.clock.AfterFunc(o.warmup, func() { close(warmupOver) })
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(s.xds.Listener(s.xdsLis)); err != nil {
			s.log.Error("xds server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.buildLoop(runCtx)
	}()
	if s.plain != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.plain.Serve(s.xds.Listener(s.plainLis)); err != nil {
				s.log.Error("plaintext xds server stopped", "err", err)
			}
		}()
	}
	go func() {
		defer s.wg.Done()
		s.watchConfig(runCtx, w)
	}()
	go func() {
		defer s.wg.Done()
		defer stopWarmup()
		s.endWarmup(runCtx, warmupOver)
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
	s.untrust = localtrust.Register(s.XDSAddr(), s.roots)
	attrs := []any{"xds", s.xdsLis.Addr().String(), "admin", s.AdminAddr(), "config", o.configDir, "tls", s.serving != nil}
	if s.serving != nil {
		attrs = append(attrs, "identity", wire.ControlPlaneID(o.trustDomain, o.rootNamespace))
		if caDir != "" {
			attrs = append(attrs, "roots", filepath.Join(caDir, filepath.Base(localtrust.CARootPath(""))))
		}
	}
	if s.plain != nil {
		attrs = append(attrs, "plaintext_xds_read_only", s.plainLis.Addr().String())
	}
	s.log.Info("control plane serving", attrs...)
	for _, d := range o.deprecated {
		s.log.Warn(d)
	}
	return s, nil
}

// TrustDomain returns the mesh's SPIFFE trust domain.
func (s *Server) TrustDomain() string { return s.ca.TrustDomain().Name() }

// PlaintextXDSAddr returns the address of the read-only plaintext xDS
// port, or "" if it is off.
func (s *Server) PlaintextXDSAddr() string {
	if s.plainLis == nil {
		return ""
	}
	return s.plainLis.Addr().String()
}

// Roots returns the certificates the control plane's serving certificate
// chains to: what a workload in another process must trust
// (MESHLET_CONTROL_PLANE_ROOTS), written as PEM.
func (s *Server) Roots() []byte {
	return certfile.Encode(s.ca.Bundle())
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
		// Stopping ends every registration stream: said once here, not
		// as one lost connection per instance.
		ending := fmt.Sprintf("%d registrations end", s.regSvc.Stop())
		if ending == "1 registrations end" {
			ending = "1 registration ends"
		}
		s.log.Info("control plane stopping; " + ending)
		s.untrust()
		s.cancel()
		s.grpc.Stop()
		if s.plain != nil {
			s.plain.Stop()
		}
		if s.admin != nil {
			// Shutdown waits for connections net/http is still closing
			// (after a refused request it lingers up to 500ms); bounded.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s.admin.Shutdown(ctx)
			cancel()
			s.admin.Close()
		}
		s.wg.Wait()
		s.regSvc.Wait()
		s.reg.Close()
		s.metrics.shutdown()
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
	if s.warmed || s.opts.clock.Now().Sub(s.started) >= s.opts.warmup {
		s.mu.Unlock()
		return nil
	}
	start := !s.warming
	s.warming = true
	s.mu.Unlock()
	if start {
		s.log.Info("clients of an earlier control plane are reconnecting; holding them, and endpoints, while servers register again",
			"until", s.started.Add(s.opts.warmup).Format(time.RFC3339Nano))
		s.rebuild(change(causeWarmup))
	}
	return s.warmupDone
}

// endWarmup ends the warm-up when over is closed, unless ctx ends first.
func (s *Server) endWarmup(ctx context.Context, over <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-over:
	}
	s.mu.Lock()
	was := s.warming
	s.warming, s.warmed = false, true
	s.mu.Unlock()
	defer close(s.warmupDone) // after the rebuild: held clients get the whole view
	if was {
		s.log.Info("warm-up over; serving endpoints", "registered", len(s.reg.Serving()))
		s.rebuild(change(causeWarmup))
	}
}

// change is a change of cause detected now.
func change(cause string) xdsserver.Change { return xdsserver.Change{At: time.Now(), Cause: cause} }

func (s *Server) rebuild(c xdsserver.Change) {
	if err := s.rebuildErr(c); err != nil {
		s.log.Error("cannot build xDS resources", "err", err)
	}
}

// kickRebuild asks the build loop for a rebuild. Registry changes come in
// bursts (a fleet starting, a control-plane restart): each burst is built
// once, not once per registration.
func (s *Server) kickRebuild() {
	s.mu.Lock()
	s.wantGen++
	if s.kickAt.IsZero() {
		s.kickAt = time.Now()
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// buildLoop builds registry changes, debounced (WithRegistryDebounce):
// the first change of a burst is built at most its Max after it came.
func (s *Server) buildLoop(ctx context.Context) {
	// Adaptive as the config's debounce is: a burst of registrations comes
	// well under a millisecond apart, so a fixed After only delayed it.
	win := debounce.New(debounce.Settings{After: s.opts.registryDebounce.After, First: s.opts.registryDebounce.After / firstQuietShare, Max: s.opts.registryDebounce.Max})
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var waited time.Duration // in pace, for the burst being built
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.builtGen = s.wantGen
			s.builtCond.Broadcast()
			s.mu.Unlock()
			return
		case <-s.kick:
			s.mu.Lock()
			stale := s.wantGen <= s.builtGen
			s.mu.Unlock()
			if stale {
				// A kick sent while the last build ran, for a change
				// that build took: building again would find nothing new.
				continue
			}
			due := win.Add(time.Now())
			timer.Reset(time.Until(due))
			continue
		case <-timer.C:
			waited += s.pace(ctx)
			if _, ok := win.Take(time.Now()); !ok {
				if due, ok := win.Due(); ok {
					timer.Reset(time.Until(due))
				}
				continue
			}
		}
		s.mu.Lock()
		want, from := s.wantGen, s.builtGen
		// The burst's push latency starts at its first change.
		c := xdsserver.Change{At: s.kickAt, Cause: causeRegistry}
		s.kickAt = time.Time{}
		s.mu.Unlock()
		if c.At.IsZero() {
			c.At = time.Now()
		}
		took := time.Now()
		bt, err := s.build(c)
		if err != nil {
			s.log.Error("cannot build xDS resources", "err", err)
		} else if s.log.Enabled(ctx, slog.LevelDebug) {
			// Where a burst's push latency goes: the debounce, then
			// waiting for the clients (pace), then the build.
			s.log.Debug("registry changes built", "since_change", time.Since(c.At), "paced", waited, "build", time.Since(took), "translate", bt.translate, "serve", bt.serve, "changes", want-from)
		}
		waited = 0
		s.mu.Lock()
		s.builtGen = max(s.builtGen, want)
		s.builtCond.Broadcast()
		s.mu.Unlock()
	}
}

// registryPace bounds how long a registry build waits for the clients to
// take the endpoints of the previous one.
const registryPace = time.Second

// pace waits, at most registryPace, until every client has answered the
// last EDS response it was sent. On an idle machine that is done before
// the debounce ends, and nothing waits. When clients cannot keep up
// (1,000 of them, or a few hundred sharing 2 cores with a burst of
// registrations), building and pushing every Max of the debounce only
// makes them decode versions that the next one replaces, and starves the
// registrations themselves; a burst then goes out as fewer, larger
// pushes. A client that never answers delays registry builds by
// registryPace at most.
func (s *Server) pace(ctx context.Context) time.Duration {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, registryPace)
	defer cancel()
	s.xds.WaitEndpointsTaken(ctx)
	return time.Since(start)
}

// waitBuilt blocks until every registry change asked for before the call
// is built and served, or ctx ends.
func (s *Server) waitBuilt(ctx context.Context) bool {
	s.mu.Lock()
	want := s.wantGen
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.builtCond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.builtGen < want && ctx.Err() == nil {
		s.builtCond.Wait()
	}
	return s.builtGen >= want
}

// rebuildErr translates the current config and registry and serves the
// result; c is the change that asked for it.
func (s *Server) rebuildErr(c xdsserver.Change) error {
	_, err := s.build(c)
	return err
}

// buildTimes is how long the stages of one build took, for the reload's
// log line.
type buildTimes struct {
	translate, serve time.Duration // translate.Build; xdsserver Update (marshal, compare, snapshot)
}

// build is rebuildErr, and says how long its stages took.
func (s *Server) build(c xdsserver.Change) (bt buildTimes, err error) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	in := translate.Input{Config: s.cfg, OmitEndpoints: s.warming, TrustDomain: s.opts.trustDomain, RootNamespace: s.opts.rootNamespace}
	s.mu.Unlock()
	in.Instances = s.reg.Serving()
	// A server Listener is built only for the identity that registered
	// its address, from what it registered; other streams asking for the
	// name are told it does not exist.
	var owned []registry.Instance
	for _, e := range s.reg.Entries() {
		owned = append(owned, e.Instance)
	}
	for _, req := range s.xds.InboundRequests() {
		for _, addr := range req.Addresses {
			inst, ok := inboundOwner(owned, req.Identity, addr, req.Peer)
			if !ok {
				continue
			}
			in.Inbound = append(in.Inbound, translate.Inbound{
				Key:     strconv.FormatInt(req.Stream, 10),
				Address: addr,
				Workload: translate.Workload{
					Namespace:      inst.Namespace,
					ServiceAccount: inst.ServiceAccount,
					Labels:         inst.Labels,
				},
			})
		}
	}
	t0 := time.Now()
	out, err := s.translator.Build(in)
	if err != nil {
		return bt, fmt.Errorf("controlplane: translate: %w", err)
	}
	bt.translate = time.Since(t0)
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
	inbound := map[int64][]types.Resource{}
	for key, ls := range out.Inbound {
		id, _ := strconv.ParseInt(key, 10, 64)
		for _, l := range ls {
			inbound[id] = append(inbound[id], l)
		}
	}
	t0 = time.Now()
	if err := s.xds.Update(context.Background(), c, res, inbound); err != nil {
		return bt, err
	}
	bt.serve = time.Since(t0)
	s.mu.Lock()
	s.services = out.Services
	s.built = true
	newWarnings := !slices.Equal(s.warnings, out.Warnings)
	s.warnings = out.Warnings
	s.mu.Unlock()
	if newWarnings {
		for _, w := range out.Warnings {
			s.log.Warn(w)
		}
	}
	return bt, nil
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

// logSkipped logs each document of the config directory that is not Istio
// config (a Kubernetes Service beside the Istio YAML), once per load.
func logSkipped(log *slog.Logger) config.Option {
	return config.WithSkipped(func(sk config.Skipped) {
		log.Info("not Istio config; skipped", "file", sk.File, "kind", sk.Kind, "name", sk.Name, "namespace", sk.Namespace, "apiVersion", sk.APIVersion)
	})
}
