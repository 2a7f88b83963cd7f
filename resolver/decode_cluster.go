package resolver

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	randomv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/random/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocalityv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/internal/wire"
)

// Envoy's defaults and gRPC-Go's bounds (envoydefaults), and how deep a
// load-balancing policy may nest.
const (
	defaultMinRingSize = envoydefaults.MinRingSize
	defaultMaxRingSize = envoydefaults.MaxRingSize
	maxRingSize        = envoydefaults.MaxRingSize

	defaultChoiceCount = envoydefaults.ChoiceCount
	defaultMaxRequests = envoydefaults.MaxRequests
	maxPolicyDepth     = 16
)

var (
	roundRobinName   = fullName(&roundrobinv3.RoundRobin{})
	leastRequestName = fullName(&leastrequestv3.LeastRequest{})
	ringHashName     = fullName(&ringhashv3.RingHash{})
	randomName       = fullName(&randomv3.Random{})
	wrrLocalityName  = fullName(&wrrlocalityv3.WrrLocality{})
)

// supportedLB lists what load_balancing_policy entries meshlet reads, for
// messages.
var supportedLB = []string{roundRobinName, leastRequestName, ringHashName, randomName, wrrLocalityName, "a TypedStruct naming " + wire.RandomPolicy + " or " + wire.PeakEWMAPolicy}

func convertCluster(c *clusterv3.Cluster) (Cluster, error) {
	out := Cluster{Name: c.GetName()}

	switch t := c.GetClusterDiscoveryType().(type) {
	case *clusterv3.Cluster_Type:
		if t.Type != clusterv3.Cluster_EDS {
			return Cluster{}, fmt.Errorf("type: %v is not supported by meshlet (only EDS clusters, fed over ADS)", t.Type)
		}
	case *clusterv3.Cluster_ClusterType:
		return Cluster{}, fmt.Errorf("cluster_type %q is not supported by meshlet (only EDS clusters, fed over ADS)", t.ClusterType.GetName())
	case nil:
		return Cluster{}, errors.New("type: unset, which is STATIC: not supported by meshlet (only EDS clusters, fed over ADS)")
	}
	eds := c.GetEdsClusterConfig()
	if eds == nil {
		return Cluster{}, errors.New("eds_cluster_config: missing (an EDS cluster must say where its endpoints come from)")
	}
	if cs := eds.GetEdsConfig(); cs.GetAds() == nil && cs.GetSelf() == nil {
		return Cluster{}, errors.New("eds_cluster_config.eds_config: must be ads or self (meshlet fetches endpoints over its ADS stream)")
	}
	out.EDSServiceName = eds.GetServiceName()
	if out.EDSServiceName == "" {
		out.EDSServiceName = c.GetName()
	}

	if lbp := c.GetLoadBalancingPolicy(); lbp != nil {
		if err := convertLBPolicyList(lbp, &out, 0); err != nil {
			return Cluster{}, fmt.Errorf("load_balancing_policy: %w", err)
		}
	} else if err := convertLBEnum(c, &out); err != nil {
		return Cluster{}, err
	}

	if len(c.GetTransportSocketMatches()) > 0 {
		return Cluster{}, errors.New("transport_socket_matches are not supported by meshlet")
	}
	if ts := c.GetTransportSocket(); ts != nil {
		tls, err := convertUpstreamTLS(ts)
		if err != nil {
			return Cluster{}, fmt.Errorf("transport_socket: %w", err)
		}
		out.TLS = tls
	}
	if od := c.GetOutlierDetection(); od != nil {
		o, err := convertOutlierDetection(od)
		if err != nil {
			return Cluster{}, fmt.Errorf("outlier_detection: %w", err)
		}
		out.OutlierDetection = o
	}
	if err := convertCircuitBreaking(c, &out); err != nil {
		return Cluster{}, err
	}
	if err := convertConnLifetime(c, &out); err != nil {
		return Cluster{}, err
	}
	return out, nil
}

// convertLBEnum reads lb_policy and its config.
func convertLBEnum(c *clusterv3.Cluster, out *Cluster) error {
	switch p := c.GetLbPolicy(); p {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.LBPolicy = WeightedRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		out.LBPolicy = LeastRequest
		return leastRequest(c.GetLeastRequestLbConfig().GetChoiceCount(), out, "least_request_lb_config")
	case clusterv3.Cluster_RING_HASH:
		out.LBPolicy = RingHash
		rh := c.GetRingHashLbConfig()
		if f := rh.GetHashFunction(); f != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			return fmt.Errorf("ring_hash_lb_config.hash_function: %v is not supported by meshlet (use XX_HASH)", f)
		}
		return ringSizes(rh.GetMinimumRingSize(), rh.GetMaximumRingSize(), out, "ring_hash_lb_config")
	case clusterv3.Cluster_RANDOM:
		out.LBPolicy = Random
	case clusterv3.Cluster_MAGLEV:
		return errors.New("lb_policy: MAGLEV is not supported by meshlet (use RING_HASH)")
	case clusterv3.Cluster_CLUSTER_PROVIDED, clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG:
		return fmt.Errorf("lb_policy: %v is not supported by meshlet (use ROUND_ROBIN, LEAST_REQUEST, RING_HASH or RANDOM)", p)
	default:
		return fmt.Errorf("lb_policy: unknown value %d (meshlet supports ROUND_ROBIN, LEAST_REQUEST, RING_HASH and RANDOM)", int32(p))
	}
	return nil
}

// leastRequest checks the choice count: meshlet's balancer draws two, as
// Envoy's default, and another count is refused rather than ignored.
func leastRequest(cc *wrapperspb.UInt32Value, _ *Cluster, at string) error {
	if cc != nil && cc.GetValue() != defaultChoiceCount {
		return fmt.Errorf("%s.choice_count: %d is not supported by meshlet's balancer, which draws %d", at, cc.GetValue(), defaultChoiceCount)
	}
	return nil
}

func ringSizes(minSize, maxSize *wrapperspb.UInt64Value, out *Cluster, at string) error {
	rh := RingHashConfig{MinRingSize: defaultMinRingSize, MaxRingSize: defaultMaxRingSize}
	if minSize != nil {
		rh.MinRingSize = minSize.GetValue()
	}
	if maxSize != nil {
		rh.MaxRingSize = maxSize.GetValue()
	}
	switch {
	case rh.MinRingSize == 0 || rh.MaxRingSize == 0:
		return fmt.Errorf("%s: ring sizes must be positive", at)
	case rh.MinRingSize > maxRingSize || rh.MaxRingSize > maxRingSize:
		return fmt.Errorf("%s: ring sizes above %d are not supported", at, maxRingSize)
	case rh.MinRingSize > rh.MaxRingSize:
		return fmt.Errorf("%s: minimum_ring_size %d is above maximum_ring_size %d", at, rh.MinRingSize, rh.MaxRingSize)
	}
	out.RingHash = rh
	return nil
}

// convertLBPolicyList takes the first policy of the list that meshlet
// implements, as gRPC-Go does (gRFC A52). wrr_locality means its child
// policy, applied within localities weighted by their weights, which is how
// meshlet's balancer always weighs localities.
func convertLBPolicyList(lbp *clusterv3.LoadBalancingPolicy, out *Cluster, depth int) error {
	if depth > maxPolicyDepth {
		return fmt.Errorf("nested more than %d deep", maxPolicyDepth)
	}
	var skipped []string
	for i, p := range lbp.GetPolicies() {
		cfg := p.GetTypedExtensionConfig().GetTypedConfig()
		at := fmt.Sprintf("policies[%d]", i)
		typ := messageName(cfg.GetTypeUrl())
		switch typ {
		case roundRobinName:
			if err := unpackValid(cfg, &roundrobinv3.RoundRobin{}); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			out.LBPolicy = WeightedRoundRobin
			return nil
		case leastRequestName:
			lr := &leastrequestv3.LeastRequest{}
			if err := unpackValid(cfg, lr); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			out.LBPolicy = LeastRequest
			return leastRequest(lr.GetChoiceCount(), out, at)
		case ringHashName:
			rh := &ringhashv3.RingHash{}
			if err := unpackValid(cfg, rh); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			if f := rh.GetHashFunction(); f != ringhashv3.RingHash_DEFAULT_HASH && f != ringhashv3.RingHash_XX_HASH {
				return fmt.Errorf("%s.hash_function: %v is not supported by meshlet (use XX_HASH)", at, f)
			}
			out.LBPolicy = RingHash
			return ringSizes(rh.GetMinimumRingSize(), rh.GetMaximumRingSize(), out, at)
		case randomName:
			if err := unpackValid(cfg, &randomv3.Random{}); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			out.LBPolicy = Random
			return nil
		case wrrLocalityName:
			w := &wrrlocalityv3.WrrLocality{}
			if err := unpackValid(cfg, w); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			if err := convertLBPolicyList(w.GetEndpointPickingPolicy(), out, depth+1); err != nil {
				return fmt.Errorf("%s.endpoint_picking_policy: %w", at, err)
			}
			return nil
		}
		if slices.Contains(typedStructs, typ) {
			ts := &xdstypev3.TypedStruct{}
			if err := proto.Unmarshal(cfg.GetValue(), ts); err != nil {
				return fmt.Errorf("%s: cannot unmarshal %s: %w", at, typ, err)
			}
			name := ts.GetTypeUrl()[strings.LastIndex(ts.GetTypeUrl(), "/")+1:]
			switch name {
			case wire.RandomPolicy:
				out.LBPolicy = Random
				return nil
			case wire.PeakEWMAPolicy:
				out.LBPolicy = PeakEWMA
				return nil
			}
			typ = typ + " " + name
		}
		if typ == "" {
			typ = "(no typed_config)"
		}
		skipped = append(skipped, typ)
	}
	return fmt.Errorf("no policy that meshlet supports (got %s; meshlet reads %s)", listOrNone(skipped), strings.Join(supportedLB, ", "))
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// convertUpstreamTLS reads how endpoints are reached over TLS. As gRPC-Go,
// it needs the roots from a certificate provider.
func convertUpstreamTLS(ts *corev3.TransportSocket) (*UpstreamTLS, error) {
	if ts.GetName() != transportSocketTLS {
		return nil, fmt.Errorf("name %q, want %q", ts.GetName(), transportSocketTLS)
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := unpack(ts.GetTypedConfig(), ctx); err != nil {
		return nil, err
	}
	common := ctx.GetCommonTlsContext()
	if common == nil {
		return nil, errors.New("UpstreamTlsContext without a common_tls_context")
	}
	if err := checkCommonTLS(common); err != nil {
		return nil, err
	}
	var vc *tlsv3.CertificateValidationContext
	roots := false
	switch v := common.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc = v.ValidationContext
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		vc = v.CombinedValidationContext.GetDefaultValidationContext()
		roots = v.CombinedValidationContext.GetValidationContextCertificateProviderInstance() != nil //nolint:staticcheck // gRPC-Go still reads it
	case *tlsv3.CommonTlsContext_ValidationContextCertificateProviderInstance:
		roots = true
	case nil:
	default:
		return nil, fmt.Errorf("common_tls_context: %s is not supported by meshlet", oneofName(common, "validation_context_type"))
	}
	if vc.GetCaCertificateProviderInstance() != nil {
		roots = true
	}
	if !roots {
		return nil, errors.New("common_tls_context: no ca_certificate_provider_instance: a client needs the roots that verify its peers")
	}
	switch {
	case len(vc.GetVerifyCertificateSpki()) > 0, len(vc.GetVerifyCertificateHash()) > 0:
		return nil, errors.New("certificate pinning (verify_certificate_spki, verify_certificate_hash) is not supported by meshlet")
	case vc.GetCrl() != nil:
		return nil, errors.New("crl is not supported by meshlet")
	case vc.GetCustomValidatorConfig() != nil:
		return nil, errors.New("custom_validator_config is not supported by meshlet")
	}
	out := &UpstreamTLS{SNI: ctx.GetSni()}
	for i, m := range vc.GetMatchSubjectAltNames() {
		sm, err := convertStringMatcher(m)
		if err != nil {
			return nil, fmt.Errorf("match_subject_alt_names[%d]: %w", i, err)
		}
		if sm.Kind == StringExact && !sm.IgnoreCase {
			out.SANs = append(out.SANs, sm.Value)
		} else {
			out.SANMatchers = append(out.SANMatchers, sm)
		}
	}
	if err := checkEnvoy(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// convertOutlierDetection fills in Envoy's defaults and refuses
// percentages above 100, as gRPC-Go does.
func convertOutlierDetection(od *clusterv3.OutlierDetection) (*OutlierDetection, error) {
	out := &OutlierDetection{
		Interval:                           envoydefaults.OutlierInterval,
		BaseEjectionTime:                   envoydefaults.BaseEjectionTime,
		MaxEjectionTime:                    envoydefaults.MaxEjectionTime,
		MaxEjectionPercent:                 envoydefaults.MaxEjectionPercent,
		Consecutive5xx:                     envoydefaults.Consecutive5xx,
		EnforcingConsecutive5xx:            envoydefaults.EnforcingConsecutive5xx,
		ConsecutiveGatewayFailure:          envoydefaults.ConsecutiveGatewayFailure,
		EnforcingConsecutiveGatewayFailure: envoydefaults.EnforcingConsecutiveGatewayFailure,
		SuccessRateMinimumHosts:            envoydefaults.SuccessRateMinimumHosts,
		SuccessRateRequestVolume:           envoydefaults.SuccessRateRequestVolume,
		SuccessRateStdevFactor:             envoydefaults.SuccessRateStdevFactor,
		EnforcingSuccessRate:               envoydefaults.EnforcingSuccessRate,
		FailurePercentageThreshold:         envoydefaults.FailurePercentageThreshold,
		FailurePercentageMinimumHosts:      envoydefaults.FailurePercentageMinimumHosts,
		FailurePercentageRequestVolume:     envoydefaults.FailurePercentageRequestVolume,
		EnforcingFailurePercentage:         envoydefaults.EnforcingFailurePercentage,

		SplitExternalLocalOriginErrors:         od.GetSplitExternalLocalOriginErrors(),
		ConsecutiveLocalOriginFailure:          envoydefaults.ConsecutiveLocalOriginFailure,
		EnforcingConsecutiveLocalOriginFailure: envoydefaults.EnforcingConsecutiveLocalOriginFailure,
	}
	var err error
	if od.GetInterval() != nil {
		if out.Interval, err = duration(od.GetInterval(), "interval"); err != nil {
			return nil, err
		}
	}
	if od.GetBaseEjectionTime() != nil {
		if out.BaseEjectionTime, err = duration(od.GetBaseEjectionTime(), "base_ejection_time"); err != nil {
			return nil, err
		}
	}
	if od.GetMaxEjectionTime() != nil {
		if out.MaxEjectionTime, err = duration(od.GetMaxEjectionTime(), "max_ejection_time"); err != nil {
			return nil, err
		}
	}
	out.MaxEjectionTime = max(out.MaxEjectionTime, out.BaseEjectionTime)
	for _, f := range []struct {
		in      *wrapperspb.UInt32Value
		field   string
		to      *uint32
		percent bool
	}{
		{od.GetMaxEjectionPercent(), "max_ejection_percent", &out.MaxEjectionPercent, true},
		{od.GetConsecutive_5Xx(), "consecutive_5xx", &out.Consecutive5xx, false},
		{od.GetEnforcingConsecutive_5Xx(), "enforcing_consecutive_5xx", &out.EnforcingConsecutive5xx, true},
		{od.GetConsecutiveGatewayFailure(), "consecutive_gateway_failure", &out.ConsecutiveGatewayFailure, false},
		{od.GetEnforcingConsecutiveGatewayFailure(), "enforcing_consecutive_gateway_failure", &out.EnforcingConsecutiveGatewayFailure, true},
		{od.GetSuccessRateMinimumHosts(), "success_rate_minimum_hosts", &out.SuccessRateMinimumHosts, false},
		{od.GetSuccessRateRequestVolume(), "success_rate_request_volume", &out.SuccessRateRequestVolume, false},
		{od.GetSuccessRateStdevFactor(), "success_rate_stdev_factor", &out.SuccessRateStdevFactor, false},
		{od.GetEnforcingSuccessRate(), "enforcing_success_rate", &out.EnforcingSuccessRate, true},
		{od.GetFailurePercentageThreshold(), "failure_percentage_threshold", &out.FailurePercentageThreshold, true},
		{od.GetFailurePercentageMinimumHosts(), "failure_percentage_minimum_hosts", &out.FailurePercentageMinimumHosts, false},
		{od.GetFailurePercentageRequestVolume(), "failure_percentage_request_volume", &out.FailurePercentageRequestVolume, false},
		{od.GetEnforcingFailurePercentage(), "enforcing_failure_percentage", &out.EnforcingFailurePercentage, true},
		{od.GetConsecutiveLocalOriginFailure(), "consecutive_local_origin_failure", &out.ConsecutiveLocalOriginFailure, false},
		{od.GetEnforcingConsecutiveLocalOriginFailure(), "enforcing_consecutive_local_origin_failure", &out.EnforcingConsecutiveLocalOriginFailure, true},
	} {
		if f.in == nil {
			continue
		}
		if f.percent && f.in.GetValue() > 100 {
			return nil, fmt.Errorf("%s: %d is above 100 percent", f.field, f.in.GetValue())
		}
		*f.to = f.in.GetValue()
	}
	return out, nil
}
