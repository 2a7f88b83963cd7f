package translate_test

import (
	"context"
	"fmt"
	"net"
	"sort"
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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
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

func bootstrap(adsAddr string) []byte {
	return fmt.Appendf(nil, `{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "test"},
		"server_listener_resource_name_template": %q
	}`, adsAddr, translate.ServerListenerTemplate)
}

// e2eConfig routes five services to one server: rr (round robin, an 80/20
// split over two subsets, matches, timeout and retries), lr (least
// request), rh (ring hash on x-user), rnd (RANDOM) and the ServiceEntry
// echo.example.com, which selects the rr instance by label.
func e2eConfig() *model.Config {
	host := func(s string) string { return s + ".default.svc.cluster.local" }
	dr := func(name string, lb *networking.LoadBalancerSettings) *model.DestinationRule {
		return destinationRule("default", name, &networking.DestinationRule{
			Host:          host(name),
			TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: lb},
			Subsets:       []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}},
		})
	}
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
			dr("rh", headerHashLB("x-user", 64)),
			dr("rnd", &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_RANDOM}}),
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
			split("lr"), split("rh"), split("rnd"),
		},
	}
}

// TestGRPCAcceptsResources serves Build's output from a real go-control-plane
// ADS server to a real gRPC-Go xDS server and xDS clients. Every resource
// must be ACKed (none NACKed), and RPCs must succeed through every kind of
// cluster: round robin, least request, ring hash with its header, and
// RANDOM, which falls back to round robin because this test registers no
// meshlet.random balancer.
func TestGRPCAcceptsResources(t *testing.T) {
	if balancer.Get(translate.RandomPolicyName) != nil {
		t.Fatalf("balancer %q is registered; this test proves the fallback without it", translate.RandomPolicyName)
	}
	tracker := newAckTracker()
	adsAddr, cache := startADS(t, tracker)
	bs := bootstrap(adsAddr)

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
	for _, svc := range []string{"rr", "lr", "rh", "rnd"} {
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
	snap, err := cachev3.NewSnapshot("v1", resources)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cache.SetSnapshot(ctx, "mesh", snap); err != nil {
		t.Fatal(err)
	}

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
	if len(targets) != 5 {
		t.Fatalf("client listeners %v, want 5", targets)
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
		for {
			if _, nacks := tracker.missing(nil); len(nacks) > 0 {
				t.Fatalf("gRPC NACKed:\n%s", firstLines(nacks))
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: no successful RPC before the deadline: %v", tg.authority, lastErr)
			}
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			if tg.md != nil {
				rctx = metadata.NewOutgoingContext(rctx, tg.md)
			}
			_, lastErr = clients[tg.authority].Check(rctx, &healthpb.HealthCheckRequest{})
			rcancel()
			if lastErr == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
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
	for {
		missing, nacks := tracker.missing(want)
		if len(nacks) > 0 {
			t.Fatalf("gRPC NACKed:\n%s", firstLines(nacks))
		}
		if len(missing) == 0 {
			break
		}
		if ctx.Err() != nil {
			sort.Strings(missing)
			t.Fatalf("never ACKed:\n%s", strings.Join(missing, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// firstLines shows the first NACKs only: gRPC NACKs in a loop.
func firstLines(nacks []string) string {
	const n = 3
	if len(nacks) > n {
		nacks = append(nacks[:n:n], fmt.Sprintf("... and %d more", len(nacks)-n))
	}
	return strings.Join(nacks, "\n")
}
