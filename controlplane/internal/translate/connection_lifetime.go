package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/internal/wire"
)

// setConnLifetime translates connectionPool.http idleTimeout and
// maxRequestsPerConnection as istiod does: the Cluster's
// HttpProtocolOptions, common_http_protocol_options, with the upstream
// protocol of the port (HTTP/2 for GRPC and HTTP2, HTTP/1.1 for HTTP, the
// caller's otherwise), which Envoy requires alongside. gRPC-Go does not
// read typed_extension_protocol_options. A policy without either field
// gets none.
func setConnLifetime(c *clusterv3.Cluster, tp *networking.TrafficPolicy, protocol string) error {
	h := tp.GetConnectionPool().GetHttp()
	if h.GetIdleTimeout() == nil && h.GetMaxRequestsPerConnection() <= 0 {
		return nil
	}
	common := &corev3.HttpProtocolOptions{IdleTimeout: h.GetIdleTimeout()}
	if n := h.GetMaxRequestsPerConnection(); n > 0 {
		common.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(n))
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{CommonHttpProtocolOptions: common}
	switch protocol {
	case "GRPC", "GRPC-WEB", "HTTP2":
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}}
	case "HTTP":
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}}
	default:
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		}}
	}
	a, err := anypb.New(opts)
	if err != nil {
		return err
	}
	if c.TypedExtensionProtocolOptions == nil {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{}
	}
	c.TypedExtensionProtocolOptions[wire.HTTPProtocolOptionsKey] = a
	return nil
}
