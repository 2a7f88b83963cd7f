package resolver_test

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/resolver"
)

func edsClusterWith(t *testing.T, key string, o *upstreamhttpv3.HttpProtocolOptions) *clusterv3.Cluster {
	t.Helper()
	return &clusterv3.Cluster{
		Name:                          "c",
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:              &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{key: mustAny(t, o)},
	}
}

func http2Explicit() *upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_ {
	return &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
	}}
}

func TestDecodeConnLifetime(t *testing.T) {
	c := edsClusterWith(t, wire.HTTPProtocolOptionsKey, &upstreamhttpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(3 * time.Second), MaxRequestsPerConnection: wrapperspb.UInt32(5)},
		UpstreamProtocolOptions:   http2Explicit(),
	})
	v, err := resolver.Decode(c)
	if err != nil {
		t.Fatal(err)
	}
	got := v.(resolver.Cluster)
	if want := (policy.ConnLifetime{IdleTimeout: 3 * time.Second, MaxRequests: 5}); got.Connections != want {
		t.Fatalf("Connections = %+v, want %+v", got.Connections, want)
	}
}

func TestDecodeConnLifetimeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		o         *upstreamhttpv3.HttpProtocolOptions
		want      string
	}{
		{"other key", "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions", &upstreamhttpv3.HttpProtocolOptions{}, "not supported by meshlet"},
		{"max_connection_duration", wire.HTTPProtocolOptionsKey, &upstreamhttpv3.HttpProtocolOptions{
			CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxConnectionDuration: durationpb.New(time.Minute)},
			UpstreamProtocolOptions:   http2Explicit(),
		}, "common_http_protocol_options.max_connection_duration: not supported"},
		{"http2 settings", wire.HTTPProtocolOptionsKey, &upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{MaxConcurrentStreams: wrapperspb.UInt32(4)}},
			}},
		}, "explicit_http_config: protocol settings are not supported"},
		{"auto config", wire.HTTPProtocolOptionsKey, &upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_AutoConfig{AutoConfig: &upstreamhttpv3.HttpProtocolOptions_AutoHttpConfig{}},
		}, "auto_config: not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolver.Decode(edsClusterWith(t, tc.key, tc.o))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "typed_extension_protocol_options") {
				t.Fatalf("err = %v, want one naming typed_extension_protocol_options and %q", err, tc.want)
			}
		})
	}
}
