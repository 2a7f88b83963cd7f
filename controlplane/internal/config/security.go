package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

func validatePeerAuthentication(pa *security.PeerAuthentication, report reportFunc) {
	if len(pa.GetSelector().GetMatchLabels()) == 0 && len(pa.PortLevelMtls) > 0 {
		report.add("spec.portLevelMtls", "needs a selector: a PeerAuthentication for a whole namespace or mesh cannot set per-port modes (add selector.matchLabels, or use mtls.mode)")
	}
	for _, port := range slices.Sorted(maps.Keys(pa.PortLevelMtls)) {
		path := fmt.Sprintf("spec.portLevelMtls[%q]", strconv.FormatUint(uint64(port), 10))
		if port == 0 || port > 65535 {
			report.add(path, "must be a port number from 1 to 65535, got %d", port)
		}
		if pa.PortLevelMtls[port] == nil {
			report.add(path, "expected {mode: STRICT, PERMISSIVE, DISABLE or UNSET}, got null")
		}
	}
}

// dryRunAnnotation is Istio's annotation that makes an AuthorizationPolicy
// only log what it would decide.
const dryRunAnnotation = "istio.io/dry-run"

func validateAuthorizationPolicy(ap *security.AuthorizationPolicy, annotations map[string]string, report reportFunc) {
	if _, ok := annotations[dryRunAnnotation]; ok {
		report.add(fmt.Sprintf("metadata.annotations[%q]", dryRunAnnotation), "out of scope for meshlet: gRPC-Go's authorization has no dry-run mode, so this policy would be enforced for real (remove the policy, or remove the annotation to enforce it)")
	}
	switch ap.Action {
	case security.AuthorizationPolicy_ALLOW, security.AuthorizationPolicy_DENY:
	case security.AuthorizationPolicy_CUSTOM:
		report.add("spec.action", "CUSTOM is out of scope for meshlet: it hands the decision to an external authorizer, which meshlet does not call (use ALLOW or DENY)")
	case security.AuthorizationPolicy_AUDIT:
		report.add("spec.action", "AUDIT is out of scope for meshlet: it only marks requests for an audit provider, which meshlet does not have (use ALLOW or DENY)")
	default:
		report.add("spec.action", "%s is not supported by meshlet (use ALLOW or DENY)", ap.Action)
	}
	for i, rule := range ap.Rules {
		path := fmt.Sprintf("spec.rules[%d]", i)
		if rule == nil {
			continue // the strict decoder refuses null in a list
		}
		for j, from := range rule.From {
			validateSource(from.GetSource(), fmt.Sprintf("%s.from[%d].source", path, j), report)
		}
		for j, to := range rule.To {
			validateOperation(to.GetOperation(), fmt.Sprintf("%s.to[%d].operation", path, j), report)
		}
		for j, c := range rule.When {
			validateCondition(c, fmt.Sprintf("%s.when[%d]", path, j), report)
		}
	}
}

func validateSource(src *security.Source, path string, report reportFunc) {
	if src == nil || proto.Size(src) == 0 {
		report.add(path, "required: set at least one of %s", strings.Join(sourceFields, ", "))
		return
	}
	validateValues(src.Principals, path+".principals", report)
	validateValues(src.NotPrincipals, path+".notPrincipals", report)
	validateValues(src.Namespaces, path+".namespaces", report)
	validateValues(src.NotNamespaces, path+".notNamespaces", report)
	if len(src.ServiceAccounts)+len(src.NotServiceAccounts) > 0 &&
		len(src.Principals)+len(src.NotPrincipals)+len(src.Namespaces)+len(src.NotNamespaces) > 0 {
		field := "serviceAccounts"
		if len(src.ServiceAccounts) == 0 {
			field = "notServiceAccounts"
		}
		report.add(path+"."+field, "cannot be set with principals or namespaces in the same source (use separate from entries, or principals alone)")
	}
	for _, f := range []struct {
		field string
		list  []string
	}{{"serviceAccounts", src.ServiceAccounts}, {"notServiceAccounts", src.NotServiceAccounts}} {
		field := f.field
		for i, sa := range f.list {
			ns, name, qualified := strings.Cut(sa, "/")
			if !qualified {
				ns, name = "x", sa
			}
			if ns == "" || name == "" || strings.Contains(name, "/") || strings.Contains(sa, "*") {
				report.add(fmt.Sprintf("%s.%s[%d]", path, field, i), "%q is not a service account: use <namespace>/<name>, or <name> in the policy's namespace, without wildcards", sa)
			}
		}
	}
}

func validateOperation(op *security.Operation, path string, report reportFunc) {
	if op == nil || proto.Size(op) == 0 {
		report.add(path, "required: set at least one of %s", strings.Join(operationFields, ", "))
		return
	}
	validateValues(op.Methods, path+".methods", report)
	validateValues(op.NotMethods, path+".notMethods", report)
	validateValues(op.Paths, path+".paths", report)
	validateValues(op.NotPaths, path+".notPaths", report)
	validatePorts(op.Ports, path+".ports", report)
	validatePorts(op.NotPorts, path+".notPorts", report)
}

func validateCondition(c *security.Condition, path string, report reportFunc) {
	if c == nil {
		return
	}
	switch name, ok := model.HeaderConditionKey(c.Key); {
	case c.Key == "":
		report.add(path+".key", "required: request.headers[<name>]")
	case strings.HasPrefix(c.Key, "request.auth."):
		report.add(path+".key", "key %q is planned, not yet supported: it needs JWT request authentication, which is on meshlet's roadmap (use request.headers[<name>] for now)", c.Key)
	case !ok:
		report.add(path+".key", "key %q is out of scope for meshlet, which evaluates request.headers[<name>] only (express callers with from, and ports with to)", c.Key)
	case strings.HasPrefix(strings.ToLower(name), "grpc-") || strings.EqualFold(name, ":scheme"):
		report.add(path+".key", "key %q is out of scope for meshlet: gRPC does not let authorization match grpc- headers or :scheme (match another header)", c.Key)
	}
	if len(c.Values)+len(c.NotValues) == 0 {
		report.add(path, "set values or notValues (or both)")
	}
	validateValues(c.Values, path+".values", report)
	validateValues(c.NotValues, path+".notValues", report)
}

// validateValues checks the match strings of an AuthorizationPolicy field:
// exact, prefix* , *suffix, or * alone (present).
func validateValues(values []string, path string, report reportFunc) {
	for i, v := range values {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch n := strings.Count(v, "*"); {
		case v == "":
			report.add(p, "must not be empty")
		case strings.Contains(v, "{") && n > 0:
			report.add(p, "%q: path templates ({*}, {**}) are not supported by meshlet (use an exact path, prefix* or *suffix)", v)
		case n > 1 || n == 1 && v[0] != '*' && v[len(v)-1] != '*':
			report.add(p, "%q: a wildcard may only be the first or last character (exact, prefix*, *suffix or * alone)", v)
		}
	}
}

func validatePorts(ports []string, path string, report reportFunc) {
	for i, s := range ports {
		if n, err := strconv.ParseUint(s, 10, 32); err != nil || n == 0 || n > 65535 {
			report.add(fmt.Sprintf("%s[%d]", path, i), "must be a port number from 1 to 65535, got %q", s)
		}
	}
}

// validateNamespacePolicies refuses two PeerAuthentications without a
// selector in one namespace: which of them applies would be a guess (Istio
// takes the oldest, which a directory of files cannot tell).
func (p *parser) validateNamespacePolicies() {
	wide := map[string]*resource{}
	for _, r := range p.resources {
		pa, ok := r.spec.(*security.PeerAuthentication)
		if !ok || len(pa.GetSelector().GetMatchLabels()) > 0 {
			continue
		}
		first, dup := wide[r.meta.Namespace]
		if !dup {
			wide[r.meta.Namespace] = r
			continue
		}
		p.reporter(r)("spec.selector", fmt.Sprintf("%s has no selector and neither has %s in %s: a namespace has at most one PeerAuthentication for all its workloads (merge them, or add selector.matchLabels to one)",
			r.meta.String(), first.meta.String(), first.where()))
	}
}
