package resolver_test

import (
	"testing"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The resources below have the shape meshlet's control plane gives them
// (controlplane/internal/translate), built by hand.

func mustAny(tb testing.TB, m proto.Message) *anypb.Any {
	tb.Helper()
	a, err := anypb.New(m)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func routerFilter(tb testing.TB) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(tb, &routerv3.Router{})}}
}

func clientListener(tb testing.TB, name string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: ads(), RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter(tb)},
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(tb, hcm)}}
}

func exactMatcher(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

func providerInstance() *tlsv3.CertificateProviderPluginInstance {
	return &tlsv3.CertificateProviderPluginInstance{InstanceName: "meshlet"}
}

// serverListener is a STRICT server's Listener with a DENY and an ALLOW
// RBAC filter.
func serverListener(tb testing.TB) *listenerv3.Listener {
	deny := &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
		"ns[default]-policy[deny-admin]-rule[0]": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
				{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "/admin"}}}}}},
				{Rule: &rbacv3.Permission_NotRule{NotRule: &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: 9080}}}},
			}}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		},
	}}}
	allow := &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
		"ns[default]-policy[allow-pp]-rule[0]": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
				Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exactMatcher("GET")},
			}}}},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
				{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: exactMatcher("spiffe://cluster.local/ns/default/sa/productpage")}}},
				{Identifier: &rbacv3.Principal_NotId{NotId: &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: &corev3.CidrRange{AddressPrefix: "10.1.2.3", PrefixLen: wrapperspb.UInt32(16)}}}}},
			}}}}},
		},
	}}}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "inbound|127.0.0.1:8080",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound|127.0.0.1:8080",
			VirtualHosts: []*routev3.VirtualHost{{
				Name: "inbound|127.0.0.1:8080", Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Name:   "default",
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.rbac.deny", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(tb, deny)}},
			{Name: "envoy.filters.http.rbac.allow", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(tb, allow)}},
			routerFilter(tb),
		},
	}
	tlsCtx := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: providerInstance(),
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				CaCertificateProviderInstance: providerInstance(),
			}},
		},
		RequireClientCertificate: wrapperspb.Bool(true),
	}
	return &listenerv3.Listener{
		Name: "xds.istio.io/grpc/lds/inbound/127.0.0.1:8080",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Name: "inbound|127.0.0.1:8080",
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tb, hcm)},
			}},
			TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tb, tlsCtx)}},
		}},
		TrafficDirection: corev3.TrafficDirection_INBOUND,
	}
}

// routeConfig is "reviews:9080" with a header route and an 80/20 split.
func routeConfig() *routev3.RouteConfiguration {
	const name = "reviews.default.svc.cluster.local:9080"
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{name, "reviews.default.svc.cluster.local", "reviews:9080", "reviews"},
			Routes: []*routev3.Route{
				{
					Name: "jason",
					Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
						Headers: []*routev3.HeaderMatcher{{
							Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exactMatcher("jason")},
						}},
					},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|9080|v2|reviews.default.svc.cluster.local"},
						Timeout:          durationpb.New(0),
					}},
				},
				{
					Name:  "canary",
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
							{Name: "outbound|9080|v1|reviews.default.svc.cluster.local", Weight: wrapperspb.UInt32(80)},
							{Name: "outbound|9080|v2|reviews.default.svc.cluster.local", Weight: wrapperspb.UInt32(20)},
						}}},
						Timeout:           durationpb.New(60e9),
						MaxStreamDuration: &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(60e9)},
						RetryPolicy: &routev3.RetryPolicy{
							RetryOn:              "5xx,connect-failure,retriable-status-codes",
							NumRetries:           wrapperspb.UInt32(3),
							RetriableStatusCodes: []uint32{503},
							PerTryTimeout:        durationpb.New(2e9),
							RetryBackOff:         &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(25e6), MaxInterval: durationpb.New(250e6)},
						},
						HashPolicy: []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
							Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"},
						}}},
					}},
				},
			},
		}},
	}
}

// cluster is an EDS cluster with RANDOM load balancing, as meshlet's
// control plane encodes it, and mTLS.
func cluster(tb testing.TB, name string) *clusterv3.Cluster {
	random := mustAny(tb, &xdstypev3.TypedStruct{TypeUrl: "type.googleapis.com/meshlet.random", Value: &structpb.Struct{}})
	wrr := mustAny(tb, &wrrlocalityv3.WrrLocality{EndpointPickingPolicy: &clusterv3.LoadBalancingPolicy{
		Policies: []*clusterv3.LoadBalancingPolicy_Policy{{TypedExtensionConfig: &corev3.TypedExtensionConfig{
			Name: "envoy.load_balancing_policies.round_robin", TypedConfig: mustAny(tb, &roundrobinv3.RoundRobin{}),
		}}},
	}})
	tlsCtx := &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: providerInstance(),
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CaCertificateProviderInstance: providerInstance(),
			MatchSubjectAltNames:          []*matcherv3.StringMatcher{exactMatcher("spiffe://cluster.local/ns/default/sa/reviews")},
		}},
	}}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
		LoadBalancingPolicy: &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{
			{TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "meshlet.random", TypedConfig: random}},
			{TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "envoy.load_balancing_policies.wrr_locality", TypedConfig: wrr}},
		}},
		TransportSocket: &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(tb, tlsCtx)}},
	}
}

// plainCluster is a round-robin EDS cluster without TLS.
func plainCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func lbEndpoint(ip string, port, weight uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip, port)}},
		HealthStatus:        corev3.HealthStatus_HEALTHY,
		LoadBalancingWeight: wrapperspb.UInt32(weight),
	}
}

// loadAssignment has two localities.
func loadAssignment(name string) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{
			{
				Locality:            &corev3.Locality{Region: "eu-west", Zone: "zone-a"},
				LbEndpoints:         []*endpointv3.LbEndpoint{lbEndpoint("10.0.1.1", 9080, 1), lbEndpoint("10.0.1.3", 9080, 1)},
				LoadBalancingWeight: wrapperspb.UInt32(2),
			},
			{
				Locality:            &corev3.Locality{Region: "eu-west", Zone: "zone-b", SubZone: "rack-1"},
				LbEndpoints:         []*endpointv3.LbEndpoint{lbEndpoint("10.0.1.2", 9080, 2)},
				LoadBalancingWeight: wrapperspb.UInt32(2),
			},
		},
	}
}
