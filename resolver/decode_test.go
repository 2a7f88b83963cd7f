package resolver_test

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	maglevv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/maglev/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/resolver"
)

// regexpComparer compares regular expressions by their source.
var regexpComparer = cmp.Comparer(func(a, b *regexp.Regexp) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
})

var cmpOpts = []cmp.Option{regexpComparer, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })}

func TestDecodeGood(t *testing.T) {
	const reviews = "reviews.default.svc.cluster.local:9080"
	tests := []struct {
		name string
		in   proto.Message
		want any
	}{
		{
			name: "client listener",
			in:   clientListener(t, reviews),
			want: resolver.Listener{Name: reviews, RouteConfigName: reviews},
		},
		{
			name: "server listener with TLS and RBAC",
			in:   serverListener(t),
			want: resolver.Listener{
				Name:    "xds.istio.io/grpc/lds/inbound/127.0.0.1:8080",
				Address: "127.0.0.1", Port: 8080,
				TLS: &resolver.DownstreamTLS{RequireClientCert: true},
				Inline: &resolver.RouteConfig{Name: "inbound|127.0.0.1:8080", VirtualHosts: []resolver.VirtualHost{{
					Name: "inbound|127.0.0.1:8080", Domains: []string{"*"},
					Routes: []resolver.Route{{Name: "default", NonForwarding: true, Match: resolver.RouteMatch{Kind: resolver.PathPrefix, Path: "/"}}},
				}}},
				HTTPFilters: []resolver.HTTPFilter{
					{Name: "envoy.filters.http.rbac.deny", Type: "envoy.extensions.filters.http.rbac.v3.RBAC", RBAC: &resolver.RBAC{
						Action: resolver.RBACDeny,
						Policies: []resolver.RBACPolicy{{
							Name: "ns[default]-policy[deny-admin]-rule[0]",
							Permissions: []resolver.Permission{{Kind: resolver.PermissionAnd, Rules: []resolver.Permission{
								{Kind: resolver.PermissionURLPath, String: resolver.StringMatch{Kind: resolver.StringPrefix, Value: "/admin"}},
								{Kind: resolver.PermissionNot, Rules: []resolver.Permission{{Kind: resolver.PermissionDestinationPort, Port: 9080}}},
							}}},
							Principals: []resolver.Principal{{Kind: resolver.PrincipalAny}},
						}},
					}},
					{Name: "envoy.filters.http.rbac.allow", Type: "envoy.extensions.filters.http.rbac.v3.RBAC", RBAC: &resolver.RBAC{
						Action: resolver.RBACAllow,
						Policies: []resolver.RBACPolicy{{
							Name: "ns[default]-policy[allow-pp]-rule[0]",
							Permissions: []resolver.Permission{{Kind: resolver.PermissionHeader, Header: resolver.HeaderMatch{
								Name: ":method", Kind: resolver.HeaderString, String: resolver.StringMatch{Kind: resolver.StringExact, Value: "GET"},
							}}},
							Principals: []resolver.Principal{{Kind: resolver.PrincipalOr, IDs: []resolver.Principal{
								{Kind: resolver.PrincipalAuthenticated, Name: &resolver.StringMatch{Kind: resolver.StringExact, Value: "spiffe://cluster.local/ns/default/sa/productpage"}},
								{Kind: resolver.PrincipalNot, IDs: []resolver.Principal{{Kind: resolver.PrincipalDirectRemoteIP, CIDR: netip.MustParsePrefix("10.1.0.0/16")}}},
							}}},
						}},
					}},
				},
			},
		},
		{
			name: "route config",
			in:   routeConfig(),
			want: resolver.RouteConfig{Name: reviews, VirtualHosts: []resolver.VirtualHost{{
				Name:    reviews,
				Domains: []string{reviews, "reviews.default.svc.cluster.local", "reviews:9080", "reviews"},
				Routes: []resolver.Route{
					{
						Name: "jason",
						Match: resolver.RouteMatch{Path: "/", Headers: []resolver.HeaderMatch{{
							Name: "end-user", Kind: resolver.HeaderString, String: resolver.StringMatch{Kind: resolver.StringExact, Value: "jason"},
						}}},
						Action: resolver.RouteAction{Cluster: "outbound|9080|v2|reviews.default.svc.cluster.local"},
					},
					{
						Name:  "canary",
						Match: resolver.RouteMatch{Path: "/"},
						Action: resolver.RouteAction{
							WeightedClusters: []resolver.WeightedCluster{
								{Name: "outbound|9080|v1|reviews.default.svc.cluster.local", Weight: 80},
								{Name: "outbound|9080|v2|reviews.default.svc.cluster.local", Weight: 20},
							},
							Timeout: time.Minute,
							Retry: &resolver.RetryPolicy{
								NumRetries: 3, RetryOn: []string{"5xx", "connect-failure", "retriable-status-codes"},
								RetriableStatusCodes: []uint32{503}, PerTryTimeout: 2 * time.Second,
								BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond,
							},
							HashPolicies: []resolver.HashPolicy{{Kind: resolver.HashHeader, Name: "x-user"}},
						},
					},
				},
			}}},
		},
		{
			name: "RANDOM cluster with mTLS",
			in:   cluster(t, "outbound|9080|v1|reviews.default.svc.cluster.local"),
			want: resolver.Cluster{
				Name:           "outbound|9080|v1|reviews.default.svc.cluster.local",
				EDSServiceName: "outbound|9080|v1|reviews.default.svc.cluster.local",
				LBPolicy:       resolver.Random,
				TLS:            &resolver.UpstreamTLS{SANs: []string{"spiffe://cluster.local/ns/default/sa/reviews"}},
			},
		},
		{
			name: "ring hash cluster with outlier detection",
			in: func() proto.Message {
				c := plainCluster("rh")
				c.EdsClusterConfig.ServiceName = ""
				c.LbPolicy = clusterv3.Cluster_RING_HASH
				c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(2048)}}
				c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionPercent: wrapperspb.UInt32(50)}
				return c
			}(),
			want: resolver.Cluster{
				Name: "rh", EDSServiceName: "rh", LBPolicy: resolver.RingHash,
				RingHash: resolver.RingHashConfig{MinRingSize: 2048, MaxRingSize: 8 << 20},
				OutlierDetection: &resolver.OutlierDetection{
					Interval: 10 * time.Second, BaseEjectionTime: time.Minute, MaxEjectionTime: 300 * time.Second,
					MaxEjectionPercent: 50, Consecutive5xx: 3, EnforcingConsecutive5xx: 100, ConsecutiveGatewayFailure: 5,
					SuccessRateMinimumHosts: 5, SuccessRateRequestVolume: 100, SuccessRateStdevFactor: 1900, EnforcingSuccessRate: 100,
					FailurePercentageThreshold: 85, FailurePercentageMinimumHosts: 5, FailurePercentageRequestVolume: 50,
					ConsecutiveLocalOriginFailure: 5, EnforcingConsecutiveLocalOriginFailure: 100,
				},
			},
		},
		{
			name: "PEAK_EWMA cluster with local-origin outlier detection",
			in: func() proto.Message {
				c := cluster(t, "pe")
				c.TransportSocket = nil
				c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
				peak := mustAny(t, &xdstypev3.TypedStruct{TypeUrl: "type.googleapis.com/meshlet.peak_ewma", Value: &structpb.Struct{}})
				c.LoadBalancingPolicy.Policies = append([]*clusterv3.LoadBalancingPolicy_Policy{
					{TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "meshlet.peak_ewma", TypedConfig: peak}},
				}, c.LoadBalancingPolicy.Policies...)
				c.OutlierDetection = &clusterv3.OutlierDetection{
					Consecutive_5Xx: wrapperspb.UInt32(0), EnforcingConsecutive_5Xx: wrapperspb.UInt32(0), EnforcingSuccessRate: wrapperspb.UInt32(0),
					SplitExternalLocalOriginErrors: true, ConsecutiveLocalOriginFailure: wrapperspb.UInt32(4), EnforcingConsecutiveLocalOriginFailure: wrapperspb.UInt32(100),
				}
				return c
			}(),
			want: resolver.Cluster{
				Name: "pe", EDSServiceName: "pe", LBPolicy: resolver.PeakEWMA,
				OutlierDetection: &resolver.OutlierDetection{
					Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second,
					MaxEjectionPercent: 10, ConsecutiveGatewayFailure: 5,
					SuccessRateMinimumHosts: 5, SuccessRateRequestVolume: 100, SuccessRateStdevFactor: 1900,
					FailurePercentageThreshold: 85, FailurePercentageMinimumHosts: 5, FailurePercentageRequestVolume: 50,
					SplitExternalLocalOriginErrors: true, ConsecutiveLocalOriginFailure: 4, EnforcingConsecutiveLocalOriginFailure: 100,
				},
			},
		},
		{
			name: "least request cluster",
			in: func() proto.Message {
				c := plainCluster("lr")
				c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
				return c
			}(),
			want: resolver.Cluster{Name: "lr", EDSServiceName: "lr", LBPolicy: resolver.LeastRequest},
		},
		{
			name: "endpoints",
			in:   loadAssignment("outbound|9080||reviews.default.svc.cluster.local"),
			want: resolver.Endpoints{
				ClusterName: "outbound|9080||reviews.default.svc.cluster.local",
				Localities: []resolver.LocalityEndpoints{
					{
						Locality: resolver.Locality{Region: "eu-west", Zone: "zone-a"}, Weight: 2,
						Endpoints: []resolver.Endpoint{
							{Address: "10.0.1.1:9080", Weight: 1, Health: resolver.HealthHealthy, Healthy: true},
							{Address: "10.0.1.3:9080", Weight: 1, Health: resolver.HealthHealthy, Healthy: true},
						},
					},
					{
						Locality: resolver.Locality{Region: "eu-west", Zone: "zone-b", SubZone: "rack-1"}, Weight: 2,
						Endpoints: []resolver.Endpoint{{Address: "10.0.1.2:9080", Weight: 2, Health: resolver.HealthHealthy, Healthy: true}},
					},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolver.Decode(tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeBad checks that invalid resources are refused with a reason
// that names the field.
func TestDecodeBad(t *testing.T) {
	const reviews = "reviews.default.svc.cluster.local:9080"
	withRoute := func(f func(r *routev3.Route)) proto.Message {
		rc := routeConfig()
		f(rc.VirtualHosts[0].Routes[1])
		return rc
	}
	withCluster := func(f func(c *clusterv3.Cluster)) proto.Message {
		c := cluster(t, "c")
		f(c)
		return c
	}
	withHCM := func(f func(h *hcmv3.HttpConnectionManager)) proto.Message {
		l := clientListener(t, reviews)
		h := &hcmv3.HttpConnectionManager{}
		if err := l.ApiListener.ApiListener.UnmarshalTo(h); err != nil {
			t.Fatal(err)
		}
		f(h)
		l.ApiListener.ApiListener = mustAny(t, h)
		return l
	}
	withServerRBAC := func(rules *rbacv3.RBAC) proto.Message {
		l := serverListener(t)
		fc := l.FilterChains[0]
		h := &hcmv3.HttpConnectionManager{}
		if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(h); err != nil {
			t.Fatal(err)
		}
		h.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &rbacfilterv3.RBAC{Rules: rules})}
		fc.Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}
		return l
	}
	anyPrincipal := []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}}
	withCLA := func(f func(c *endpointv3.ClusterLoadAssignment)) proto.Message {
		c := loadAssignment("e")
		f(c)
		return c
	}
	tests := []struct {
		name string
		in   proto.Message
		want []string // substrings of the reason
	}{
		{"unknown lb_policy", withCluster(func(c *clusterv3.Cluster) {
			c.LoadBalancingPolicy = nil
			c.LbPolicy = clusterv3.Cluster_LbPolicy(42)
		}), []string{"lb_policy", "unknown value 42"}},
		{"maglev lb_policy", withCluster(func(c *clusterv3.Cluster) {
			c.LoadBalancingPolicy = nil
			c.LbPolicy = clusterv3.Cluster_MAGLEV
		}), []string{"lb_policy", "MAGLEV is not supported"}},
		{"load_balancing_policy without a supported entry", withCluster(func(c *clusterv3.Cluster) {
			c.LoadBalancingPolicy = &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
				TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "maglev", TypedConfig: mustAny(t, &maglevv3.Maglev{})},
			}}}
		}), []string{"load_balancing_policy", "no policy that meshlet supports", "envoy.extensions.load_balancing_policies.maglev.v3.Maglev"}},
		{"cluster without EDS config", withCluster(func(c *clusterv3.Cluster) { c.EdsClusterConfig = nil }), []string{"eds_cluster_config: missing"}},
		{"cluster with a non-ADS EDS config", withCluster(func(c *clusterv3.Cluster) {
			c.EdsClusterConfig.EdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}
		}), []string{"eds_config", "must be ads"}},
		{"static cluster", withCluster(func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		}), []string{"type: STATIC is not supported"}},
		{"ring hash with murmur", withCluster(func(c *clusterv3.Cluster) {
			c.LoadBalancingPolicy = nil
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{HashFunction: clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2}}
		}), []string{"hash_function", "MURMUR_HASH_2"}},
		{"ring min above max", withCluster(func(c *clusterv3.Cluster) {
			c.LoadBalancingPolicy = nil
			c.LbPolicy = clusterv3.Cluster_RING_HASH
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(100), MaximumRingSize: wrapperspb.UInt64(10)}}
		}), []string{"minimum_ring_size 100 is above maximum_ring_size 10"}},
		{"least request choice count 1", withCluster(func(c *clusterv3.Cluster) {
			c.LoadBalancingPolicy = nil
			c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(1)}}
		}), []string{"choice_count", "1 is not supported by meshlet's balancer, which draws 2"}},
		{"circuit breaker max_pending_requests", withCluster(func(c *clusterv3.Cluster) {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxPendingRequests: wrapperspb.UInt32(7)}}}
		}), []string{"circuit_breakers.thresholds[0].max_pending_requests", "not enforced by meshlet's clients"}},
		{"circuit breaker HIGH priority", withCluster(func(c *clusterv3.Cluster) {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(7)}}}
		}), []string{"circuit_breakers.thresholds[0].priority", "HIGH"}},
		{"drop overloads", withCLA(func(cla *endpointv3.ClusterLoadAssignment) {
			cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{DropOverloads: []*endpointv3.ClusterLoadAssignment_Policy_DropOverload{{Category: "lb", DropPercentage: &typev3.FractionalPercent{Numerator: 10}}}}
		}), []string{"drop_overloads", "not supported by meshlet's client"}},
		{"source IP hash", withRoute(func(r *routev3.Route) {
			r.GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}}
		}), []string{"connection_properties.source_ip", "not supported"}},
		{"generated cookie", withRoute(func(r *routev3.Route) {
			r.GetRoute().HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "session", Ttl: durationpb.New(time.Hour)}}}}
		}), []string{"cookie", "generated cookie"}},
		{"TLS without roots", withCluster(func(c *clusterv3.Cluster) {
			c.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, &corev3.Node{})}
		}), []string{"transport_socket", "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"}},
		{"outlier percent above 100", withCluster(func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(101)}
		}), []string{"outlier_detection", "max_ejection_percent", "above 100"}},
		{"local-origin enforcing above 100", withCluster(func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{EnforcingConsecutiveLocalOriginFailure: wrapperspb.UInt32(101)}
		}), []string{"outlier_detection", "enforcing_consecutive_local_origin_failure", "above 100"}},
		{"unknown TypedStruct policy alone", withCluster(func(c *clusterv3.Cluster) {
			c.LoadBalancingPolicy.Policies = c.LoadBalancingPolicy.Policies[:1]
			c.LoadBalancingPolicy.Policies[0].TypedExtensionConfig.TypedConfig = mustAny(t, &xdstypev3.TypedStruct{TypeUrl: "type.googleapis.com/meshlet.fastest", Value: &structpb.Struct{}})
		}), []string{"load_balancing_policy", "xds.type.v3.TypedStruct meshlet.fastest", "meshlet.random or meshlet.peak_ewma"}},

		{"bad path regex", withRoute(func(r *routev3.Route) {
			r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/a(b"}}
		}), []string{`routes[1] "canary"`, "safe_regex", "bad regex"}},
		{"bad header regex", withRoute(func(r *routev3.Route) {
			r.Match.Headers = []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "[z-a]"}}}}
		}), []string{"headers[0]", "bad regex"}},
		{"weights sum to 0", withRoute(func(r *routev3.Route) {
			for _, c := range r.GetRoute().GetWeightedClusters().Clusters {
				c.Weight = wrapperspb.UInt32(0)
			}
		}), []string{"weighted_clusters", "sum to 0"}},
		{"redirect action", withRoute(func(r *routev3.Route) {
			r.Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{}}
		}), []string{"redirect is not supported"}},
		{"cluster_header", withRoute(func(r *routev3.Route) {
			r.GetRoute().ClusterSpecifier = &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}
		}), []string{"cluster_header is not supported"}},
		{"num_retries 0", withRoute(func(r *routev3.Route) {
			r.GetRoute().RetryPolicy.NumRetries = wrapperspb.UInt32(0)
		}), []string{"retry_policy", "num_retries"}},
		{"empty prefix header match", withRoute(func(r *routev3.Route) {
			r.Match.Headers = []*routev3.HeaderMatcher{{Name: "x", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{}}}}}
		}), []string{"empty prefix match"}},
		{"bad domain", func() proto.Message {
			rc := routeConfig()
			rc.VirtualHosts[0].Domains = []string{"a*b"}
			return rc
		}(), []string{"domains[0]", `"a*b"`}},
		{"prefix rewrite", withRoute(func(r *routev3.Route) { r.GetRoute().PrefixRewrite = "/v2" }), []string{"rewriting is not supported"}},

		{"listener without router", withHCM(func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = nil }), []string{"http_filters", "router"}},
		{"filter after the router", withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{Name: "late", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &faultv3.HTTPFault{})}})
		}), []string{`"late"`, "after the router"}},
		{"unsupported required filter", withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "buffer", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &bufferv3.Buffer{})}}}, h.HttpFilters...)
		}), []string{`"buffer"`, "envoy.extensions.filters.http.buffer.v3.Buffer is not supported", "is_optional"}},
		{"RDS not over ADS", withHCM(func(h *hcmv3.HttpConnectionManager) {
			h.GetRds().ConfigSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}
		}), []string{"rds.config_source"}},
		{"RBAC unknown action", withServerRBAC(&rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}}, Principals: anyPrincipal,
		}}, Action: rbacv3.RBAC_Action(9)}), []string{"rules.action", "unknown value 9"}},
		{"RBAC metadata permission", withServerRBAC(&rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Metadata{Metadata: &matcherv3.MetadataMatcher{}}}}, Principals: anyPrincipal,
		}}}), []string{`policies["p"]`, "permissions[0]", "metadata is not supported"}},
		{"RBAC bad CIDR", withServerRBAC(&rbacv3.RBAC{Policies: map[string]*rbacv3.Policy{"p": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: &corev3.CidrRange{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(33)}}}},
		}}}), []string{"remote_ip", "prefix_len 33"}},
		{"server listener with two chains", func() proto.Message {
			l := serverListener(t)
			l.FilterChains = append(l.FilterChains, l.FilterChains[0])
			return l
		}(), []string{"exactly one filter chain"}},

		{"duplicate endpoint address", withCLA(func(c *endpointv3.ClusterLoadAssignment) {
			c.Endpoints[1].LbEndpoints = append(c.Endpoints[1].LbEndpoints, lbEndpoint("10.0.1.1", 9080, 1))
		}), []string{"duplicate endpoint address 10.0.1.1:9080"}},
		{"endpoint weight 0", withCLA(func(c *endpointv3.ClusterLoadAssignment) {
			c.Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0)
		}), []string{"load_balancing_weight 0"}},
		{"priority gap", withCLA(func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[1].Priority = 2 }), []string{"priority 1 is missing"}},
		{"locality twice", withCLA(func(c *endpointv3.ClusterLoadAssignment) {
			c.Endpoints[1].Locality = c.Endpoints[0].Locality
			c.Endpoints[1].LbEndpoints = []*endpointv3.LbEndpoint{lbEndpoint("10.9.9.9", 1, 1)}
		}), []string{"listed twice"}},
		{"no locality", withCLA(func(c *endpointv3.ClusterLoadAssignment) { c.Endpoints[0].Locality = nil }), []string{"endpoints[0]: no locality"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := resolver.Decode(tt.in)
			if err == nil {
				t.Fatal("Decode accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
