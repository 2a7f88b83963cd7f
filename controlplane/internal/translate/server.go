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
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/internal/wire"
)

// serverListener is the inbound Listener of a gRPC xDS server bound to addr
// ("ip:port"). gRPC-Go looks it up by wire.ServerListenerName(addr) and serves
// only if its address is the exact bound IP and port.
func (t *translator) serverListener(addr string, w Workload) (*listenerv3.Listener, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("translate: server address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 32)
	if err != nil || port == 0 || port > 65535 {
		return nil, fmt.Errorf("translate: server address %q: bad port", addr)
	}
	filters, err := t.serverHTTPFilters(w)
	if err != nil {
		return nil, err
	}
	fc, err := serverFilterChain(addr, filters)
	if err != nil {
		return nil, err
	}
	if t.peerAuthMode(w, uint32(port)) == modeStrict {
		if fc.TransportSocket, err = downstreamTLS(); err != nil {
			return nil, err
		}
	}
	return &listenerv3.Listener{
		Name:             wire.ServerListenerName(addr),
		Address:          socketAddress(host, uint32(port)),
		FilterChains:     []*listenerv3.FilterChain{fc},
		TrafficDirection: corev3.TrafficDirection_INBOUND,
	}, nil
}

// serverFilterChain is the one filter chain of a server Listener: an
// HttpConnectionManager whose inline routes accept every request
// (NonForwardingAction: the server handles it itself), through filters.
//
// A STRICT server's chain gets a transport socket requiring mTLS
// (downstreamTLS); without one, the server's fallback credentials take the
// connection, which meshlet's accept as plaintext or TLS (PERMISSIVE).
func serverFilterChain(addr string, filters []*hcmv3.HttpFilter) (*listenerv3.FilterChain, error) {
	hcm, err := toAny(withPathNormalization(&hcmv3.HttpConnectionManager{
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
	}))
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

// serverHTTPFilters are the HTTP filters of workload w's server: its RBAC
// filters (rbacFilters), its rate limits (rateLimitFilters), then the
// router, which gRPC-Go needs last. They apply to every route; no
// per-route configuration is needed.
func (t *translator) serverHTTPFilters(w Workload) ([]*hcmv3.HttpFilter, error) {
	filters, err := t.rbacFilters(w)
	if err != nil {
		return nil, err
	}
	limits, err := t.rateLimitFilters(w)
	if err != nil {
		return nil, err
	}
	filters = append(filters, limits...)
	router, err := routerFilter()
	if err != nil {
		return nil, err
	}
	return append(filters, router), nil
}

// withPathNormalization sets how a server rewrites request paths before
// its RBAC filters and the application see them, so that a policy on
// /admin also holds for //admin, /./admin, /x/../admin, /%2e/admin and
// /admin%2F: Istio's DECODE_AND_MERGE_SLASHES, the strictest of its
// levels. Slashes are merged because a Go handler takes //admin for
// /admin (http.ServeMux redirects there); escaped slashes are unescaped
// because net/http already shows them unescaped in Request.URL.Path,
// which is what most handlers read. gRPC-Go ignores these fields.
func withPathNormalization(hcm *hcmv3.HttpConnectionManager) *hcmv3.HttpConnectionManager {
	hcm.NormalizePath = wrapperspb.Bool(true)
	hcm.MergeSlashes = true
	hcm.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	return hcm
}
