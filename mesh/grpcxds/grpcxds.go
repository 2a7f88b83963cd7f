package grpcxds

import (
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/xds"

	_ "github.com/meshlet/meshlet/internal/grpcbalancer" // DestinationRule RANDOM
	"github.com/meshlet/meshlet/internal/xdspath"
)

func init() {
	xdspath.Register(&xdspath.Path{Resolver: newResolver, ClientCredentials: clientCredentials, NewServer: newServer})
}

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
