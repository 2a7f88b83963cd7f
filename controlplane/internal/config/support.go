package config

import (
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
)

// Why a field is refused. Each reason says whether meshlet plans to
// implement the field, and what it waits for, or why it is out of scope
// for a proxyless mesh; and what to do now. A refusal is one line of an
// error: "<file>: <resource>: <field path>: <reason>".
const (
	// reasonUnknownField is for a field that Istio added after this
	// meshlet was written; TestRefusalReasons keeps every field of the
	// Istio API that meshlet builds with from falling back to it.
	reasonUnknownField = "not known to this version of meshlet, which refuses what it does not implement (remove it)"

	planned    = "planned, not yet supported: "
	outOfScope = "out of scope for meshlet: "

	reasonConnectionPool   = planned + "meshlet bounds requests and retries in flight (http2MaxRequests, maxRetries) and not yet connections or their lifetime (remove it for now)"
	reasonTCPSettings      = planned + "meshlet bounds the connections open (tcp.maxConnections) and does not yet set how they are made, kept alive or how long they live (remove it for now)"
	reasonPendingRequests  = planned + "meshlet's clients queue no request for a connection (gRPC and HTTP/2 multiplex); http2MaxRequests bounds requests in flight (use it, and remove this)"
	reasonProtocolChoice   = outOfScope + "meshlet's clients speak the protocol of their transport, gRPC over HTTP/2 or the caller's net/http (remove it)"
	reasonRetryBudget      = planned + "the budget counts the requests in flight now; a budget over an interval is not implemented (remove it)"
	reasonHeaders          = planned + "setting and removing headers is on meshlet's roadmap, for gRPC and HTTP alike (set them in the calling code for now)"
	reasonStatPrefix       = planned + "meshlet's metrics label each request with its route's name, not a stat prefix (remove it; give the route a name)"
	reasonPortLevel        = planned + "per-port traffic policies are on meshlet's roadmap (set the policy for the whole rule or for a subset for now)"
	reasonLocality         = planned + "locality weights and failover order are on meshlet's roadmap (remove it for now)"
	reasonWarmup           = planned + "slow start for new endpoints is on meshlet's roadmap (remove it for now)"
	reasonUtilization      = planned + "balancing by the load that endpoints report is on meshlet's roadmap (use simple or consistentHash for now)"
	reasonOutlierCodes     = planned + "choosing which status codes count as errors is on meshlet's roadmap; 5xx count now (remove it for now)"
	reasonFailureRate      = planned + "failure-percentage ejection is on meshlet's roadmap (use consecutive5xxErrors or consecutiveGatewayErrors for now)"
	reasonRemoteRetries    = planned + "retrying in other localities is on meshlet's roadmap (remove it for now)"
	reasonRequestPrincipal = planned + "request principals come from JWT request authentication, which is on meshlet's roadmap (use principals, namespaces or serviceAccounts for now)"

	reasonExportTo       = outOfScope + "every namespace sees every resource, as with exportTo: [\"*\"] (remove it)"
	reasonTCP            = outOfScope + "it routes TCP and TLS connections, and meshlet routes HTTP and gRPC requests only (remove it)"
	reasonMirror         = outOfScope + "a proxyless client would send each mirrored request twice, from the caller's own process (remove it)"
	reasonCORS           = outOfScope + "CORS answers browsers, which reach services through an ingress, not the mesh (handle CORS in the server, or at the ingress)"
	reasonRewrite        = outOfScope + "the caller sends the path and authority it calls, and gRPC-Go cannot rewrite them (change them in the caller, or serve both)"
	reasonRedirect       = outOfScope + "a redirect needs a client that follows it, and gRPC clients cannot (call the new location directly)"
	reasonDirectResponse = outOfScope + "meshlet's clients send every request to a server and answer none themselves (serve the response from a server)"
	reasonDelegate       = outOfScope + "meshlet keeps the routes of a host in one VirtualService (write the delegate's routes here)"
	reasonScheme         = outOfScope + "every call in the mesh has the same scheme, with mTLS below it (remove it)"
	reasonAuthority      = outOfScope + "a route applies only to the hosts of its VirtualService already (list the hosts in spec.hosts, and remove it)"
	reasonCaller         = outOfScope + "every client gets the same routes and clusters, so they cannot depend on the caller (route on a header the caller sets)"
	reasonQueryParams    = outOfScope + "gRPC-Go skips any route that matches query parameters, and meshlet's routes serve gRPC and HTTP clients alike (match on uri, headers or method)"
	reasonPreviousHosts  = outOfScope + "meshlet's HTTP client always retries on endpoints it has not tried yet, and gRPC-Go has no such setting (remove it)"
	reasonTLSField       = outOfScope + "meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)"
	reasonHashKey        = outOfScope + "gRPC-Go hashes only on request headers, and meshlet balances gRPC and HTTP calls alike (use httpHeaderName)"
	reasonHashFunction   = outOfScope + "gRPC-Go has ring hash only (use ringHash, or leave it out)"
	reasonMinHealth      = outOfScope + "it sets Envoy's panic threshold, and neither gRPC-Go nor meshlet's balancer has a panic mode (remove it)"
	reasonTunnel         = outOfScope + "it tunnels connections through a proxy, and meshlet's clients connect directly (remove it)"
	reasonProxyProtocol  = outOfScope + "it tells a server the address a proxy received a connection from, and there is no proxy (remove it)"
	reasonVirtualIP      = outOfScope + "clients dial the host name, never a virtual IP, as nothing captures their traffic (remove it)"
	reasonNetwork        = outOfScope + "the mesh is one network, with no gateway between networks (remove it)"
	reasonTargetRef      = outOfScope + "it attaches a policy to a gateway or a Kubernetes Service, and meshlet has neither (select workloads with selector.matchLabels)"
	reasonIPBlocks       = outOfScope + "callers are identified by their mTLS identity, not their address (use principals, namespaces or serviceAccounts)"
	reasonHosts          = outOfScope + "a workload's policy covers every host it serves (use paths, methods or ports)"

	reasonDeprecated = "deprecated by Istio: use consecutive5xxErrors, or consecutiveGatewayErrors for what this field counted (502, 503 and 504)"
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
		faultFields,
	), map[string]string{
		"exportTo":                   reasonExportTo,
		"tls":                        reasonTCP,
		"tcp":                        reasonTCP,
		"http.match.scheme":          reasonScheme,
		"http.match.authority":       reasonAuthority,
		"http.match.sourceLabels":    reasonCaller,
		"http.match.sourceNamespace": reasonCaller,
		"http.match.queryParams":     reasonQueryParams,
		"http.match.statPrefix":      reasonStatPrefix,
		"http.route.headers":         reasonHeaders,
		"http.headers":               reasonHeaders,
		"http.redirect":              reasonRedirect,
		"http.directResponse":        reasonDirectResponse,
		"http.delegate":              reasonDelegate,
		"http.rewrite":               reasonRewrite,
		"http.mirror":                reasonMirror,
		"http.mirrors":               reasonMirror,
		"http.mirrorPercent":         reasonMirror,
		"http.mirrorPercentage":      reasonMirror,
		"http.corsPolicy":            reasonCORS,

		"http.retries.retryRemoteLocalities":    reasonRemoteRetries,
		"http.retries.retryIgnorePreviousHosts": reasonPreviousHosts,

		"http.fault.delay.exponentialDelay": reasonExponentialDelay,
		"http.fault.abort.http2Error":       reasonHTTP2Error,
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

	// connectionPoolFields are the limits meshlet's data plane enforces:
	// Envoy's circuit-breaker thresholds and retry budget.
	connectionPoolFields = []string{
		"connectionPool.http.http2MaxRequests",
		"connectionPool.http.maxRetries",
		"connectionPool.tcp.maxConnections",
		"connectionPool.http.idleTimeout",
		"connectionPool.http.maxRequestsPerConnection",
		"retryBudget.percent",
		"retryBudget.minRetryConcurrency",
	}

	trafficPolicyFields = concat([]string{"tls.mode"}, loadBalancerFields, outlierDetectionFields, connectionPoolFields)

	destinationRuleSupport = newSupport(concat(
		[]string{"host", "subsets.name", "subsets.labels"},
		under("trafficPolicy", trafficPolicyFields...),
		under("subsets.trafficPolicy", trafficPolicyFields...),
	), with(trafficPolicyReasons("trafficPolicy", "subsets.trafficPolicy"), map[string]string{
		"exportTo":         reasonExportTo,
		"workloadSelector": reasonCaller,
	}))

	workloadEntryFields = []string{"address", "ports", "labels", "locality", "weight", "serviceAccount"}

	workloadEntrySupport = newSupport(workloadEntryFields, map[string]string{"network": reasonNetwork})

	// A WorkloadGroup binds a service to the service account whose
	// workloads may register as its instances, and gives them labels.
	workloadGroupSupport = newSupport([]string{
		"metadata.labels",
		"template.serviceAccount",
		"template.labels",
	}, map[string]string{
		"metadata.annotations": outOfScope + "Istio puts them on the WorkloadEntry objects it makes for registered workloads, and meshlet makes none (remove it)",
		"template.address":     outOfScope + "a registered instance's address is the one its connection comes from (remove it)",
		"template.ports":       outOfScope + "instances register the ports they serve (remove it)",
		"template.weight":      outOfScope + "instances register their weight (remove it)",
		"template.locality":    outOfScope + "instances register their locality (remove it)",
		"template.network":     reasonNetwork,
		"probe":                outOfScope + "a registration lives as long as its connection, and servers report SERVING themselves (remove it)",
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
	), map[string]string{
		"addresses":         reasonVirtualIP,
		"exportTo":          reasonExportTo,
		"endpoints.network": reasonNetwork,
	})

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
		"provider":                               outOfScope + "a CUSTOM provider is an external authorizer, which meshlet does not call (use ALLOW or DENY rules)",
		"rules.from.source.requestPrincipals":    reasonRequestPrincipal,
		"rules.from.source.notRequestPrincipals": reasonRequestPrincipal,
		"rules.from.source.ipBlocks":             reasonIPBlocks,
		"rules.from.source.notIpBlocks":          reasonIPBlocks,
		"rules.from.source.remoteIpBlocks":       reasonIPBlocks,
		"rules.from.source.notRemoteIpBlocks":    reasonIPBlocks,
		"rules.from.source.trustDomains":         outOfScope + "principals name the trust domain already (use principals)",
		"rules.from.source.notTrustDomains":      outOfScope + "notPrincipals name the trust domain already (use notPrincipals)",
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

// trafficPolicyReasons are the refused fields of a traffic policy at each
// of prefixes.
func trafficPolicyReasons(prefixes ...string) map[string]string {
	m := map[string]string{}
	tls := (&networking.ClientTLSSettings{}).ProtoReflect().Descriptor().Fields()
	for _, p := range prefixes {
		for i := 0; i < tls.Len(); i++ {
			if name := tls.Get(i).JSONName(); name != "mode" {
				m[p+".tls."+name] = reasonTLSField
			}
		}
		tcp := (&networking.ConnectionPoolSettings_TCPSettings{}).ProtoReflect().Descriptor().Fields()
		for i := 0; i < tcp.Len(); i++ {
			if name := tcp.Get(i).JSONName(); name != "maxConnections" {
				m[p+".connectionPool.tcp."+name] = reasonTCPSettings
			}
		}
		for k, r := range map[string]string{
			"connectionPool.http.maxConcurrentStreams":    reasonConnectionPool,
			"connectionPool.http.http2KeepAlive":          reasonConnectionPool,
			"connectionPool.http.http1MaxPendingRequests": reasonPendingRequests,
			"connectionPool.http.h2UpgradePolicy":         reasonProtocolChoice,
			"connectionPool.http.useClientProtocol":       reasonProtocolChoice,
			"retryBudget.budgetInterval":                  reasonRetryBudget,
			"portLevelSettings":                           reasonPortLevel,
			"tunnel":                                      reasonTunnel,
			"proxyProtocol":                               reasonProxyProtocol,

			"loadBalancer.localityLbSetting":                     reasonLocality,
			"loadBalancer.zoneAwareLbSetting":                    reasonLocality,
			"loadBalancer.warmup":                                reasonWarmup,
			"loadBalancer.warmupDurationSecs":                    reasonWarmup,
			"loadBalancer.backendUtilization":                    reasonUtilization,
			"loadBalancer.consistentHash.httpCookie":             reasonHashKey,
			"loadBalancer.consistentHash.useSourceIp":            reasonHashKey,
			"loadBalancer.consistentHash.httpQueryParameterName": reasonHashKey,
			"loadBalancer.consistentHash.maglev":                 reasonHashFunction,

			"outlierDetection.consecutiveErrors":              reasonDeprecated,
			"outlierDetection.minHealthPercent":               reasonMinHealth,
			"outlierDetection.outlierDetectionHttpErrorCodes": reasonOutlierCodes,
			"outlierDetection.failurePercentageThreshold":     reasonFailureRate,
		} {
			m[p+"."+k] = r
		}
	}
	return m
}

// with adds the entries of more to m and returns m.
func with(m, more map[string]string) map[string]string {
	maps.Copy(m, more)
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
	return reasonUnknownField, true
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
