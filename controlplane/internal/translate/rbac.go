package translate

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// The names of a server's RBAC HTTP filters (envoy.filters.http.rbac). gRPC-Go
// needs distinct names; the DENY filter comes first, as Istio evaluates
// DENY policies before ALLOW ones.
const (
	RBACDenyFilterName  = "envoy.filters.http.rbac.deny"
	RBACAllowFilterName = "envoy.filters.http.rbac.allow"
)

// rbacFilters are the RBAC HTTP filters of workload w, in order: one with
// action DENY holding a policy per rule of every DENY AuthorizationPolicy
// that applies, if there are any, then, if any ALLOW AuthorizationPolicy
// applies, one with action ALLOW holding a policy per rule of all of them.
// A request that matches a DENY policy is refused; one that matches no
// ALLOW policy is refused when the ALLOW filter exists. An ALLOW policy
// without rules (Istio's allow-nothing) adds no Envoy policy but makes the
// ALLOW filter exist.
//
// Neither filter is optional: gRPC-Go implements RBAC, and a policy that
// were dropped would let everything through. gRPC-Go fails a refused RPC
// with PERMISSION_DENIED.
func (t *translator) rbacFilters(w Workload) ([]*hcmv3.HttpFilter, error) {
	var deny, allow *rbacv3.RBAC
	for _, ap := range t.cfg.AuthorizationPolicies {
		if ap.Spec == nil || !t.policyApplies(ap, w) {
			continue
		}
		var rules *rbacv3.RBAC
		switch ap.Spec.GetAction() {
		case security.AuthorizationPolicy_DENY:
			if len(ap.Spec.GetRules()) == 0 {
				continue // denies nothing
			}
			if deny == nil {
				deny = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
			}
			rules = deny
		case security.AuthorizationPolicy_ALLOW:
			if allow == nil {
				allow = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
			}
			rules = allow
		default:
			return nil, fmt.Errorf("translate: %s: spec.action: %v cannot be expressed for gRPC", where(ap.Meta), ap.Spec.GetAction())
		}
		for i, r := range ap.Spec.GetRules() {
			p, err := t.rulePolicy(ap, r, fmt.Sprintf("spec.rules[%d]", i))
			if err != nil {
				return nil, err
			}
			rules.Policies[policyName(ap.Meta, i)] = p
		}
	}
	var out []*hcmv3.HttpFilter
	for _, f := range []struct {
		name  string
		rules *rbacv3.RBAC
	}{{RBACDenyFilterName, deny}, {RBACAllowFilterName, allow}} {
		if f.rules == nil {
			continue
		}
		cfg, err := toAny(&rbacfilterv3.RBAC{Rules: f.rules})
		if err != nil {
			return nil, err
		}
		out = append(out, &hcmv3.HttpFilter{Name: f.name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}})
	}
	return out, nil
}

// policyName names the Envoy policy of rule i of an AuthorizationPolicy as
// istiod does.
func policyName(m model.Meta, i int) string {
	return fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", m.Namespace, m.Name, i)
}

// policyApplies reports whether an AuthorizationPolicy applies to w: one
// without a selector applies to its namespace, and to the whole mesh in
// the root namespace; one with a selector applies to the workloads of its
// namespace, or of every namespace in the root namespace, that it selects.
func (t *translator) policyApplies(ap *model.AuthorizationPolicy, w Workload) bool {
	if ap.Namespace != w.Namespace && ap.Namespace != t.rootNamespace {
		return false
	}
	sel := ap.Spec.GetSelector().GetMatchLabels()
	return len(sel) == 0 || labelsMatch(sel, w.Labels)
}

// rulePolicy translates one rule: its sources are the policy's principals,
// its operations and conditions its permissions. Each list is ORed and each
// entry's fields ANDed; a rule without from (or to and when) matches every
// caller (or request).
func (t *translator) rulePolicy(ap *model.AuthorizationPolicy, r *security.Rule, at string) (*rbacv3.Policy, error) {
	p := &rbacv3.Policy{}
	var sources []*rbacv3.Principal
	for _, f := range r.GetFrom() {
		sources = append(sources, t.sourcePrincipal(f.GetSource(), ap.Namespace))
	}
	if len(sources) == 0 {
		p.Principals = []*rbacv3.Principal{anyPrincipal()}
	} else {
		p.Principals = []*rbacv3.Principal{orIDs(sources)}
	}

	var and []*rbacv3.Permission
	var ops []*rbacv3.Permission
	for _, to := range r.GetTo() {
		op, err := operationPermission(to.GetOperation())
		if err != nil {
			return nil, fmt.Errorf("translate: %s: %s.to: %w", where(ap.Meta), at, err)
		}
		ops = append(ops, op)
	}
	if len(ops) > 0 {
		and = append(and, orRules(ops))
	}
	for i, c := range r.GetWhen() {
		perm, err := conditionPermission(c)
		if err != nil {
			return nil, fmt.Errorf("translate: %s: %s.when[%d]: %w", where(ap.Meta), at, i, err)
		}
		and = append(and, perm)
	}
	if len(and) == 0 {
		p.Permissions = []*rbacv3.Permission{anyPermission()}
	} else {
		p.Permissions = []*rbacv3.Permission{andRules(and)}
	}
	return p, nil
}

// sourcePrincipal ANDs the fields of one source. ns is the policy's
// namespace, for a serviceAccounts entry without one.
func (t *translator) sourcePrincipal(src *security.Source, ns string) *rbacv3.Principal {
	var and []*rbacv3.Principal
	add := func(values []string, negate bool, match func(string) *rbacv3.Principal) {
		if len(values) == 0 {
			return
		}
		var ids []*rbacv3.Principal
		for _, v := range values {
			ids = append(ids, match(v))
		}
		id := orIDs(ids)
		if negate {
			id = &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: id}}
		}
		and = append(and, id)
	}
	serviceAccount := func(v string) *rbacv3.Principal {
		sans, sa, ok := strings.Cut(v, "/")
		if !ok {
			sans, sa = ns, v
		}
		return authenticated(exact(t.spiffeID(sans, sa)))
	}
	add(src.GetPrincipals(), false, t.principalMatcher)
	add(src.GetNotPrincipals(), true, t.principalMatcher)
	add(src.GetNamespaces(), false, t.namespaceMatcher)
	add(src.GetNotNamespaces(), true, t.namespaceMatcher)
	add(src.GetServiceAccounts(), false, serviceAccount)
	add(src.GetNotServiceAccounts(), true, serviceAccount)
	if len(and) == 0 {
		return anyPrincipal()
	}
	if len(and) == 1 {
		return and[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: and}}}
}

// principalMatcher matches an Istio principal, "<trust domain>/ns/<ns>/sa/<sa>",
// against the URI SAN of the caller's certificate, its spiffe:// form. As
// in Istio, "cluster.local" stands for the mesh's trust domain; "*" is any
// authenticated caller, "prefix*" and "*suffix" match a prefix or a suffix.
func (t *translator) principalMatcher(v string) *rbacv3.Principal {
	if rest, ok := strings.CutPrefix(v, DefaultTrustDomain+"/"); ok {
		v = t.trustDomain + "/" + rest
	}
	switch {
	case v == "*":
		return authenticated(present())
	case strings.HasPrefix(v, "*"):
		return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}})
	case strings.HasSuffix(v, "*"):
		return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + v[:len(v)-1]}})
	}
	return authenticated(exact("spiffe://" + v))
}

// namespaceMatcher matches the namespace in the caller's SPIFFE ID:
// "spiffe://<trust domain>/ns/<ns>/...". Istio matches ".*/ns/<ns>/.*";
// meshlet's identities all have its trust domain.
func (t *translator) namespaceMatcher(v string) *rbacv3.Principal {
	base := "spiffe://" + t.trustDomain + "/ns/"
	switch {
	case v == "*":
		return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: base}})
	case strings.HasPrefix(v, "*"):
		return authenticated(regex(regexp.QuoteMeta(base) + "[^/]*" + regexp.QuoteMeta(v[1:]) + "/.*"))
	case strings.HasSuffix(v, "*"):
		return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: base + v[:len(v)-1]}})
	}
	return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: base + v + "/"}})
}

// operationPermission ANDs the fields of one operation. A gRPC path is
// "/package.Service/Method"; gRPC-Go gives every request the method POST.
func operationPermission(op *security.Operation) (*rbacv3.Permission, error) {
	var and []*rbacv3.Permission
	add := func(values []string, negate bool, match func(string) (*rbacv3.Permission, error)) error {
		if len(values) == 0 {
			return nil
		}
		var rules []*rbacv3.Permission
		for _, v := range values {
			r, err := match(v)
			if err != nil {
				return err
			}
			rules = append(rules, r)
		}
		r := orRules(rules)
		if negate {
			r = &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: r}}
		}
		and = append(and, r)
		return nil
	}
	method := func(v string) (*rbacv3.Permission, error) {
		if v == "*" {
			return anyPermission(), nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatch(":method", v)}}, nil
	}
	path := func(v string) (*rbacv3.Permission, error) {
		if v == "*" {
			return anyPermission(), nil
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
			Rule: &matcherv3.PathMatcher_Path{Path: wildcardMatcher(v)},
		}}}, nil
	}
	port := func(v string) (*rbacv3.Permission, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 || n > 65535 {
			return nil, fmt.Errorf("port %q is not a port number", v)
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: uint32(n)}}, nil
	}
	for _, f := range []struct {
		values []string
		negate bool
		match  func(string) (*rbacv3.Permission, error)
	}{
		{op.GetMethods(), false, method}, {op.GetNotMethods(), true, method},
		{op.GetPaths(), false, path}, {op.GetNotPaths(), true, path},
		{op.GetPorts(), false, port}, {op.GetNotPorts(), true, port},
	} {
		if err := add(f.values, f.negate, f.match); err != nil {
			return nil, err
		}
	}
	if len(and) == 0 {
		return anyPermission(), nil
	}
	return andRules(and), nil
}

// conditionPermission translates a when condition on request.headers[name]:
// any of values, and none of notValues.
func conditionPermission(c *security.Condition) (*rbacv3.Permission, error) {
	name, ok := model.HeaderConditionKey(c.GetKey())
	if !ok {
		return nil, fmt.Errorf("key %q cannot be expressed (only request.headers[<name>])", c.GetKey())
	}
	name = strings.ToLower(name)
	var and []*rbacv3.Permission
	header := func(values []string) *rbacv3.Permission {
		var rules []*rbacv3.Permission
		for _, v := range values {
			rules = append(rules, &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: headerMatch(name, v)}})
		}
		return orRules(rules)
	}
	if len(c.GetValues()) > 0 {
		and = append(and, header(c.GetValues()))
	}
	if len(c.GetNotValues()) > 0 {
		and = append(and, &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: header(c.GetNotValues())}})
	}
	if len(and) == 0 {
		return nil, fmt.Errorf("set values or notValues")
	}
	return andRules(and), nil
}

// headerMatch matches header name against an Istio value: "*" means
// present, "prefix*" and "*suffix" match a prefix or a suffix.
// It uses HeaderMatcher's own fields, as routes do (legacyHeaderMatcher):
// gRPC C-core 1.51's RBAC filter NACKs string_match too.
func headerMatch(name, v string) *routev3.HeaderMatcher {
	if v == "*" {
		return legacyHeaderMatcher(name, nil, false)
	}
	return legacyHeaderMatcher(name, wildcardMatcher(v), false)
}

// wildcardMatcher matches an Istio value other than "*": exact, "prefix*"
// or "*suffix".
func wildcardMatcher(v string) *matcherv3.StringMatcher {
	switch {
	case len(v) > 1 && strings.HasPrefix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}}
	case len(v) > 1 && strings.HasSuffix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v[:len(v)-1]}}
	}
	return exact(v)
}

func exact(v string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

func regex(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// present matches any non-empty principal name: a caller with an identity.
// An unset principal_name would also match a TLS caller without a
// certificate, which Istio's "*" does not.
func present() *matcherv3.StringMatcher { return regex(".+") }

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
		Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m},
	}}
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

// orIDs ORs principals; one needs no set.
func orIDs(ids []*rbacv3.Principal) *rbacv3.Principal {
	if len(ids) == 1 {
		return ids[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
}

// orRules ORs permissions; one needs no set.
func orRules(rules []*rbacv3.Permission) *rbacv3.Permission {
	if len(rules) == 1 {
		return rules[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rules}}}
}

// andRules ANDs permissions; one needs no set.
func andRules(rules []*rbacv3.Permission) *rbacv3.Permission {
	if len(rules) == 1 {
		return rules[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: rules}}}
}
