package config_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshlet/meshlet/controlplane/internal/config"
	"github.com/meshlet/meshlet/controlplane/internal/model"
)

func TestParseSecurityAccepts(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, cfg *model.Config)
	}{{
		name: "PeerAuthentication at every level, both apiVersions",
		yaml: `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec:
  mtls: {mode: UNSET}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: cart, namespace: shop}
spec:
  selector:
    matchLabels: {app: cart}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    8080: {mode: DISABLE}
    "9090": {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: empty, namespace: other}
spec: {}
`,
		check: func(t *testing.T, cfg *model.Config) {
			var got []string
			for _, pa := range cfg.PeerAuthentications {
				got = append(got, pa.Meta.String())
			}
			want := []string{"PeerAuthentication istio-system/default", "PeerAuthentication other/empty", "PeerAuthentication shop/cart", "PeerAuthentication shop/default"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
			cart := cfg.PeerAuthentications[2].Spec
			wantCart := &security.PeerAuthentication{
				Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "cart"}},
				Mtls:     &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_PERMISSIVE},
				PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{
					8080: {Mode: security.PeerAuthentication_MutualTLS_DISABLE},
					9090: {Mode: security.PeerAuthentication_MutualTLS_STRICT},
				},
			}
			if diff := cmp.Diff(wantCart, cart, protocmp.Transform()); diff != "" {
				t.Errorf("shop/cart (-want +got):\n%s", diff)
			}
		},
	}, {
		name: "Istio's allow-nothing, deny-all and a full rule",
		yaml: `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: shop}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: istio-system}
spec:
  action: DENY
  rules:
  - {}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: cart-viewer, namespace: shop}
spec:
  selector:
    matchLabels: {app: cart}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/shop/sa/frontend", "cluster.local/ns/admin/*"]
        notPrincipals: ["*/sa/robot"]
    - source:
        namespaces: [ops]
        notNamespaces: ["ops-*"]
    - source:
        serviceAccounts: [checkout, "billing/invoicer"]
    to:
    - operation:
        methods: [POST]
        paths: ["/shop.Cart/Get", "/shop.Cart/*"]
        notPaths: ["*/Delete"]
        ports: ["9080"]
        notPorts: ["15000"]
    when:
    - key: request.headers[x-tenant]
      values: [acme, "beta-*"]
      notValues: [blocked]
`,
		check: func(t *testing.T, cfg *model.Config) {
			if n := len(cfg.AuthorizationPolicies); n != 3 {
				t.Fatalf("%d policies, want 3", n)
			}
			deny := cfg.AuthorizationPolicies[0]
			if deny.Name != "deny-all" || deny.Spec.Action != security.AuthorizationPolicy_DENY || len(deny.Spec.Rules) != 1 {
				t.Errorf("deny-all = %v", deny.Spec)
			}
			if none := cfg.AuthorizationPolicies[1]; none.Name != "allow-nothing" || len(none.Spec.Rules) != 0 || none.Spec.Action != security.AuthorizationPolicy_ALLOW {
				t.Errorf("allow-nothing = %v", none.Spec)
			}
			rule := cfg.AuthorizationPolicies[2].Spec.Rules[0]
			if got := rule.To[0].Operation.Ports; !cmp.Equal(got, []string{"9080"}) {
				t.Errorf("ports = %v", got)
			}
			if got := rule.When[0].Key; got != "request.headers[x-tenant]" {
				t.Errorf("when key = %q", got)
			}
		},
	}, {
		name: "DestinationRule tls: ISTIO_MUTUAL, subset DISABLE; ServiceEntry subjectAltNames",
		yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      tls: {mode: DISABLE}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
  subjectAltNames: ["spiffe://cluster.local/ns/default/sa/reviews"]
`,
		check: func(t *testing.T, cfg *model.Config) {
			dr := cfg.DestinationRules[0].Spec
			if got := dr.TrafficPolicy.Tls.Mode; got != networking.ClientTLSSettings_ISTIO_MUTUAL {
				t.Errorf("top-level tls mode = %v", got)
			}
			if got := dr.Subsets[0].TrafficPolicy.Tls; got == nil || got.Mode != networking.ClientTLSSettings_DISABLE {
				t.Errorf("subset tls = %v, want mode DISABLE", got)
			}
			if got := cfg.ServiceEntries[0].Spec.SubjectAltNames; len(got) != 1 {
				t.Errorf("subjectAltNames = %v", got)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(map[string][]byte{"x.yaml": []byte(tt.yaml)})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestParseSecurityRefuses(t *testing.T) {
	pa := func(spec string) []byte {
		return []byte("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: shop}\nspec:\n" + spec)
	}
	ap := func(spec string) []byte {
		return []byte("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ap, namespace: shop}\nspec:\n" + spec)
	}
	rule := func(r string) []byte { return ap("  rules:\n  - " + r + "\n") }
	dr := func(spec string) []byte {
		return []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n" + spec)
	}
	const (
		paName = "PeerAuthentication shop/pa"
		apName = "AuthorizationPolicy shop/ap"
		drName = "DestinationRule default/reviews"
	)
	tests := []struct {
		name    string
		content []byte
		want    want
	}{
		{"unknown mtls mode", pa("  mtls: {mode: strict}\n"), want{"x.yaml", paName, "spec.mtls.mode", `unknown value "strict" (expected one of UNSET, DISABLE, PERMISSIVE, STRICT)`}},
		{"unknown port mode", pa("  selector: {matchLabels: {app: a}}\n  portLevelMtls: {8080: {mode: MUTUAL}}\n"), want{"x.yaml", paName, `spec.portLevelMtls["8080"].mode`, `unknown value "MUTUAL"`}},
		{"portLevelMtls without a selector", pa("  mtls: {mode: STRICT}\n  portLevelMtls: {8080: {mode: DISABLE}}\n"), want{"x.yaml", paName, "spec.portLevelMtls", "needs a selector"}},
		{"portLevelMtls with an empty selector", pa("  selector: {}\n  portLevelMtls: {8080: {mode: DISABLE}}\n"), want{"x.yaml", paName, "spec.portLevelMtls", "needs a selector"}},
		{"portLevelMtls port 0", pa("  selector: {matchLabels: {app: a}}\n  portLevelMtls: {0: {mode: DISABLE}}\n"), want{"x.yaml", paName, `spec.portLevelMtls["0"]`, "from 1 to 65535"}},
		{"portLevelMtls port name", pa("  selector: {matchLabels: {app: a}}\n  portLevelMtls: {http: {mode: DISABLE}}\n"), want{"x.yaml", paName, `spec.portLevelMtls["http"]`, "expected a whole number"}},
		{"unknown PeerAuthentication field", pa("  mtls: {mode: STRICT}\n  mode: STRICT\n"), want{"x.yaml", paName, "spec.mode", "unknown field"}},
		{"PeerAuthentication under networking", []byte("apiVersion: networking.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pa, namespace: shop}\nspec: {}\n"), want{"x.yaml", paName, "apiVersion", "use security.istio.io/v1 or v1beta1"}},
		{"VirtualService under security", []byte("apiVersion: security.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec: {}\n"), want{"x.yaml", "VirtualService default/vs", "apiVersion", "use networking.istio.io/v1, v1beta1 or v1alpha3"}},
		{"two namespace-wide PeerAuthentications", append(pa("  mtls: {mode: STRICT}\n"), []byte("\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: pb, namespace: shop}\nspec:\n  mtls: {mode: DISABLE}\n")...), want{"x.yaml", "PeerAuthentication shop/pb", "spec.selector", "neither has PeerAuthentication shop/pa in x.yaml, document 1"}},

		{"CUSTOM", ap("  action: CUSTOM\n  rules: [{}]\n"), want{"x.yaml", apName, "spec.action", "CUSTOM is out of scope for meshlet: it hands the decision to an external authorizer, which meshlet does not call (use ALLOW or DENY)"}},
		{"AUDIT", ap("  action: AUDIT\n"), want{"x.yaml", apName, "spec.action", "AUDIT is out of scope for meshlet: it only marks requests for an audit provider, which meshlet does not have (use ALLOW or DENY)"}},
		{"unknown action", ap("  action: ALLOW_ALL\n"), want{"x.yaml", apName, "spec.action", `unknown value "ALLOW_ALL" (expected one of ALLOW, DENY, AUDIT, CUSTOM)`}},
		{"provider", ap("  provider: {name: ext}\n"), want{"x.yaml", apName, "spec.provider", "external authorizer"}},
		{"targetRef", ap("  targetRef: {kind: Service, group: \"\", name: cart}\n"), want{"x.yaml", apName, "spec.targetRef", "select workloads with selector.matchLabels"}},
		{"targetRefs", ap("  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n"), want{"x.yaml", apName, "spec.targetRefs", "out of scope for meshlet: it attaches a policy to a gateway or a Kubernetes Service, and meshlet has neither (select workloads with selector.matchLabels)"}},
		{"requestPrincipals", rule("from: [{source: {requestPrincipals: [\"*\"]}}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source.requestPrincipals", "planned, not yet supported: request principals come from JWT request authentication, which is on meshlet's roadmap (use principals, namespaces or serviceAccounts for now)"}},
		{"ipBlocks", rule("from: [{source: {ipBlocks: [10.0.0.0/8]}}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source.ipBlocks", "out of scope for meshlet: callers are identified by their mTLS identity, not their address (use principals, namespaces or serviceAccounts)"}},
		{"remoteIpBlocks", rule("from: [{source: {principals: [a], notRemoteIpBlocks: [10.0.0.1]}}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source.notRemoteIpBlocks", "out of scope for meshlet: callers are identified"}},
		{"trustDomains", rule("from: [{source: {trustDomains: [example.org]}}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source.trustDomains", "use principals"}},
		{"hosts", rule("to: [{operation: {hosts: [cart.shop]}}]"), want{"x.yaml", apName, "spec.rules[0].to[0].operation.hosts", "use paths, methods or ports"}},
		{"empty source", rule("from: [{source: {}}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source", "set at least one of principals, notPrincipals, namespaces"}},
		{"no source", rule("from: [{}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source", "required"}},
		{"empty operation", rule("to: [{operation: {}}]"), want{"x.yaml", apName, "spec.rules[0].to[0].operation", "set at least one of methods, notMethods, paths"}},
		{"port name", rule("to: [{operation: {ports: [http]}}]"), want{"x.yaml", apName, "spec.rules[0].to[0].operation.ports[0]", `from 1 to 65535, got "http"`}},
		{"port out of range", rule("to: [{operation: {notPorts: [\"70000\"]}}]"), want{"x.yaml", apName, "spec.rules[0].to[0].operation.notPorts[0]", "from 1 to 65535"}},
		{"port as a number", rule("to: [{operation: {ports: [8080]}}]"), want{"x.yaml", apName, "spec.rules[0].to[0].operation.ports[0]", "expected a string, got number 8080 (quote it)"}},
		{"wildcard in the middle", rule("to: [{operation: {paths: [\"/shop.*/Get\"]}}]"), want{"x.yaml", apName, "spec.rules[0].to[0].operation.paths[0]", "a wildcard may only be the first or last character"}},
		{"path template", rule("to: [{operation: {paths: [\"/shop/{*}\"]}}]"), want{"x.yaml", apName, "spec.rules[0].to[0].operation.paths[0]", "path templates"}},
		{"empty principal", rule("from: [{source: {principals: [\"\"]}}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source.principals[0]", "must not be empty"}},
		{"serviceAccounts with principals", rule("from: [{source: {principals: [a], serviceAccounts: [b]}}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source.serviceAccounts", "cannot be set with principals or namespaces"}},
		{"bad service account", rule("from: [{source: {notServiceAccounts: [\"a/b/c\"]}}]"), want{"x.yaml", apName, "spec.rules[0].from[0].source.notServiceAccounts[0]", "is not a service account"}},
		{"unsupported when key", rule("when: [{key: source.ip, values: [10.0.0.1]}]"), want{"x.yaml", apName, "spec.rules[0].when[0].key", `key "source.ip" is out of scope for meshlet, which evaluates request.headers[<name>] only (express callers with from, and ports with to)`}},
		{"JWT claim key", rule("when: [{key: \"request.auth.claims[iss]\", values: [x]}]"), want{"x.yaml", apName, "spec.rules[0].when[0].key", `key "request.auth.claims[iss]" is planned, not yet supported: it needs JWT request authentication, which is on meshlet's roadmap (use request.headers[<name>] for now)`}},
		{"grpc- header key", rule("when: [{key: \"request.headers[grpc-timeout]\", values: [1S]}]"), want{"x.yaml", apName, "spec.rules[0].when[0].key", "grpc- headers or :scheme"}},
		{"when without values", rule("when: [{key: \"request.headers[x-a]\"}]"), want{"x.yaml", apName, "spec.rules[0].when[0]", "set values or notValues"}},
		{"when without key", rule("when: [{values: [a]}]"), want{"x.yaml", apName, "spec.rules[0].when[0].key", "required: request.headers[<name>]"}},

		{"tls SIMPLE", dr("  trafficPolicy:\n    tls: {mode: SIMPLE}\n"), want{"x.yaml", drName, "spec.trafficPolicy.tls.mode", "SIMPLE is out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (use ISTIO_MUTUAL)"}},
		{"tls MUTUAL in a subset", dr("  subsets:\n  - name: v1\n    labels: {version: v1}\n    trafficPolicy:\n      tls: {mode: MUTUAL}\n"), want{"x.yaml", drName, "spec.subsets[0].trafficPolicy.tls.mode", "MUTUAL is out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (use ISTIO_MUTUAL)"}},
		{"tls sni", dr("  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, sni: reviews}\n"), want{"x.yaml", drName, "spec.trafficPolicy.tls.sni", "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)"}},
		{"tls credentialName", dr("  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, credentialName: secret}\n"), want{"x.yaml", drName, "spec.trafficPolicy.tls.credentialName", "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)"}},
		{"tls unknown mode", dr("  trafficPolicy:\n    tls: {mode: AUTO}\n"), want{"x.yaml", drName, "spec.trafficPolicy.tls.mode", `unknown value "AUTO" (expected one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL)`}},
		{"empty subjectAltName", []byte("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  subjectAltNames: [\"\"]\n"), want{"x.yaml", "ServiceEntry default/r", "spec.subjectAltNames[0]", "must not be empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(map[string][]byte{"x.yaml": tt.content})
			if cfg != nil {
				t.Errorf("Parse returned a config with an error")
			}
			errs := fieldErrors(t, err)
			checkErrors(t, errs, tt.want)
			if len(errs) != 1 {
				t.Errorf("got %d errors, want 1:\n%s", len(errs), errorList(errs))
			}
		})
	}
}
