package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
)

// Reasons for fields that decode but that meshlet does not implement.
const (
	reasonUnsupported  = "not supported by meshlet (remove it)"
	reasonFault        = "not supported yet (fault injection arrives with the policy work)"
	reasonTLSField     = "not supported by meshlet (meshlet issues the certificates: set mode ISTIO_MUTUAL or DISABLE, and nothing else)"
	reasonPolicy       = "not supported yet (arrives with the policy work)"
	reasonDeprecated   = "deprecated: use consecutive5xxErrors, or consecutiveGatewayErrors for what this field counted (502, 503 and 504)"
	reasonMinHealth    = "not supported by meshlet (it sets Envoy's panic threshold, and meshlet's balancer has no panic mode; remove it)"
	reasonHashKey      = "not supported by meshlet (use httpHeaderName)"
	reasonHashFunction = "not supported by meshlet (use ringHash, or leave it out)"
)

// support is the set of fields of one kind that meshlet implements. Any
// other field that is set is refused, so a field that Istio adds later is
// refused until meshlet supports it.
type support struct {
	leaves  map[string]bool   // allowed field patterns, taken whole
	inner   map[string]bool   // patterns of messages that hold allowed fields
	reasons map[string]string // refused patterns with a reason of their own
}

// A pattern is a spec field path in JSON names without indices or map keys:
// "http.route.destination.host".
func newSupport(leaves []string, reasons map[string]string) *support {
	s := &support{leaves: map[string]bool{}, inner: map[string]bool{}, reasons: reasons}
	for _, l := range leaves {
		s.leaves[l] = true
		for i := strings.LastIndexByte(l, '.'); i > 0; i = strings.LastIndexByte(l[:i], '.') {
			s.inner[l[:i]] = true
		}
	}
	return s
}

// under returns prefix.name for each name.
func under(prefix string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + "." + n
	}
	return out
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

var (
	stringMatchFields = []string{"exact", "prefix", "regex"}

	virtualServiceSupport = newSupport(concat(
		[]string{
			"hosts",
			"http.name",
			"gateways",
			"http.match.name",
			"http.match.port",
			"http.match.gateways",
			"http.match.ignoreUriCase",
			"http.route.destination.host",
			"http.route.destination.subset",
			"http.route.destination.port.number",
			"http.route.weight",
			"http.timeout",
			"http.retries.attempts",
			"http.retries.perTryTimeout",
			"http.retries.retryOn",
			"http.retries.backoff",
		},
		under("http.match.uri", stringMatchFields...),
		under("http.match.headers", stringMatchFields...),
		under("http.match.withoutHeaders", stringMatchFields...),
		under("http.match.method", stringMatchFields...),
	), map[string]string{
		"http.fault": reasonFault,
	})

	loadBalancerFields = []string{
		"loadBalancer.simple",
		"loadBalancer.consistentHash.httpHeaderName",
		"loadBalancer.consistentHash.minimumRingSize",
		"loadBalancer.consistentHash.ringHash.minimumRingSize",
	}

	// outlierDetectionFields are the fields of Istio's outlierDetection
	// that meshlet implements; the deprecated consecutiveErrors and
	// minHealthPercent are refused with reasons of their own.
	outlierDetectionFields = under("outlierDetection",
		"consecutive5xxErrors",
		"consecutiveGatewayErrors",
		"interval",
		"baseEjectionTime",
		"maxEjectionPercent",
		"splitExternalLocalOriginErrors",
		"consecutiveLocalOriginFailures",
	)

	trafficPolicyFields = concat([]string{"tls.mode"}, loadBalancerFields, outlierDetectionFields)

	destinationRuleSupport = newSupport(concat(
		[]string{"host", "subsets.name", "subsets.labels"},
		under("trafficPolicy", trafficPolicyFields...),
		under("subsets.trafficPolicy", trafficPolicyFields...),
	), trafficPolicyReasons("trafficPolicy", "subsets.trafficPolicy"))

	workloadEntryFields = []string{"address", "ports", "labels", "locality", "weight", "serviceAccount"}

	workloadEntrySupport = newSupport(workloadEntryFields, nil)

	// A WorkloadGroup binds a service to the service account whose
	// workloads may register as its instances, and gives them labels.
	workloadGroupSupport = newSupport([]string{
		"metadata.labels",
		"template.serviceAccount",
		"template.labels",
	}, map[string]string{
		"metadata.annotations": "is out of scope for meshlet: Istio puts them on the WorkloadEntry objects it makes for registered workloads, and meshlet makes none (remove it)",
		"template.address":     "not supported by meshlet (a registered instance's address is the one its connection comes from; remove it)",
		"template.ports":       "not supported by meshlet (instances register the ports they serve; remove it)",
		"template.weight":      "not supported by meshlet (instances register their weight; remove it)",
		"template.locality":    "not supported by meshlet (instances register their locality; remove it)",
		"template.network":     "not supported by meshlet (meshlet has one network; remove it)",
		"probe":                "not supported by meshlet (a registration lives as long as its connection, and servers report SERVING themselves; remove it)",
	})

	serviceEntrySupport = newSupport(concat(
		[]string{
			"hosts",
			"ports.number",
			"ports.protocol",
			"ports.name",
			"ports.targetPort",
			"resolution",
			"location",
			"workloadSelector.labels",
			"subjectAltNames",
		},
		under("endpoints", workloadEntryFields...),
	), nil)

	peerAuthenticationSupport = newSupport([]string{
		"selector.matchLabels",
		"mtls.mode",
		"portLevelMtls.mode",
	}, nil)

	authorizationPolicySupport = newSupport(concat(
		[]string{"selector.matchLabels", "action", "rules.when.key", "rules.when.values", "rules.when.notValues"},
		under("rules.from.source", sourceFields...),
		under("rules.to.operation", operationFields...),
	), map[string]string{
		"targetRef":                              reasonTargetRef,
		"targetRefs":                             reasonTargetRef,
		"provider":                               "not supported by meshlet (a CUSTOM provider is an external authorizer, which meshlet does not call; use ALLOW or DENY rules)",
		"rules.from.source.requestPrincipals":    reasonRequestPrincipals,
		"rules.from.source.notRequestPrincipals": reasonRequestPrincipals,
		"rules.from.source.ipBlocks":             reasonIPBlocks,
		"rules.from.source.notIpBlocks":          reasonIPBlocks,
		"rules.from.source.remoteIpBlocks":       reasonIPBlocks,
		"rules.from.source.notRemoteIpBlocks":    reasonIPBlocks,
		"rules.from.source.trustDomains":         "not supported by meshlet (use principals, which name the trust domain)",
		"rules.from.source.notTrustDomains":      "not supported by meshlet (use notPrincipals, which name the trust domain)",
		"rules.to.operation.hosts":               reasonHosts,
		"rules.to.operation.notHosts":            reasonHosts,
	})
)

// The fields of an AuthorizationPolicy source and operation that meshlet
// implements; validation says "set at least one of" these.
var (
	sourceFields    = []string{"principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts", "notServiceAccounts"}
	operationFields = []string{"methods", "notMethods", "paths", "notPaths", "ports", "notPorts"}
)

const (
	reasonTargetRef         = "not supported by meshlet (it attaches a policy to a gateway or a Service object; select workloads with selector.matchLabels)"
	reasonRequestPrincipals = "not supported by meshlet (request principals come from JWT authentication, which meshlet does not do yet; use principals, namespaces or serviceAccounts)"
	reasonIPBlocks          = "not supported by meshlet (callers are identified by their mTLS identity, not their address; use principals, namespaces or serviceAccounts)"
	reasonHosts             = "not supported by meshlet (a workload's policy covers every host it serves; use paths, methods or ports)"
)

func trafficPolicyReasons(prefixes ...string) map[string]string {
	m := map[string]string{}
	tls := (&networking.ClientTLSSettings{}).ProtoReflect().Descriptor().Fields()
	for _, p := range prefixes {
		for i := 0; i < tls.Len(); i++ {
			if name := tls.Get(i).JSONName(); name != "mode" {
				m[p+".tls."+name] = reasonTLSField
			}
		}
		m[p+".outlierDetection.consecutiveErrors"] = reasonDeprecated
		m[p+".outlierDetection.minHealthPercent"] = reasonMinHealth
		m[p+".connectionPool"] = reasonPolicy
		for _, k := range []string{"httpCookie", "useSourceIp", "httpQueryParameterName"} {
			m[p+".loadBalancer.consistentHash."+k] = reasonHashKey
		}
		m[p+".loadBalancer.consistentHash.maglev"] = reasonHashFunction
	}
	return m
}

// refusal says whether the field at pattern is refused, and why.
func (s *support) refusal(pattern string) (reason string, refused bool) {
	if s.leaves[pattern] || s.inner[pattern] {
		return "", false
	}
	if r := s.reasons[pattern]; r != "" {
		return r, true
	}
	return reasonUnsupported, true
}

// check reports every field set in m, at spec path path and pattern
// pattern, that meshlet does not support.
func (s *support) check(m protoreflect.Message, path, pattern string, add func(path, reason string)) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := path + "." + fd.JSONName()
		pat := fd.JSONName()
		if pattern != "" {
			pat = pattern + "." + pat
		}
		if reason, refused := s.refusal(pat); refused {
			add(p, reason)
		} else if !s.leaves[pat] {
			s.checkValue(fd, m.Get(fd), p, pat, add)
		}
	}
}

// checkValue descends into the messages held by a field.
func (s *support) checkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path, pattern string, add func(path, reason string)) {
	switch {
	case fd.IsMap():
		if fd.MapValue().Message() == nil {
			return
		}
		mv := v.Map()
		keys := make([]protoreflect.MapKey, 0, mv.Len())
		mv.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, k)
			return true
		})
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			s.check(mv.Get(k).Message(), path+"["+strconv.Quote(k.String())+"]", pattern, add)
		}
	case fd.IsList():
		if fd.Message() == nil {
			return
		}
		l := v.List()
		for i := 0; i < l.Len(); i++ {
			s.check(l.Get(i).Message(), fmt.Sprintf("%s[%d]", path, i), pattern, add)
		}
	case fd.Message() != nil:
		s.check(v.Message(), path, pattern, add)
	}
}
