package translate

import (
	"fmt"
	"net"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
)

// serverListener is the inbound Listener of a gRPC xDS server bound to addr
// ("ip:port"). gRPC-Go looks it up by ServerListenerName(addr) and serves
// only if its address is the exact bound IP and port.
func serverListener(addr string) (*listenerv3.Listener, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("translate: server address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 32)
	if err != nil || port == 0 || port > 65535 {
		return nil, fmt.Errorf("translate: server address %q: bad port", addr)
	}
	fc, err := serverFilterChain(addr)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:             ServerListenerName(addr),
		Address:          socketAddress(host, uint32(port)),
		FilterChains:     []*listenerv3.FilterChain{fc},
		TrafficDirection: corev3.TrafficDirection_INBOUND,
	}, nil
}

// serverFilterChain is the one filter chain of a server Listener: an
// HttpConnectionManager whose inline routes accept every request
// (NonForwardingAction: the server handles it itself).
//
// mTLS goes here: set the chain's TransportSocket, named
// "envoy.transport_sockets.tls", to a DownstreamTlsContext whose
// CommonTlsContext names certificate-provider instances (gRPC-Go reads only
// those).
func serverFilterChain(addr string) (*listenerv3.FilterChain, error) {
	filters, err := serverHTTPFilters(addr)
	if err != nil {
		return nil, err
	}
	hcm, err := toAny(&hcmv3.HttpConnectionManager{
		StatPrefix: "inbound|" + addr,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: "inbound|" + addr,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "inbound|" + addr,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Name:   "default",
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
				}},
			}},
		}},
		HttpFilters: filters,
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.FilterChain{
		Name: "inbound|" + addr,
		Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}},
	}, nil
}

// serverHTTPFilters are the HTTP filters of a server, the router last.
//
// Authorization goes here: the workload's RBAC filter
// (envoy.filters.http.rbac) before the router.
func serverHTTPFilters(string) ([]*hcmv3.HttpFilter, error) {
	router, err := routerFilter()
	if err != nil {
		return nil, err
	}
	return []*hcmv3.HttpFilter{router}, nil
}
