package translate_test

import (
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/internal/wire"
)

const (
	reviews = "reviews.default.svc.cluster.local"
	ratings = "ratings.default.svc.cluster.local"
)

func meta(kind, ns, name string) model.Meta {
	return model.Meta{Kind: kind, Namespace: ns, Name: name, File: name + ".yaml"}
}

func serviceEntry(ns, name string, spec *networking.ServiceEntry) *model.ServiceEntry {
	return &model.ServiceEntry{Meta: meta("ServiceEntry", ns, name), Spec: spec}
}

func workloadEntry(ns, name string, spec *networking.WorkloadEntry) *model.WorkloadEntry {
	return &model.WorkloadEntry{Meta: meta("WorkloadEntry", ns, name), Spec: spec}
}

func virtualService(ns, name string, spec *networking.VirtualService) *model.VirtualService {
	return &model.VirtualService{Meta: meta("VirtualService", ns, name), Spec: spec}
}

func destinationRule(ns, name string, spec *networking.DestinationRule) *model.DestinationRule {
	return &model.DestinationRule{Meta: meta("DestinationRule", ns, name), Spec: spec}
}

func peerAuth(ns, name string, spec *security.PeerAuthentication) *model.PeerAuthentication {
	return &model.PeerAuthentication{Meta: meta("PeerAuthentication", ns, name), Spec: spec}
}

func authzPolicy(ns, name string, spec *security.AuthorizationPolicy) *model.AuthorizationPolicy {
	return &model.AuthorizationPolicy{Meta: meta("AuthorizationPolicy", ns, name), Spec: spec}
}

// instance is a registry instance of service svc in namespace default.
func instance(id, svc, addr string, port, servicePort uint32, labels map[string]string) registry.Instance {
	return registry.Instance{
		ID: id, Service: svc, Namespace: "default", Address: addr, Port: port,
		ServicePort: servicePort, Protocol: "GRPC", Labels: labels,
	}
}

// reviewsInstances are three reviews instances, v1, v2 and v3, on
// service port 9080.
func reviewsInstances() []registry.Instance {
	return []registry.Instance{
		instance("r1", "reviews", "10.0.0.1", 9080, 9080, map[string]string{"app": "reviews", "version": "v1"}),
		instance("r2", "reviews", "10.0.0.2", 9080, 9080, map[string]string{"app": "reviews", "version": "v2"}),
		instance("r3", "reviews", "10.0.0.3", 9080, 9080, map[string]string{"app": "reviews", "version": "v3"}),
	}
}

func subsetsDR() *model.DestinationRule {
	return destinationRule("default", "reviews", &networking.DestinationRule{
		Host: reviews,
		Subsets: []*networking.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "v2", Labels: map[string]string{"version": "v2"}},
			{Name: "v3", Labels: map[string]string{"version": "v3"}},
		},
	})
}

func build(t *testing.T, in translate.Input) *translate.Output {
	t.Helper()
	out, err := translate.Build(in)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return out
}

func findListener(t *testing.T, out *translate.Output, name string) *listenerv3.Listener {
	t.Helper()
	for _, l := range out.Listeners {
		if l.GetName() == name {
			return l
		}
	}
	t.Fatalf("no Listener %q", name)
	return nil
}

func findRoute(t *testing.T, out *translate.Output, name string) *routev3.RouteConfiguration {
	t.Helper()
	for _, r := range out.Routes {
		if r.GetName() == name {
			return r
		}
	}
	t.Fatalf("no RouteConfiguration %q", name)
	return nil
}

func findCluster(t *testing.T, out *translate.Output, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range out.Clusters {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no Cluster %q", name)
	return nil
}

func findCLA(t *testing.T, out *translate.Output, name string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	for _, c := range out.Endpoints {
		if c.GetClusterName() == name {
			return c
		}
	}
	t.Fatalf("no ClusterLoadAssignment %q", name)
	return nil
}

// routes returns the routes of the one virtual host of RouteConfiguration
// name.
func routes(t *testing.T, out *translate.Output, name string) []*routev3.Route {
	t.Helper()
	rc := findRoute(t, out, name)
	if len(rc.GetVirtualHosts()) != 1 {
		t.Fatalf("%s: %d virtual hosts, want 1", name, len(rc.GetVirtualHosts()))
	}
	return rc.GetVirtualHosts()[0].GetRoutes()
}

func names[M interface{ GetName() string }](list []M) []string {
	var out []string
	for _, m := range list {
		out = append(out, m.GetName())
	}
	return out
}

// endpointAddrs lists "locality|address:port|weight" per endpoint.
func endpointAddrs(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, lle := range cla.GetEndpoints() {
		l := lle.GetLocality()
		for _, e := range lle.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, l.GetRegion()+"/"+l.GetZone()+"/"+l.GetSubZone()+"|"+sa.GetAddress()+":"+u32(sa.GetPortValue())+"|"+u32(e.GetLoadBalancingWeight().GetValue()))
		}
	}
	return out
}

func u32(v uint32) string {
	const digits = "0123456789"
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{digits[v%10]}, b...)
	}
	return string(b)
}

func TestNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{wire.ClusterName(9080, "v1", reviews), "outbound|9080|v1|reviews.default.svc.cluster.local"},
		{wire.ClusterName(9080, "", reviews), "outbound|9080||reviews.default.svc.cluster.local"},
		{wire.ServerListenerName("127.0.0.1:50051"), "xds.istio.io/grpc/lds/inbound/127.0.0.1:50051"},
		{wire.ServerListenerName("[::1]:50051"), "xds.istio.io/grpc/lds/inbound/[::1]:50051"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestResourceNamesAndDomains(t *testing.T) {
	out := build(t, translate.Input{
		Config: &model.Config{
			ServiceEntries: []*model.ServiceEntry{serviceEntry("default", "api", &networking.ServiceEntry{
				Hosts: []string{"api.example.com"},
				Ports: []*networking.ServicePort{{Number: 443, Name: "grpc", Protocol: "GRPC"}},
			})},
			DestinationRules: []*model.DestinationRule{subsetsDR()},
		},
		Instances: reviewsInstances(),
	})

	if diff := cmp.Diff([]string{"api.example.com:443", "reviews.default.svc.cluster.local:9080"}, names(out.Listeners)); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"api.example.com:443", "reviews.default.svc.cluster.local:9080"}, names(out.Routes)); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	wantClusters := []string{
		"outbound|443||api.example.com",
		"outbound|9080|v1|" + reviews,
		"outbound|9080|v2|" + reviews,
		"outbound|9080|v3|" + reviews,
		"outbound|9080||" + reviews, // '|' sorts after 'v'
	}
	if diff := cmp.Diff(wantClusters, names(out.Clusters)); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}
	var claNames []string
	for _, c := range out.Endpoints {
		claNames = append(claNames, c.GetClusterName())
	}
	if diff := cmp.Diff(wantClusters, claNames); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}

	tests := []struct {
		name    string
		domains []string
	}{
		{"reviews.default.svc.cluster.local:9080", []string{
			"reviews.default.svc.cluster.local:9080", "reviews.default.svc.cluster.local",
			"reviews:9080", "reviews",
			"reviews.default:9080", "reviews.default",
			"reviews.default.svc:9080", "reviews.default.svc",
		}},
		{"api.example.com:443", []string{"api.example.com:443", "api.example.com"}},
	}
	for _, tt := range tests {
		rc := findRoute(t, out, tt.name)
		if diff := cmp.Diff(tt.domains, rc.GetVirtualHosts()[0].GetDomains()); diff != "" {
			t.Errorf("%s domains (-want +got):\n%s", tt.name, diff)
		}
	}

	// The client Listener fetches its routes over ADS, router last.
	l := findListener(t, out, "reviews.default.svc.cluster.local:9080")
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
		t.Fatalf("api_listener: %v", err)
	}
	if got := hcm.GetRds().GetRouteConfigName(); got != l.GetName() {
		t.Errorf("route_config_name = %q, want %q", got, l.GetName())
	}
	if hcm.GetRds().GetConfigSource().GetAds() == nil || hcm.GetRds().GetConfigSource().GetResourceApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("rds config source = %v, want ADS v3", hcm.GetRds().GetConfigSource())
	}
	checkRouterLast(t, hcm)

	// No VirtualService: one route to the service, with Istio's default
	// retries and no timeout.
	rs := routes(t, out, "reviews.default.svc.cluster.local:9080")
	want := &routev3.Route{
		Name:  "default",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|9080||" + reviews},
			Timeout:          durationpb.New(0),
			RetryPolicy:      defaultRetry(),
		}},
	}
	if diff := cmp.Diff([]*routev3.Route{want}, rs, protocmp.Transform()); diff != "" {
		t.Errorf("default route (-want +got):\n%s", diff)
	}

	// Every Cluster is EDS over ADS, named after itself.
	for _, c := range out.Clusters {
		if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetServiceName() != c.GetName() ||
			c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil ||
			c.GetEdsClusterConfig().GetEdsConfig().GetResourceApiVersion() != corev3.ApiVersion_V3 {
			t.Errorf("cluster %s: not EDS over ADS with service_name = its name: %v", c.GetName(), c)
		}
	}
}

func checkRouterLast(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
	t.Helper()
	fs := hcm.GetHttpFilters()
	if len(fs) == 0 {
		t.Fatal("no http filters")
	}
	last := fs[len(fs)-1]
	if last.GetName() != "envoy.filters.http.router" || !last.GetTypedConfig().MessageIs(&routerv3.Router{}) {
		t.Errorf("last http filter = %v, want the router", last)
	}
}

func defaultRetry() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:              "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
		NumRetries:           wrapperspb.UInt32(2),
		RetriableStatusCodes: []uint32{503},
		RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
			BaseInterval: durationpb.New(25 * time.Millisecond),
			MaxInterval:  durationpb.New(250 * time.Millisecond),
		},
	}
}

func TestWeightedClusters(t *testing.T) {
	dest := func(host, subset string, port, weight uint32) *networking.HTTPRouteDestination {
		d := &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: host, Subset: subset}, Weight: int32(weight)}
		if port != 0 {
			d.Destination.Port = &networking.PortSelector{Number: port}
		}
		return d
	}
	tests := []struct {
		name   string
		route  []*networking.HTTPRouteDestination
		want   *routev3.RouteAction
		wantCl string
	}{{
		name:  "80/20",
		route: []*networking.HTTPRouteDestination{dest(reviews, "v1", 0, 80), dest(reviews, "v2", 0, 20)},
		want: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
			Clusters: []*routev3.WeightedCluster_ClusterWeight{
				{Name: "outbound|9080|v1|" + reviews, Weight: wrapperspb.UInt32(80)},
				{Name: "outbound|9080|v2|" + reviews, Weight: wrapperspb.UInt32(20)},
			},
		}}},
	}, {
		name:   "single destination, weight ignored",
		route:  []*networking.HTTPRouteDestination{dest(reviews, "v3", 0, 0)},
		wantCl: "outbound|9080|v3|" + reviews,
	}, {
		name:   "weight 0 dropped, leaving one",
		route:  []*networking.HTTPRouteDestination{dest(reviews, "v1", 0, 100), dest(reviews, "v2", 0, 0)},
		wantCl: "outbound|9080|v1|" + reviews,
	}, {
		name:   "other host: its only port",
		route:  []*networking.HTTPRouteDestination{dest(ratings, "", 0, 0)},
		wantCl: "outbound|9090||" + ratings,
	}, {
		name:   "explicit port",
		route:  []*networking.HTTPRouteDestination{dest(ratings, "", 7070, 0)},
		wantCl: "outbound|7070||" + ratings,
	}, {
		name:   "unknown host: the route's port",
		route:  []*networking.HTTPRouteDestination{dest("nowhere.default.svc.cluster.local", "", 0, 0)},
		wantCl: "outbound|9080||nowhere.default.svc.cluster.local",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			insts := append(reviewsInstances(), instance("ra1", "ratings", "10.0.1.1", 9090, 9090, nil))
			out := build(t, translate.Input{
				Config: &model.Config{
					VirtualServices: []*model.VirtualService{virtualService("default", "reviews", &networking.VirtualService{
						Hosts: []string{reviews},
						Http:  []*networking.HTTPRoute{{Route: tt.route}},
					})},
					DestinationRules: []*model.DestinationRule{subsetsDR()},
				},
				Instances: insts,
			})
			rs := routes(t, out, reviews+":9080")
			if len(rs) != 1 {
				t.Fatalf("%d routes, want 1", len(rs))
			}
			got := rs[0].GetRoute()
			if tt.wantCl != "" {
				if got.GetCluster() != tt.wantCl {
					t.Errorf("cluster = %q (action %v), want %q", got.GetCluster(), got, tt.wantCl)
				}
				return
			}
			if diff := cmp.Diff(tt.want.GetWeightedClusters(), got.GetWeightedClusters(), protocmp.Transform()); diff != "" {
				t.Errorf("weighted clusters (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	exact := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
	}
	prefix := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
	}
	regex := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
	}
	vs := virtualService("default", "reviews", &networking.VirtualService{
		Hosts: []string{reviews},
		Http: []*networking.HTTPRoute{{
			Name: "jason",
			Match: []*networking.HTTPMatchRequest{{
				Name:    "user",
				Uri:     prefix("/reviews.Reviews/"),
				Headers: map[string]*networking.StringMatch{"end-user": exact("jason"), "X-Group": prefix("beta"), "x-id": regex("[0-9]+"), "x-any": {}},
			}, {
				Uri:    regex("/reviews\\.Reviews/Get.*"),
				Method: exact("POST"), // a gRPC port: always true, dropped
			}, {
				Uri:    exact("/never"),
				Method: exact("GET"), // a gRPC port: never true, skipped
			}, {
				Uri:  exact("/other/port"),
				Port: 9999, // not this port: skipped
			}},
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: reviews, Subset: "v2"}}},
		}, {
			Match: []*networking.HTTPMatchRequest{{Uri: exact("/reviews.Reviews/List"), IgnoreUriCase: true, WithoutHeaders: map[string]*networking.StringMatch{"x-debug": {}}}},
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: reviews, Subset: "v3"}}},
		}, {
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: reviews, Subset: "v1"}}},
		}},
	})
	out := build(t, translate.Input{
		Config:    &model.Config{VirtualServices: []*model.VirtualService{vs}, DestinationRules: []*model.DestinationRule{subsetsDR()}},
		Instances: reviewsInstances(),
	})
	rs := routes(t, out, reviews+":9080")
	var gotMatches []*routev3.RouteMatch
	var gotClusters []string
	for _, r := range rs {
		gotMatches = append(gotMatches, r.GetMatch())
		gotClusters = append(gotClusters, r.GetRoute().GetCluster())
	}
	wantMatches := []*routev3.RouteMatch{{
		PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/reviews.Reviews/"},
		Headers: []*routev3.HeaderMatcher{
			// HeaderMatcher's own fields, not string_match, which gRPC
			// C-core 1.51 NACKs.
			{Name: "x-group", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "beta"}},
			{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "jason"}},
			{Name: "x-any", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
			{Name: "x-id", HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "[0-9]+"}}},
		},
	}, {
		PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/reviews\\.Reviews/Get.*"}},
	}, {
		PathSpecifier: &routev3.RouteMatch_Path{Path: "/reviews.Reviews/List"},
		CaseSensitive: wrapperspb.Bool(false),
		Headers: []*routev3.HeaderMatcher{
			{Name: "x-debug", InvertMatch: true, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
		},
	}, {
		PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
	}}
	if diff := cmp.Diff(wantMatches, gotMatches, protocmp.Transform()); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}
	wantClusters := []string{
		"outbound|9080|v2|" + reviews, "outbound|9080|v2|" + reviews,
		"outbound|9080|v3|" + reviews, "outbound|9080|v1|" + reviews,
	}
	if diff := cmp.Diff(wantClusters, gotClusters); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}
	if got := rs[0].GetName(); got != "jason.user" {
		t.Errorf("route name = %q, want jason.user", got)
	}
}

func TestTimeoutAndRetries(t *testing.T) {
	tests := []struct {
		name        string
		timeout     *durationpb.Duration
		retries     *networking.HTTPRetry
		wantTimeout *durationpb.Duration
		wantMSD     *routev3.RouteAction_MaxStreamDuration
		wantRetry   *routev3.RetryPolicy
	}{{
		name:        "no timeout, no retries field: Istio's default retry",
		wantTimeout: durationpb.New(0),
		wantRetry:   defaultRetry(),
	}, {
		name:        "timeout",
		timeout:     durationpb.New(1500 * time.Millisecond),
		wantTimeout: durationpb.New(1500 * time.Millisecond),
		wantMSD:     &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(1500 * time.Millisecond)},
		wantRetry:   defaultRetry(),
	}, {
		name:        "attempts 0: no retry policy",
		retries:     &networking.HTTPRetry{Attempts: 0, RetryOn: "unavailable"},
		wantTimeout: durationpb.New(0),
	}, {
		name:        "attempts without retryOn: Istio's default conditions",
		retries:     &networking.HTTPRetry{Attempts: 4, PerTryTimeout: durationpb.New(2 * time.Second)},
		wantTimeout: durationpb.New(0),
		wantRetry: &routev3.RetryPolicy{
			RetryOn:              "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
			NumRetries:           wrapperspb.UInt32(4),
			RetriableStatusCodes: []uint32{503},
			PerTryTimeout:        durationpb.New(2 * time.Second),
			RetryBackOff:         defaultRetry().GetRetryBackOff(),
		},
	}, {
		name:        "retryOn passed on once each, status codes as retriable-status-codes",
		retries:     &networking.HTTPRetry{Attempts: 3, RetryOn: "Unavailable, 5xx,502,deadline-exceeded,unavailable,retriable-status-codes,504", Backoff: durationpb.New(10 * time.Millisecond)},
		wantTimeout: durationpb.New(0),
		wantRetry: &routev3.RetryPolicy{
			RetryOn:              "unavailable,5xx,retriable-status-codes,deadline-exceeded",
			NumRetries:           wrapperspb.UInt32(3),
			RetriableStatusCodes: []uint32{502, 504},
			RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
				BaseInterval: durationpb.New(10 * time.Millisecond),
				MaxInterval:  durationpb.New(100 * time.Millisecond),
			},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := build(t, translate.Input{
				Config: &model.Config{VirtualServices: []*model.VirtualService{virtualService("default", "reviews", &networking.VirtualService{
					Hosts: []string{reviews},
					Http: []*networking.HTTPRoute{{
						Timeout: tt.timeout,
						Retries: tt.retries,
						Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: reviews}}},
					}},
				})}},
				Instances: reviewsInstances(),
			})
			a := routes(t, out, reviews+":9080")[0].GetRoute()
			if diff := cmp.Diff(tt.wantTimeout, a.GetTimeout(), protocmp.Transform()); diff != "" {
				t.Errorf("timeout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantMSD, a.GetMaxStreamDuration(), protocmp.Transform()); diff != "" {
				t.Errorf("max_stream_duration (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRetry, a.GetRetryPolicy(), protocmp.Transform()); diff != "" {
				t.Errorf("retry_policy (-want +got):\n%s", diff)
			}
		})
	}
}

func simpleLB(p networking.LoadBalancerSettings_SimpleLB) *networking.LoadBalancerSettings {
	return &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: p}}
}

func headerHashLB(header string, minRing uint64) *networking.LoadBalancerSettings {
	return &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{
		ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{
			HashKey:       &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: header},
			HashAlgorithm: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash{MinimumRingSize: minRing}},
		},
	}}
}

func TestLoadBalancers(t *testing.T) {
	dr := destinationRule("default", "reviews", &networking.DestinationRule{
		Host:          reviews,
		TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_LEAST_CONN)},
		Subsets: []*networking.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: headerHashLB("x-user", 64)}},
			{Name: "v3", Labels: map[string]string{"version": "v3"}, TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_RANDOM)}},
			{Name: "rr", TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_ROUND_ROBIN)}},
			{Name: "lr", TrafficPolicy: &networking.TrafficPolicy{
				LoadBalancer: simpleLB(networking.LoadBalancerSettings_ROUND_ROBIN),
				PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{{
					Port: &networking.PortSelector{Number: 9080}, LoadBalancer: simpleLB(networking.LoadBalancerSettings_LEAST_REQUEST),
				}},
			}},
		},
	})
	vs := virtualService("default", "reviews", &networking.VirtualService{
		Hosts: []string{reviews},
		Http: []*networking.HTTPRoute{{
			Route: []*networking.HTTPRouteDestination{
				{Destination: &networking.Destination{Host: reviews, Subset: "v1"}, Weight: 50},
				{Destination: &networking.Destination{Host: reviews, Subset: "v2"}, Weight: 50},
			},
		}},
	})
	out := build(t, translate.Input{
		Config:    &model.Config{VirtualServices: []*model.VirtualService{vs}, DestinationRules: []*model.DestinationRule{dr}},
		Instances: reviewsInstances(),
	})

	ringHash := &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(64)}}
	// Least request is named in load_balancing_policy, before round
	// robin, under lb_policy ROUND_ROBIN: gRPC C-core and grpc-js-xds NACK
	// lb_policy LEAST_REQUEST.
	tests := []struct {
		subset       string
		policy       clusterv3.Cluster_LbPolicy
		lbConfig     any
		random       bool
		leastRequest bool
	}{
		{subset: "", policy: clusterv3.Cluster_ROUND_ROBIN, leastRequest: true},
		{subset: "v1", policy: clusterv3.Cluster_ROUND_ROBIN, leastRequest: true},
		{subset: "v2", policy: clusterv3.Cluster_RING_HASH, lbConfig: ringHash},
		{subset: "v3", policy: clusterv3.Cluster_ROUND_ROBIN, random: true},
		{subset: "rr", policy: clusterv3.Cluster_ROUND_ROBIN},
		{subset: "lr", policy: clusterv3.Cluster_ROUND_ROBIN, leastRequest: true},
	}
	for _, tt := range tests {
		c := findCluster(t, out, wire.ClusterName(9080, tt.subset, reviews))
		if c.GetLbPolicy() != tt.policy {
			t.Errorf("%s: lb_policy = %v, want %v", c.GetName(), c.GetLbPolicy(), tt.policy)
		}
		if tt.lbConfig != nil {
			if diff := cmp.Diff(tt.lbConfig, c.GetLbConfig(), protocmp.Transform()); diff != "" {
				t.Errorf("%s: lb_config (-want +got):\n%s", c.GetName(), diff)
			}
		} else if c.GetLbConfig() != nil {
			t.Errorf("%s: lb_config = %v, want none", c.GetName(), c.GetLbConfig())
		}
		switch {
		case tt.random:
			checkRandomPolicy(t, c)
		case tt.leastRequest:
			var names []string
			for _, p := range c.GetLoadBalancingPolicy().GetPolicies() {
				names = append(names, p.GetTypedExtensionConfig().GetName())
			}
			if want := []string{"envoy.load_balancing_policies.least_request", "envoy.load_balancing_policies.wrr_locality"}; !slices.Equal(names, want) {
				t.Errorf("%s: load_balancing_policy = %v, want %v", c.GetName(), names, want)
			}
		case c.GetLoadBalancingPolicy() != nil:
			t.Errorf("%s: load_balancing_policy = %v, want none", c.GetName(), c.GetLoadBalancingPolicy())
		}
	}

	// The route to the ring-hash subset hashes on the header.
	a := routes(t, out, reviews+":9080")[0].GetRoute()
	wantHash := []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
		Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"},
	}}}
	if diff := cmp.Diff(wantHash, a.GetHashPolicy(), protocmp.Transform()); diff != "" {
		t.Errorf("hash_policy (-want +got):\n%s", diff)
	}
}

// checkRandomPolicy checks a RANDOM cluster: meshlet.random as a TypedStruct,
// then round_robin under wrr_locality.
func checkRandomPolicy(t *testing.T, c *clusterv3.Cluster) {
	t.Helper()
	ps := c.GetLoadBalancingPolicy().GetPolicies()
	if len(ps) != 2 {
		t.Fatalf("%s: %d policies, want 2: %v", c.GetName(), len(ps), ps)
	}
	first := ps[0].GetTypedExtensionConfig()
	ts := &xdstypev3.TypedStruct{}
	if first.GetName() != wire.RandomPolicy || first.GetTypedConfig().UnmarshalTo(ts) != nil || ts.GetTypeUrl() != "type.googleapis.com/meshlet.random" {
		t.Errorf("%s: first policy = %v, want a TypedStruct for type.googleapis.com/meshlet.random", c.GetName(), first)
	}
	wrr := &wrrlocalityv3.WrrLocality{}
	if err := ps[1].GetTypedExtensionConfig().GetTypedConfig().UnmarshalTo(wrr); err != nil {
		t.Fatalf("%s: second policy is not WrrLocality: %v", c.GetName(), err)
	}
	inner := wrr.GetEndpointPickingPolicy().GetPolicies()
	if len(inner) != 1 || !inner[0].GetTypedExtensionConfig().GetTypedConfig().MessageIs(&roundrobinv3.RoundRobin{}) {
		t.Errorf("%s: wrr_locality child = %v, want round_robin", c.GetName(), inner)
	}
}

func TestImplicitServices(t *testing.T) {
	insts := []registry.Instance{
		instance("d2", "details", "10.0.2.2", 50052, 9080, nil),
		instance("d1", "details", "10.0.2.1", 50052, 9080, nil),
		instance("d3", "details", "10.0.2.1", 50053, 9081, nil),
		{ID: "p1", Service: "productpage", Namespace: "shop", Address: "10.0.3.1", Port: 9080, Protocol: "HTTP"},
	}
	out := build(t, translate.Input{Instances: insts})
	want := []translate.Service{
		{Host: "details.default.svc.cluster.local", Namespace: "default", Ports: []translate.Port{
			{Number: 9080, TargetPort: 50052, Protocol: "GRPC"},
			{Number: 9081, TargetPort: 50053, Protocol: "GRPC"},
		}},
		{Host: "productpage.shop.svc.cluster.local", Namespace: "shop", Ports: []translate.Port{{Number: 9080, Protocol: "HTTP"}}},
	}
	if diff := cmp.Diff(want, out.Services); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	tests := []struct {
		cluster string
		want    []string
	}{
		{"outbound|9080||details.default.svc.cluster.local", []string{"//|10.0.2.1:50052|1", "//|10.0.2.2:50052|1"}},
		{"outbound|9081||details.default.svc.cluster.local", []string{"//|10.0.2.1:50053|1"}},
		{"outbound|9080||productpage.shop.svc.cluster.local", []string{"//|10.0.3.1:9080|1"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, endpointAddrs(findCLA(t, out, tt.cluster))); diff != "" {
			t.Errorf("%s endpoints (-want +got):\n%s", tt.cluster, diff)
		}
	}
	findListener(t, out, "details.default.svc.cluster.local:9081")
}

func TestServiceEntryEndpoints(t *testing.T) {
	se := serviceEntry("shop", "catalog", &networking.ServiceEntry{
		Hosts: []string{"catalog.shop.svc.cluster.local"},
		Ports: []*networking.ServicePort{
			{Number: 80, Name: "http", Protocol: "HTTP", TargetPort: 8080},
			{Number: 90, Name: "grpc", Protocol: "GRPC"},
		},
		Endpoints:        []*networking.WorkloadEntry{{Address: "10.1.0.1", Ports: map[string]uint32{"grpc": 9999}}},
		WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "catalog"}},
		Resolution:       networking.ServiceEntry_STATIC,
	})
	wles := []*model.WorkloadEntry{
		workloadEntry("shop", "vm1", &networking.WorkloadEntry{Address: "10.1.0.2", Labels: map[string]string{"app": "catalog"}, Ports: map[string]uint32{"http": 8888}, Weight: 3}),
		workloadEntry("shop", "other", &networking.WorkloadEntry{Address: "10.1.0.3", Labels: map[string]string{"app": "other"}}),
		workloadEntry("elsewhere", "vm2", &networking.WorkloadEntry{Address: "10.1.0.4", Labels: map[string]string{"app": "catalog"}}),
	}
	insts := []registry.Instance{
		// Selected by labels; serves port 90 (its service port).
		{ID: "c1", Service: "catalog-v2", Namespace: "shop", Address: "10.1.0.5", Port: 5000, ServicePort: 90, Labels: map[string]string{"app": "catalog"}},
		// Selected by labels; listens on port 80's target port.
		{ID: "c2", Service: "catalog-v2", Namespace: "shop", Address: "10.1.0.6", Port: 8080, Labels: map[string]string{"app": "catalog"}},
		// Wrong namespace.
		{ID: "c3", Service: "catalog-v2", Namespace: "default", Address: "10.1.0.7", Port: 5000, ServicePort: 90, Labels: map[string]string{"app": "catalog"}},
		// Registered under the ServiceEntry host itself: the host has
		// inline endpoints, which an operator closed to registrations.
		{ID: "c4", Service: "catalog", Namespace: "shop", Address: "10.1.0.8", Port: 7000, ServicePort: 90},
	}
	out := build(t, translate.Input{Config: &model.Config{ServiceEntries: []*model.ServiceEntry{se}, WorkloadEntries: wles}, Instances: insts})

	tests := []struct {
		cluster string
		want    []string
	}{
		{"outbound|80||catalog.shop.svc.cluster.local", []string{"//|10.1.0.1:8080|1", "//|10.1.0.2:8888|3", "//|10.1.0.6:8080|1"}},
		{"outbound|90||catalog.shop.svc.cluster.local", []string{"//|10.1.0.1:9999|1", "//|10.1.0.2:90|3", "//|10.1.0.5:5000|1"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, endpointAddrs(findCLA(t, out, tt.cluster))); diff != "" {
			t.Errorf("%s endpoints (-want +got):\n%s", tt.cluster, diff)
		}
	}
	// The instances' own host is not a separate service: "catalog-v2" is.
	var hosts []string
	for _, s := range out.Services {
		hosts = append(hosts, s.Host)
	}
	want := []string{"catalog-v2.default.svc.cluster.local", "catalog-v2.shop.svc.cluster.local", "catalog.shop.svc.cluster.local"}
	if diff := cmp.Diff(want, hosts); diff != "" {
		t.Errorf("service hosts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]translate.Port{
		{Number: 80, TargetPort: 8080, Name: "http", Protocol: "HTTP"},
		{Number: 90, Name: "grpc", Protocol: "GRPC"},
	}, out.Services[2].Ports); diff != "" {
		t.Errorf("catalog ports (-want +got):\n%s", diff)
	}
}

func TestDNSServiceEntryResolvesItsHost(t *testing.T) {
	out := build(t, translate.Input{Config: &model.Config{ServiceEntries: []*model.ServiceEntry{serviceEntry("default", "ext", &networking.ServiceEntry{
		Hosts:      []string{"api.example.com"},
		Ports:      []*networking.ServicePort{{Number: 443, Name: "https", Protocol: "HTTPS"}},
		Resolution: networking.ServiceEntry_DNS,
	})}}})
	if diff := cmp.Diff([]string{"//|api.example.com:443|1"}, endpointAddrs(findCLA(t, out, "outbound|443||api.example.com"))); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
}

func TestLocalities(t *testing.T) {
	se := serviceEntry("default", "reviews", &networking.ServiceEntry{
		Hosts:            []string{reviews},
		Ports:            []*networking.ServicePort{{Number: 9080, Name: "grpc", Protocol: "GRPC"}},
		WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "reviews"}},
		Endpoints: []*networking.WorkloadEntry{
			{Address: "10.0.0.10", Locality: "us-east/zone-a/rack-1", Weight: 4},
			{Address: "10.0.0.11", Locality: "us-east/zone-a/rack-1"},
			{Address: "10.0.0.12", Locality: "us-west"},
			{Address: "10.0.0.13"},
			{Address: "10.0.0.10"}, // a duplicate address: gRPC would NACK it
		},
	})
	insts := []registry.Instance{{
		ID: "r9", Service: "reviews", Namespace: "default", Address: "10.0.0.14", Port: 9080, Labels: map[string]string{"app": "reviews"},
		Locality: registry.Locality{Region: "us-west", Zone: "zone-b"}, Weight: 7,
	}}
	out := build(t, translate.Input{Config: &model.Config{ServiceEntries: []*model.ServiceEntry{se}}, Instances: insts})
	cla := findCLA(t, out, "outbound|9080||"+reviews)
	type loc struct {
		Locality string
		Weight   uint32
		Addrs    []string
	}
	var got []loc
	for _, lle := range cla.GetEndpoints() {
		if lle.GetLoadBalancingWeight() == nil {
			t.Errorf("locality %v has no load_balancing_weight", lle.GetLocality())
		}
		if lle.GetLocality() == nil {
			t.Errorf("a locality has no Locality")
		}
		l := loc{Locality: lle.GetLocality().GetRegion() + "/" + lle.GetLocality().GetZone() + "/" + lle.GetLocality().GetSubZone(), Weight: lle.GetLoadBalancingWeight().GetValue()}
		for _, e := range lle.GetLbEndpoints() {
			if e.GetHealthStatus() != corev3.HealthStatus_HEALTHY {
				t.Errorf("%v: health %v, want HEALTHY", e, e.GetHealthStatus())
			}
			l.Addrs = append(l.Addrs, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
		got = append(got, l)
	}
	want := []loc{
		{"//", 1, []string{"10.0.0.13"}},
		{"us-east/zone-a/rack-1", 5, []string{"10.0.0.10", "10.0.0.11"}},
		{"us-west//", 1, []string{"10.0.0.12"}},
		{"us-west/zone-b/", 7, []string{"10.0.0.14"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("localities (-want +got):\n%s", diff)
	}
}

func TestSubsetEndpoints(t *testing.T) {
	out := build(t, translate.Input{
		Config:    &model.Config{DestinationRules: []*model.DestinationRule{subsetsDR()}},
		Instances: reviewsInstances(),
	})
	tests := []struct {
		subset string
		want   []string
	}{
		{"", []string{"//|10.0.0.1:9080|1", "//|10.0.0.2:9080|1", "//|10.0.0.3:9080|1"}},
		{"v1", []string{"//|10.0.0.1:9080|1"}},
		{"v2", []string{"//|10.0.0.2:9080|1"}},
		{"v3", []string{"//|10.0.0.3:9080|1"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, endpointAddrs(findCLA(t, out, wire.ClusterName(9080, tt.subset, reviews)))); diff != "" {
			t.Errorf("subset %q endpoints (-want +got):\n%s", tt.subset, diff)
		}
	}

	// A subset that selects nothing still gets an (empty) assignment.
	dr := subsetsDR()
	dr.Spec.Subsets = append(dr.Spec.Subsets, &networking.Subset{Name: "v9", Labels: map[string]string{"version": "v9"}})
	out = build(t, translate.Input{Config: &model.Config{DestinationRules: []*model.DestinationRule{dr}}, Instances: reviewsInstances()})
	if cla := findCLA(t, out, wire.ClusterName(9080, "v9", reviews)); len(cla.GetEndpoints()) != 0 {
		t.Errorf("v9: %v, want no endpoints", cla.GetEndpoints())
	}
}

func TestOmitEndpoints(t *testing.T) {
	out := build(t, translate.Input{
		Config:        &model.Config{DestinationRules: []*model.DestinationRule{subsetsDR()}},
		Instances:     reviewsInstances(),
		OmitEndpoints: true,
	})
	if len(out.Endpoints) != 0 {
		t.Errorf("%d ClusterLoadAssignments, want none", len(out.Endpoints))
	}
	if len(out.Clusters) != 4 || len(out.Listeners) != 1 || len(out.Routes) != 1 {
		t.Errorf("got %d clusters, %d listeners, %d routes; want 4, 1, 1", len(out.Clusters), len(out.Listeners), len(out.Routes))
	}
}

func TestServerListener(t *testing.T) {
	out := build(t, translate.Input{ServerAddresses: []string{"127.0.0.1:50051", "[::1]:8080", "127.0.0.1:50051"}})
	if diff := cmp.Diff([]string{"xds.istio.io/grpc/lds/inbound/127.0.0.1:50051", "xds.istio.io/grpc/lds/inbound/[::1]:8080"}, names(out.Listeners)); diff != "" {
		t.Fatalf("listeners (-want +got):\n%s", diff)
	}
	tests := []struct {
		name string
		ip   string
		port uint32
	}{
		{"xds.istio.io/grpc/lds/inbound/127.0.0.1:50051", "127.0.0.1", 50051},
		{"xds.istio.io/grpc/lds/inbound/[::1]:8080", "::1", 8080},
	}
	for _, tt := range tests {
		l := findListener(t, out, tt.name)
		sa := l.GetAddress().GetSocketAddress()
		if sa.GetAddress() != tt.ip || sa.GetPortValue() != tt.port {
			t.Errorf("%s: address %v, want %s port %d", tt.name, sa, tt.ip, tt.port)
		}
		if l.GetApiListener() != nil {
			t.Errorf("%s: has an api_listener", tt.name)
		}
		if len(l.GetFilterChains()) != 1 || len(l.GetFilterChains()[0].GetFilters()) != 1 {
			t.Fatalf("%s: filter chains %v, want one with one filter", tt.name, l.GetFilterChains())
		}
		f := l.GetFilterChains()[0].GetFilters()[0]
		if f.GetName() != "envoy.filters.network.http_connection_manager" {
			t.Errorf("%s: network filter %q", tt.name, f.GetName())
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		checkRouterLast(t, hcm)
		vhs := hcm.GetRouteConfig().GetVirtualHosts()
		if len(vhs) != 1 || !cmp.Equal(vhs[0].GetDomains(), []string{"*"}) || len(vhs[0].GetRoutes()) != 1 {
			t.Fatalf("%s: virtual hosts %v, want one for * with one route", tt.name, vhs)
		}
		r := vhs[0].GetRoutes()[0]
		if r.GetMatch().GetPrefix() != "/" || r.GetNonForwardingAction() == nil {
			t.Errorf("%s: route %v, want prefix / with NonForwardingAction", tt.name, r)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  *model.Config
		want string
	}{{
		name: "PASSTHROUGH",
		cfg: &model.Config{DestinationRules: []*model.DestinationRule{destinationRule("default", "reviews", &networking.DestinationRule{
			Host: reviews, TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_PASSTHROUGH)},
		})}},
		want: "reviews.yaml: DestinationRule default/reviews: spec.trafficPolicy.loadBalancer",
	}, {
		name: "redirect",
		cfg: &model.Config{VirtualServices: []*model.VirtualService{virtualService("default", "reviews", &networking.VirtualService{
			Hosts: []string{reviews},
			Http:  []*networking.HTTPRoute{{Redirect: &networking.HTTPRedirect{Uri: "/x"}}},
		})}},
		want: "reviews.yaml: VirtualService default/reviews: spec.http[0]",
	}, {
		name: "bad regex",
		cfg: &model.Config{VirtualServices: []*model.VirtualService{virtualService("default", "reviews", &networking.VirtualService{
			Hosts: []string{reviews},
			Http: []*networking.HTTPRoute{{
				Match: []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: "(a"}}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: reviews}}},
			}},
		})}},
		want: "spec.http[0].match[0].uri.regex",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := translate.Build(translate.Input{Config: tt.cfg, Instances: reviewsInstances()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	cfg := &model.Config{
		DestinationRules: []*model.DestinationRule{subsetsDR()},
		VirtualServices: []*model.VirtualService{virtualService("default", "reviews", &networking.VirtualService{
			Hosts: []string{reviews},
			Http: []*networking.HTTPRoute{{
				Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{
					"a": {MatchType: &networking.StringMatch_Exact{Exact: "1"}},
					"b": {MatchType: &networking.StringMatch_Exact{Exact: "2"}},
					"c": {MatchType: &networking.StringMatch_Exact{Exact: "3"}},
				}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: reviews}}},
			}},
		})},
	}
	// Security policies: maps of Envoy policies and SAN lists.
	cfg.PeerAuthentications = []*model.PeerAuthentication{
		peerAuth("istio-system", "default", &security.PeerAuthentication{Mtls: &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_STRICT}}),
	}
	cfg.AuthorizationPolicies = []*model.AuthorizationPolicy{
		authzPolicy("default", "deny", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{
			{When: []*security.Condition{{Key: "request.headers[x-a]", Values: []string{"1", "2"}}}}, {}, {},
		}}),
		authzPolicy("default", "allow", &security.AuthorizationPolicy{Rules: []*security.Rule{
			{From: []*security.Rule_From{{Source: &security.Source{Principals: []string{"a", "b"}}}}}, {}, {}, {},
		}}),
	}
	insts := append(reviewsInstances(),
		instance("x1", "ratings", "10.0.1.1", 9090, 0, nil),
		instance("x2", "ratings", "10.0.1.2", 9090, 0, nil),
		instance("x3", "details", "10.0.2.1", 9090, 0, nil),
	)
	for i := range insts {
		insts[i].ServiceAccount = insts[i].ID
	}
	first := build(t, translate.Input{Config: cfg, Instances: insts, ServerAddresses: []string{"10.0.0.1:9080", "10.0.0.2:9080"}})
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 20; i++ {
		shuffled := append([]registry.Instance(nil), insts...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		out := build(t, translate.Input{Config: cfg, Instances: shuffled, ServerAddresses: []string{"10.0.0.2:9080", "10.0.0.1:9080"}})
		if diff := cmp.Diff(first, out, protocmp.Transform()); diff != "" {
			t.Fatalf("run %d differs (-first +now):\n%s", i, diff)
		}
		// Byte for byte, too: the snapshot cache compares marshalled
		// resources.
		for j := range out.Listeners {
			a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(first.Listeners[j])
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(out.Listeners[j])
			if string(a) != string(b) {
				t.Fatalf("run %d: listener %s bytes differ", i, out.Listeners[j].GetName())
			}
		}
		for j := range out.Clusters {
			a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(first.Clusters[j])
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(out.Clusters[j])
			if string(a) != string(b) {
				t.Fatalf("run %d: cluster %s bytes differ", i, out.Clusters[j].GetName())
			}
		}
	}
}

// TestWeightsNeverOverflow: weights whose sum passes 2^32-1 (which wrapped
// to 0, and was NACKed) are scaled down in proportion, each at least 1.
func TestWeightsNeverOverflow(t *testing.T) {
	se := serviceEntry("default", "reviews", &networking.ServiceEntry{
		Hosts: []string{reviews},
		Ports: []*networking.ServicePort{{Number: 9080, Name: "grpc", Protocol: "GRPC"}},
		Endpoints: []*networking.WorkloadEntry{
			{Address: "10.0.0.1", Weight: math.MaxUint32},
			{Address: "10.0.0.2", Weight: math.MaxUint32 / 2},
			{Address: "10.0.0.3", Weight: 1},
		},
	})
	cla := findCLA(t, build(t, translate.Input{Config: &model.Config{ServiceEntries: []*model.ServiceEntry{se}}}), "outbound|9080||"+reviews)
	var sum uint64
	var ws []uint32
	for _, lle := range cla.GetEndpoints() {
		var local uint64
		for _, e := range lle.GetLbEndpoints() {
			w := e.GetLoadBalancingWeight().GetValue()
			ws = append(ws, w)
			local += uint64(w)
		}
		if uint64(lle.GetLoadBalancingWeight().GetValue()) != local {
			t.Errorf("locality weight %d, want the sum of its endpoints, %d", lle.GetLoadBalancingWeight().GetValue(), local)
		}
		sum += local
	}
	if sum == 0 || sum > math.MaxUint32 {
		t.Fatalf("sum of weights %d, want 1..2^32-1", sum)
	}
	if len(ws) != 3 || ws[2] != 1 || ws[0] < 2*ws[1]-2 || ws[0] > 2*ws[1]+2 {
		t.Errorf("weights %v, want about 2:1 and the smallest kept at 1", ws)
	}
}
