package translate_test

import (
	"fmt"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/internal/wire"
)

func mtls(mode security.PeerAuthentication_MutualTLS_Mode) *security.PeerAuthentication_MutualTLS {
	return &security.PeerAuthentication_MutualTLS{Mode: mode}
}

const (
	unset      = security.PeerAuthentication_MutualTLS_UNSET
	disable    = security.PeerAuthentication_MutualTLS_DISABLE
	permissive = security.PeerAuthentication_MutualTLS_PERMISSIVE
	strict     = security.PeerAuthentication_MutualTLS_STRICT
)

func matchLabels(kv ...string) *typev1beta1.WorkloadSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &typev1beta1.WorkloadSelector{MatchLabels: m}
}

// listenerHCM returns the HttpConnectionManager and filter chain of the
// server Listener for addr.
func listenerHCM(t *testing.T, out *translate.Output, addr string) (*hcmv3.HttpConnectionManager, *corev3.TransportSocket) {
	t.Helper()
	fc := findListener(t, out, wire.ServerListenerName(addr)).GetFilterChains()[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	return hcm, fc.GetTransportSocket()
}

// effectiveMode finds the mode meshlet gives a workload at 10.0.0.1:port:
// STRICT puts TLS on its server Listener; PERMISSIVE and DISABLE do not,
// and auto mTLS tells them apart: callers use mTLS unless it is DISABLE.
func effectiveMode(t *testing.T, in translate.Input, w *translate.Workload, port uint32) string {
	t.Helper()
	addr := fmt.Sprintf("10.0.0.1:%d", port)
	ns, labels, sa := "default", map[string]string(nil), ""
	if w != nil {
		in.Workloads = map[string]translate.Workload{addr: *w}
		ns, labels, sa = w.Namespace, w.Labels, w.ServiceAccount
	}
	in.ServerAddresses = []string{addr}
	in.Instances = []registry.Instance{{ID: "a", Service: "svc", Namespace: ns, ServiceAccount: sa, Address: "10.0.0.1", Port: port, ServicePort: 80, Protocol: "GRPC", Labels: labels}}
	out := build(t, in)
	_, ts := listenerHCM(t, out, addr)
	c := findCluster(t, out, wire.ClusterName(80, "", "svc."+ns+".svc.cluster.local"))
	switch {
	case ts != nil:
		if c.GetTransportSocket() == nil {
			t.Errorf("STRICT workload, but callers use plaintext")
		}
		return "STRICT"
	case c.GetTransportSocket() != nil:
		return "PERMISSIVE"
	}
	return "DISABLE"
}

func TestPeerAuthenticationMode(t *testing.T) {
	pa := peerAuth
	app := func(ns string) *translate.Workload {
		return &translate.Workload{Namespace: ns, ServiceAccount: "sa", Labels: map[string]string{"app": "a"}}
	}
	tests := []struct {
		name     string
		root     string
		pas      []*model.PeerAuthentication
		workload *translate.Workload
		port     uint32
		want     string
	}{
		{name: "no policy: PERMISSIVE", workload: app("default"), want: "PERMISSIVE"},
		{name: "mesh STRICT", pas: []*model.PeerAuthentication{pa("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(strict)})}, workload: app("default"), want: "STRICT"},
		{name: "mesh UNSET: PERMISSIVE", pas: []*model.PeerAuthentication{pa("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(unset)})}, workload: app("default"), want: "PERMISSIVE"},
		{name: "mesh DISABLE", pas: []*model.PeerAuthentication{pa("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(disable)})}, workload: app("default"), want: "DISABLE"},
		{name: "no Workloads entry: namespace default", pas: []*model.PeerAuthentication{pa("default", "default", &security.PeerAuthentication{Mtls: mtls(strict)})}, want: "STRICT"},
		{name: "another root namespace", root: "mesh-root", pas: []*model.PeerAuthentication{
			pa("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(disable)}),
			pa("mesh-root", "default", &security.PeerAuthentication{Mtls: mtls(strict)}),
		}, workload: app("shop"), want: "STRICT"},
		{name: "namespace overrides mesh", pas: []*model.PeerAuthentication{
			pa("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(strict)}),
			pa("shop", "default", &security.PeerAuthentication{Mtls: mtls(disable)}),
		}, workload: app("shop"), want: "DISABLE"},
		{name: "namespace UNSET inherits mesh", pas: []*model.PeerAuthentication{
			pa("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(strict)}),
			pa("shop", "default", &security.PeerAuthentication{Mtls: mtls(unset)}),
		}, workload: app("shop"), want: "STRICT"},
		{name: "another namespace's policy does not apply", pas: []*model.PeerAuthentication{
			pa("other", "default", &security.PeerAuthentication{Mtls: mtls(strict)}),
			pa("other", "a", &security.PeerAuthentication{Selector: matchLabels("app", "a"), Mtls: mtls(strict)}),
		}, workload: app("shop"), want: "PERMISSIVE"},
		{name: "workload overrides namespace", pas: []*model.PeerAuthentication{
			pa("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(disable)}),
			pa("shop", "default", &security.PeerAuthentication{Mtls: mtls(permissive)}),
			pa("shop", "a", &security.PeerAuthentication{Selector: matchLabels("app", "a"), Mtls: mtls(strict)}),
		}, workload: app("shop"), want: "STRICT"},
		{name: "selector that does not match", pas: []*model.PeerAuthentication{
			pa("shop", "default", &security.PeerAuthentication{Mtls: mtls(strict)}),
			pa("shop", "b", &security.PeerAuthentication{Selector: matchLabels("app", "b"), Mtls: mtls(disable)}),
		}, workload: app("shop"), want: "STRICT"},
		{name: "workload UNSET inherits namespace", pas: []*model.PeerAuthentication{
			pa("shop", "default", &security.PeerAuthentication{Mtls: mtls(disable)}),
			pa("shop", "a", &security.PeerAuthentication{Selector: matchLabels("app", "a"), Mtls: mtls(unset)}),
		}, workload: app("shop"), want: "DISABLE"},
		{name: "workload UNSET, namespace UNSET, mesh STRICT", pas: []*model.PeerAuthentication{
			pa("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(strict)}),
			pa("shop", "default", &security.PeerAuthentication{}),
			pa("shop", "a", &security.PeerAuthentication{Selector: matchLabels("app", "a")}),
		}, workload: app("shop"), want: "STRICT"},
		{name: "port level overrides workload", port: 8080, pas: []*model.PeerAuthentication{
			pa("shop", "a", &security.PeerAuthentication{Selector: matchLabels("app", "a"), Mtls: mtls(permissive),
				PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{8080: mtls(strict), 9090: mtls(disable)}}),
		}, workload: app("shop"), want: "STRICT"},
		{name: "port level for another port", port: 7070, pas: []*model.PeerAuthentication{
			pa("shop", "a", &security.PeerAuthentication{Selector: matchLabels("app", "a"), Mtls: mtls(disable),
				PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{8080: mtls(strict)}}),
		}, workload: app("shop"), want: "DISABLE"},
		{name: "port level UNSET inherits workload", port: 8080, pas: []*model.PeerAuthentication{
			pa("shop", "a", &security.PeerAuthentication{Selector: matchLabels("app", "a"), Mtls: mtls(strict),
				PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{8080: mtls(unset)}}),
		}, workload: app("shop"), want: "STRICT"},
		{name: "port level only, other port inherits namespace", port: 7070, pas: []*model.PeerAuthentication{
			pa("shop", "default", &security.PeerAuthentication{Mtls: mtls(strict)}),
			pa("shop", "a", &security.PeerAuthentication{Selector: matchLabels("app", "a"),
				PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{8080: mtls(disable)}}),
		}, workload: app("shop"), want: "STRICT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := tt.port
			if port == 0 {
				port = 8080
			}
			in := translate.Input{Config: &model.Config{PeerAuthentications: tt.pas}, RootNamespace: tt.root}
			if got := effectiveMode(t, in, tt.workload, port); got != tt.want {
				t.Errorf("mode = %s, want %s", got, tt.want)
			}
		})
	}
}

// wantCommonTLS is the CommonTlsContext every TLS context carries, with
// the SAN matchers of a client.
func wantCommonTLS(sans ...string) *tlsv3.CommonTlsContext {
	vc := &tlsv3.CertificateValidationContext{
		CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "meshlet"},
	}
	for _, s := range sans {
		vc.MatchSubjectAltNames = append(vc.MatchSubjectAltNames, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}})
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "meshlet"},
		ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}
}

func TestStrictServerListener(t *testing.T) {
	out := build(t, translate.Input{
		Config: &model.Config{PeerAuthentications: []*model.PeerAuthentication{
			peerAuth("istio-system", "default", &security.PeerAuthentication{Mtls: mtls(strict)}),
		}},
		ServerAddresses: []string{"10.0.0.1:8080"},
	})
	hcm, ts := listenerHCM(t, out, "10.0.0.1:8080")
	if ts.GetName() != "envoy.transport_sockets.tls" {
		t.Fatalf("transport socket %v, want envoy.transport_sockets.tls", ts)
	}
	got := &tlsv3.DownstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(got); err != nil {
		t.Fatal(err)
	}
	want := &tlsv3.DownstreamTlsContext{CommonTlsContext: wantCommonTLS(), RequireClientCertificate: wrapperspb.Bool(true)}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("DownstreamTlsContext (-want +got):\n%s", diff)
	}
	checkRouterLast(t, hcm)
	if n := len(hcm.GetHttpFilters()); n != 1 {
		t.Errorf("%d http filters without AuthorizationPolicies, want the router alone", n)
	}
}

// rbacOf returns the names of a server's HTTP filters and the rules of its
// RBAC filters, by filter name.
func rbacOf(t *testing.T, out *translate.Output, addr string) ([]string, map[string]*rbacv3.RBAC) {
	t.Helper()
	hcm, _ := listenerHCM(t, out, addr)
	checkRouterLast(t, hcm)
	rules := map[string]*rbacv3.RBAC{}
	var filterNames []string
	for _, f := range hcm.GetHttpFilters() {
		filterNames = append(filterNames, f.GetName())
		if f.GetIsOptional() {
			t.Errorf("filter %s is optional: gRPC-Go must enforce it", f.GetName())
		}
		cfg := &rbacfilterv3.RBAC{}
		if f.GetTypedConfig().MessageIs(cfg) {
			if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.GetRules() == nil {
				t.Errorf("filter %s: no rules (gRPC-Go would enforce nothing)", f.GetName())
			}
			rules[f.GetName()] = cfg.GetRules()
		}
	}
	return filterNames, rules
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

// matchAll is the Envoy policy of an empty Istio rule.
func matchAll() *rbacv3.Policy {
	return &rbacv3.Policy{Permissions: []*rbacv3.Permission{anyPermission()}, Principals: []*rbacv3.Principal{anyPrincipal()}}
}

func TestRBACFilters(t *testing.T) {
	const addr = "10.0.0.1:8080"
	const (
		deny   = "envoy.filters.http.rbac.deny"
		allow  = "envoy.filters.http.rbac.allow"
		router = "envoy.filters.http.router"
	)
	w := translate.Workload{Namespace: "shop", Labels: map[string]string{"app": "cart"}}
	ap := authzPolicy
	denyAll := &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{}}}
	allowAll := &security.AuthorizationPolicy{Rules: []*security.Rule{{}}}
	tests := []struct {
		name    string
		aps     []*model.AuthorizationPolicy
		filters []string
		rules   map[string]*rbacv3.RBAC
	}{{
		name:    "no policies",
		filters: []string{router},
		rules:   map[string]*rbacv3.RBAC{},
	}, {
		name:    "allow-nothing: an ALLOW filter without policies",
		aps:     []*model.AuthorizationPolicy{ap("shop", "allow-nothing", &security.AuthorizationPolicy{})},
		filters: []string{allow, router},
		rules:   map[string]*rbacv3.RBAC{allow: {Action: rbacv3.RBAC_ALLOW}},
	}, {
		name:    "deny-all",
		aps:     []*model.AuthorizationPolicy{ap("shop", "deny-all", denyAll)},
		filters: []string{deny, router},
		rules: map[string]*rbacv3.RBAC{deny: {Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
			"ns[shop]-policy[deny-all]-rule[0]": matchAll(),
		}}},
	}, {
		name:    "a DENY policy without rules denies nothing",
		aps:     []*model.AuthorizationPolicy{ap("shop", "deny-none", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY})},
		filters: []string{router},
		rules:   map[string]*rbacv3.RBAC{},
	}, {
		name: "DENY before ALLOW, every applicable policy, rules named as istiod names them",
		aps: []*model.AuthorizationPolicy{
			ap("istio-system", "mesh-allow", allowAll),
			ap("istio-system", "mesh-cart", &security.AuthorizationPolicy{Selector: matchLabels("app", "cart"), Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{}, {}}}),
			ap("istio-system", "mesh-other", &security.AuthorizationPolicy{Selector: matchLabels("app", "other"), Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{}}}),
			ap("other", "elsewhere", denyAll),
			ap("shop", "all", allowAll),
			ap("shop", "cart", denyAll),
			ap("shop", "nothing", &security.AuthorizationPolicy{}),
			ap("shop", "payments", &security.AuthorizationPolicy{Selector: matchLabels("app", "payments"), Rules: []*security.Rule{{}}}),
		},
		filters: []string{deny, allow, router},
		rules: map[string]*rbacv3.RBAC{
			deny: {Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{
				"ns[istio-system]-policy[mesh-cart]-rule[0]": matchAll(),
				"ns[istio-system]-policy[mesh-cart]-rule[1]": matchAll(),
				"ns[shop]-policy[cart]-rule[0]":              matchAll(),
			}},
			allow: {Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{
				"ns[istio-system]-policy[mesh-allow]-rule[0]": matchAll(),
				"ns[shop]-policy[all]-rule[0]":                matchAll(),
			}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := build(t, translate.Input{
				Config:          &model.Config{AuthorizationPolicies: tt.aps},
				ServerAddresses: []string{addr},
				Workloads:       map[string]translate.Workload{addr: w},
			})
			filters, rules := rbacOf(t, out, addr)
			if diff := cmp.Diff(tt.filters, filters); diff != "" {
				t.Errorf("http filters (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.rules, rules, protocmp.Transform()); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRBACMapping(t *testing.T) {
	const addr = "10.0.0.1:8080"
	authn := func(m *matcherv3.StringMatcher) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
	}
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	prefix := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
	}
	suffix := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
	}
	regex := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: s}}}
	}
	orIDs := func(ids ...*rbacv3.Principal) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ids}}}
	}
	andIDs := func(ids ...*rbacv3.Principal) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
	}
	notID := func(id *rbacv3.Principal) *rbacv3.Principal {
		return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: id}}
	}
	or := func(rules ...*rbacv3.Permission) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: rules}}}
	}
	and := func(rules ...*rbacv3.Permission) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: rules}}}
	}
	not := func(r *rbacv3.Permission) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: r}}
	}
	path := func(m *matcherv3.StringMatcher) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: m}}}}
	}
	// Header rules use HeaderMatcher's own fields, not string_match,
	// which gRPC C-core 1.51's RBAC filter NACKs.
	header := func(name string, m *matcherv3.StringMatcher) *rbacv3.Permission {
		hm := &routev3.HeaderMatcher{Name: name}
		switch p := m.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_ExactMatch{ExactMatch: p.Exact}
		case *matcherv3.StringMatcher_Prefix:
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: p.Prefix}
		case *matcherv3.StringMatcher_Suffix:
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_SuffixMatch{SuffixMatch: p.Suffix}
		default:
			t.Fatalf("header %s: no legacy form for %v", name, m)
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: hm}}
	}
	present := func(name string) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}
	}
	port := func(p uint32) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: p}}
	}

	tests := []struct {
		name        string
		trustDomain string
		rule        *security.Rule
		want        *rbacv3.Policy
	}{{
		name: "principals: exact, prefix, suffix, any; notPrincipals",
		rule: &security.Rule{From: []*security.Rule_From{{Source: &security.Source{
			Principals:    []string{"cluster.local/ns/default/sa/sleep", "cluster.local/ns/ops/*", "*/sa/admin", "*"},
			NotPrincipals: []string{"cluster.local/ns/default/sa/robot"},
		}}}},
		want: &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{anyPermission()},
			Principals: []*rbacv3.Principal{andIDs(
				orIDs(
					authn(exact("spiffe://cluster.local/ns/default/sa/sleep")),
					authn(prefix("spiffe://cluster.local/ns/ops/")),
					authn(suffix("/sa/admin")),
					authn(regex(".+")),
				),
				notID(authn(exact("spiffe://cluster.local/ns/default/sa/robot"))),
			)},
		},
	}, {
		name:        "cluster.local stands for the trust domain; namespaces; sources ORed",
		trustDomain: "example.org",
		rule: &security.Rule{From: []*security.Rule_From{
			{Source: &security.Source{Principals: []string{"cluster.local/ns/a/sa/b", "other.org/ns/a/sa/b"}}},
			{Source: &security.Source{Namespaces: []string{"foo", "team-*", "*-prod", "*"}, NotNamespaces: []string{"kube-system"}}},
			{Source: &security.Source{ServiceAccounts: []string{"checkout", "billing/invoicer"}}},
		}},
		want: &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{anyPermission()},
			Principals: []*rbacv3.Principal{orIDs(
				orIDs(authn(exact("spiffe://example.org/ns/a/sa/b")), authn(exact("spiffe://other.org/ns/a/sa/b"))),
				andIDs(
					orIDs(
						authn(prefix("spiffe://example.org/ns/foo/")),
						authn(prefix("spiffe://example.org/ns/team-")),
						authn(regex(`spiffe://example\.org/ns/[^/]*-prod/.*`)),
						authn(prefix("spiffe://example.org/ns/")),
					),
					notID(authn(prefix("spiffe://example.org/ns/kube-system/"))),
				),
				orIDs(authn(exact("spiffe://example.org/ns/shop/sa/checkout")), authn(exact("spiffe://example.org/ns/billing/sa/invoicer"))),
			)},
		},
	}, {
		name: "operations: paths, methods, ports, ORed; conditions ANDed",
		rule: &security.Rule{
			To: []*security.Rule_To{
				{Operation: &security.Operation{
					Paths:    []string{"/shop.Cart/Get", "/shop.Cart/*", "*/Delete"},
					NotPaths: []string{"/shop.Cart/Admin"},
					Methods:  []string{"POST"},
					Ports:    []string{"8080", "9090"},
					NotPorts: []string{"15000"},
				}},
				{Operation: &security.Operation{Paths: []string{"*"}, NotMethods: []string{"GET"}}},
			},
			When: []*security.Condition{
				{Key: "request.headers[X-Tenant]", Values: []string{"acme", "beta-*"}, NotValues: []string{"*-blocked"}},
				{Key: "request.headers[x-debug]", Values: []string{"*"}},
			},
		},
		want: &rbacv3.Policy{
			Principals: []*rbacv3.Principal{anyPrincipal()},
			Permissions: []*rbacv3.Permission{and(
				or(
					and(
						header(":method", exact("POST")),
						or(path(exact("/shop.Cart/Get")), path(prefix("/shop.Cart/")), path(suffix("/Delete"))),
						not(path(exact("/shop.Cart/Admin"))),
						or(port(8080), port(9090)),
						not(port(15000)),
					),
					and(
						not(header(":method", exact("GET"))),
						anyPermission(),
					),
				),
				and(
					or(header("x-tenant", exact("acme")), header("x-tenant", prefix("beta-"))),
					not(header("x-tenant", suffix("-blocked"))),
				),
				present("x-debug"),
			)},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := build(t, translate.Input{
				Config: &model.Config{AuthorizationPolicies: []*model.AuthorizationPolicy{
					authzPolicy("shop", "p", &security.AuthorizationPolicy{Rules: []*security.Rule{tt.rule}}),
				}},
				TrustDomain:     tt.trustDomain,
				ServerAddresses: []string{addr},
				Workloads:       map[string]translate.Workload{addr: {Namespace: "shop"}},
			})
			_, rules := rbacOf(t, out, addr)
			got := rules["envoy.filters.http.rbac.allow"].GetPolicies()["ns[shop]-policy[p]-rule[0]"]
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("policy (-want +got):\n%s", diff)
			}
		})
	}
}

// clusterSANs returns the SANs a cluster's UpstreamTlsContext accepts, or
// nil and false when the cluster is plaintext. It checks the rest of the
// context.
func clusterSANs(t *testing.T, c *clusterv3.Cluster) ([]string, bool) {
	t.Helper()
	ts := c.GetTransportSocket()
	if ts == nil {
		return nil, false
	}
	if ts.GetName() != "envoy.transport_sockets.tls" {
		t.Errorf("%s: transport socket %q", c.GetName(), ts.GetName())
	}
	up := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(up); err != nil {
		t.Fatal(err)
	}
	var sans []string
	for _, m := range up.GetCommonTlsContext().GetValidationContext().GetMatchSubjectAltNames() {
		sans = append(sans, m.GetExact())
	}
	if diff := cmp.Diff(&tlsv3.UpstreamTlsContext{CommonTlsContext: wantCommonTLS(sans...)}, up, protocmp.Transform()); diff != "" {
		t.Errorf("%s: UpstreamTlsContext (-want +got):\n%s", c.GetName(), diff)
	}
	return sans, true
}

func TestClusterTLS(t *testing.T) {
	const host = "reviews.default.svc.cluster.local"
	tlsMode := func(m networking.ClientTLSSettings_TLSmode) *networking.TrafficPolicy {
		return &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{Mode: m}}
	}
	dr := func(top *networking.TrafficPolicy, v1 *networking.TrafficPolicy) *model.DestinationRule {
		return destinationRule("default", "reviews", &networking.DestinationRule{Host: host, TrafficPolicy: top, Subsets: []*networking.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}, TrafficPolicy: v1},
			{Name: "v2", Labels: map[string]string{"version": "v2"}},
			{Name: "none", Labels: map[string]string{"version": "none"}},
		}})
	}
	inst := func(id, addr, sa, version string) registry.Instance {
		return registry.Instance{ID: id, Service: "reviews", Namespace: "default", ServiceAccount: sa, Address: addr, Port: 9080, ServicePort: 9080, Protocol: "GRPC",
			Labels: map[string]string{"app": "reviews", "version": version}}
	}
	insts := []registry.Instance{inst("a", "10.0.0.1", "reviews-v1", "v1"), inst("b", "10.0.0.2", "reviews-v2", "v2"), inst("c", "10.0.0.3", "", "v2")}
	se := func(sans ...string) *model.ServiceEntry {
		return serviceEntry("default", "reviews", &networking.ServiceEntry{
			Hosts:            []string{host},
			Ports:            []*networking.ServicePort{{Number: 9080, Name: "grpc", Protocol: "GRPC"}},
			WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "reviews"}},
			Resolution:       networking.ServiceEntry_STATIC,
			SubjectAltNames:  sans,
		})
	}
	wle := func(name, addr, sa, version string) *model.WorkloadEntry {
		return workloadEntry("default", name, &networking.WorkloadEntry{Address: addr, ServiceAccount: sa, Labels: map[string]string{"app": "reviews", "version": version}})
	}
	const (
		sa1  = "spiffe://cluster.local/ns/default/sa/reviews-v1"
		sa2  = "spiffe://cluster.local/ns/default/sa/reviews-v2"
		saDf = "spiffe://cluster.local/ns/default/sa/default"
	)
	plain := []string{"plaintext"}
	tests := []struct {
		name      string
		cfg       *model.Config
		insts     []registry.Instance
		workloads map[string]translate.Workload
		// want per subset: "", v1, v2, none.
		want map[string][]string
	}{{
		name:  "auto: instances get mTLS, SANs per cluster",
		cfg:   &model.Config{DestinationRules: []*model.DestinationRule{dr(nil, nil)}},
		insts: insts,
		want:  map[string][]string{"": {saDf, sa1, sa2}, "v1": {sa1}, "v2": {saDf, sa2}, "none": plain},
	}, {
		name: "auto: WorkloadEntries and static endpoints get plaintext",
		cfg: &model.Config{
			ServiceEntries:   []*model.ServiceEntry{se()},
			WorkloadEntries:  []*model.WorkloadEntry{wle("vm", "10.0.1.1", "vm", "v1")},
			DestinationRules: []*model.DestinationRule{dr(nil, nil)},
		},
		insts: insts[1:], // v2 only: instances
		// The whole service mixes instances that expect mTLS with a
		// WorkloadEntry: mTLS, and a warning (TestMixedClusterWarns).
		want: map[string][]string{"": {saDf, sa2, "spiffe://cluster.local/ns/default/sa/vm"}, "v1": plain, "v2": {saDf, sa2}, "none": plain},
	}, {
		name:  "ISTIO_MUTUAL: WorkloadEntries too, with their service accounts",
		cfg:   &model.Config{ServiceEntries: []*model.ServiceEntry{se()}, WorkloadEntries: []*model.WorkloadEntry{wle("vm", "10.0.1.1", "vm", "v1"), wle("vm2", "10.0.1.2", "", "v1")}, DestinationRules: []*model.DestinationRule{dr(tlsMode(networking.ClientTLSSettings_ISTIO_MUTUAL), nil)}},
		want:  map[string][]string{"": {saDf, "spiffe://cluster.local/ns/default/sa/vm"}, "v1": {saDf, "spiffe://cluster.local/ns/default/sa/vm"}, "v2": {saDf, "spiffe://cluster.local/ns/default/sa/vm"}, "none": {saDf, "spiffe://cluster.local/ns/default/sa/vm"}},
		insts: nil,
	}, {
		name:  "DISABLE: never",
		cfg:   &model.Config{DestinationRules: []*model.DestinationRule{dr(tlsMode(networking.ClientTLSSettings_DISABLE), nil)}},
		insts: insts,
		want:  map[string][]string{"": plain, "v1": plain, "v2": plain, "none": plain},
	}, {
		name:  "subset overrides top level",
		cfg:   &model.Config{DestinationRules: []*model.DestinationRule{dr(tlsMode(networking.ClientTLSSettings_DISABLE), tlsMode(networking.ClientTLSSettings_ISTIO_MUTUAL))}},
		insts: insts,
		want:  map[string][]string{"": plain, "v1": {sa1}, "v2": plain, "none": plain},
	}, {
		name:  "subset DISABLE under ISTIO_MUTUAL",
		cfg:   &model.Config{DestinationRules: []*model.DestinationRule{dr(tlsMode(networking.ClientTLSSettings_ISTIO_MUTUAL), tlsMode(networking.ClientTLSSettings_DISABLE))}},
		insts: insts,
		// A subset without endpoints is checked against the service's
		// identities, not against none (which gRPC reads as any).
		want: map[string][]string{"": {saDf, sa1, sa2}, "v1": plain, "v2": {saDf, sa2}, "none": {saDf, sa1, sa2}},
	}, {
		name: "auto: an instance whose PeerAuthentication is DISABLE gets plaintext",
		cfg: &model.Config{
			DestinationRules: []*model.DestinationRule{dr(nil, nil)},
			PeerAuthentications: []*model.PeerAuthentication{peerAuth("default", "v1", &security.PeerAuthentication{
				Selector: matchLabels("version", "v1"), PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{9080: mtls(disable)},
			})},
		},
		insts: insts,
		// One DISABLE instance does not turn the others' traffic to
		// plaintext: only its own subset, where it is alone.
		want: map[string][]string{"": {saDf, sa1, sa2}, "v1": plain, "v2": {saDf, sa2}, "none": plain},
	}, {
		name: "auto: the labels an instance registered decide its mode",
		cfg:  &model.Config{DestinationRules: []*model.DestinationRule{dr(nil, nil)}, PeerAuthentications: []*model.PeerAuthentication{peerAuth("default", "off", &security.PeerAuthentication{Selector: matchLabels("mode", "off"), Mtls: mtls(disable)})}},
		insts: func() []registry.Instance {
			off := inst("a", "10.0.0.1", "reviews-v1", "v1")
			off.Labels["mode"] = "off"
			return []registry.Instance{off, insts[1], insts[2]}
		}(),
		// The DISABLE instance cannot turn its service's traffic to
		// plaintext: only its own subset, where it is alone.
		want: map[string][]string{"": {saDf, sa1, sa2}, "v1": plain, "v2": {saDf, sa2}, "none": plain},
	}, {
		name:  "ServiceEntry subjectAltNames replace the endpoints' identities",
		cfg:   &model.Config{ServiceEntries: []*model.ServiceEntry{se("spiffe://example.org/reviews", "spiffe://cluster.local/ns/default/sa/a")}, DestinationRules: []*model.DestinationRule{dr(nil, nil)}},
		insts: insts,
		want:  map[string][]string{"": {"spiffe://cluster.local/ns/default/sa/a", "spiffe://example.org/reviews"}, "v1": {"spiffe://cluster.local/ns/default/sa/a", "spiffe://example.org/reviews"}, "v2": {"spiffe://cluster.local/ns/default/sa/a", "spiffe://example.org/reviews"}, "none": plain},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := build(t, translate.Input{Config: tt.cfg, Instances: tt.insts, Workloads: tt.workloads})
			got := map[string][]string{}
			for _, sub := range []string{"", "v1", "v2", "none"} {
				sans, ok := clusterSANs(t, findCluster(t, out, wire.ClusterName(9080, sub, host)))
				if !ok {
					sans = plain
				}
				got[sub] = sans
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SANs per subset (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClusterTLSTrustDomain(t *testing.T) {
	out := build(t, translate.Input{
		TrustDomain: "example.org",
		Instances:   []registry.Instance{{ID: "a", Service: "ratings", Namespace: "shop", ServiceAccount: "ratings", Address: "10.0.0.1", Port: 9080}},
	})
	sans, ok := clusterSANs(t, findCluster(t, out, wire.ClusterName(9080, "", "ratings.shop.svc.cluster.local")))
	if want := []string{"spiffe://example.org/ns/shop/sa/ratings"}; !ok || !cmp.Equal(sans, want) {
		t.Errorf("SANs = %v (TLS %v), want %v", sans, ok, want)
	}
}

// TestMixedClusterWarns: a cluster whose endpoints mix meshlet servers
// that expect mTLS with static endpoints uses mTLS, and says so.
func TestMixedClusterWarns(t *testing.T) {
	host := "reviews.default.svc.cluster.local"
	se := serviceEntry("default", "reviews", &networking.ServiceEntry{
		Hosts:            []string{host},
		Ports:            []*networking.ServicePort{{Number: 9080, Name: "grpc", Protocol: "GRPC"}},
		WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "reviews"}},
		Resolution:       networking.ServiceEntry_STATIC,
	})
	wle := workloadEntry("default", "vm", &networking.WorkloadEntry{Address: "10.0.1.1", Labels: map[string]string{"app": "reviews"}})
	out := build(t, translate.Input{
		Config:    &model.Config{ServiceEntries: []*model.ServiceEntry{se}, WorkloadEntries: []*model.WorkloadEntry{wle}},
		Instances: []registry.Instance{{ID: "a", Service: "reviews", Namespace: "default", ServiceAccount: "reviews", Address: "10.0.0.1", Port: 9080, Labels: map[string]string{"app": "reviews"}}},
	})
	if _, ok := clusterSANs(t, findCluster(t, out, wire.ClusterName(9080, "", host))); !ok {
		t.Error("the mixed cluster is plaintext, want mTLS")
	}
	want := "cluster outbound|9080||reviews.default.svc.cluster.local mixes meshlet servers that expect mTLS with endpoints that may not speak it (10.0.1.1:9080)"
	if len(out.Warnings) != 1 || !strings.HasPrefix(out.Warnings[0], want) {
		t.Errorf("warnings %q, want one starting %q", out.Warnings, want)
	}
}
