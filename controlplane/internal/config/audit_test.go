package config_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/controlplane/internal/config"
	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/internal/wire"
)

// The audit: every field that the config package accepts, every value of
// an accepted enum and every retryOn condition either changes the xDS
// resources that translate.Build makes, as shown below, or is refused.
// TestAuditIsComplete fails when a field is accepted and neither.

const (
	reviewsHost = "reviews.default.svc.cluster.local"
	reviewsRC   = reviewsHost + ":9080"
	serverAddr  = "10.0.0.1:9080"
)

func reviewsCluster(subset string) string { return wire.ClusterName(9080, subset, reviewsHost) }

// auditInstances are three registered reviews servers, v1 to v3.
func auditInstances() []registry.Instance {
	var out []registry.Instance
	for i, v := range []string{"v1", "v2", "v3"} {
		out = append(out, registry.Instance{
			ID: "r" + v, Service: "reviews", Namespace: "default", ServiceAccount: "reviews",
			Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 9080, ServicePort: 9080, Protocol: "HTTP",
			Labels: map[string]string{"app": "reviews", "version": v},
		})
	}
	return out
}

// auditInput is the Input of every audit case: the instances, and the
// server at serverAddr as the reviews v1 workload.
func auditInput() translate.Input {
	return translate.Input{
		Instances:       auditInstances(),
		ServerAddresses: []string{serverAddr},
		Workloads: map[string]translate.Workload{serverAddr: {
			Namespace: "default", ServiceAccount: "reviews", Labels: map[string]string{"app": "reviews", "version": "v1"},
		}},
	}
}

// built is a parsed config and what Build made of it.
type built struct {
	t   *testing.T
	cfg *model.Config
	out *translate.Output
}

func build(t *testing.T, yaml string, in translate.Input) *built {
	t.Helper()
	cfg, err := config.Parse(map[string][]byte{"x.yaml": []byte(yaml)})
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	in.Config = cfg
	out, err := translate.Build(in)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return &built{t, cfg, out}
}

func (b *built) cluster(name string) *clusterv3.Cluster {
	b.t.Helper()
	for _, c := range b.out.Clusters {
		if c.GetName() == name {
			return c
		}
	}
	b.t.Fatalf("no Cluster %q in %v", name, names(b.out.Clusters))
	return nil
}

func (b *built) routes(name string) []*routev3.Route {
	b.t.Helper()
	for _, rc := range b.out.Routes {
		if rc.GetName() == name {
			return rc.GetVirtualHosts()[0].GetRoutes()
		}
	}
	b.t.Fatalf("no RouteConfiguration %q", name)
	return nil
}

// action is the action of the first route of a RouteConfiguration.
func (b *built) action(name string) *routev3.RouteAction {
	b.t.Helper()
	return b.routes(name)[0].GetRoute()
}

// endpoints are the "ip:port locality weight" of a cluster's endpoints.
func (b *built) endpoints(name string) []string {
	b.t.Helper()
	for _, cla := range b.out.Endpoints {
		if cla.GetClusterName() != name {
			continue
		}
		var out []string
		for _, l := range cla.GetEndpoints() {
			loc := l.GetLocality()
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, fmt.Sprintf("%s:%d %s/%s/%s %d", sa.GetAddress(), sa.GetPortValue(),
					loc.GetRegion(), loc.GetZone(), loc.GetSubZone(), e.GetLoadBalancingWeight().GetValue()))
			}
		}
		slices.Sort(out)
		return out
	}
	b.t.Fatalf("no ClusterLoadAssignment %q", name)
	return nil
}

// sans are the SANs a cluster's UpstreamTlsContext checks, and whether it
// has one.
func (b *built) sans(name string) ([]string, bool) {
	b.t.Helper()
	ts := b.cluster(name).GetTransportSocket()
	if ts == nil {
		return nil, false
	}
	utc := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(utc); err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, m := range utc.GetCommonTlsContext().GetValidationContext().GetMatchSubjectAltNames() {
		out = append(out, m.GetExact())
	}
	return out, true
}

// serverChain is the filter chain of the server Listener at serverAddr.
func (b *built) serverChain() *listenerv3.FilterChain {
	b.t.Helper()
	for _, l := range b.out.Listeners {
		if l.GetName() == wire.ServerListenerName(serverAddr) {
			return l.GetFilterChains()[0]
		}
	}
	b.t.Fatalf("no server Listener for %s", serverAddr)
	return nil
}

// serverTLS reports whether the server Listener at serverAddr requires TLS.
func (b *built) serverTLS() bool {
	b.t.Helper()
	return b.serverChain().GetTransportSocket() != nil
}

// rbac is the text of the server's RBAC filters, one line per filter,
// with whitespace normalised: "<filter name> <RBAC in text form>".
func (b *built) rbac() string {
	b.t.Helper()
	var out []string
	hcm := &hcmv3.HttpConnectionManager{}
	if err := b.serverChain().GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		b.t.Fatal(err)
	}
	for _, f := range hcm.GetHttpFilters() {
		r := &rbacfilterv3.RBAC{}
		if !f.GetTypedConfig().MessageIs(r) {
			continue
		}
		if err := f.GetTypedConfig().UnmarshalTo(r); err != nil {
			b.t.Fatal(err)
		}
		out = append(out, f.GetName()+" "+strings.Join(strings.Fields(prototext.Format(r)), " "))
	}
	return strings.Join(out, "\n")
}

func names[M interface{ GetName() string }](list []M) []string {
	var out []string
	for _, m := range list {
		out = append(out, m.GetName())
	}
	return out
}

// Resources in flow style, for the cases below.
func vsYAML(spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec: " + spec + "\n---\n"
}

func drYAML(name, spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + name + "}\nspec: " + spec + "\n---\n"
}

func seYAML(name, spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " + name + "}\nspec: " + spec + "\n---\n"
}

func resource(kind, group, name, ns, spec string) string {
	return fmt.Sprintf("apiVersion: %s/v1\nkind: %s\nmetadata: {name: %s, namespace: %s}\nspec: %s\n---\n", group, kind, name, ns, spec)
}

// subsetsV1V2 is a DestinationRule for reviews with subsets v1 and v2.
var subsetsV1V2 = drYAML("reviews", "{host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}")

// route is a VirtualService for reviews with one http route.
func route(http string) string {
	return vsYAML("{hosts: [reviews], http: [" + http + "]}")
}

// ratingsSE is a ServiceEntry with two HTTP ports and a static endpoint.
var ratingsSE = seYAML("ratings", "{hosts: [ratings], ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9090, name: admin, protocol: HTTP}], resolution: STATIC, endpoints: [{address: 10.3.0.1}]}")

// effect is one accepted field, enum value or retryOn condition: a config
// that uses it and the change it must make. covers names what the case
// shows: "Kind pattern" for a field, "Kind pattern=VALUE" for a value.
type effect struct {
	covers []string
	yaml   string
	check  func(t *testing.T, b *built)
}

func (e effect) name() string { return strings.Join(e.covers, ", ") }

// equal reports a difference between want and got as a test error.
func equal[T any](t *testing.T, what string, want, got T) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
}

func routeEffects() []effect {
	// HeaderMatcher's own fields, not string_match, which gRPC C-core
	// before gRFC A63 NACKs (docs/xds-compatibility.md).
	exact := func(v string) *routev3.HeaderMatcher_ExactMatch {
		return &routev3.HeaderMatcher_ExactMatch{ExactMatch: v}
	}
	prefix := func(v string) *routev3.HeaderMatcher_PrefixMatch {
		return &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: v}
	}
	regex := func(v string) *routev3.HeaderMatcher_SafeRegexMatch {
		return &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: v}}
	}
	return []effect{{
		covers: []string{"VirtualService hosts", "VirtualService http.route.destination.host", "VirtualService http.route.destination.subset",
			"DestinationRule host", "DestinationRule subsets.name", "DestinationRule subsets.labels"},
		yaml: route("{route: [{destination: {host: reviews, subset: v1}}]}") + subsetsV1V2,
		check: func(t *testing.T, b *built) {
			equal(t, "cluster", reviewsCluster("v1"), b.action(reviewsRC).GetCluster())
			equal(t, "subset v1 endpoints", []string{"10.0.0.1:9080 // 1"}, b.endpoints(reviewsCluster("v1")))
		},
	}, {
		covers: []string{"VirtualService gateways", "VirtualService http.match.gateways"},
		yaml:   vsYAML("{hosts: [reviews], gateways: [mesh], http: [{match: [{gateways: [mesh], uri: {prefix: /a}}], route: [{destination: {host: reviews, subset: v1}}]}]}") + subsetsV1V2,
		check: func(t *testing.T, b *built) {
			// mesh is the traffic meshlet routes: the route applies.
			equal(t, "cluster", reviewsCluster("v1"), b.action(reviewsRC).GetCluster())
		},
	}, {
		covers: []string{"VirtualService http.name", "VirtualService http.match.name", "VirtualService http.match.uri.exact"},
		yaml:   route("{name: first, match: [{name: byuri, uri: {exact: /a}}], route: [{destination: {host: reviews}}]}"),
		check: func(t *testing.T, b *built) {
			r := b.routes(reviewsRC)[0]
			equal(t, "route name", "first.byuri", r.GetName())
			equal(t, "path", "/a", r.GetMatch().GetPath())
		},
	}, {
		covers: []string{"VirtualService http.match.uri.prefix", "VirtualService http.match.uri.regex"},
		yaml:   route("{match: [{uri: {prefix: /api/}}, {uri: {regex: '/v[0-9]+/.*'}}], route: [{destination: {host: reviews}}]}"),
		check: func(t *testing.T, b *built) {
			r := b.routes(reviewsRC)
			equal(t, "prefix", "/api/", r[0].GetMatch().GetPrefix())
			equal(t, "regex", "/v[0-9]+/.*", r[1].GetMatch().GetSafeRegex().GetRegex())
		},
	}, {
		covers: []string{"VirtualService http.match.ignoreUriCase"},
		yaml:   route("{match: [{uri: {prefix: /API/}, ignoreUriCase: true}], route: [{destination: {host: reviews}}]}"),
		check: func(t *testing.T, b *built) {
			if cs := b.routes(reviewsRC)[0].GetMatch().GetCaseSensitive(); cs == nil || cs.GetValue() {
				t.Errorf("case_sensitive = %v, want false", cs)
			}
		},
	}, {
		covers: []string{"VirtualService http.match.headers.exact", "VirtualService http.match.headers.prefix", "VirtualService http.match.headers.regex"},
		yaml:   route("{match: [{headers: {x-a: {exact: jason}, x-b: {prefix: ja}, x-c: {regex: 'j.*'}}}], route: [{destination: {host: reviews}}]}"),
		check: func(t *testing.T, b *built) {
			equal(t, "headers", []*routev3.HeaderMatcher{
				{Name: "x-a", HeaderMatchSpecifier: exact("jason")},
				{Name: "x-b", HeaderMatchSpecifier: prefix("ja")},
				{Name: "x-c", HeaderMatchSpecifier: regex("j.*")},
			}, b.routes(reviewsRC)[0].GetMatch().GetHeaders())
		},
	}, {
		covers: []string{"VirtualService http.match.withoutHeaders.exact", "VirtualService http.match.withoutHeaders.prefix", "VirtualService http.match.withoutHeaders.regex"},
		yaml:   route("{match: [{withoutHeaders: {x-a: {exact: jason}, x-b: {prefix: ja}, x-c: {regex: 'j.*'}}}], route: [{destination: {host: reviews}}]}"),
		check: func(t *testing.T, b *built) {
			equal(t, "headers", []*routev3.HeaderMatcher{
				{Name: "x-a", HeaderMatchSpecifier: exact("jason"), InvertMatch: true},
				{Name: "x-b", HeaderMatchSpecifier: prefix("ja"), InvertMatch: true},
				{Name: "x-c", HeaderMatchSpecifier: regex("j.*"), InvertMatch: true},
			}, b.routes(reviewsRC)[0].GetMatch().GetHeaders())
		},
	}, {
		covers: []string{"VirtualService http.match.method.exact", "VirtualService http.match.method.prefix", "VirtualService http.match.method.regex"},
		yaml:   route("{match: [{method: {exact: GET}}, {method: {prefix: PO}}, {method: {regex: 'P(UT|ATCH)'}}], route: [{destination: {host: reviews}}]}"),
		check: func(t *testing.T, b *built) {
			var got []*routev3.HeaderMatcher
			for _, r := range b.routes(reviewsRC) {
				got = append(got, r.GetMatch().GetHeaders()...)
			}
			equal(t, "headers", []*routev3.HeaderMatcher{
				{Name: ":method", HeaderMatchSpecifier: exact("GET")},
				{Name: ":method", HeaderMatchSpecifier: prefix("PO")},
				{Name: ":method", HeaderMatchSpecifier: regex("P(UT|ATCH)")},
			}, got)
		},
	}, {
		covers: []string{"VirtualService http.match.port"},
		yaml:   ratingsSE + vsYAML("{hosts: [ratings], http: [{match: [{port: 9090}], route: [{destination: {host: ratings, port: {number: 9090}}}], timeout: 1s}]}"),
		check: func(t *testing.T, b *built) {
			// The route is on port 9090 only; 9080 has the default route.
			ratings := "ratings.default.svc.cluster.local"
			equal(t, "9090 timeout", 1.0, b.action(ratings+":9090").GetTimeout().AsDuration().Seconds())
			equal(t, "9080 route", "default", b.routes(ratings + ":9080")[0].GetName())
		},
	}, {
		covers: []string{"VirtualService http.route.destination.port.number"},
		yaml:   ratingsSE + route("{route: [{destination: {host: ratings, port: {number: 9090}}}]}"),
		check: func(t *testing.T, b *built) {
			equal(t, "cluster", wire.ClusterName(9090, "", "ratings.default.svc.cluster.local"), b.action(reviewsRC).GetCluster())
		},
	}, {
		covers: []string{"VirtualService http.route.weight"},
		yaml:   route("{route: [{destination: {host: reviews, subset: v1}, weight: 80}, {destination: {host: reviews, subset: v2}, weight: 20}]}") + subsetsV1V2,
		check: func(t *testing.T, b *built) {
			var got []string
			for _, c := range b.action(reviewsRC).GetWeightedClusters().GetClusters() {
				got = append(got, fmt.Sprintf("%s %d", c.GetName(), c.GetWeight().GetValue()))
			}
			equal(t, "weighted clusters", []string{reviewsCluster("v1") + " 80", reviewsCluster("v2") + " 20"}, got)
		},
	}, {
		covers: []string{"VirtualService http.timeout"},
		yaml:   route("{route: [{destination: {host: reviews}}], timeout: 1500ms}"),
		check: func(t *testing.T, b *built) {
			a := b.action(reviewsRC)
			// HTTP reads timeout, gRPC-Go max_stream_duration.
			equal(t, "timeout", 1500*time.Millisecond, a.GetTimeout().AsDuration())
			equal(t, "max_stream_duration", 1500*time.Millisecond, a.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration())
		},
	}, {
		covers: []string{"VirtualService http.retries.attempts", "VirtualService http.retries.perTryTimeout", "VirtualService http.retries.backoff", "VirtualService http.retries.retryOn"},
		yaml:   route("{route: [{destination: {host: reviews}}], retries: {attempts: 4, perTryTimeout: 2s, backoff: 50ms, retryOn: unavailable}}"),
		check: func(t *testing.T, b *built) {
			rp := b.action(reviewsRC).GetRetryPolicy()
			equal(t, "num_retries", uint32(4), rp.GetNumRetries().GetValue())
			equal(t, "per_try_timeout", 2*time.Second, rp.GetPerTryTimeout().AsDuration())
			equal(t, "back-off", []time.Duration{50 * time.Millisecond, 500 * time.Millisecond},
				[]time.Duration{rp.GetRetryBackOff().GetBaseInterval().AsDuration(), rp.GetRetryBackOff().GetMaxInterval().AsDuration()})
			equal(t, "retry_on", "unavailable", rp.GetRetryOn())
		},
	}, {
		covers: []string{"retryOn=503"},
		yaml:   route("{route: [{destination: {host: reviews}}], retries: {attempts: 2, retryOn: '503,gateway-error,504'}}"),
		check: func(t *testing.T, b *built) {
			rp := b.action(reviewsRC).GetRetryPolicy()
			equal(t, "retry_on", "retriable-status-codes,gateway-error", rp.GetRetryOn())
			equal(t, "retriable_status_codes", []uint32{503, 504}, rp.GetRetriableStatusCodes())
		},
	}, {
		covers: []string{"VirtualService http.fault.delay.fixedDelay", "VirtualService http.fault.delay.percentage.value", "VirtualService http.fault.abort.httpStatus", "VirtualService http.fault.abort.percentage.value"},
		yaml:   route("{route: [{destination: {host: reviews}}], fault: {delay: {fixedDelay: 5s, percentage: {value: 0.1}}, abort: {httpStatus: 555, percentage: {value: 20}}}}"),
		check: func(t *testing.T, b *built) {
			f := b.fault(reviewsRC)
			equal(t, "delay", "fixed_delay:{seconds:5} percentage:{numerator:1000 denominator:MILLION}", text(f.GetDelay()))
			equal(t, "abort", "http_status:555 percentage:{numerator:200000 denominator:MILLION}", text(f.GetAbort()))
		},
	}, {
		covers: []string{"VirtualService http.fault.delay.percent", "VirtualService http.fault.abort.grpcStatus"},
		yaml:   route("{route: [{destination: {host: reviews}}], fault: {delay: {fixedDelay: 7s, percent: 100}, abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}}"),
		check: func(t *testing.T, b *built) {
			f := b.fault(reviewsRC)
			equal(t, "delay", "fixed_delay:{seconds:7} percentage:{numerator:100}", text(f.GetDelay()))
			equal(t, "abort", "grpc_status:14 percentage:{numerator:1000000 denominator:MILLION}", text(f.GetAbort()))
		},
	}}
}

// retryOnEffects is one case per retryOn condition: each is passed on in
// retry_on, where gRPC-Go or meshlet's HTTP client reads it.
func retryOnEffects() []effect {
	var out []effect
	for _, c := range config.RetryConditions {
		out = append(out, effect{
			covers: []string{"retryOn=" + c},
			yaml:   route("{route: [{destination: {host: reviews}}], retries: {attempts: 2, retryOn: " + c + "}}"),
			check: func(t *testing.T, b *built) {
				equal(t, "retry_on", c, b.action(reviewsRC).GetRetryPolicy().GetRetryOn())
			},
		})
	}
	return out
}

// policyEffect is a traffic policy case. It runs twice: as the rule's
// trafficPolicy, checked on the cluster without a subset, and as subset
// v1's, checked on that subset's cluster. covers are patterns under
// trafficPolicy.
type policyEffect struct {
	covers []string
	policy string // the trafficPolicy, in flow style
	// registered puts the registered reviews servers behind the host;
	// otherwise it is a ServiceEntry with static endpoints, which get no
	// mTLS unless a rule asks for it.
	registered bool
	check      func(t *testing.T, b *built, c *clusterv3.Cluster)
}

func policyEffects() []policyEffect {
	lbPolicy := func(want clusterv3.Cluster_LbPolicy) func(*testing.T, *built, *clusterv3.Cluster) {
		return func(t *testing.T, _ *built, c *clusterv3.Cluster) {
			equal(t, "lb_policy", want, c.GetLbPolicy())
			if c.GetLoadBalancingPolicy() != nil {
				t.Errorf("load_balancing_policy = %v, want none", c.GetLoadBalancingPolicy())
			}
		}
	}
	// LEAST_REQUEST goes in load_balancing_policy, ahead of round robin,
	// under lb_policy ROUND_ROBIN: C-core and grpc-js-xds NACK lb_policy
	// LEAST_REQUEST.
	leastRequest := func(t *testing.T, _ *built, c *clusterv3.Cluster) {
		equal(t, "lb_policy", clusterv3.Cluster_ROUND_ROBIN, c.GetLbPolicy())
		policies := c.GetLoadBalancingPolicy().GetPolicies()
		if len(policies) == 0 || policies[0].GetTypedExtensionConfig().GetName() != "envoy.load_balancing_policies.least_request" {
			t.Errorf("load_balancing_policy = %v, want least_request first", c.GetLoadBalancingPolicy())
		}
	}
	outlier := func(want *clusterv3.OutlierDetection) func(*testing.T, *built, *clusterv3.Cluster) {
		return func(t *testing.T, _ *built, c *clusterv3.Cluster) {
			equal(t, "outlier_detection", want, c.GetOutlierDetection())
		}
	}
	return []policyEffect{
		// UNSPECIFIED and ROUND_ROBIN are what a rule without loadBalancer gets.
		{covers: []string{"loadBalancer.simple=UNSPECIFIED"}, policy: "{loadBalancer: {simple: UNSPECIFIED}}", check: lbPolicy(clusterv3.Cluster_ROUND_ROBIN)},
		{covers: []string{"loadBalancer.simple=ROUND_ROBIN"}, policy: "{loadBalancer: {simple: ROUND_ROBIN}}", check: lbPolicy(clusterv3.Cluster_ROUND_ROBIN)},
		{covers: []string{"loadBalancer.simple=LEAST_REQUEST"}, policy: "{loadBalancer: {simple: LEAST_REQUEST}}", check: leastRequest},
		{covers: []string{"loadBalancer.simple=LEAST_CONN"}, policy: "{loadBalancer: {simple: LEAST_CONN}}", check: leastRequest},
		{covers: []string{"loadBalancer.simple", "loadBalancer.simple=RANDOM"}, policy: "{loadBalancer: {simple: RANDOM}}", check: func(t *testing.T, _ *built, c *clusterv3.Cluster) {
			equal(t, "first load_balancing_policy", wire.RandomPolicy, c.GetLoadBalancingPolicy().GetPolicies()[0].GetTypedExtensionConfig().GetName())
		}},
		{covers: []string{"loadBalancer.consistentHash.httpHeaderName", "loadBalancer.consistentHash.ringHash.minimumRingSize"},
			policy: "{loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}}}",
			check: func(t *testing.T, b *built, c *clusterv3.Cluster) {
				equal(t, "lb_policy", clusterv3.Cluster_RING_HASH, c.GetLbPolicy())
				equal(t, "minimum_ring_size", uint64(2048), c.GetRingHashLbConfig().GetMinimumRingSize().GetValue())
				equal(t, "hash_policy", []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
					Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"},
				}}}, b.action(reviewsRC).GetHashPolicy())
			}},
		{covers: []string{"loadBalancer.consistentHash.minimumRingSize"},
			policy: "{loadBalancer: {consistentHash: {httpHeaderName: x-user, minimumRingSize: 4096}}}",
			check: func(t *testing.T, _ *built, c *clusterv3.Cluster) {
				equal(t, "minimum_ring_size", uint64(4096), c.GetRingHashLbConfig().GetMinimumRingSize().GetValue())
			}},
		{covers: []string{"outlierDetection.consecutive5xxErrors"}, policy: "{outlierDetection: {consecutive5xxErrors: 7}}",
			check: outlier(&clusterv3.OutlierDetection{Consecutive_5Xx: u32(7), EnforcingConsecutive_5Xx: u32(100), EnforcingSuccessRate: u32(0)})},
		{covers: []string{"outlierDetection.consecutiveGatewayErrors"}, policy: "{outlierDetection: {consecutiveGatewayErrors: 3}}",
			check: outlier(&clusterv3.OutlierDetection{ConsecutiveGatewayFailure: u32(3), EnforcingConsecutiveGatewayFailure: u32(100), EnforcingSuccessRate: u32(0)})},
		{covers: []string{"outlierDetection.interval", "outlierDetection.baseEjectionTime", "outlierDetection.maxEjectionPercent"},
			policy: "{outlierDetection: {interval: 5s, baseEjectionTime: 1m, maxEjectionPercent: 50}}",
			check:  outlier(&clusterv3.OutlierDetection{Interval: dur(5 * time.Second), BaseEjectionTime: dur(time.Minute), MaxEjectionPercent: u32(50), EnforcingSuccessRate: u32(0)})},
		{covers: []string{"outlierDetection.splitExternalLocalOriginErrors", "outlierDetection.consecutiveLocalOriginFailures"},
			policy: "{outlierDetection: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 4}}",
			check: outlier(&clusterv3.OutlierDetection{SplitExternalLocalOriginErrors: true, ConsecutiveLocalOriginFailure: u32(4),
				EnforcingConsecutiveLocalOriginFailure: u32(100), EnforcingLocalOriginSuccessRate: u32(0), EnforcingSuccessRate: u32(0)})},
		{covers: []string{"connectionPool.http.http2MaxRequests", "connectionPool.http.maxRetries"},
			policy: "{connectionPool: {http: {http2MaxRequests: 4, maxRetries: 2}}}",
			check: func(t *testing.T, _ *built, c *clusterv3.Cluster) {
				th := c.GetCircuitBreakers().GetThresholds()
				if len(th) != 1 {
					t.Fatalf("thresholds %v, want one", th)
				}
				equal(t, "max_requests", uint32(4), th[0].GetMaxRequests().GetValue())
				equal(t, "max_retries", uint32(2), th[0].GetMaxRetries().GetValue())
				equal(t, "max_connections", uint32(math.MaxUint32), th[0].GetMaxConnections().GetValue())
			}},
		{covers: []string{"connectionPool.tcp.maxConnections"},
			policy: "{connectionPool: {tcp: {maxConnections: 3}}}",
			check: func(t *testing.T, _ *built, c *clusterv3.Cluster) {
				th := c.GetCircuitBreakers().GetThresholds()
				if len(th) != 1 {
					t.Fatalf("thresholds %v, want one", th)
				}
				equal(t, "max_connections", uint32(3), th[0].GetMaxConnections().GetValue())
				equal(t, "max_requests", uint32(math.MaxUint32), th[0].GetMaxRequests().GetValue())
			}},
		{covers: []string{"connectionPool.http.idleTimeout", "connectionPool.http.maxRequestsPerConnection"},
			policy: "{connectionPool: {http: {idleTimeout: 3s, maxRequestsPerConnection: 5}}}",
			check: func(t *testing.T, _ *built, c *clusterv3.Cluster) {
				var o upstreamhttpv3.HttpProtocolOptions
				if err := c.GetTypedExtensionProtocolOptions()[wire.HTTPProtocolOptionsKey].UnmarshalTo(&o); err != nil {
					t.Fatalf("HttpProtocolOptions: %v", err)
				}
				equal(t, "idle_timeout", 3*time.Second, o.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration())
				equal(t, "max_requests_per_connection", uint32(5), o.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection().GetValue())
			}},
		{covers: []string{"retryBudget.percent", "retryBudget.minRetryConcurrency"},
			policy: "{retryBudget: {percent: 25, minRetryConcurrency: 2}}",
			check: func(t *testing.T, _ *built, c *clusterv3.Cluster) {
				rb := c.GetCircuitBreakers().GetThresholds()[0].GetRetryBudget()
				equal(t, "budget_percent", 25.0, rb.GetBudgetPercent().GetValue())
				equal(t, "min_retry_concurrency", uint32(2), rb.GetMinRetryConcurrency().GetValue())
			}},
		{covers: []string{"tls.mode", "tls.mode=ISTIO_MUTUAL"}, policy: "{tls: {mode: ISTIO_MUTUAL}}",
			check: func(t *testing.T, b *built, c *clusterv3.Cluster) {
				// Static endpoints get plaintext without it.
				sans, ok := b.sans(c.GetName())
				if !ok {
					t.Fatal("no TLS")
				}
				equal(t, "SANs", []string{"spiffe://cluster.local/ns/default/sa/default"}, sans)
			}},
		{covers: []string{"tls.mode=DISABLE"}, policy: "{tls: {mode: DISABLE}}", registered: true,
			check: func(t *testing.T, b *built, c *clusterv3.Cluster) {
				// Registered meshlet servers get mTLS without it.
				if _, ok := b.sans(c.GetName()); ok {
					t.Error("TLS, want plaintext")
				}
			}},
	}
}

func u32(v uint32) *wrapperspb.UInt32Value { return wrapperspb.UInt32(v) }

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// staticReviews is reviews as a ServiceEntry with static v1 and v2
// endpoints.
var staticReviews = seYAML("reviews", "{hosts: [reviews], ports: [{number: 9080, name: http, protocol: HTTP}], resolution: STATIC, endpoints: [{address: 10.0.1.1, labels: {version: v1}}, {address: 10.0.1.2, labels: {version: v2}}]}")

// policyRuns turns policy cases into effects, each at the top of the rule
// and in subset v1. A route sends half the traffic to each cluster, so
// that it carries the hash policies of both.
func policyRuns() []effect {
	split := route("{route: [{destination: {host: reviews}, weight: 50}, {destination: {host: reviews, subset: v1}, weight: 50}]}")
	var out []effect
	for _, p := range policyEffects() {
		for _, at := range []struct{ prefix, subset, spec string }{
			{"trafficPolicy.", "", "{host: reviews, trafficPolicy: " + p.policy + ", subsets: [{name: v1, labels: {version: v1}}]}"},
			{"subsets.trafficPolicy.", "v1", "{host: reviews, subsets: [{name: v1, labels: {version: v1}, trafficPolicy: " + p.policy + "}]}"},
		} {
			var covers []string
			for _, c := range p.covers {
				covers = append(covers, "DestinationRule "+at.prefix+c)
			}
			yaml := split + drYAML("reviews", at.spec)
			if !p.registered {
				yaml += staticReviews
			}
			out = append(out, effect{covers: covers, yaml: yaml, check: func(t *testing.T, b *built) {
				p.check(t, b, b.cluster(reviewsCluster(at.subset)))
			}})
		}
	}
	return out
}

func serviceEntryEffects() []effect {
	details := "details.default.svc.cluster.local"
	detailsCluster := wire.ClusterName(9080, "", details)
	const detailsSE = "{hosts: [details], ports: [{number: 9080, name: http, protocol: HTTP, targetPort: 8080}], resolution: STATIC, " +
		"endpoints: [{address: 10.1.0.1, ports: {http: 7070}, labels: {version: v1}, locality: eu-west/zone-a/rack-1, weight: 3, serviceAccount: details}, {address: 10.1.0.2}]}"
	const detailsDR = "{host: details, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}, subsets: [{name: v1, labels: {version: v1}}]}"
	return []effect{{
		covers: []string{"ServiceEntry hosts", "ServiceEntry ports.number", "ServiceEntry ports.name", "ServiceEntry ports.targetPort",
			"ServiceEntry ports.protocol", "ServiceEntry ports.protocol=HTTP", "ServiceEntry resolution", "ServiceEntry resolution=STATIC",
			"ServiceEntry endpoints.address", "ServiceEntry endpoints.ports", "ServiceEntry endpoints.labels",
			"ServiceEntry endpoints.locality", "ServiceEntry endpoints.weight", "ServiceEntry endpoints.serviceAccount"},
		yaml: seYAML("details", detailsSE) + drYAML("details", detailsDR),
		check: func(t *testing.T, b *built) {
			// ports.http overrides targetPort, which the other endpoint uses.
			equal(t, "endpoints", []string{"10.1.0.1:7070 eu-west/zone-a/rack-1 3", "10.1.0.2:8080 // 1"}, b.endpoints(detailsCluster))
			equal(t, "subset v1 endpoints", []string{"10.1.0.1:7070 eu-west/zone-a/rack-1 3"}, b.endpoints(wire.ClusterName(9080, "v1", details)))
			sans, _ := b.sans(detailsCluster)
			equal(t, "SANs", []string{"spiffe://cluster.local/ns/default/sa/default", "spiffe://cluster.local/ns/default/sa/details"}, sans)
		},
	}, {
		covers: []string{"ServiceEntry subjectAltNames"},
		yaml:   seYAML("details", "{hosts: [details], ports: [{number: 9080, name: http, protocol: HTTP}], resolution: STATIC, subjectAltNames: ['spiffe://example.org/legacy'], endpoints: [{address: 10.1.0.1, serviceAccount: details}]}") + drYAML("details", detailsDR),
		check: func(t *testing.T, b *built) {
			sans, _ := b.sans(detailsCluster)
			equal(t, "SANs", []string{"spiffe://example.org/legacy"}, sans)
		},
	}, {
		covers: []string{"ServiceEntry location", "ServiceEntry location=MESH_INTERNAL"},
		yaml:   seYAML("details", "{hosts: [details], ports: [{number: 9080, name: http, protocol: HTTP}], resolution: STATIC, location: MESH_INTERNAL, endpoints: [{address: 10.1.0.1}]}"),
		check: func(t *testing.T, b *built) {
			// MESH_INTERNAL is Istio's default, and the only location
			// meshlet serves: the same as leaving it out.
			without := build(t, seYAML("details", "{hosts: [details], ports: [{number: 9080, name: http, protocol: HTTP}], resolution: STATIC, endpoints: [{address: 10.1.0.1}]}"), auditInput())
			equal(t, "clusters", without.out.Clusters, b.out.Clusters)
			equal(t, "endpoints", without.out.Endpoints, b.out.Endpoints)
		},
	}, {
		covers: []string{"ServiceEntry ports.protocol=GRPC"},
		yaml: seYAML("greeter", "{hosts: [greeter], ports: [{number: 7070, name: grpc, protocol: GRPC}], resolution: STATIC, endpoints: [{address: 10.4.0.1}]}") +
			vsYAML("{hosts: [greeter], http: [{match: [{method: {exact: GET}}, {method: {exact: POST}, uri: {prefix: /pkg.Greeter/}}], route: [{destination: {host: greeter}}]}]}"),
		check: func(t *testing.T, b *built) {
			// Every gRPC call is a POST: the GET clause goes, and the POST
			// one loses its method match, which gRPC-Go cannot see.
			r := b.routes("greeter.default.svc.cluster.local:7070")
			if len(r) != 1 || r[0].GetMatch().GetPrefix() != "/pkg.Greeter/" || len(r[0].GetMatch().GetHeaders()) != 0 {
				t.Errorf("routes %v, want one for prefix /pkg.Greeter/ without headers", r)
			}
		},
	}, {
		covers: []string{"ServiceEntry ports.protocol=HTTP2"},
		yaml: seYAML("greeter", "{hosts: [greeter], ports: [{number: 7070, name: http2, protocol: HTTP2}], resolution: STATIC, endpoints: [{address: 10.4.0.1}]}") +
			vsYAML("{hosts: [greeter], http: [{match: [{method: {exact: GET}}], route: [{destination: {host: greeter}}]}]}"),
		check: func(t *testing.T, b *built) {
			// HTTP2 is routed as HTTP: the method is matched on :method.
			r := b.routes("greeter.default.svc.cluster.local:7070")
			if len(r) != 1 || len(r[0].GetMatch().GetHeaders()) != 1 || r[0].GetMatch().GetHeaders()[0].GetName() != ":method" {
				t.Errorf("routes %v, want one matching :method", r)
			}
		},
	}, {
		covers: []string{"ServiceEntry workloadSelector.labels", "WorkloadEntry address", "WorkloadEntry ports", "WorkloadEntry labels",
			"WorkloadEntry locality", "WorkloadEntry weight", "WorkloadEntry serviceAccount"},
		yaml: seYAML("db", "{hosts: [db], ports: [{number: 5000, name: http, protocol: HTTP}], resolution: STATIC, workloadSelector: {labels: {app: db}}}") +
			"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: db-1}\nspec: {address: 10.2.0.1, ports: {http: 7070}, labels: {app: db, version: v2}, locality: us-east/zone-b, weight: 2, serviceAccount: db}\n---\n" +
			drYAML("db", "{host: db, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}, subsets: [{name: v2, labels: {version: v2}}]}"),
		check: func(t *testing.T, b *built) {
			db := "db.default.svc.cluster.local"
			equal(t, "endpoints", []string{"10.2.0.1:7070 us-east/zone-b/ 2"}, b.endpoints(wire.ClusterName(5000, "", db)))
			equal(t, "subset v2 endpoints", []string{"10.2.0.1:7070 us-east/zone-b/ 2"}, b.endpoints(wire.ClusterName(5000, "v2", db)))
			sans, _ := b.sans(wire.ClusterName(5000, "", db))
			equal(t, "SANs", []string{"spiffe://cluster.local/ns/default/sa/db"}, sans)
		},
	}, {
		// A WorkloadGroup acts where servers register (the control
		// plane's admission), not in Build: what it binds is checked on
		// the model that admission reads.
		covers: []string{"WorkloadGroup metadata.labels", "WorkloadGroup template.labels", "WorkloadGroup template.serviceAccount"},
		yaml:   resource("WorkloadGroup", "networking.istio.io", "reviews-group", "default", "{metadata: {labels: {app: reviews, tier: backend}}, template: {serviceAccount: bookinfo-reviews, labels: {tier: web, version: v1}}}"),
		check: func(t *testing.T, b *built) {
			wg := b.cfg.WorkloadGroups[0]
			equal(t, "service", "reviews", wg.Service())
			equal(t, "service account", "bookinfo-reviews", wg.Spec.GetTemplate().GetServiceAccount())
			equal(t, "labels", map[string]string{"app": "reviews", "tier": "backend", "version": "v1"}, wg.Spec.GetTemplate().GetLabels())
		},
	}}
}

func securityEffects() []effect {
	pa := func(name, ns, spec string) string {
		return resource("PeerAuthentication", "security.istio.io", name, ns, spec)
	}
	meshStrict := pa("default", "istio-system", "{mtls: {mode: STRICT}}")
	serverTLS := func(want bool) func(*testing.T, *built) {
		return func(t *testing.T, b *built) {
			if got := b.serverTLS(); got != want {
				t.Errorf("server requires TLS: %v, want %v", got, want)
			}
		}
	}
	ap := func(spec string) string {
		return resource("AuthorizationPolicy", "security.istio.io", "reviews", "default", spec)
	}
	rbac := func(want ...string) func(*testing.T, *built) {
		return func(t *testing.T, b *built) {
			got := b.rbac()
			for _, w := range want {
				if !strings.Contains(got, w) {
					t.Errorf("RBAC does not contain %q:\n%s", w, got)
				}
			}
		}
	}
	const sa = "spiffe://cluster.local/ns/default/sa/"
	return []effect{
		// Without a PeerAuthentication a server is PERMISSIVE.
		{covers: []string{"PeerAuthentication selector.matchLabels", "PeerAuthentication mtls.mode", "PeerAuthentication mtls.mode=STRICT"},
			yaml: pa("reviews", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}"), check: serverTLS(true)},
		{covers: []string{"PeerAuthentication mtls.mode=PERMISSIVE"},
			yaml: meshStrict + pa("reviews", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: PERMISSIVE}}"), check: serverTLS(false)},
		{covers: []string{"PeerAuthentication mtls.mode=DISABLE"},
			yaml: meshStrict + pa("reviews", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}"),
			check: func(t *testing.T, b *built) {
				serverTLS(false)(t, b)
				// Callers use plaintext too.
				if _, ok := b.sans(reviewsCluster("")); ok {
					t.Error("the reviews cluster uses TLS, want plaintext")
				}
			}},
		{covers: []string{"PeerAuthentication mtls.mode=UNSET"},
			yaml: pa("default", "default", "{mtls: {mode: STRICT}}") + pa("reviews", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: UNSET}}"), check: serverTLS(true)},
		{covers: []string{"PeerAuthentication portLevelMtls.mode", "PeerAuthentication portLevelMtls.mode=PERMISSIVE"},
			yaml: pa("reviews", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {9080: {mode: PERMISSIVE}}}"), check: serverTLS(false)},
		{covers: []string{"PeerAuthentication portLevelMtls.mode=DISABLE"},
			yaml: pa("reviews", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {9080: {mode: DISABLE}}}"), check: serverTLS(false)},
		{covers: []string{"PeerAuthentication portLevelMtls.mode=STRICT"},
			yaml: pa("reviews", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {9080: {mode: STRICT}}}"), check: serverTLS(true)},
		{covers: []string{"PeerAuthentication portLevelMtls.mode=UNSET"},
			yaml: pa("reviews", "default", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {9080: {mode: UNSET}}}"), check: serverTLS(true)},

		{covers: []string{"AuthorizationPolicy action", "AuthorizationPolicy action=ALLOW", "AuthorizationPolicy selector.matchLabels", "AuthorizationPolicy rules.from.source.principals"},
			yaml:  ap("{selector: {matchLabels: {app: reviews}}, action: ALLOW, rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]}]}"),
			check: rbac("envoy.filters.http.rbac.allow", `exact: "`+sa+`productpage"`)},
		{covers: []string{"AuthorizationPolicy action=DENY", "AuthorizationPolicy rules.from.source.notPrincipals"},
			yaml:  ap("{action: DENY, rules: [{from: [{source: {notPrincipals: [cluster.local/ns/default/sa/productpage]}}]}]}"),
			check: rbac("envoy.filters.http.rbac.deny", `not_id: { authenticated: { principal_name: { exact: "`+sa+`productpage"`)},
		{covers: []string{"AuthorizationPolicy rules.from.source.namespaces", "AuthorizationPolicy rules.from.source.notNamespaces"},
			yaml:  ap("{rules: [{from: [{source: {namespaces: [shop], notNamespaces: [test]}}]}]}"),
			check: rbac(`prefix: "spiffe://cluster.local/ns/shop/"`, `not_id: { authenticated: { principal_name: { prefix: "spiffe://cluster.local/ns/test/"`)},
		{covers: []string{"AuthorizationPolicy rules.from.source.serviceAccounts", "AuthorizationPolicy rules.from.source.notServiceAccounts"},
			yaml:  ap("{rules: [{from: [{source: {serviceAccounts: [shop/cart]}}, {source: {notServiceAccounts: [ratings]}}]}]}"),
			check: rbac(`exact: "spiffe://cluster.local/ns/shop/sa/cart"`, `not_id: { authenticated: { principal_name: { exact: "`+sa+`ratings"`)},
		{covers: []string{"AuthorizationPolicy rules.to.operation.methods", "AuthorizationPolicy rules.to.operation.notMethods"},
			yaml:  ap("{rules: [{to: [{operation: {methods: [GET], notMethods: [DELETE]}}]}]}"),
			check: rbac(`header: { name: ":method" exact_match: "GET" }`, `not_rule: { header: { name: ":method" exact_match: "DELETE" } }`)},
		{covers: []string{"AuthorizationPolicy rules.to.operation.paths", "AuthorizationPolicy rules.to.operation.notPaths"},
			yaml:  ap("{rules: [{to: [{operation: {paths: [/pkg.Reviews/Get], notPaths: [/admin*]}}]}]}"),
			check: rbac(`url_path: { path: { exact: "/pkg.Reviews/Get" } }`, `not_rule: { url_path: { path: { prefix: "/admin" } }`)},
		{covers: []string{"AuthorizationPolicy rules.to.operation.ports", "AuthorizationPolicy rules.to.operation.notPorts"},
			yaml:  ap("{rules: [{to: [{operation: {ports: ['9080'], notPorts: ['15000']}}]}]}"),
			check: rbac("destination_port: 9080", "not_rule: { destination_port: 15000 }")},
		{covers: []string{"AuthorizationPolicy rules.when.key", "AuthorizationPolicy rules.when.values", "AuthorizationPolicy rules.when.notValues"},
			yaml:  ap("{rules: [{when: [{key: 'request.headers[x-user]', values: [jason], notValues: [guest]}]}]}"),
			check: rbac(`header: { name: "x-user" exact_match: "jason" }`, `not_rule: { header: { name: "x-user" exact_match: "guest" } }`)},
	}
}

// refusedValues are the accepted fields' enum values and the retryOn
// conditions that meshlet refuses, and the reasons they are refused with.
var refusedValues = []struct {
	value, yaml, reason string
}{
	{"DestinationRule trafficPolicy.loadBalancer.simple=PASSTHROUGH", drYAML("reviews", "{host: reviews, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}"), "PASSTHROUGH is out of scope for meshlet"},
	{"DestinationRule subsets.trafficPolicy.loadBalancer.simple=PASSTHROUGH", drYAML("reviews", "{host: reviews, subsets: [{name: v1, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}]}"), "PASSTHROUGH is out of scope for meshlet"},
	{"DestinationRule trafficPolicy.tls.mode=SIMPLE", drYAML("reviews", "{host: reviews, trafficPolicy: {tls: {mode: SIMPLE}}}"), "SIMPLE is out of scope for meshlet"},
	{"DestinationRule trafficPolicy.tls.mode=MUTUAL", drYAML("reviews", "{host: reviews, trafficPolicy: {tls: {mode: MUTUAL}}}"), "MUTUAL is out of scope for meshlet"},
	{"DestinationRule subsets.trafficPolicy.tls.mode=SIMPLE", drYAML("reviews", "{host: reviews, subsets: [{name: v1, trafficPolicy: {tls: {mode: SIMPLE}}}]}"), "SIMPLE is out of scope for meshlet"},
	{"DestinationRule subsets.trafficPolicy.tls.mode=MUTUAL", drYAML("reviews", "{host: reviews, subsets: [{name: v1, trafficPolicy: {tls: {mode: MUTUAL}}}]}"), "MUTUAL is out of scope for meshlet"},
	{"ServiceEntry location=MESH_EXTERNAL", seYAML("db", "{hosts: [db], ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC, location: MESH_EXTERNAL, endpoints: [{address: 10.0.0.9}]}"), "MESH_EXTERNAL is out of scope for meshlet"},
	{"ServiceEntry resolution=NONE", seYAML("db", "{hosts: [db], ports: [{number: 80, name: http, protocol: HTTP}], resolution: NONE}"), "resolution NONE is out of scope for meshlet"},
	{"ServiceEntry resolution=DNS", seYAML("db", "{hosts: [db], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}"), "resolution DNS is out of scope for meshlet"},
	{"ServiceEntry resolution=DNS_ROUND_ROBIN", seYAML("db", "{hosts: [db], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS_ROUND_ROBIN}"), "resolution DNS_ROUND_ROBIN is out of scope for meshlet"},
	{"ServiceEntry resolution=DYNAMIC_DNS", seYAML("db", "{hosts: [db], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DYNAMIC_DNS}"), "resolution DYNAMIC_DNS is out of scope for meshlet"},
	{"AuthorizationPolicy action=AUDIT", resource("AuthorizationPolicy", "security.istio.io", "a", "default", "{action: AUDIT}"), "AUDIT is out of scope for meshlet"},
	{"AuthorizationPolicy action=CUSTOM", resource("AuthorizationPolicy", "security.istio.io", "a", "default", "{action: CUSTOM}"), "CUSTOM is out of scope for meshlet"},
	{"retryOn=reset-before-request", route("{route: [{destination: {host: reviews}}], retries: {attempts: 2, retryOn: reset-before-request}}"), "is planned, not yet supported"},
	{"retryOn=retriable-headers", route("{route: [{destination: {host: reviews}}], retries: {attempts: 2, retryOn: retriable-headers}}"), "is out of scope for meshlet"},
	{"retryOn=envoy-ratelimited", route("{route: [{destination: {host: reviews}}], retries: {attempts: 2, retryOn: envoy-ratelimited}}"), "is out of scope for meshlet"},
	{"retryOn=http3-post-connect-failure", route("{route: [{destination: {host: reviews}}], retries: {attempts: 2, retryOn: http3-post-connect-failure}}"), "is out of scope for meshlet"},
}

func allEffects() []effect {
	return slices.Concat(routeEffects(), retryOnEffects(), policyRuns(), serviceEntryEffects(), securityEffects())
}

// TestAcceptedFieldsTakeEffect checks, field by field, that what the
// config package accepts changes the translated xDS resources.
func TestAcceptedFieldsTakeEffect(t *testing.T) {
	for _, e := range allEffects() {
		t.Run(e.name(), func(t *testing.T) {
			e.check(t, build(t, e.yaml, auditInput()))
		})
	}
}

// TestRefusedValues checks the values of accepted fields that are refused.
func TestRefusedValues(t *testing.T) {
	for _, r := range refusedValues {
		t.Run(r.value, func(t *testing.T) {
			_, err := config.Parse(map[string][]byte{"x.yaml": []byte(r.yaml)})
			if err == nil || !strings.Contains(err.Error(), r.reason) {
				t.Errorf("Parse error:\n%v\nwant one containing %q", err, r.reason)
			}
		})
	}
}

// TestAuditIsComplete fails when a field, an enum value or a retryOn
// condition is accepted but no case above shows its effect.
func TestAuditIsComplete(t *testing.T) {
	covered := map[string]bool{}
	for _, e := range allEffects() {
		for _, c := range e.covers {
			covered[c] = true
		}
	}
	for _, r := range refusedValues {
		covered[r.value] = true
	}
	var missing []string
	need := func(s string) {
		if !covered[s] {
			missing = append(missing, s)
		}
	}
	for kind, patterns := range config.SupportedFields() {
		for _, p := range patterns {
			need(kind + " " + p)
		}
	}
	for kind, fields := range config.EnumValues() {
		for p, values := range fields {
			for _, v := range values {
				need(kind + " " + p + "=" + v)
			}
		}
	}
	for _, c := range config.RetryConditions {
		need("retryOn=" + c)
	}
	for _, p := range []string{"GRPC", "HTTP", "HTTP2"} {
		need("ServiceEntry ports.protocol=" + p)
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("accepted, with no case that shows an effect:\n  %s", strings.Join(missing, "\n  "))
	}
}
