package grpcxds

import (
	"encoding/json"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	xdscreds "google.golang.org/grpc/credentials/xds"
	experimental "google.golang.org/grpc/experimental/opentelemetry"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/stats/opentelemetry"
	"google.golang.org/grpc/xds"
	"google.golang.org/grpc/xds/bootstrap"

	_ "github.com/meshlet/meshlet/internal/grpcbalancer" // DestinationRule RANDOM
	"github.com/meshlet/meshlet/internal/xdspath"
)

func init() {
	xdspath.Register(&xdspath.Path{Resolver: newResolver, ClientCredentials: clientCredentials, NewServer: newServer, Telemetry: telemetry})
	bootstrap.RegisterChannelCredentials(channelCreds{})
}

// channelCreds are the bootstrap's credentials to the control plane: the
// mesh's own, kept under the key the bootstrap names.
type channelCreds struct{}

func (channelCreds) Name() string { return xdspath.ChannelCredsName }

func (channelCreds) Build(config json.RawMessage) (credentials.Bundle, func(), error) {
	var cfg struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, nil, fmt.Errorf("mesh: channel creds config: %w", err)
	}
	c, ok := xdspath.ChannelCreds(cfg.Key)
	if !ok {
		return nil, nil, fmt.Errorf("mesh: channel creds %q: no such mesh (closed?)", cfg.Key)
	}
	return credsBundle{c}, func() {}, nil
}

type credsBundle struct {
	c credentials.TransportCredentials
}

func (b credsBundle) TransportCredentials() credentials.TransportCredentials { return b.c }
func (credsBundle) PerRPCCredentials() credentials.PerRPCCredentials         { return nil }
func (b credsBundle) NewWithMode(string) (credentials.Bundle, error)         { return b, nil }

func newResolver(bootstrap []byte) (resolver.Builder, error) {
	if bootstrap == nil {
		return resolver.Get("xds"), nil // configured by the environment
	}
	return xds.NewXDSResolverWithConfigForTesting(bootstrap)
}

func clientCredentials(fallback credentials.TransportCredentials) (credentials.TransportCredentials, error) {
	return xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: fallback})
}

func newServer(cfg xdspath.ServerConfig) (xdspath.Server, error) {
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: cfg.Fallback})
	if err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{
		grpc.Creds(creds),
		xds.ServingModeCallback(func(addr net.Addr, args xds.ServingModeChangeArgs) {
			cfg.Serving(addr, args.Mode == connectivity.ServingModeServing, args.Err)
		}),
	}
	if cfg.Bootstrap != nil {
		opts = append(opts, xds.BootstrapContentsForTesting(cfg.Bootstrap))
	}
	return xds.NewGRPCServer(append(opts, cfg.Options...)...)
}

// xdsClientMetrics are gRPC-Go's xDS client metrics (gRFC A78), which
// its plugin does not record by default.
var xdsClientMetrics = []string{
	"grpc.xds_client.connected",
	"grpc.xds_client.server_failure",
	"grpc.xds_client.resource_updates_valid",
	"grpc.xds_client.resource_updates_invalid",
	"grpc.xds_client.resources",
}

// telemetry is gRPC-Go's OpenTelemetry plugin with gRPC's default
// metrics and its xDS client's.
func telemetry(t xdspath.Telemetry) (grpc.DialOption, grpc.ServerOption) {
	o := opentelemetry.Options{
		MetricsOptions: opentelemetry.MetricsOptions{MeterProvider: t.MeterProvider},
		TraceOptions:   experimental.TraceOptions{TracerProvider: t.TracerProvider, TextMapPropagator: t.Propagator},
	}
	if t.MeterProvider != nil {
		o.MetricsOptions.Metrics = opentelemetry.DefaultMetrics().Add(xdsClientMetrics...)
	}
	return opentelemetry.DialOption(o), opentelemetry.ServerOption(o)
}
