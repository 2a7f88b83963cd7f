package translate

import (
	"fmt"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/internal/wire"
)

const (
	randomTypeURL      = "type.googleapis.com/" + wire.RandomPolicy
	peakEWMATypeURL    = "type.googleapis.com/" + wire.PeakEWMAPolicy
	wrrLocalityName    = "envoy.load_balancing_policies.wrr_locality"
	roundRobinName     = "envoy.load_balancing_policies.round_robin"
	leastRequestName   = "envoy.load_balancing_policies.least_request"
	maxRingSize        = envoydefaults.MaxRingSize // gRPC-Go refuses a larger minimum ring size
	subsetFieldPattern = "spec.subsets[%d].trafficPolicy"
)

// destRule is the merge of the DestinationRules of one host, as Istio merges
// them: the first top-level traffic policy wins, and subsets are joined, the
// first of a name winning.
type destRule struct {
	top     *networking.TrafficPolicy
	topMeta model.Meta
	subsets []*networking.Subset
	// subsetAt says where each subset came from, for error messages.
	subsetAt map[string]string
	// peak holds the clusters that a rule's model.LoadBalancerAnnotation
	// balances by peak EWMA: by subset name, "" for the cluster without a
	// subset. Each subset follows the rule it came from; the cluster
	// without a subset follows the rule that gave the top-level traffic
	// policy, or the first rule if none did.
	peak map[string]bool
	// breaker holds the breakers that a rule's
	// model.CircuitBreakerAnnotation sets, by subset as peak.
	breaker map[string]*model.CircuitBreaker
}

// destinationRule merges the DestinationRules for s: those that name the
// host exactly, the ones in the service's namespace first; if there are
// none, those with the longest wildcard host that covers it.
func (t *translator) destinationRule(s *service) destRule {
	var exact, wild []*model.DestinationRule
	bestLen := -1
	for _, dr := range t.cfg.DestinationRules {
		if dr.Spec == nil {
			continue
		}
		h := dr.Spec.GetHost()
		if h == s.Host {
			exact = append(exact, dr)
			continue
		}
		switch n := wildcardMatch(h, s.Host); {
		case n > bestLen:
			wild, bestLen = []*model.DestinationRule{dr}, n
		case n == bestLen && n >= 0:
			wild = append(wild, dr)
		}
	}
	drs := exact
	if len(drs) == 0 {
		drs = wild
	}
	var ordered []*model.DestinationRule
	for _, dr := range drs {
		if dr.Namespace == s.Namespace {
			ordered = append(ordered, dr)
		}
	}
	for _, dr := range drs {
		if dr.Namespace != s.Namespace {
			ordered = append(ordered, dr)
		}
	}

	out := destRule{subsetAt: make(map[string]string), peak: make(map[string]bool), breaker: make(map[string]*model.CircuitBreaker)}
	if len(ordered) > 0 {
		out.peak[""] = ordered[0].PeakEWMA()
		out.breaker[""] = ruleBreaker(ordered[0])
	}
	for _, dr := range ordered {
		if out.top == nil && dr.Spec.GetTrafficPolicy() != nil {
			out.top, out.topMeta = dr.Spec.GetTrafficPolicy(), dr.Meta
			out.peak[""] = dr.PeakEWMA()
			out.breaker[""] = ruleBreaker(dr)
		}
		for i, sub := range dr.Spec.GetSubsets() {
			if sub.GetName() == "" {
				continue
			}
			if _, ok := out.subsetAt[sub.GetName()]; ok {
				continue
			}
			out.subsets = append(out.subsets, sub)
			out.subsetAt[sub.GetName()] = where(dr.Meta) + ": " + fmt.Sprintf(subsetFieldPattern, i)
			out.peak[sub.GetName()] = dr.PeakEWMA()
			out.breaker[sub.GetName()] = ruleBreaker(dr)
		}
	}
	return out
}

// loadBalancer returns the load-balancer settings that apply to one port of
// one subset ("" for none), as Istio merges them, the first set winning:
// the subset's port-level settings, the subset's own, the top-level
// port-level settings, the top-level ones. It also says where they were
// found.
func (d destRule) loadBalancer(subset *networking.Subset, port uint32) (*networking.LoadBalancerSettings, string) {
	if subset != nil {
		at := d.subsetAt[subset.GetName()]
		if lb, field := portLevelLB(subset.GetTrafficPolicy(), port); lb != nil {
			return lb, at + field
		}
		if lb := subset.GetTrafficPolicy().GetLoadBalancer(); lb != nil {
			return lb, at + ".loadBalancer"
		}
	}
	at := where(d.topMeta) + ": spec.trafficPolicy"
	if lb, field := portLevelLB(d.top, port); lb != nil {
		return lb, at + field
	}
	if lb := d.top.GetLoadBalancer(); lb != nil {
		return lb, at + ".loadBalancer"
	}
	return nil, ""
}

// outlierDetection returns the outlier detection that applies to one port
// of one subset (nil for the cluster without a subset), merged as
// loadBalancer merges load-balancer settings.
func (d destRule) outlierDetection(subset *networking.Subset, port uint32) *networking.OutlierDetection {
	var tps []*networking.TrafficPolicy
	if subset != nil {
		tps = append(tps, subset.GetTrafficPolicy())
	}
	for _, tp := range append(tps, d.top) {
		for _, pl := range tp.GetPortLevelSettings() {
			if pl.GetPort().GetNumber() == port && pl.GetOutlierDetection() != nil {
				return pl.GetOutlierDetection()
			}
		}
		if od := tp.GetOutlierDetection(); od != nil {
			return od
		}
	}
	return nil
}

func portLevelLB(tp *networking.TrafficPolicy, port uint32) (*networking.LoadBalancerSettings, string) {
	for i, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == port && pl.GetLoadBalancer() != nil {
			return pl.GetLoadBalancer(), fmt.Sprintf(".portLevelSettings[%d].loadBalancer", i)
		}
	}
	return nil, ""
}

// buildClusters makes the Clusters of one service port: the one without a
// subset and one per DestinationRule subset, with mTLS where clusterTLS
// says. It records the hash policies that RING_HASH clusters need on their
// routes.
func (t *translator) buildClusters(s *service, p Port, dr destRule) ([]*clusterv3.Cluster, error) {
	subsets := append([]*networking.Subset{nil}, dr.subsets...)
	out := make([]*clusterv3.Cluster, 0, len(subsets))
	for _, sub := range subsets {
		name := wire.ClusterName(p.Number, sub.GetName(), s.Host)
		lb, at := dr.loadBalancer(sub, p.Number)
		c, hp, err := newCluster(name, lb, at)
		if err != nil {
			return nil, err
		}
		if dr.peak[sub.GetName()] {
			if err := setPeakEWMA(c, at); err != nil {
				return nil, err
			}
		}
		c.OutlierDetection = outlierDetection(dr.outlierDetection(sub, p.Number))
		c.CircuitBreakers = circuitBreakers(dr.connectionPool(sub))
		if err := setBreaker(c, dr.breaker[sub.GetName()]); err != nil {
			return nil, err
		}
		if err := setConnLifetime(c, dr.connectionPool(sub), p.Protocol); err != nil {
			return nil, err
		}
		if c.TransportSocket, err = t.clusterTLS(s, p.Number, dr, sub); err != nil {
			return nil, err
		}
		if len(hp) > 0 {
			t.hashes[name] = hp
		}
		out = append(out, c)
	}
	return out, nil
}

// newCluster makes one EDS Cluster, fed over ADS, load-balanced as lb says.
// For consistent hashing it also returns the route hash policies.
func newCluster(name string, lb *networking.LoadBalancerSettings, at string) (*clusterv3.Cluster, []*routev3.RouteAction_HashPolicy, error) {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   adsConfigSource(),
			ServiceName: name,
		},
		LbPolicy: clusterv3.Cluster_ROUND_ROBIN,
	}
	var hp []*routev3.RouteAction_HashPolicy
	switch policy := lb.GetLbPolicy().(type) {
	case nil:
	case *networking.LoadBalancerSettings_Simple:
		switch policy.Simple {
		case networking.LoadBalancerSettings_UNSPECIFIED, networking.LoadBalancerSettings_ROUND_ROBIN:
		case networking.LoadBalancerSettings_LEAST_CONN, networking.LoadBalancerSettings_LEAST_REQUEST:
			// Not lb_policy LEAST_REQUEST: gRPC C-core (1.51 and later)
			// and grpc-js-xds have no least-request balancer and NACK the
			// Cluster for it. load_balancing_policy names least_request
			// first, which gRPC-Go, grpc-java and meshlet use, then round
			// robin, which the others fall back to (gRFC A52); C-core
			// 1.51, which reads load_balancing_policy only when
			// GRPC_EXPERIMENTAL_XDS_CUSTOM_LB_CONFIG is set, reads
			// lb_policy ROUND_ROBIN.
			p, err := leastRequestPolicy()
			if err != nil {
				return nil, nil, err
			}
			c.LoadBalancingPolicy = p
		case networking.LoadBalancerSettings_RANDOM:
			// gRPC-Go NACKs lb_policy RANDOM ("unexpected lbPolicy"), and it
			// reads lb_policy before load_balancing_policy, so lb_policy
			// stays ROUND_ROBIN (the zero value) and load_balancing_policy,
			// which then takes precedence, carries the choice.
			p, err := randomPolicy()
			if err != nil {
				return nil, nil, err
			}
			c.LoadBalancingPolicy = p
		default:
			return nil, nil, fmt.Errorf("translate: %s.simple: %v cannot be expressed for gRPC", at, policy.Simple)
		}
	case *networking.LoadBalancerSettings_ConsistentHash:
		ch := policy.ConsistentHash
		// gRPC-Go has no Maglev; a Maglev request gets a ring hash, which
		// keeps the same stickiness.
		rh := &clusterv3.Cluster_RingHashLbConfig{HashFunction: clusterv3.Cluster_RingHashLbConfig_XX_HASH}
		minSize := ch.GetRingHash().GetMinimumRingSize()
		if minSize == 0 {
			minSize = ch.GetMinimumRingSize() //nolint:staticcheck // the deprecated field is still Istio API
		}
		if minSize > 0 {
			rh.MinimumRingSize = wrapperspb.UInt64(min(minSize, maxRingSize))
		}
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: rh}
		if h := hashPolicy(ch); h != nil {
			hp = append(hp, h)
		}
	default:
		return nil, nil, fmt.Errorf("translate: %s: load balancer %T cannot be expressed for gRPC", at, policy)
	}
	return c, hp, nil
}

// hashPolicy is the route hash policy for Istio's consistent-hash key.
// gRPC-Go honours only the header form and ignores the others; meshlet's
// own resolver reads them all.
func hashPolicy(ch *networking.LoadBalancerSettings_ConsistentHashLB) *routev3.RouteAction_HashPolicy {
	switch k := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: k.HttpHeaderName},
		}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		cookie := &routev3.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName(), Path: k.HttpCookie.GetPath()}
		if ttl := k.HttpCookie.GetTtl(); ttl != nil {
			cookie.Ttl = durationpb.New(ttl.AsDuration())
		}
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: cookie}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: k.UseSourceIp},
		}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName},
		}}
	}
	return nil
}

// randomPolicy is the load_balancing_policy of a RANDOM cluster: the
// meshlet.random balancer named through a TypedStruct, then round_robin
// under wrr_locality, which is what lb_policy ROUND_ROBIN means to gRPC-Go.
//
// gRPC-Go converts the first policy it can: a TypedStruct becomes the
// registered balancer named after the last "/" of its type_url, and when no
// balancer of that name is registered the converter returns nothing and the
// next policy is tried (xdslbregistry.ConvertToServiceConfig). So a client
// without meshlet.random uses the fallback and does not NACK.
func randomPolicy() (*clusterv3.LoadBalancingPolicy, error) {
	random, err := typedStructPolicy(wire.RandomPolicy, randomTypeURL)
	if err != nil {
		return nil, err
	}
	rr, err := roundRobinPolicy()
	if err != nil {
		return nil, err
	}
	return &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{random, rr}}, nil
}

// leastRequestPolicy is the load_balancing_policy of a LEAST_REQUEST
// cluster: least_request, then round_robin under wrr_locality.
func leastRequestPolicy() (*clusterv3.LoadBalancingPolicy, error) {
	lr, err := extensionPolicy(leastRequestName, &leastrequestv3.LeastRequest{})
	if err != nil {
		return nil, err
	}
	rr, err := roundRobinPolicy()
	if err != nil {
		return nil, err
	}
	return &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{lr, rr}}, nil
}

// setPeakEWMA puts meshlet's peak-EWMA balancer, named through a
// TypedStruct, first in c's load_balancing_policy, for meshlet's resolver.
// What newCluster chose stays behind it for gRPC clients, which have no
// peak EWMA and skip it as they skip an unknown meshlet.random (see
// randomPolicy): the RANDOM or LEAST_REQUEST policy list, or else
// round_robin under wrr_locality, as for lb_policy ROUND_ROBIN.
// lb_policy keeps its value, which load_balancing_policy overrides.
func setPeakEWMA(c *clusterv3.Cluster, at string) error {
	if c.GetLbPolicy() == clusterv3.Cluster_RING_HASH {
		return fmt.Errorf("translate: %s.consistentHash cannot be combined with the annotation %s: %s", at, model.LoadBalancerAnnotation, model.LoadBalancerPeakEWMA)
	}
	peak, err := typedStructPolicy(wire.PeakEWMAPolicy, peakEWMATypeURL)
	if err != nil {
		return err
	}
	fallback := c.GetLoadBalancingPolicy().GetPolicies()
	if len(fallback) == 0 {
		p, err := roundRobinPolicy()
		if err != nil {
			return err
		}
		fallback = []*clusterv3.LoadBalancingPolicy_Policy{p}
	}
	c.LoadBalancingPolicy = &clusterv3.LoadBalancingPolicy{Policies: append([]*clusterv3.LoadBalancingPolicy_Policy{peak}, fallback...)}
	return nil
}

// typedStructPolicy names a meshlet balancer through a TypedStruct with an
// empty config.
func typedStructPolicy(name, typeURL string) (*clusterv3.LoadBalancingPolicy_Policy, error) {
	return extensionPolicy(name, &xdstypev3.TypedStruct{TypeUrl: typeURL, Value: &structpb.Struct{}})
}

// roundRobinPolicy is round_robin under wrr_locality.
func roundRobinPolicy() (*clusterv3.LoadBalancingPolicy_Policy, error) {
	rr, err := extensionPolicy(roundRobinName, &roundrobinv3.RoundRobin{})
	if err != nil {
		return nil, err
	}
	return extensionPolicy(wrrLocalityName, &wrrlocalityv3.WrrLocality{EndpointPickingPolicy: &clusterv3.LoadBalancingPolicy{
		Policies: []*clusterv3.LoadBalancingPolicy_Policy{rr},
	}})
}

func extensionPolicy(name string, config proto.Message) (*clusterv3.LoadBalancingPolicy_Policy, error) {
	a, err := toAny(config)
	if err != nil {
		return nil, err
	}
	return &clusterv3.LoadBalancingPolicy_Policy{TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: name, TypedConfig: a}}, nil
}

// outlierDetection translates Istio's outlierDetection as istiod does
// (applyOutlierDetection in pilot/pkg/networking/core):
//
//   - success-rate ejection is turned off (enforcing_success_rate 0);
//     Envoy and gRPC-Go would otherwise run it by default;
//   - consecutive5xxErrors sets consecutive_5xx, enforced at 100%, or not
//     at all when it is 0, which turns the 5xx detector off; left out,
//     Envoy's default applies: 5, enforced;
//   - consecutiveGatewayErrors sets consecutive_gateway_failure, enforced
//     at 100% unless it is 0; left out, the gateway detector stays off
//     (Envoy enforces it at 0% by default);
//   - interval and baseEjectionTime are copied, maxEjectionPercent when
//     above 0 (else Envoy's 10%); max_ejection_time is left at Envoy's
//     300s;
//   - splitExternalLocalOriginErrors is copied, with
//     consecutiveLocalOriginFailures enforced at 100% when above 0 (else
//     Envoy's 5, enforced), and local-origin success-rate ejection off.
//
// minHealthPercent, which istiod maps to the panic threshold, and the
// deprecated consecutiveErrors are refused by the config package.
//
// gRPC-Go implements only success-rate and failure-percentage ejection
// (gRFC A50), not the consecutive-error detectors, so gRPC clients accept
// these Clusters and eject nothing, as proxyless gRPC under istiod does.
// meshlet's resolver and balancer implement the consecutive detectors.
func outlierDetection(od *networking.OutlierDetection) *clusterv3.OutlierDetection {
	if od == nil {
		return nil
	}
	enforcing := func(n uint32) *wrapperspb.UInt32Value {
		if n > 0 {
			return wrapperspb.UInt32(100)
		}
		return wrapperspb.UInt32(0)
	}
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	if e := od.GetConsecutive_5XxErrors(); e != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutive_5Xx = enforcing(e.GetValue())
	}
	if e := od.GetConsecutiveGatewayErrors(); e != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutiveGatewayFailure = enforcing(e.GetValue())
	}
	if d := od.GetInterval(); d != nil {
		out.Interval = durationpb.New(d.AsDuration())
	}
	if d := od.GetBaseEjectionTime(); d != nil {
		out.BaseEjectionTime = durationpb.New(d.AsDuration())
	}
	if p := od.GetMaxEjectionPercent(); p > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(min(p, 100)))
	}
	if od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		if n := od.GetConsecutiveLocalOriginFailures().GetValue(); n > 0 {
			out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(n)
			out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
		}
		out.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0)
	}
	return out
}
