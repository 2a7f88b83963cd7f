package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/internal/wire"
)

// reportFunc reports a problem at a field path of one resource.
type reportFunc func(path, reason string)

func (f reportFunc) add(path, format string, args ...any) { f(path, fmt.Sprintf(format, args...)) }

// validateSet validates the resources as a set (each was validated on its
// own when parsed, validateResource): hosts claimed twice, subsets that no
// DestinationRule defines, namespace policies and WorkloadEntries that no
// ServiceEntry selects.
func (p *parser) validateSet() {
	p.validateHostClaims()
	p.validateSubsets()
	p.validateNamespacePolicies()
	p.validateWorkloadEntries()
}

// validateResource checks what one resource says on its own. It runs when
// its document is parsed, so that a reload does not check again the
// resources of the files it takes from the cache: at 1,000
// WorkloadEntries that was a tenth of a file churn's load. Its errors
// follow the document's own, and go with them if merge refuses the
// document as a duplicate.
func (p *parser) validateResource(r *resource) {
	report := p.reporter(r)
	switch s := r.spec.(type) {
	case *networking.ServiceEntry:
		validateServiceEntry(s, r.raw, report)
	case *networking.WorkloadEntry:
		validateWorkload(s, "spec", nil, report)
	case *networking.WorkloadGroup:
		validateWorkloadGroup(s, report)
	case *networking.VirtualService:
		validateVirtualService(s, p.opts, report)
	case *networking.DestinationRule:
		validateDestinationRule(s, r.meta.Annotations, report)
	case *security.PeerAuthentication:
		validatePeerAuthentication(s, report)
	case *security.AuthorizationPolicy:
		validateAuthorizationPolicy(s, r.meta.Annotations, report)
	}
}

// validateWorkloadEntries refuses a WorkloadEntry that no ServiceEntry
// selects, and port names that the ServiceEntries selecting it do not
// have: meshlet would use neither. (In Istio a Kubernetes Service may
// select it; meshlet reads no Services.)
//
// ServiceEntries are indexed by namespace and one label of their selector
// (the first by key), so that each entry is checked against the few that
// may select it, not against all: at 100 services and 10,000 entries the
// scan was a million label checks a load.
//
// What it finds for an entry depends on the entry and on the
// ServiceEntries with a selector, in the config's order, alone. A Loader
// keeps it on the entry's resource (which a reload takes from memory
// with its document), and takes it from there while those ServiceEntries
// are the same resources in the same order: a churn of WorkloadEntries
// checks only the entries it changed.
func (p *parser) validateWorkloadEntries() {
	type key struct{ namespace, k, v string }
	var entries []*resource
	byLabel := map[key][]int{}      // indexes into entries
	anyLabels := map[string][]int{} // an empty selector selects its whole namespace
	for _, r := range p.resources {
		se, ok := r.spec.(*networking.ServiceEntry)
		if !ok || se.WorkloadSelector == nil {
			continue
		}
		i := len(entries)
		entries = append(entries, r)
		if len(se.WorkloadSelector.Labels) == 0 {
			anyLabels[r.meta.Namespace] = append(anyLabels[r.meta.Namespace], i)
			continue
		}
		k := sortedKeys(se.WorkloadSelector.Labels)[0]
		kk := key{r.meta.Namespace, k, se.WorkloadSelector.Labels[k]}
		byLabel[kk] = append(byLabel[kk], i)
	}
	gen := p.selection.generation(entries)
	var candidates []int
	for _, r := range p.resources {
		we, ok := r.spec.(*networking.WorkloadEntry)
		if !ok {
			continue
		}
		if gen != 0 && r.selectedGen == gen {
			p.errs = append(p.errs, r.selectedErrs...)
			continue
		}
		start := len(p.errs)
		candidates = append(candidates[:0], anyLabels[r.meta.Namespace]...)
		for k, v := range we.Labels {
			candidates = append(candidates, byLabel[key{r.meta.Namespace, k, v}]...)
		}
		slices.Sort(candidates) // the config's order, as by[0] names the first
		var by []*resource
		names := map[string]bool{}
		for _, i := range candidates {
			e := entries[i]
			se := e.spec.(*networking.ServiceEntry)
			if e.meta.Namespace != r.meta.Namespace || !labelsSelect(se.WorkloadSelector.Labels, we.Labels) {
				continue
			}
			by = append(by, e)
			for _, port := range se.Ports {
				names[port.Name] = true
			}
		}
		switch {
		case len(by) == 0:
			p.reporter(r).add("spec.labels", "no ServiceEntry in namespace %s selects this WorkloadEntry, so nothing sends it traffic (add a ServiceEntry whose workloadSelector.labels match these labels)", r.meta.Namespace)
		case len(we.Ports) > 0:
			report := p.reporter(r)
			for _, name := range sortedKeys(we.Ports) {
				if !names[name] {
					report.add(fmt.Sprintf("spec.ports[%q]", name), "%q is not the name of a port of %s, which selects this entry (use one of %s)", name, by[0].meta.String(), strings.Join(sortedKeys(names), ", "))
				}
			}
		}
		if gen != 0 {
			// A copy: p.errs is sorted in place when it is returned.
			r.selectedGen, r.selectedErrs = gen, append([]*FieldError(nil), p.errs[start:]...)
		}
	}
}

// selection is a Loader's memory of the ServiceEntries that select
// WorkloadEntries, for validateWorkloadEntries.
type selection struct {
	selectors []*resource // with a workloadSelector, in the config's order
	gen       uint64      // changes when selectors do; 0 before the first load
}

// generation returns the generation of selectors, the ServiceEntries with
// a workloadSelector of this load: the last one's if they are the same
// resources in the same order, else a new one. A nil selection, a load
// without a Loader, has generation 0, which is never remembered.
func (s *selection) generation(selectors []*resource) uint64 {
	if s == nil {
		return 0
	}
	if s.gen == 0 || !slices.Equal(s.selectors, selectors) {
		s.gen++
		s.selectors = selectors
	}
	return s.gen
}

// labelsSelect reports whether labels carry every label of selector.
func labelsSelect(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func validateVirtualService(vs *networking.VirtualService, o options, report reportFunc) {
	if len(vs.Hosts) == 0 {
		report.add("spec.hosts", "at least one host is required")
	}
	for i, h := range vs.Hosts {
		if h == "" {
			report.add(fmt.Sprintf("spec.hosts[%d]", i), "must not be empty")
		}
	}
	validateGateways(vs.Gateways, "spec.gateways", report)
	if len(vs.Http) == 0 {
		report.add("spec.http", "at least one http route is required (meshlet routes HTTP and gRPC)")
	}
	for i, h := range vs.Http {
		path := fmt.Sprintf("spec.http[%d]", i)
		for j, m := range h.Match {
			mp := fmt.Sprintf("%s.match[%d]", path, j)
			validateStringMatch(m.Uri, mp+".uri", o, report)
			validateStringMatch(m.Method, mp+".method", o, report)
			for _, k := range sortedKeys(m.Headers) {
				validateStringMatch(m.Headers[k], fmt.Sprintf("%s.headers[%q]", mp, k), o, report)
			}
			for _, k := range sortedKeys(m.WithoutHeaders) {
				validateStringMatch(m.WithoutHeaders[k], fmt.Sprintf("%s.withoutHeaders[%q]", mp, k), o, report)
			}
			validateGateways(m.Gateways, mp+".gateways", report)
			if m.Port > 65535 {
				report.add(mp+".port", "must be between 1 and 65535, got %d", m.Port)
			}
		}
		// A redirect, a direct response or a delegate is refused, and
		// stands for the route; asking for one as well would mislead.
		if len(h.Route) > 0 || h.Redirect == nil && h.DirectResponse == nil && h.Delegate == nil {
			validateRoutes(h.Route, path, report)
		}
		if h.Timeout != nil {
			validatePositive(h.Timeout, path+".timeout", report)
		}
		if h.Retries != nil {
			validateRetries(h.Retries, path+".retries", report)
		}
		if h.Fault != nil {
			validateFault(h.Fault, path+".fault", report)
		}
	}
}

// validateGateways accepts only the gateway "mesh", which names the
// traffic between workloads: the only traffic meshlet routes.
func validateGateways(gateways []string, path string, report reportFunc) {
	for i, g := range gateways {
		if g != "mesh" {
			report.add(fmt.Sprintf("%s[%d]", path, i), "gateway %q is out of scope for meshlet: a proxyless mesh has no gateway proxy (list only mesh, or leave gateways out)", g)
		}
	}
}

func validateRoutes(routes []*networking.HTTPRouteDestination, path string, report reportFunc) {
	if len(routes) == 0 {
		report.add(path+".route", "at least one route destination is required")
		return
	}
	sum := 0
	negative := false
	for k, rd := range routes {
		rp := fmt.Sprintf("%s.route[%d]", path, k)
		if rd.Weight < 0 {
			report.add(rp+".weight", "must not be negative, got %d", rd.Weight)
			negative = true
		}
		sum += int(rd.Weight)
		d := rd.Destination
		if d == nil {
			report.add(rp+".destination", "required")
			continue
		}
		if d.Host == "" {
			report.add(rp+".destination.host", "required")
		}
		if d.Port != nil && (d.Port.Number == 0 || d.Port.Number > 65535) {
			report.add(rp+".destination.port.number", "must be between 1 and 65535, got %d", d.Port.Number)
		}
	}
	switch {
	case negative:
	case len(routes) == 1 && sum != 0 && sum != 100:
		report.add(path+".route[0].weight", "a single destination takes all the traffic: set weight to 100 or leave it out, got %d", sum)
	case len(routes) > 1 && sum != 100:
		report.add(path+".route", "the weights of the %d destinations sum to %d: they must sum to 100", len(routes), sum)
	}
}

func validateStringMatch(m *networking.StringMatch, path string, o options, report reportFunc) {
	if m == nil {
		return
	}
	switch mt := m.MatchType.(type) {
	case nil:
		report.add(path, "set one of exact, prefix or regex")
	case *networking.StringMatch_Regex:
		validateRegex(mt.Regex, path+".regex", o, report)
	}
}

func validatePositive(d *durationpb.Duration, path string, report reportFunc) {
	if d.AsDuration() <= 0 {
		report.add(path, "must be greater than 0, got %v (leave it out for no limit)", d.AsDuration())
	}
}

// retryConditions are the retryOn conditions meshlet accepts, passed on
// in the route's retry_on. gRPC-Go acts on the gRPC status names only,
// meshlet's HTTP client on the others; an HTTP status code is accepted
// too (retriable-status-codes). The README says what each one retries.
var retryConditions = []string{
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
	"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream", "retriable-status-codes",
}

// refusedRetryConditions are the conditions Istio accepts that no meshlet
// client acts on, and why: passed on, they would retry nothing.
var refusedRetryConditions = map[string]string{
	"reset-before-request":       "is planned, not yet supported: meshlet's HTTP client cannot yet tell a reset before the request was sent from one after, and gRPC-Go retries such calls by itself (use connect-failure or refused-stream, or reset if the requests are idempotent)",
	"retriable-headers":          "is out of scope for meshlet: it retries on response headers that Istio has no field to name, so it would retry nothing (use retriable-status-codes or status codes)",
	"envoy-ratelimited":          "is out of scope for meshlet: it retries Envoy's own rate-limit answers, and there is no Envoy (remove it)",
	"http3-post-connect-failure": "is out of scope for meshlet: meshlet does not speak HTTP/3 (remove it)",
}

const acceptedRetryConditions = "accepted: cancelled, deadline-exceeded, internal, resource-exhausted and unavailable for gRPC; 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes and status codes from 100 to 599 for HTTP"

func validateRetryOn(retryOn, path string, report reportFunc) {
	if retryOn == "" {
		return
	}
	for _, c := range strings.Split(retryOn, ",") {
		c = strings.TrimSpace(c)
		if slices.Contains(retryConditions, c) {
			continue
		}
		if n, err := strconv.Atoi(c); err == nil && n >= 100 && n <= 599 {
			continue
		}
		if reason, ok := refusedRetryConditions[c]; ok {
			report.add(path, "retry condition %q %s", c, reason)
			continue
		}
		if near := closest(c, retryConditions); near != "" {
			report.add(path, "unknown retry condition %q: did you mean %s? (%s)", c, near, acceptedRetryConditions)
			continue
		}
		report.add(path, "unknown retry condition %q (%s)", c, acceptedRetryConditions)
	}
}

// validateRetries checks a route's retries. Attempts 0, or left out, turns
// retries off, as in Istio, so the other fields would do nothing.
func validateRetries(r *networking.HTTPRetry, path string, report reportFunc) {
	if r.Attempts < 0 {
		report.add(path+".attempts", "must not be negative, got %d (0 turns retries off)", r.Attempts)
	}
	if r.Attempts == 0 {
		var set []string
		if r.RetryOn != "" {
			set = append(set, "retryOn")
		}
		if r.PerTryTimeout != nil {
			set = append(set, "perTryTimeout")
		}
		if r.Backoff != nil {
			set = append(set, "backoff")
		}
		if len(set) > 0 {
			report.add(path+".attempts", "is 0 or left out, which turns retries off, so %s would do nothing (set attempts, or remove retries for Istio's default of 2)", strings.Join(set, " and "))
		}
	}
	if r.PerTryTimeout != nil {
		validatePositive(r.PerTryTimeout, path+".perTryTimeout", report)
	}
	if b := r.Backoff; b != nil && b.AsDuration() <= 0 {
		report.add(path+".backoff", "must be greater than 0, got %v (leave it out for the default, 25ms)", b.AsDuration())
	}
	validateRetryOn(r.RetryOn, path+".retryOn", report)
}

func validateDestinationRule(dr *networking.DestinationRule, annotations map[string]string, report reportFunc) {
	if dr.Host == "" {
		report.add("spec.host", "required")
	}
	validateLoadBalancerAnnotation(dr, annotations, report)
	validateCircuitBreakerAnnotation(annotations, report)
	validateTrafficPolicy(dr.TrafficPolicy, "spec.trafficPolicy", report)
	names := map[string]int{}
	for i, s := range dr.Subsets {
		path := fmt.Sprintf("spec.subsets[%d]", i)
		switch j, dup := names[s.Name]; {
		case s.Name == "":
			report.add(path+".name", "required")
		case dup:
			report.add(path+".name", "subset %q is already defined at spec.subsets[%d] (subset names must be unique)", s.Name, j)
		default:
			names[s.Name] = i
		}
		validateTrafficPolicy(s.TrafficPolicy, path+".trafficPolicy", report)
	}
}

func validateTrafficPolicy(tp *networking.TrafficPolicy, path string, report reportFunc) {
	switch mode := tp.GetTls().GetMode(); {
	case tp.GetTls() == nil:
	case mode == networking.ClientTLSSettings_SIMPLE || mode == networking.ClientTLSSettings_MUTUAL:
		report.add(path+".tls.mode", "%s is out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (use ISTIO_MUTUAL)", mode)
	}
	validateLoadBalancer(tp.GetLoadBalancer(), path+".loadBalancer", report)
	validateOutlierDetection(tp.GetOutlierDetection(), path+".outlierDetection", report)
	validateConnectionPool(tp, path, report)
}

// validateLoadBalancerAnnotation checks meshlet's load-balancer extension
// (model.LoadBalancerAnnotation): a known value, and no consistentHash in
// the rule, as the annotation sets the policy of every cluster of the rule.
func validateLoadBalancerAnnotation(dr *networking.DestinationRule, annotations map[string]string, report reportFunc) {
	v, ok := annotations[model.LoadBalancerAnnotation]
	if !ok {
		return
	}
	if v != model.LoadBalancerPeakEWMA {
		report.add(fmt.Sprintf("metadata.annotations[%q]", model.LoadBalancerAnnotation),
			"unknown value %q of annotation %s (the one value is %s; remove the annotation to use the rule's loadBalancer)",
			v, model.LoadBalancerAnnotation, model.LoadBalancerPeakEWMA)
		return
	}
	conflict := func(tp *networking.TrafficPolicy, path string) {
		if tp.GetLoadBalancer().GetConsistentHash() != nil {
			report.add(path+".loadBalancer.consistentHash",
				"cannot be combined with the annotation %s: %s, which balances every cluster of this rule by peak EWMA (remove one of them)",
				model.LoadBalancerAnnotation, v)
		}
	}
	conflict(dr.TrafficPolicy, "spec.trafficPolicy")
	for i, s := range dr.Subsets {
		conflict(s.TrafficPolicy, fmt.Sprintf("spec.subsets[%d].trafficPolicy", i))
	}
}

// validateOutlierDetection checks the outlierDetection fields meshlet
// implements, as Istio does.
func validateOutlierDetection(od *networking.OutlierDetection, path string, report reportFunc) {
	if od == nil {
		return
	}
	for _, d := range []struct {
		name string
		v    *durationpb.Duration
		def  string
	}{
		{"interval", od.Interval, "10s"},
		{"baseEjectionTime", od.BaseEjectionTime, "30s"},
	} {
		if d.v != nil && d.v.AsDuration() <= 0 {
			report.add(path+"."+d.name, "must be greater than 0, got %v (leave it out for the default, %s)", d.v.AsDuration(), d.def)
		}
	}
	if p := od.MaxEjectionPercent; p < 0 || p > 100 {
		report.add(path+".maxEjectionPercent", "must be between 0 and 100, got %d (0 or leaving it out gives the default, 10)", p)
	}
	if od.ConsecutiveLocalOriginFailures.GetValue() > 0 && !od.SplitExternalLocalOriginErrors {
		report.add(path+".consecutiveLocalOriginFailures", "has no effect unless splitExternalLocalOriginErrors is true (set it, or remove this field)")
	}
}

func validateLoadBalancer(lb *networking.LoadBalancerSettings, path string, report reportFunc) {
	if lb == nil {
		return
	}
	switch p := lb.LbPolicy.(type) {
	case *networking.LoadBalancerSettings_Simple:
		if p.Simple == networking.LoadBalancerSettings_PASSTHROUGH {
			report.add(path+".simple", "PASSTHROUGH is out of scope for meshlet: it sends a call to the address the caller dialled, and meshlet's clients dial services, not addresses (use ROUND_ROBIN, LEAST_REQUEST or RANDOM)")
		}
	case *networking.LoadBalancerSettings_ConsistentHash:
		ch := p.ConsistentHash
		//nolint:staticcheck // the deprecated field is still Istio API
		if ch.GetMinimumRingSize() > 0 && ch.GetRingHash().GetMinimumRingSize() > 0 {
			report.add(path+".consistentHash.minimumRingSize", "cannot be set with ringHash.minimumRingSize, which would win (remove this deprecated field)")
		}
		for _, rs := range []struct {
			field string
			n     uint64
		}{
			{"minimumRingSize", ch.GetMinimumRingSize()}, //nolint:staticcheck // as above
			{"ringHash.minimumRingSize", ch.GetRingHash().GetMinimumRingSize()},
		} {
			if rs.n > maxRingSize {
				report.add(path+".consistentHash."+rs.field, "must be at most %d, the largest ring gRPC-Go builds, got %d", maxRingSize, rs.n)
			}
		}
		// Other hash keys are refused as unsupported fields.
		const reason = "required: consistentHash hashes on a request header, the only hash key meshlet supports"
		switch k := ch.GetHashKey().(type) {
		case nil:
			report.add(path+".consistentHash.httpHeaderName", reason)
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
			if k.HttpHeaderName == "" {
				report.add(path+".consistentHash.httpHeaderName", reason)
			}
		}
	}
}

// maxRingSize is the largest minimum ring size gRPC-Go accepts (8M
// entries); translate would have to cut a larger one down.
const maxRingSize = 8 << 20

func validateServiceEntry(se *networking.ServiceEntry, raw map[string]any, report reportFunc) {
	if len(se.Hosts) == 0 {
		report.add("spec.hosts", "at least one host is required")
	}
	for i, h := range se.Hosts {
		path := fmt.Sprintf("spec.hosts[%d]", i)
		switch {
		case h == "":
			report.add(path, "must not be empty")
		case strings.Contains(h, "*"):
			report.add(path, "wildcard host %q is out of scope for meshlet: a client dials one host name, so each is named (name each host)", h)
		}
	}
	if len(se.Ports) == 0 {
		report.add("spec.ports", "at least one port is required")
	}
	numbers := map[uint32]int{}
	names := map[string]int{}
	for i, port := range se.Ports {
		path := fmt.Sprintf("spec.ports[%d]", i)
		if j, dup := numbers[port.Number]; dup {
			report.add(path+".number", "port %d is already defined at spec.ports[%d]", port.Number, j)
		} else if port.Number == 0 || port.Number > 65535 {
			report.add(path+".number", "must be between 1 and 65535, got %d", port.Number)
		} else {
			numbers[port.Number] = i
		}
		switch strings.ToUpper(port.Protocol) {
		case "GRPC", "HTTP", "HTTP2":
		case "":
			report.add(path+".protocol", "required: GRPC, HTTP or HTTP2")
		default:
			report.add(path+".protocol", "protocol %q is out of scope for meshlet: it routes HTTP and gRPC only (use GRPC, HTTP or HTTP2)", port.Protocol)
		}
		if j, dup := names[port.Name]; dup {
			report.add(path+".name", "port name %q is already used by spec.ports[%d]", port.Name, j)
		} else if port.Name == "" {
			report.add(path+".name", "required (a name such as http or grpc)")
		} else {
			names[port.Name] = i
		}
		if port.TargetPort > 65535 {
			report.add(path+".targetPort", "must be between 1 and 65535, got %d", port.TargetPort)
		}
	}
	switch {
	case se.Resolution == networking.ServiceEntry_STATIC:
	case raw["resolution"] == nil:
		report.add("spec.resolution", "required: set resolution: STATIC (meshlet resolves no DNS; list IP endpoints or select WorkloadEntries)")
	default:
		report.add("spec.resolution", "resolution %s is out of scope for meshlet: its control plane resolves no DNS and sends IP endpoints (set resolution: STATIC and use IP endpoints)", se.Resolution)
	}
	if loc, ok := raw["location"]; ok && (loc == "MESH_EXTERNAL" || loc == json.Number("0")) {
		report.add("spec.location", "MESH_EXTERNAL is out of scope for meshlet: it serves only services in the mesh (call external services with a plain client; set MESH_INTERNAL or leave it out)")
	}
	if len(se.Endpoints) > 0 && se.WorkloadSelector != nil {
		report.add("spec.workloadSelector", "endpoints and workloadSelector cannot both be set (choose one)")
	}
	for i, ep := range se.Endpoints {
		validateWorkload(ep, fmt.Sprintf("spec.endpoints[%d]", i), names, report)
	}
	for i, san := range se.SubjectAltNames {
		if san == "" {
			report.add(fmt.Sprintf("spec.subjectAltNames[%d]", i), "must not be empty (a SPIFFE ID such as spiffe://cluster.local/ns/default/sa/reviews)")
		}
	}
}

// validateWorkload checks a WorkloadEntry, or an endpoint of a ServiceEntry
// whose port names are portNames (nil for a WorkloadEntry).
func validateWorkload(we *networking.WorkloadEntry, path string, portNames map[string]int, report reportFunc) {
	if we.Address == "" {
		report.add(path+".address", "required: the IP address of the workload")
	} else if _, err := netip.ParseAddr(we.Address); err != nil {
		report.add(path+".address", "%q is not an IP address (meshlet resolves no DNS: use the workload's IP)", we.Address)
	}
	for _, name := range sortedKeys(we.Ports) {
		pp := fmt.Sprintf("%s.ports[%q]", path, name)
		if n := we.Ports[name]; n == 0 || n > 65535 {
			report.add(pp, "must be between 1 and 65535, got %d", n)
		}
		if _, ok := portNames[name]; portNames != nil && !ok {
			report.add(pp, "%q is not the name of a port of this ServiceEntry (use one of %s)", name, strings.Join(sortedKeys(portNames), ", "))
		}
	}
	if we.Locality != "" {
		parts := strings.Split(we.Locality, "/")
		ok := len(parts) <= 3
		for _, part := range parts {
			ok = ok && part != ""
		}
		if !ok {
			report.add(path+".locality", "%q is not a locality: use region, region/zone or region/zone/subzone", we.Locality)
		}
	}
}

// validateHostClaims refuses a host routed by two VirtualServices or
// configured by two DestinationRules.
func (p *parser) validateHostClaims() {
	vsHosts := map[string]*resource{}
	drHosts := map[string]*resource{}
	for _, r := range p.resources {
		switch s := r.spec.(type) {
		case *networking.VirtualService:
			report := p.reporter(r)
			for i, h := range s.Hosts {
				first, claimed := vsHosts[h]
				switch {
				case h == "":
				case claimed && first == r:
					report.add(fmt.Sprintf("spec.hosts[%d]", i), "host %s is listed twice (list it once)", h)
				case claimed:
					report.add(fmt.Sprintf("spec.hosts[%d]", i), "host %s is also claimed by %s in %s (merge the routes into one VirtualService)", h, first.meta.String(), first.where())
				default:
					vsHosts[h] = r
				}
			}
		case *networking.DestinationRule:
			if s.Host == "" {
				continue
			}
			if first, claimed := drHosts[s.Host]; claimed {
				p.reporter(r).add("spec.host", "host %s is also configured by %s in %s (merge them into one DestinationRule)", s.Host, first.meta.String(), first.where())
				continue
			}
			drHosts[s.Host] = r
		}
	}
}

// validateSubsets checks that every subset a route names is defined by the
// DestinationRule for the route's host.
func (p *parser) validateSubsets() {
	rules := map[string]*networking.DestinationRule{}
	ruleOf := map[string]*resource{}
	broken := map[string]bool{} // hosts of DestinationRules that did not decode
	for _, r := range p.resources {
		if r.meta.Kind != "DestinationRule" {
			continue
		}
		dr, ok := r.spec.(*networking.DestinationRule)
		if !ok {
			if h, ok := r.raw["host"].(string); ok {
				broken[wire.QualifyHost(h, r.meta.Namespace)] = true
			}
			continue
		}
		if _, dup := rules[dr.Host]; !dup && dr.Host != "" {
			rules[dr.Host], ruleOf[dr.Host] = dr, r
		}
	}
	for _, r := range p.resources {
		vs, ok := r.spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		report := p.reporter(r)
		for i, h := range vs.Http {
			for k, rd := range h.Route {
				d := rd.GetDestination()
				if d.GetSubset() == "" || d.GetHost() == "" {
					continue
				}
				path := fmt.Sprintf("spec.http[%d].route[%d].destination.subset", i, k)
				host := findRule(rules, d.Host)
				if host == "" {
					if !broken[d.Host] {
						report.add(path, "subset %q is not defined by any DestinationRule for host %s (add a DestinationRule for the host with this subset)", d.Subset, d.Host)
					}
					continue
				}
				found := false
				var defined []string
				for _, s := range rules[host].Subsets {
					found = found || s.Name == d.Subset
					if q := strconv.Quote(s.Name); !slices.Contains(defined, q) {
						defined = append(defined, q)
					}
				}
				if !found {
					have := "no subsets"
					if len(defined) > 0 {
						have = "only " + strings.Join(defined, ", ")
					}
					report.add(path, "subset %q is not defined by any DestinationRule for host %s (%s in %s defines %s)", d.Subset, d.Host, ruleOf[host].meta.String(), ruleOf[host].where(), have)
				}
			}
		}
	}
}

// findRule returns the host of the DestinationRule that applies to host:
// the rule for the host itself, or else the wildcard rule with the longest
// suffix that matches. It returns "" if there is none.
func findRule(rules map[string]*networking.DestinationRule, host string) string {
	if _, ok := rules[host]; ok {
		return host
	}
	best := ""
	for h := range rules {
		if strings.HasPrefix(h, "*") && strings.HasSuffix(host, h[1:]) && len(h) > len(best) {
			best = h
		}
	}
	return best
}

// validateWorkloadGroup checks what a WorkloadGroup binds: a service (its
// template's app label, else the group's name) to a service account.
func validateWorkloadGroup(wg *networking.WorkloadGroup, report reportFunc) {
	if wg.GetTemplate().GetServiceAccount() == "" {
		report.add("spec.template.serviceAccount", "required: the service account whose workloads may register as this group's service")
	}
	for k, v := range wg.GetTemplate().GetLabels() {
		if k == "" || v == "" {
			report.add("spec.template.labels", "label %q=%q: keys and values must not be empty", k, v)
		}
	}
}
