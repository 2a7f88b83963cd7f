package translate_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/meshtest"
)

// constHash puts every node in one snapshot.
type constHash struct{}

func (constHash) ID(*corev3.Node) string { return "mesh" }

// testLogger sends go-control-plane's log to the test log while the test
// runs: its warnings explain a cache that serves nothing.
type testLogger struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (l *testLogger) logf(level, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("go-control-plane %s: %s", level, fmt.Sprintf(format, args...))
	}
}

func (l *testLogger) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
}

// ackTracker follows what gRPC ACKs and NACKs: a request whose
// response_nonce names a response ACKs every resource in it, unless it
// carries error_detail.
type ackTracker struct {
	mu        sync.Mutex
	responses map[string][]string // "stream|nonce" -> "type|name"
	acked     map[string]bool     // "type|name"
	nacks     []string
}

func newAckTracker() *ackTracker {
	return &ackTracker{responses: make(map[string][]string), acked: make(map[string]bool)}
}

func (a *ackTracker) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamRequestFunc: func(stream int64, req *discoveryv3.DiscoveryRequest) error {
			a.mu.Lock()
			defer a.mu.Unlock()
			if req.GetErrorDetail() != nil {
				a.nacks = append(a.nacks, fmt.Sprintf("%s %v: %s", req.GetTypeUrl(), req.GetResourceNames(), req.GetErrorDetail().GetMessage()))
				return nil
			}
			for _, key := range a.responses[fmt.Sprint(stream, "|", req.GetResponseNonce())] {
				a.acked[key] = true
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, stream int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			var keys []string
			for _, r := range resp.GetResources() {
				keys = append(keys, resp.GetTypeUrl()+"|"+resourceName(r))
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			a.responses[fmt.Sprint(stream, "|", resp.GetNonce())] = keys
		},
	}
}

func resourceName(r *anypb.Any) string {
	m, err := r.UnmarshalNew()
	if err != nil {
		return "?" + err.Error()
	}
	return cachev3.GetResourceName(m)
}

// missing returns the wanted keys not yet ACKed, and the NACKs so far.
func (a *ackTracker) missing(want []string) (missing, nacks []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range want {
		if !a.acked[k] {
			missing = append(missing, k)
		}
	}
	return missing, append([]string(nil), a.nacks...)
}

// startADS starts a go-control-plane ADS server on loopback and returns its
// address and cache.
func startADS(t *testing.T, tracker *ackTracker) (string, cachev3.SnapshotCache) {
	t.Helper()
	logger := &testLogger{t: t}
	t.Cleanup(logger.stop)
	cache := cachev3.NewSnapshotCache(false, constHash{}, log.LoggerFuncs{
		InfoFunc:  func(f string, a ...any) { logger.logf("info", f, a...) },
		WarnFunc:  func(f string, a ...any) { logger.logf("warn", f, a...) },
		ErrorFunc: func(f string, a ...any) { logger.logf("error", f, a...) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, cache, tracker.callbacks())
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		<-done
	})
	return lis.Addr().String(), cache
}

// bootstrap is a gRPC xDS bootstrap for the ADS server at adsAddr whose
// certificate provider CertProviderInstance is gRPC-Go's file_watcher
// plugin reading creds. gRPC-Go NACKs a Listener or Cluster with a TLS
// context that names an instance its bootstrap lacks.
func bootstrap(adsAddr string, creds certFiles) []byte {
	return fmt.Appendf(nil, `{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "test"},
		"server_listener_resource_name_template": %q,
		"certificate_providers": {
			%q: {"plugin_name": "file_watcher", "config": {
				"certificate_file": %q, "private_key_file": %q, "ca_certificate_file": %q,
				"refresh_interval": "600s"
			}}
		}
	}`, adsAddr, wire.ServerListenerTemplate, wire.CertProviderInstance, creds.cert, creds.key, creds.ca)
}

// serve puts out into the cache as one snapshot and returns the
// "type|name" keys of every resource in it.
func serve(ctx context.Context, t *testing.T, cache cachev3.SnapshotCache, version string, out *translate.Output) []string {
	t.Helper()
	resources := map[resourcev3.Type][]cachetypes.Resource{}
	var want []string
	for _, l := range out.Listeners {
		resources[resourcev3.ListenerType] = append(resources[resourcev3.ListenerType], l)
		want = append(want, resourcev3.ListenerType+"|"+l.GetName())
	}
	for _, r := range out.Routes {
		resources[resourcev3.RouteType] = append(resources[resourcev3.RouteType], r)
		want = append(want, resourcev3.RouteType+"|"+r.GetName())
	}
	for _, c := range out.Clusters {
		resources[resourcev3.ClusterType] = append(resources[resourcev3.ClusterType], c)
		want = append(want, resourcev3.ClusterType+"|"+c.GetName())
	}
	for _, e := range out.Endpoints {
		resources[resourcev3.EndpointType] = append(resources[resourcev3.EndpointType], e)
		want = append(want, resourcev3.EndpointType+"|"+e.GetClusterName())
	}
	snap, err := cachev3.NewSnapshot(version, resources)
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.SetSnapshot(ctx, "mesh", snap); err != nil {
		t.Fatal(err)
	}
	return want
}

// waitACKed waits until every wanted resource is ACKed, failing at the
// first NACK or at the deadline of ctx.
func waitACKed(ctx context.Context, t *testing.T, tracker *ackTracker, want []string) {
	t.Helper()
	var missing []string
	logIfFailed(t, func() string {
		if len(missing) == 0 {
			return ""
		}
		sort.Strings(missing)
		return "never ACKed:\n" + strings.Join(missing, "\n")
	})
	meshtest.WaitUntil(t, untilDeadline(ctx), "gRPC to ACK every resource", func() bool {
		var nacks []string
		missing, nacks = tracker.missing(want)
		if len(nacks) > 0 {
			t.Fatalf("gRPC NACKed:\n%s", firstLines(nacks))
		}
		return len(missing) == 0
	})
}

// untilDeadline is the time left before the deadline of ctx.
func untilDeadline(ctx context.Context) time.Duration {
	d, _ := ctx.Deadline()
	return time.Until(d)
}

// lastError says what the last RPC of a wait returned, if it failed.
func lastError(name string, err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf("%s: the last RPC failed: %v", name, err)
}

// logIfFailed logs what last says, if anything, at the end of the test
// if it failed: what a wait saw last, which its failure message does not
// say.
func logIfFailed(t *testing.T, last func() string) {
	t.Cleanup(func() {
		if s := last(); t.Failed() && s != "" {
			t.Log(s)
		}
	})
}

// e2eConfig routes seven services to one server: rr (round robin, an 80/20
// split over two subsets, matches, timeout and retries), lr (least
// request), rh (ring hash on x-user), rnd (RANDOM), od (outlier detection,
// with a subset of its own, limits, a retry budget and a breaker), pe (meshlet's PEAK_EWMA annotation over
// LEAST_REQUEST, with a RANDOM subset, and outlier detection) and the
// ServiceEntry echo.example.com, which selects the rr instance by label.
func e2eConfig() *model.Config {
	host := func(s string) string { return s + ".default.svc.cluster.local" }
	dr := func(name string, lb *networking.LoadBalancerSettings) *model.DestinationRule {
		return destinationRule("default", name, &networking.DestinationRule{
			Host:          host(name),
			TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: lb},
			Subsets:       []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}},
		})
	}
	outlier := &networking.OutlierDetection{
		Consecutive_5XxErrors:    wrapperspb.UInt32(3),
		ConsecutiveGatewayErrors: wrapperspb.UInt32(2),
		Interval:                 durationpb.New(5 * time.Second),
		BaseEjectionTime:         durationpb.New(time.Minute),
		MaxEjectionPercent:       50,
	}
	odDR := dr("od", nil)
	odDR.Spec.TrafficPolicy.OutlierDetection = outlier
	odDR.Spec.Subsets[0].TrafficPolicy = &networking.TrafficPolicy{OutlierDetection: &networking.OutlierDetection{
		Consecutive_5XxErrors:          wrapperspb.UInt32(0),
		SplitExternalLocalOriginErrors: true,
		ConsecutiveLocalOriginFailures: wrapperspb.UInt32(4),
	}}
	// od also has limits, a retry budget and meshlet's breaker, which
	// gRPC-Go must accept (it enforces max_requests only).
	odDR.Annotations = map[string]string{model.CircuitBreakerAnnotation: "consecutiveErrors=5,openFor=30s"}
	odDR.Spec.TrafficPolicy.ConnectionPool = &networking.ConnectionPoolSettings{Http: &networking.ConnectionPoolSettings_HTTPSettings{Http2MaxRequests: 100, MaxRetries: 3}}
	odDR.Spec.TrafficPolicy.RetryBudget = &networking.TrafficPolicy_RetryBudget{Percent: wrapperspb.Double(20), MinRetryConcurrency: 2}
	// rh's connections have a lifetime, in HttpProtocolOptions, which
	// gRPC-Go ignores.
	rhDR := dr("rh", headerHashLB("x-user", 64))
	rhDR.Spec.TrafficPolicy.ConnectionPool = &networking.ConnectionPoolSettings{Http: &networking.ConnectionPoolSettings_HTTPSettings{IdleTimeout: durationpb.New(time.Minute), MaxRequestsPerConnection: 100}}
	peDR := dr("pe", &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_LEAST_REQUEST}})
	peDR.Annotations = map[string]string{model.LoadBalancerAnnotation: model.LoadBalancerPeakEWMA}
	peDR.Spec.TrafficPolicy.OutlierDetection = outlier
	peDR.Spec.Subsets[0].TrafficPolicy = &networking.TrafficPolicy{LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_RANDOM}}}
	rrDR := dr("rr", nil)
	rrDR.Spec.Subsets = append(rrDR.Spec.Subsets, &networking.Subset{Name: "all", Labels: map[string]string{"app": "rr"}})
	exact := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
	}
	// Every other service routes to both its clusters, so that gRPC fetches
	// (and so validates) every Cluster and ClusterLoadAssignment.
	split := func(name string) *model.VirtualService {
		return virtualService("default", name, &networking.VirtualService{
			Hosts: []string{host(name)},
			Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
				{Destination: &networking.Destination{Host: host(name)}, Weight: 50},
				{Destination: &networking.Destination{Host: host(name), Subset: "v1"}, Weight: 50},
			}}},
		})
	}
	return &model.Config{
		ServiceEntries: []*model.ServiceEntry{serviceEntry("default", "echo", &networking.ServiceEntry{
			Hosts:            []string{"echo.example.com"},
			Ports:            []*networking.ServicePort{{Number: 9090, Name: "grpc", Protocol: "GRPC"}},
			WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "rr"}},
			Resolution:       networking.ServiceEntry_STATIC,
		})},
		DestinationRules: []*model.DestinationRule{
			rrDR,
			dr("lr", &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_LEAST_REQUEST}}),
			rhDR,
			dr("rnd", &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_RANDOM}}),
			odDR, peDR,
		},
		VirtualServices: []*model.VirtualService{
			virtualService("default", "rr", &networking.VirtualService{
				Hosts: []string{host("rr")},
				Http: []*networking.HTTPRoute{{
					Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"x-route": exact("weighted")}}},
					Route: []*networking.HTTPRouteDestination{
						{Destination: &networking.Destination{Host: host("rr"), Subset: "v1"}, Weight: 80},
						{Destination: &networking.Destination{Host: host("rr"), Subset: "all"}, Weight: 20},
					},
					Timeout: durationpb.New(5 * time.Second),
					Retries: &networking.HTTPRetry{Attempts: 3, RetryOn: "unavailable,5xx,503", PerTryTimeout: durationpb.New(time.Second)},
				}, {
					Match: []*networking.HTTPMatchRequest{{
						Uri:    &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: `/grpc\.health\.v1\.Health/.*`}},
						Method: exact("POST"),
					}, {
						Uri:            &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/grpc.health"}},
						IgnoreUriCase:  true,
						WithoutHeaders: map[string]*networking.StringMatch{"x-debug": {}},
						QueryParams:    map[string]*networking.StringMatch{"q": exact("1")},
					}},
					Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: host("rr"), Subset: "v1"}}},
					Retries: &networking.HTTPRetry{Attempts: 0},
				}, {
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: host("rr")}}},
				}},
			}),
			split("lr"), split("rh"), split("rnd"), split("od"), split("pe"),
		},
	}
}

// TestGRPCAcceptsResources serves Build's output from a real go-control-plane
// ADS server to a real gRPC-Go xDS server and xDS clients. Every resource
// must be ACKed (none NACKed), and RPCs must succeed through every kind of
// cluster: round robin, least request, ring hash with its header, RANDOM,
// which falls back to round robin because this test registers no
// meshlet.random balancer, outlier detection, and peak EWMA, which falls
// back to the rule's own policy because gRPC-Go has no meshlet.peak_ewma.
func TestGRPCAcceptsResources(t *testing.T) {
	for _, name := range []string{wire.RandomPolicy, wire.PeakEWMAPolicy} {
		if balancer.Get(name) != nil {
			t.Fatalf("balancer %q is registered; this test proves the fallback without it", name)
		}
	}
	tracker := newAckTracker()
	adsAddr, cache := startADS(t, tracker)
	pki := newTestPKI(t)
	bs := bootstrap(adsAddr, pki.leaf("workload", "spiffe://cluster.local/ns/default/sa/default"))

	// The gRPC xDS server, the one endpoint of every service.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvAddr := lis.Addr().(*net.TCPAddr)
	xs, err := xds.NewGRPCServer(grpc.Creds(insecure.NewCredentials()), xds.BootstrapContentsForTesting(bs))
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(xs, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = xs.Serve(lis)
	}()
	t.Cleanup(func() {
		xs.Stop()
		<-served
	})

	var insts []registry.Instance
	for _, svc := range []string{"rr", "lr", "rh", "rnd", "od", "pe"} {
		insts = append(insts, registry.Instance{
			ID: svc + "-1", Service: svc, Namespace: "default",
			Address: "127.0.0.1", Port: uint32(srvAddr.Port), ServicePort: 9080, Protocol: "GRPC",
			Labels:   map[string]string{"app": svc, "version": "v1"},
			Locality: registry.Locality{Region: "r1", Zone: "z1"},
		})
	}
	out, err := translate.Build(translate.Input{
		Config:          e2eConfig(),
		Instances:       insts,
		ServerAddresses: []string{lis.Addr().String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := serve(ctx, t, cache, "v1", out)

	resolverBuilder, err := xds.NewXDSResolverWithConfigForTesting(bs)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		authority string
		md        metadata.MD
	}
	var targets []target
	for _, l := range out.Listeners {
		if strings.HasPrefix(l.GetName(), "xds.istio.io/") {
			continue
		}
		tg := target{authority: l.GetName()}
		switch {
		case strings.HasPrefix(tg.authority, "rh."):
			tg.md = metadata.Pairs("x-user", "alice")
		case strings.HasPrefix(tg.authority, "rr."):
			tg.md = metadata.Pairs("x-route", "weighted")
		}
		targets = append(targets, tg)
	}
	if len(targets) != 7 {
		t.Fatalf("client listeners %v, want 7", targets)
	}
	// The shapes under test, before gRPC sees them.
	for _, c := range []string{"outbound|9080||od.default.svc.cluster.local", "outbound|9080|v1|od.default.svc.cluster.local", "outbound|9080||pe.default.svc.cluster.local"} {
		if findCluster(t, out, c).GetOutlierDetection() == nil {
			t.Fatalf("cluster %s: no outlier_detection", c)
		}
	}
	for _, c := range []string{"outbound|9080||pe.default.svc.cluster.local", "outbound|9080|v1|pe.default.svc.cluster.local"} {
		if name := findCluster(t, out, c).GetLoadBalancingPolicy().GetPolicies()[0].GetTypedExtensionConfig().GetName(); name != wire.PeakEWMAPolicy {
			t.Fatalf("cluster %s: first load_balancing_policy %q, want %s", c, name, wire.PeakEWMAPolicy)
		}
	}
	clients := make(map[string]healthpb.HealthClient)
	for _, tg := range targets {
		cc, err := grpc.NewClient("xds:///"+tg.authority,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithResolvers(resolverBuilder))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		clients[tg.authority] = healthpb.NewHealthClient(cc)
	}

	// Poll until every target answers and every resource is ACKed.
	for _, tg := range targets {
		var lastErr error
		logIfFailed(t, func() string { return lastError(tg.authority, lastErr) })
		meshtest.WaitUntil(t, untilDeadline(ctx), "a successful RPC to "+tg.authority, func() bool {
			if _, nacks := tracker.missing(nil); len(nacks) > 0 {
				t.Fatalf("gRPC NACKed:\n%s", firstLines(nacks))
			}
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			defer rcancel()
			if tg.md != nil {
				rctx = metadata.NewOutgoingContext(rctx, tg.md)
			}
			_, lastErr = clients[tg.authority].Check(rctx, &healthpb.HealthCheckRequest{})
			return lastErr == nil
		})
		// Then every RPC succeeds: with a split, both clusters serve.
		for i := 0; i < 20; i++ {
			rctx := ctx
			if tg.md != nil && i%2 == 0 {
				rctx = metadata.NewOutgoingContext(ctx, tg.md)
			}
			if _, err := clients[tg.authority].Check(rctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("%s: RPC %d: %v", tg.authority, i, err)
			}
		}
	}
	waitACKed(ctx, t, tracker, want)
}

// firstLines shows the first NACKs only: gRPC NACKs in a loop.
func firstLines(nacks []string) string {
	const n = 3
	if len(nacks) > n {
		nacks = append(nacks[:n:n], fmt.Sprintf("... and %d more", len(nacks)-n))
	}
	return strings.Join(nacks, "\n")
}

// peerLog records, per server, the SPIFFE ID each RPC's caller proved over
// TLS, or "plaintext".
type peerLog struct {
	mu    sync.Mutex
	peers []string
}

func (l *peerLog) interceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	who := "plaintext"
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			who = "tls"
			if info.SPIFFEID != nil {
				who = info.SPIFFEID.String()
			}
		}
	}
	l.mu.Lock()
	l.peers = append(l.peers, who)
	l.mu.Unlock()
	return h(ctx, req)
}

func (l *peerLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.peers) == 0 {
		return ""
	}
	return l.peers[len(l.peers)-1]
}

// startSecureServer starts a gRPC xDS server with xDS credentials, which
// fall back to plaintext when its Listener has no TLS context, as a
// meshlet server does (meshlet's fallback also accepts TLS).
func startSecureServer(t *testing.T, bs []byte) (string, *peerLog) {
	t.Helper()
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := &peerLog{}
	xs, err := xds.NewGRPCServer(grpc.Creds(creds), grpc.UnaryInterceptor(log.interceptor), xds.BootstrapContentsForTesting(bs))
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(xs, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = xs.Serve(lis)
	}()
	t.Cleanup(func() {
		xs.Stop()
		<-served
	})
	return lis.Addr().String(), log
}

// TestGRPCMutualTLSAndRBAC serves the security resources to real gRPC-Go
// xDS servers and clients with xDS credentials and certificates from
// gRPC-Go's file_watcher provider. Every resource must be ACKed, and:
//
//   - secure (STRICT: mesh-wide STRICT, then its own PERMISSIVE overridden
//     for its port) answers the allowed caller over mTLS, refuses a header
//     its DENY policy names, refuses a caller its ALLOW policy does not
//     name, and refuses a plaintext client;
//   - open (DISABLE) answers in plaintext, as auto mTLS chooses;
//   - locked (allow-nothing) refuses everyone;
//   - wrong.example.com, which selects secure but expects another
//     identity, fails the TLS handshake.
func TestGRPCMutualTLSAndRBAC(t *testing.T) {
	tracker := newAckTracker()
	adsAddr, cache := startADS(t, tracker)
	pki := newTestPKI(t)
	const td = "spiffe://cluster.local/ns/default/sa/"
	serverBS := bootstrap(adsAddr, pki.leaf("server", td+"server"))
	clientBS := bootstrap(adsAddr, pki.leaf("client", td+"client"))
	intruderBS := bootstrap(adsAddr, pki.leaf("intruder", td+"intruder"))

	secureAddr, secureLog := startSecureServer(t, serverBS)
	openAddr, openLog := startSecureServer(t, serverBS)
	lockedAddr, _ := startSecureServer(t, serverBS)

	host := func(s string) string { return s + ".default.svc.cluster.local" }
	_, securePortStr, _ := net.SplitHostPort(secureAddr)
	securePort, _ := strconv.ParseUint(securePortStr, 10, 32)
	var insts []registry.Instance
	workloads := map[string]translate.Workload{}
	for _, s := range []struct{ name, addr string }{{"secure", secureAddr}, {"open", openAddr}, {"locked", lockedAddr}} {
		_, portStr, _ := net.SplitHostPort(s.addr)
		port, _ := strconv.ParseUint(portStr, 10, 32)
		labels := map[string]string{"app": s.name, "version": "v1"}
		insts = append(insts, registry.Instance{
			ID: s.name + "-1", Service: s.name, Namespace: "default", ServiceAccount: "server",
			Address: "127.0.0.1", Port: uint32(port), ServicePort: 9080, Protocol: "GRPC", Labels: labels,
		})
		workloads[s.addr] = translate.Workload{Namespace: "default", ServiceAccount: "server", Labels: labels}
	}
	selector := func(app string) *typev1beta1.WorkloadSelector {
		return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
	}
	split := func(name string) *model.VirtualService {
		return virtualService("default", name, &networking.VirtualService{
			Hosts: []string{host(name)},
			Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
				{Destination: &networking.Destination{Host: host(name)}, Weight: 50},
				{Destination: &networking.Destination{Host: host(name), Subset: "v1"}, Weight: 50},
			}}},
		})
	}
	v1 := []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}
	cfg := &model.Config{
		ServiceEntries: []*model.ServiceEntry{serviceEntry("default", "wrong", &networking.ServiceEntry{
			Hosts:            []string{"wrong.example.com"},
			Ports:            []*networking.ServicePort{{Number: 9090, Name: "grpc", Protocol: "GRPC"}},
			WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "secure"}},
			Resolution:       networking.ServiceEntry_STATIC,
			SubjectAltNames:  []string{td + "not-the-server"},
		})},
		DestinationRules: []*model.DestinationRule{
			destinationRule("default", "secure", &networking.DestinationRule{
				Host:          host("secure"),
				TrafficPolicy: &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}},
				Subsets:       v1,
			}),
			destinationRule("default", "open", &networking.DestinationRule{Host: host("open"), Subsets: v1}),
			destinationRule("default", "locked", &networking.DestinationRule{Host: host("locked"), Subsets: v1}),
		},
		VirtualServices: []*model.VirtualService{split("secure"), split("open"), split("locked")},
		PeerAuthentications: []*model.PeerAuthentication{
			peerAuth("istio-system", "default", &security.PeerAuthentication{Mtls: strictMode()}),
			peerAuth("default", "open", &security.PeerAuthentication{
				Selector: selector("open"),
				Mtls:     &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_DISABLE},
			}),
			peerAuth("default", "secure", &security.PeerAuthentication{
				Selector:      selector("secure"),
				Mtls:          &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_PERMISSIVE},
				PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{uint32(securePort): strictMode()},
			}),
		},
		AuthorizationPolicies: []*model.AuthorizationPolicy{
			authzPolicy("default", "allow-client", &security.AuthorizationPolicy{
				Selector: selector("secure"),
				Rules: []*security.Rule{{
					From: []*security.Rule_From{{Source: &security.Source{Principals: []string{"cluster.local/ns/default/sa/client"}}}},
					To: []*security.Rule_To{{Operation: &security.Operation{
						Paths:   []string{"/grpc.health.v1.Health/*"},
						Methods: []string{"POST"},
						Ports:   []string{securePortStr},
					}}},
				}},
			}),
			authzPolicy("default", "deny-header", &security.AuthorizationPolicy{
				Selector: selector("secure"),
				Action:   security.AuthorizationPolicy_DENY,
				Rules: []*security.Rule{{
					When: []*security.Condition{{Key: "request.headers[x-deny]", Values: []string{"yes"}}},
				}},
			}),
			authzPolicy("default", "allow-nothing", &security.AuthorizationPolicy{Selector: selector("locked")}),
		},
	}
	out, err := translate.Build(translate.Input{
		Config:          cfg,
		Instances:       insts,
		ServerAddresses: []string{secureAddr, openAddr, lockedAddr},
		Workloads:       workloads,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := serve(ctx, t, cache, "v1", out)

	// The shapes under test, before gRPC sees them.
	if ts := findListener(t, out, wire.ServerListenerName(secureAddr)).GetFilterChains()[0].GetTransportSocket(); ts == nil {
		t.Fatal("secure: no transport socket on its server Listener")
	}
	if ts := findListener(t, out, wire.ServerListenerName(openAddr)).GetFilterChains()[0].GetTransportSocket(); ts != nil {
		t.Fatal("open: a transport socket on its server Listener")
	}
	for _, c := range []string{"outbound|9080||" + host("secure"), "outbound|9080|v1|" + host("secure"), "outbound|9080||" + host("locked"), "outbound|9090||wrong.example.com"} {
		if findCluster(t, out, c).GetTransportSocket() == nil {
			t.Fatalf("cluster %s: no UpstreamTlsContext", c)
		}
	}
	if findCluster(t, out, "outbound|9080||"+host("open")).GetTransportSocket() != nil {
		t.Fatal("cluster for open: an UpstreamTlsContext to a DISABLE server")
	}

	dial := func(bs []byte, target string, creds credentials.TransportCredentials) healthpb.HealthClient {
		t.Helper()
		rb, err := xds.NewXDSResolverWithConfigForTesting(bs)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(creds), grpc.WithResolvers(rb))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return healthpb.NewHealthClient(cc)
	}
	xdsCreds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	secure := dial(clientBS, host("secure")+":9080", xdsCreds)
	intruder := dial(intruderBS, host("secure")+":9080", xdsCreds)
	plaintext := dial(clientBS, host("secure")+":9080", insecure.NewCredentials())
	open := dial(clientBS, host("open")+":9080", xdsCreds)
	locked := dial(clientBS, host("locked")+":9080", xdsCreds)
	wrong := dial(clientBS, "wrong.example.com:9090", xdsCreds)

	check := func(c healthpb.HealthClient, md metadata.MD) error {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		defer rcancel()
		if md != nil {
			rctx = metadata.NewOutgoingContext(rctx, md)
		}
		_, err := c.Check(rctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// eventually waits until an RPC gives the code wanted: the servers
	// serve once their Listeners arrive, the clients once theirs do.
	eventually := func(name string, c healthpb.HealthClient, md metadata.MD, code codes.Code, msg string) {
		t.Helper()
		var err error
		logIfFailed(t, func() string { return lastError(name, err) })
		meshtest.WaitUntil(t, untilDeadline(ctx), fmt.Sprintf("%s: code %v with %q", name, code, msg), func() bool {
			if _, nacks := tracker.missing(nil); len(nacks) > 0 {
				t.Fatalf("gRPC NACKed:\n%s", firstLines(nacks))
			}
			err = check(c, md)
			return status.Code(err) == code && strings.Contains(status.Convert(err).Message(), msg)
		})
		t.Logf("%s: %v", name, err)
		err = nil // the error wanted: not one to report
	}

	eventually("allowed caller", secure, nil, codes.OK, "")
	if got := secureLog.last(); got != td+"client" {
		t.Errorf("secure saw caller %q, want %s over mTLS", got, td+"client")
	}
	eventually("DENY header", secure, metadata.Pairs("x-deny", "yes"), codes.PermissionDenied,
		`incoming RPC matched a deny policy "ns[default]-policy[deny-header]-rule[0]"`)
	eventually("caller not allowed", intruder, nil, codes.PermissionDenied, "incoming RPC did not match an allow policy")
	eventually("plaintext to STRICT", plaintext, nil, codes.Unavailable, "connection error")
	eventually("DISABLE server", open, nil, codes.OK, "")
	if got := openLog.last(); got != "plaintext" {
		t.Errorf("open saw caller %q, want plaintext", got)
	}
	eventually("allow-nothing", locked, nil, codes.PermissionDenied, "incoming RPC did not match an allow policy")
	eventually("SAN mismatch", wrong, nil, codes.Unavailable, "do not match any of the accepted SANs")

	// The decisions hold for every call, not just the first.
	for i := 0; i < 20; i++ {
		if err := check(secure, nil); err != nil {
			t.Fatalf("allowed caller, RPC %d: %v", i, err)
		}
		if err := check(secure, metadata.Pairs("x-deny", "yes")); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("DENY header, RPC %d: %v", i, err)
		}
		if err := check(intruder, nil); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("caller not allowed, RPC %d: %v", i, err)
		}
	}
	waitACKed(ctx, t, tracker, want)
}

func strictMode() *security.PeerAuthentication_MutualTLS {
	return &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_STRICT}
}
