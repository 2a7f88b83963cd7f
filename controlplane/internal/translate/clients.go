package translate

import (
	"fmt"
	"math"
	"strings"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/internal/wire"
)

// The xDS clients whose abilities Unsupported knows, by their node's
// user agent (wire.ClientKind; docs/xds-compatibility.md has the
// sources). Envoy, and gRPCs it does not know, are not judged.
const (
	clientMeshlet = wire.ClientMeshlet
	clientGo      = wire.ClientGo
	clientCore    = wire.ClientCore
	clientJava    = wire.ClientJava
	clientNode    = wire.ClientNode
)

// clientKind sorts a node by its user agent.
func clientKind(n *corev3.Node) string { return wire.ClientKind(n.GetUserAgentName()) }

// Judges reports whether Unsupported judges the client of node n: the
// gRPC clients whose abilities it knows. meshlet's resolver does
// everything translate emits; Envoy and other clients are not judged.
func Judges(n *corev3.Node) bool {
	switch clientKind(n) {
	case clientGo, clientCore, clientJava, clientNode:
		return true
	}
	return false
}

// ClientName is how reports name the client of node n: its user agent and
// version, as it sent them.
func ClientName(n *corev3.Node) string {
	return strings.TrimSpace(n.GetUserAgentName() + " " + n.GetUserAgentVersion())
}

// Unsupported returns what resource r asks of a client that the client of
// node n cannot do, one sentence each, naming the resource: features that
// the client accepts but drops, or that make it refuse r. It is empty for
// meshlet's own resolver, which implements everything translate emits,
// and for clients it does not know. The claims are in
// docs/xds-compatibility.md, with their sources.
func Unsupported(n *corev3.Node, r types.Resource) []string {
	if !Judges(n) {
		return nil
	}
	kind := clientKind(n)
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	switch r := r.(type) {
	case *clusterv3.Cluster:
		clusterUnsupported(kind, n, r, add)
	case *routev3.RouteConfiguration:
		for _, vh := range r.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				routeUnsupported(r.GetName(), rt, add)
			}
		}
	case *listenerv3.Listener:
		listenerUnsupported(kind, r, add)
	}
	return out
}

func clusterUnsupported(kind string, n *corev3.Node, c *clusterv3.Cluster, add func(string, ...any)) {
	name := c.GetName()
	// The first entry of load_balancing_policy is what meshlet chose; a
	// client that lacks it uses a later one (gRFC A52).
	if ps := c.GetLoadBalancingPolicy().GetPolicies(); len(ps) > 0 {
		first := ps[0].GetTypedExtensionConfig()
		ts := &xdstypev3.TypedStruct{}
		switch {
		case first.GetName() == leastRequestName && (kind == clientCore || kind == clientNode):
			add("Cluster %s: LEAST_REQUEST load balancing: %s has no least-request balancer and uses round robin", name, ClientName(n))
		case first.GetTypedConfig().UnmarshalTo(ts) == nil && kind != clientGo:
			// gRPC-Go has meshlet's balancers when the program imports
			// mesh/grpcxds; no other gRPC client can.
			policy := ts.GetTypeUrl()[strings.LastIndex(ts.GetTypeUrl(), "/")+1:]
			what := map[string]string{wire.RandomPolicy: "RANDOM load balancing", wire.PeakEWMAPolicy: "peak-EWMA load balancing"}[policy]
			if what == "" {
				what = "load-balancing policy " + policy
			}
			add("Cluster %s: %s is meshlet's own: %s uses the fallback policy", name, what, ClientName(n))
		}
	}
	if od := c.GetOutlierDetection(); od != nil {
		// Unset, the 5xx detector is Envoy's default: on, enforced.
		if od.GetEnforcingConsecutive_5Xx() == nil || od.GetEnforcingConsecutive_5Xx().GetValue() > 0 ||
			od.GetEnforcingConsecutiveGatewayFailure().GetValue() > 0 || od.GetEnforcingConsecutiveLocalOriginFailure().GetValue() > 0 {
			add("Cluster %s: outlierDetection by consecutive errors: gRPC clients implement only success-rate and failure-percentage ejection (gRFC A50) and eject nothing", name)
		}
	}
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		limited := func(v *wrapperspb.UInt32Value) bool { return v != nil && v.GetValue() != math.MaxUint32 }
		if limited(t.GetMaxConnections()) || limited(t.GetMaxRetries()) || t.GetRetryBudget() != nil {
			add("Cluster %s: connectionPool limits other than http2MaxRequests, and retryBudget: gRPC clients enforce only max_requests (gRFC A32)", name)
		}
	}
	if _, ok := c.GetMetadata().GetFilterMetadata()[wire.MetadataKey]; ok {
		add("Cluster %s: meshlet's circuit breaker (annotation) is enforced only by meshlet's data plane", name)
	}
	if _, ok := c.GetTypedExtensionProtocolOptions()[wire.HTTPProtocolOptionsKey]; ok {
		add("Cluster %s: connectionPool.http idleTimeout and maxRequestsPerConnection: gRPC clients do not read HttpProtocolOptions", name)
	}
}

func routeUnsupported(rc string, rt *routev3.Route, add func(string, ...any)) {
	a := rt.GetRoute()
	for _, hp := range a.GetHashPolicy() {
		switch hp.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
		default:
			add("RouteConfiguration %s route %q: consistent hash on a cookie, the source IP or a query parameter: gRPC clients hash only on headers (gRFC A42), so each call gets a random hash", rc, rt.GetName())
		}
	}
	if a.GetRetryPolicy().GetPerTryTimeout() != nil {
		add("RouteConfiguration %s route %q: retries.perTryTimeout: gRPC clients do not implement per-try timeouts (gRFC A44)", rc, rt.GetName())
	}
}

func listenerUnsupported(kind string, l *listenerv3.Listener, add func(string, ...any)) {
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			if f.GetName() != wellknown.HTTPConnectionManager {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
				continue
			}
			for _, hf := range hcm.GetHttpFilters() {
				switch {
				case strings.HasPrefix(hf.GetName(), RateLimitFilterPrefix):
					add("Listener %s: rate limit %s: gRPC servers skip the optional local_ratelimit filter; only meshlet's server enforces it", l.GetName(), strings.TrimPrefix(hf.GetName(), RateLimitFilterPrefix))
				case (hf.GetName() == RBACDenyFilterName || hf.GetName() == RBACAllowFilterName) && kind == clientNode:
					add("Listener %s: AuthorizationPolicy: grpc-js-xds implements RBAC only with GRPC_XDS_EXPERIMENTAL_RBAC=true and otherwise rejects the Listener, so the server does not serve", l.GetName())
				}
			}
		}
	}
}
