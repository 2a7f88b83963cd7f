package config_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// selectingSE is a ServiceEntry that selects the WorkloadEntries of app
// reviews.
const selectingSE = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`

// reviewsRule is a DestinationRule for the routes in the tests below.
const reviewsRule = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
`

func TestParseAPIVersions(t *testing.T) {
	for _, version := range []string{"v1", "v1beta1", "v1alpha3"} {
		t.Run(version, func(t *testing.T) {
			cfg, err := config.Parse(map[string][]byte{"reviews.yaml": []byte(`
apiVersion: networking.istio.io/` + version + `
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---` + reviewsRule)})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := cfg.VirtualServices[0].Spec.Hosts[0]; got != "reviews.default.svc.cluster.local" {
				t.Errorf("host = %q, want reviews.default.svc.cluster.local", got)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		files map[string][]byte
		check func(t *testing.T, c *configView)
	}{{
		name:  "no files",
		files: nil,
	}, {
		name: "empty and comment-only files",
		files: map[string][]byte{
			"empty.yaml":    nil,
			"comments.yaml": []byte("# nothing here\n---\n# nor here\n"),
		},
	}, {
		name: "proto field names, quoted numbers, status and CRLF",
		files: map[string][]byte{"reviews.yaml": []byte("" +
			"apiVersion: networking.istio.io/v1\r\n" +
			"kind: VirtualService\r\n" +
			"metadata:\r\n" +
			"  name: reviews\r\n" +
			"spec:\r\n" +
			"  hosts: [reviews]\r\n" +
			"  http:\r\n" +
			"  - route:\r\n" +
			"    - destination: {host: reviews, port: {number: \"9080\"}}\r\n" +
			"    retries: {attempts: 2, per_try_timeout: 250ms, retry_on: unavailable}\r\n" +
			"status:\r\n" +
			"  observedGeneration: 3\r\n"),
		},
		check: func(t *testing.T, c *configView) {
			r := c.vs("reviews").Http[0]
			if got := r.Retries.PerTryTimeout.AsDuration().String(); got != "250ms" {
				t.Errorf("perTryTimeout = %s, want 250ms", got)
			}
			if got := r.Route[0].Destination.Port.Number; got != 9080 {
				t.Errorf("port = %d, want 9080", got)
			}
		},
	}, {
		name: "separator with a comment, hosts in the resource's namespace",
		files: map[string][]byte{"shop.yaml": []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: cart
  namespace: shop
spec:
  hosts: [cart]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v1}
      weight: 100
    - destination: {host: cart}
      weight: 0
--- # the rule for reviews
` + reviewsRule)},
		check: func(t *testing.T, c *configView) {
			vs := c.vs("cart")
			if got := vs.Hosts[0]; got != "cart.shop.svc.cluster.local" {
				t.Errorf("host = %q, want cart.shop.svc.cluster.local", got)
			}
			if got := vs.Http[0].Route[1].Destination.Host; got != "cart.shop.svc.cluster.local" {
				t.Errorf("destination host = %q, want cart.shop.svc.cluster.local", got)
			}
		},
	}, {
		name: "subset defined by a wildcard rule, deprecated LEAST_CONN",
		files: map[string][]byte{"ext.yaml": []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [api.example.com]
  http:
  - route:
    - destination: {host: api.example.com, subset: blue}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: example
spec:
  host: "*.example.com"
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
  subsets:
  - name: blue
    labels: {color: blue}
`)},
	}, {
		name: "outlier detection and peak EWMA",
		files: map[string][]byte{"reviews.yaml": []byte(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  annotations:
    meshlet.io/load-balancer: PEAK_EWMA
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection:
      consecutive5xxErrors: 3
      consecutiveGatewayErrors: 2
      interval: 5s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      outlierDetection:
        consecutive5xxErrors: 0
        splitExternalLocalOriginErrors: true
        consecutiveLocalOriginFailures: 4
`)},
		check: func(t *testing.T, c *configView) {
			dr := c.cfg.DestinationRules[0]
			if !dr.PeakEWMA() || dr.Annotations["meshlet.io/load-balancer"] != "PEAK_EWMA" {
				t.Errorf("annotations = %v, want meshlet.io/load-balancer: PEAK_EWMA", dr.Annotations)
			}
			od := dr.Spec.TrafficPolicy.OutlierDetection
			if od.GetConsecutive_5XxErrors().GetValue() != 3 || od.GetConsecutiveGatewayErrors().GetValue() != 2 ||
				od.GetInterval().AsDuration() != 5*time.Second || od.GetBaseEjectionTime().AsDuration() != time.Minute || od.GetMaxEjectionPercent() != 50 {
				t.Errorf("outlierDetection = %v", od)
			}
			sub := dr.Spec.Subsets[0].TrafficPolicy.OutlierDetection
			if sub.GetConsecutive_5XxErrors() == nil || sub.GetConsecutive_5XxErrors().GetValue() != 0 {
				t.Errorf("subset consecutive5xxErrors = %v, want an explicit 0", sub.GetConsecutive_5XxErrors())
			}
			if !sub.GetSplitExternalLocalOriginErrors() || sub.GetConsecutiveLocalOriginFailures().GetValue() != 4 {
				t.Errorf("subset outlierDetection = %v", sub)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(tt.files)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if cfg == nil {
				t.Fatal("Parse returned a nil config and no error")
			}
			if tt.check != nil {
				tt.check(t, &configView{t, cfg})
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	vs := func(http string) []byte {
		return []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
` + http + "---" + reviewsRule)
	}
	dr := func(policy string) []byte {
		return []byte(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
` + policy)
	}
	se := func(spec string) []byte {
		return []byte(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
` + spec)
	}
	// annotated is a DestinationRule with meshlet's load-balancer
	// annotation set to value, and spec lines after the host.
	annotated := func(value, spec string) []byte {
		return []byte(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  annotations:
    meshlet.io/load-balancer: ` + value + `
spec:
  host: reviews
` + spec)
	}
	// annotatedWith is a DestinationRule with one annotation, and spec
	// lines after the host.
	annotatedWith := func(key, value, spec string) []byte {
		return []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  annotations:\n    " + key + ": " + value + "\nspec:\n  host: reviews\n" + spec)
	}
	const (
		vsName = "VirtualService default/reviews"
		drName = "DestinationRule default/reviews"
		seName = "ServiceEntry default/reviews"
	)
	tests := []struct {
		name    string
		content []byte
		want    want
	}{
		{"duplicate YAML key", []byte("kind: VirtualService\nkind: DestinationRule\n"), want{"x.yaml", "", "", "invalid YAML"}},
		{"not a resource", []byte("- reviews\n"), want{"x.yaml", "", "", "expected a resource"}},
		{"missing kind", []byte("apiVersion: networking.istio.io/v1\nmetadata: {name: reviews}\n"), want{"x.yaml", "", "kind", "required"}},
		{"unknown Istio kind", []byte("apiVersion: networking.istio.io/v1\nkind: Route\nmetadata: {name: reviews}\n"), want{"x.yaml", "Route default/reviews", "kind", "kind Route is not a kind of networking.istio.io (meshlet reads ServiceEntry, WorkloadEntry, WorkloadGroup, VirtualService and DestinationRule of networking.istio.io, and PeerAuthentication and AuthorizationPolicy of security.istio.io)"}},
		{"kind in another Istio group", []byte("apiVersion: networking.istio.io/v1\nkind: PeerAuthentcation\nmetadata: {name: reviews}\n"), want{"x.yaml", "PeerAuthentcation default/reviews", "kind", "kind PeerAuthentcation is not a kind of networking.istio.io (did you mean PeerAuthentication of security.istio.io?)"}},
		{"kind in lower case", []byte("apiVersion: networking.istio.io/v1\nkind: virtualservice\nmetadata: {name: reviews}\n"), want{"x.yaml", "virtualservice default/reviews", "kind", "(did you mean VirtualService?)"}},
		{"typo in an Istio group", []byte("apiVersion: networking.istio.i0/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"), want{"x.yaml", vsName, "apiVersion", `apiVersion "networking.istio.i0/v1": networking.istio.i0 is not an Istio API group (did you mean networking.istio.io?)`}},
		{"Istio group cut short", []byte("apiVersion: security.istio/v1\nkind: AuthorizationPolicy\nmetadata: {name: reviews}\n"), want{"x.yaml", "AuthorizationPolicy default/reviews", "apiVersion", "(did you mean security.istio.io?)"}},
		{"Istio kind without its group", []byte("apiVersion: v1alpha3\nkind: VirtualService\nmetadata: {name: reviews}\n"), want{"x.yaml", vsName, "apiVersion", `apiVersion "v1alpha3" is not supported for VirtualService (use networking.istio.io/v1, v1beta1 or v1alpha3)`}},
		{"Istio kind without apiVersion", []byte("kind: DestinationRule\nmetadata: {name: reviews}\n"), want{"x.yaml", drName, "apiVersion", `apiVersion "" is not supported for DestinationRule (use networking.istio.io/v1, v1beta1 or v1alpha3)`}},
		{"no apiVersion", []byte("kind: Service\nmetadata: {name: reviews}\n"), want{"x.yaml", "Service default/reviews", "apiVersion", "required (such as networking.istio.io/v1)"}},
		{"List of Istio resources", []byte("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: reviews}}\n"), want{"x.yaml", "List", "kind", "a List of Istio resources is not read (write each resource as a document of its own, separated by ---)"}},
		{"removed Istio group", []byte("apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: reviews}\n"), want{"x.yaml", "ServiceRole default/reviews", "apiVersion", `apiVersion "rbac.istio.io/v1alpha1": Istio removed this API group (use AuthorizationPolicy of security.istio.io)`}},
		{"Wasm plugin", []byte("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: reviews}\n"), want{"x.yaml", "WasmPlugin default/reviews", "kind", "kind WasmPlugin is out of scope for meshlet: Wasm plugins run inside Envoy, and there is no Envoy (remove it; write the logic as HTTP middleware or a gRPC interceptor)"}},
		{"Telemetry", []byte("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\n"), want{"x.yaml", "Telemetry istio-system/mesh-default", "kind", "kind Telemetry is planned, not yet supported: each service turns on its own tracing, metrics and access logs (mesh.WithTelemetry and the OTEL_* environment: see docs/telemetry.md), not the control plane (remove it)"}},
		{"unknown top-level field", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews}\nextra: 1\n"), want{"x.yaml", drName, "extra", "unknown field"}},
		{"spec not an object", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: [reviews]\n"), want{"x.yaml", drName, "spec", "expected an object"}},
		{"label not a string", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, labels: {version: 1.0}}\nspec: {host: reviews}\n"), want{"x.yaml", drName, `metadata.labels["version"]`, "expected a string"}},
		{"unknown field in a list", vs("  - route:\n    - destination: {host: reviews}\n      wieght: 100\n"), want{"x.yaml", vsName, "spec.http[0].route[0].wieght", `unknown field (did you mean "weight"?)`}},
		{"null in a list", vs("  - route:\n    - null\n"), want{"x.yaml", vsName, "spec.http[0].route[0]", "got null"}},
		{"field removed from the API", vs("  - route:\n    - destination: {host: reviews}\n      remove_response_headers: [x-a]\n"), want{"x.yaml", vsName, "spec.http[0].route[0].remove_response_headers", "removed from the Istio API"}},
		{"bad content in a refused field", vs("  - route:\n    - destination: {host: reviews}\n    corsPolicy: {allowOrigin: [a], maxAge: 1d, allowCredentialz: true}\n"), want{"x.yaml", vsName, "spec.http[0].corsPolicy", "out of scope for meshlet: CORS answers browsers, which reach services through an ingress, not the mesh (handle CORS in the server, or at the ingress)"}},
		{"retryOn reset-before-request", vs("  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 2, retryOn: reset-before-request}\n"), want{"x.yaml", vsName, "spec.http[0].retries.retryOn", `retry condition "reset-before-request" is planned, not yet supported: meshlet's HTTP client cannot yet tell a reset before the request was sent from one after, and gRPC-Go retries such calls by itself (use connect-failure or refused-stream, or reset if the requests are idempotent)`}},
		{"retryOn retriable-headers", vs("  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 2, retryOn: \"5xx, retriable-headers\"}\n"), want{"x.yaml", vsName, "spec.http[0].retries.retryOn", `retry condition "retriable-headers" is out of scope for meshlet: it retries on response headers that Istio has no field to name, so it would retry nothing (use retriable-status-codes or status codes)`}},
		{"retryOn envoy-ratelimited", vs("  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 2, retryOn: envoy-ratelimited}\n"), want{"x.yaml", vsName, "spec.http[0].retries.retryOn", `retry condition "envoy-ratelimited" is out of scope for meshlet: it retries Envoy's own rate-limit answers, and there is no Envoy (remove it)`}},
		{"retryOn http3-post-connect-failure", vs("  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 2, retryOn: http3-post-connect-failure}\n"), want{"x.yaml", vsName, "spec.http[0].retries.retryOn", `retry condition "http3-post-connect-failure" is out of scope for meshlet: meshlet does not speak HTTP/3 (remove it)`}},
		{"retryOn typo", vs("  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 2, retryOn: unavaliable}\n"), want{"x.yaml", vsName, "spec.http[0].retries.retryOn", `unknown retry condition "unavaliable": did you mean unavailable? (accepted: cancelled, deadline-exceeded, internal, resource-exhausted and unavailable for gRPC; 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes and status codes from 100 to 599 for HTTP)`}},
		{"retryOn unknown", vs("  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 2, retryOn: aborted}\n"), want{"x.yaml", vsName, "spec.http[0].retries.retryOn", `unknown retry condition "aborted" (accepted: cancelled, deadline-exceeded, internal, resource-exhausted and unavailable for gRPC; 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes and status codes from 100 to 599 for HTTP)`}},
		{"retryOn status code out of range", vs("  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 2, retryOn: \"600\"}\n"), want{"x.yaml", vsName, "spec.http[0].retries.retryOn", `unknown retry condition "600" (accepted:`}},
		{"retries without attempts", vs("  - route:\n    - destination: {host: reviews}\n    retries: {perTryTimeout: 2s, retryOn: 5xx}\n"), want{"x.yaml", vsName, "spec.http[0].retries.attempts", "is 0 or left out, which turns retries off, so retryOn and perTryTimeout would do nothing (set attempts, or remove retries for Istio's default of 2)"}},
		{"zero backoff", vs("  - route:\n    - destination: {host: reviews}\n    retries: {attempts: 2, backoff: 0s}\n"), want{"x.yaml", vsName, "spec.http[0].retries.backoff", "must be greater than 0, got 0s (leave it out for the default, 25ms)"}},
		{"no http routes", vs(""), want{"x.yaml", vsName, "spec.http", "at least one http route"}},
		{"rewrite", vs("  - rewrite: {uri: /}\n    route:\n    - destination: {host: reviews}\n"), want{"x.yaml", vsName, "spec.http[0].rewrite", "out of scope for meshlet: the caller sends the path and authority it calls, and gRPC-Go cannot rewrite them (change them in the caller, or serve both)"}},
		{"route headers", vs("  - route:\n    - destination: {host: reviews}\n      headers: {request: {set: {x-a: b}}}\n"), want{"x.yaml", vsName, "spec.http[0].route[0].headers", "planned, not yet supported: setting and removing headers is on meshlet's roadmap, for gRPC and HTTP alike (set them in the calling code for now)"}},
		{"query params", vs("  - match:\n    - queryParams: {a: {exact: b}}\n    route:\n    - destination: {host: reviews}\n"), want{"x.yaml", vsName, "spec.http[0].match[0].queryParams", "out of scope for meshlet: gRPC-Go skips any route that matches query parameters, and meshlet's routes serve gRPC and HTTP clients alike (match on uri, headers or method)"}},
		{"bad header regex", vs("  - match:\n    - headers: {x-a: {regex: \"a(?=b)\"}}\n    route:\n    - destination: {host: reviews}\n"), want{"x.yaml", vsName, `spec.http[0].match[0].headers["x-a"].regex`, "invalid regular expression"}},
		{"missing destination host", vs("  - route:\n    - destination: {subset: v1}\n"), want{"x.yaml", vsName, "spec.http[0].route[0].destination.host", "required"}},
		{"exportTo", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews, exportTo: [.]}\n"), want{"x.yaml", drName, "spec.exportTo", `out of scope for meshlet: every namespace sees every resource, as with exportTo: ["*"] (remove it)`}},
		{"deprecated consecutiveErrors", dr("      simple: RANDOM\n    outlierDetection: {consecutiveErrors: 3}\n"), want{"x.yaml", drName, "spec.trafficPolicy.outlierDetection.consecutiveErrors", "deprecated by Istio: use consecutive5xxErrors, or consecutiveGatewayErrors for what this field counted (502, 503 and 504)"}},
		{"minHealthPercent", dr("      simple: RANDOM\n    outlierDetection: {consecutive5xxErrors: 3, minHealthPercent: 50}\n"), want{"x.yaml", drName, "spec.trafficPolicy.outlierDetection.minHealthPercent", "out of scope for meshlet: it sets Envoy's panic threshold, and neither gRPC-Go nor meshlet's balancer has a panic mode (remove it)"}},
		{"subset connectionPool maxConcurrentStreams", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews, subsets: [{name: v1, trafficPolicy: {connectionPool: {http: {maxRetries: 3, maxConcurrentStreams: 5}}}}]}\n"), want{"x.yaml", drName, "spec.subsets[0].trafficPolicy.connectionPool.http.maxConcurrentStreams", "planned, not yet supported: meshlet bounds requests and retries in flight (http2MaxRequests, maxRetries) and not yet connections or their lifetime (remove it for now)"}},
		{"zero http2MaxRequests", dr("      simple: RANDOM\n    connectionPool: {http: {http2MaxRequests: 0}}\n"), want{"x.yaml", drName, "spec.trafficPolicy.connectionPool.http", "sets no limit"}},
		{"negative maxRequestsPerConnection", dr("      simple: RANDOM\n    connectionPool: {http: {maxRequestsPerConnection: -1}}\n"), want{"x.yaml", drName, "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection", "must be 0 or more, got -1"}},
		{"zero idleTimeout", dr("      simple: RANDOM\n    connectionPool: {http: {idleTimeout: 0s}}\n"), want{"x.yaml", drName, "spec.trafficPolicy.connectionPool.http.idleTimeout", "must be at least 1ms, got 0s"}},
		{"negative http2MaxRequests", dr("      simple: RANDOM\n    connectionPool: {http: {http2MaxRequests: -1}}\n"), want{"x.yaml", drName, "spec.trafficPolicy.connectionPool.http.http2MaxRequests", "must be greater than 0, got -1"}},
		{"negative maxRetries", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews, subsets: [{name: v1, trafficPolicy: {connectionPool: {http: {maxRetries: -2}}}}]}\n"), want{"x.yaml", drName, "spec.subsets[0].trafficPolicy.connectionPool.http.maxRetries", "must be 0 or more, got -2"}},
		{"retry budget above 100", dr("      simple: RANDOM\n    retryBudget: {percent: 120}\n"), want{"x.yaml", drName, "spec.trafficPolicy.retryBudget.percent", "must be between 0 and 100, got 120"}},
		{"retry budget interval", dr("      simple: RANDOM\n    retryBudget: {percent: 20, budgetInterval: 10s}\n"), want{"x.yaml", drName, "spec.trafficPolicy.retryBudget.budgetInterval", "a budget over an interval is not implemented"}},
		{"bad circuit-breaker annotation", annotatedWith("meshlet.io/circuit-breaker", "consecutiveErrors=0,openFor=30s", ""), want{"x.yaml", drName, `metadata.annotations["meshlet.io/circuit-breaker"]`, "consecutiveErrors: must be a whole number from 1"}},
		{"unknown circuit-breaker setting", annotatedWith("meshlet.io/circuit-breaker", "errors=5", ""), want{"x.yaml", drName, `metadata.annotations["meshlet.io/circuit-breaker"]`, `unknown setting "errors"`}},
		{"zero interval", dr("      simple: RANDOM\n    outlierDetection: {interval: 0s}\n"), want{"x.yaml", drName, "spec.trafficPolicy.outlierDetection.interval", "must be greater than 0"}},
		{"negative base ejection time", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews, subsets: [{name: v1, trafficPolicy: {outlierDetection: {baseEjectionTime: -1s}}}]}\n"), want{"x.yaml", drName, "spec.subsets[0].trafficPolicy.outlierDetection.baseEjectionTime", "must be greater than 0, got -1s"}},
		{"max ejection percent above 100", dr("      simple: RANDOM\n    outlierDetection: {maxEjectionPercent: 101}\n"), want{"x.yaml", drName, "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "between 0 and 100, got 101"}},
		{"negative max ejection percent", dr("      simple: RANDOM\n    outlierDetection: {maxEjectionPercent: -1}\n"), want{"x.yaml", drName, "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "between 0 and 100, got -1"}},
		{"local origin failures without split", dr("      simple: RANDOM\n    outlierDetection: {consecutiveLocalOriginFailures: 3}\n"), want{"x.yaml", drName, "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "unless splitExternalLocalOriginErrors is true"}},
		{"negative consecutive 5xx", dr("      simple: RANDOM\n    outlierDetection: {consecutive5xxErrors: -1}\n"), want{"x.yaml", drName, "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", "expected a whole number from 0"}},
		{"unknown outlier field", dr("      simple: RANDOM\n    outlierDetection: {consecutive5xxError: 3}\n"), want{"x.yaml", drName, "spec.trafficPolicy.outlierDetection.consecutive5xxError", `did you mean "consecutive5xxErrors"?`}},
		{"unknown load-balancer annotation value", annotated("LATENCY", "  trafficPolicy:\n    loadBalancer: {simple: LEAST_REQUEST}\n"), want{"x.yaml", drName, `metadata.annotations["meshlet.io/load-balancer"]`, `unknown value "LATENCY" of annotation meshlet.io/load-balancer (the one value is PEAK_EWMA`}},
		{"lower-case load-balancer annotation", annotated("peak_ewma", ""), want{"x.yaml", drName, `metadata.annotations["meshlet.io/load-balancer"]`, "the one value is PEAK_EWMA"}},
		{"PEAK_EWMA with consistentHash", annotated("PEAK_EWMA", "  trafficPolicy:\n    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n"), want{"x.yaml", drName, "spec.trafficPolicy.loadBalancer.consistentHash", "cannot be combined with the annotation meshlet.io/load-balancer: PEAK_EWMA"}},
		{"PEAK_EWMA with a subset's consistentHash", annotated("PEAK_EWMA", "  subsets:\n  - name: v1\n    trafficPolicy:\n      loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n"), want{"x.yaml", drName, "spec.subsets[0].trafficPolicy.loadBalancer.consistentHash", "cannot be combined with the annotation"}},
		{"consistentHash without header", dr("      consistentHash: {minimumRingSize: 1024}\n"), want{"x.yaml", drName, "spec.trafficPolicy.loadBalancer.consistentHash.httpHeaderName", "required"}},
		{"maglev", dr("      consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}\n"), want{"x.yaml", drName, "spec.trafficPolicy.loadBalancer.consistentHash.maglev", "out of scope for meshlet: gRPC-Go has ring hash only (use ringHash, or leave it out)"}},
		{"missing host", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {subsets: [{name: v1, labels: {version: v1}}]}\n"), want{"x.yaml", drName, "spec.host", "required"}},
		{"missing subset name", []byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews, subsets: [{labels: {version: v1}}]}\n"), want{"x.yaml", drName, "spec.subsets[0].name", "required"}},
		{"service entry without hosts", se("  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n"), want{"x.yaml", seName, "spec.hosts", "at least one host"}},
		{"service entry without ports", se("  hosts: [reviews]\n  resolution: STATIC\n"), want{"x.yaml", seName, "spec.ports", "at least one port"}},
		{"service entry port out of range", se("  hosts: [reviews]\n  ports: [{number: 0, name: http, protocol: HTTP}]\n  resolution: STATIC\n"), want{"x.yaml", seName, "spec.ports[0].number", "between 1 and 65535"}},
		{"service entry resolution NONE", se("  hosts: [reviews]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: NONE\n"), want{"x.yaml", seName, "spec.resolution", "set resolution: STATIC"}},
		{"service entry endpoints and selector", se("  hosts: [reviews]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: reviews}}\n  endpoints: [{address: 10.0.0.1}]\n"), want{"x.yaml", seName, "spec.workloadSelector", "cannot both be set"}},
		{"service entry addresses", se("  hosts: [reviews]\n  addresses: [240.0.0.1]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n"), want{"x.yaml", seName, "spec.addresses", "out of scope for meshlet: clients dial the host name, never a virtual IP, as nothing captures their traffic (remove it)"}},
		{"service entry endpoint network", se("  hosts: [reviews]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1, network: vpc-1}]\n"), want{"x.yaml", seName, "spec.endpoints[0].network", "out of scope for meshlet: the mesh is one network, with no gateway between networks (remove it)"}},
		{"workload entry without address", []byte("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: reviews-v1}\nspec: {labels: {app: reviews}}\n---\n" + selectingSE), want{"x.yaml", "WorkloadEntry default/reviews-v1", "spec.address", "required"}},
		{"workload entry no ServiceEntry selects", []byte("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: reviews-v1}\nspec: {address: 10.0.0.1, labels: {app: ratings}}\n---\n" + selectingSE), want{"x.yaml", "WorkloadEntry default/reviews-v1", "spec.labels", "no ServiceEntry in namespace default selects this WorkloadEntry, so nothing sends it traffic (add a ServiceEntry whose workloadSelector.labels match these labels)"}},
		{"workload entry in another namespace", []byte("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: reviews-v1, namespace: shop}\nspec: {address: 10.0.0.1, labels: {app: reviews}}\n---\n" + selectingSE), want{"x.yaml", "WorkloadEntry shop/reviews-v1", "spec.labels", "no ServiceEntry in namespace shop selects this WorkloadEntry"}},
		{"workload entry port name", []byte("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: reviews-v1}\nspec: {address: 10.0.0.1, labels: {app: reviews}, ports: {grpc: 9090}}\n---\n" + selectingSE), want{"x.yaml", "WorkloadEntry default/reviews-v1", `spec.ports["grpc"]`, `"grpc" is not the name of a port of ServiceEntry default/reviews, which selects this entry (use one of http)`}},
		{"minimum ring size too big", dr("      consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 8388609}}\n"), want{"x.yaml", drName, "spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize", "must be at most 8388608, the largest ring gRPC-Go builds, got 8388609"}},
		{"both minimum ring sizes", dr("      consistentHash: {httpHeaderName: x-user, minimumRingSize: 1024, ringHash: {minimumRingSize: 2048}}\n"), want{"x.yaml", drName, "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "cannot be set with ringHash.minimumRingSize, which would win (remove this deprecated field)"}},
		{"gateway", vs("  - match:\n    - gateways: [mesh, bookinfo-gateway]\n    route:\n    - destination: {host: reviews}\n"), want{"x.yaml", vsName, "spec.http[0].match[0].gateways[1]", `gateway "bookinfo-gateway" is out of scope for meshlet: a proxyless mesh has no gateway proxy (list only mesh, or leave gateways out)`}},
		{"dry-run policy", []byte("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, annotations: {istio.io/dry-run: \"true\"}}\nspec: {action: DENY, rules: [{}]}\n"), want{"x.yaml", "AuthorizationPolicy default/deny-all", `metadata.annotations["istio.io/dry-run"]`, "out of scope for meshlet: gRPC-Go's authorization has no dry-run mode, so this policy would be enforced for real (remove the policy, or remove the annotation to enforce it)"}},
		{"workload group annotations", []byte("apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: reviews}\nspec: {metadata: {annotations: {team: books}}, template: {serviceAccount: reviews}}\n"), want{"x.yaml", "WorkloadGroup default/reviews", "spec.metadata.annotations", "out of scope for meshlet: Istio puts them on the WorkloadEntry objects it makes for registered workloads, and meshlet makes none (remove it)"}},
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

// TestParseSkips checks which documents are skipped as not Istio config.
func TestParseSkips(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []config.Skipped
	}{
		{"Kubernetes Gateway API Gateway", "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: web}\n",
			[]config.Skipped{{File: "x.yaml", APIVersion: "gateway.networking.k8s.io/v1", Kind: "Gateway", Name: "web"}}},
		{"List of Services", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: reviews}}\n",
			[]config.Skipped{{File: "x.yaml", APIVersion: "v1", Kind: "List"}}},
		{"no metadata", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [bookinfo.yaml]\n",
			[]config.Skipped{{File: "x.yaml", APIVersion: "kustomize.config.k8s.io/v1beta1", Kind: "Kustomization"}}},
		{"Istio resource", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews}\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []config.Skipped
			if _, err := config.Parse(map[string][]byte{"x.yaml": []byte(tt.content)}, config.WithSkipped(func(s config.Skipped) { got = append(got, s) })); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseReportsSkippedWithErrors checks that skipped documents are
// reported even when the config is refused.
func TestParseReportsSkippedWithErrors(t *testing.T) {
	n := 0
	_, err := config.Parse(map[string][]byte{
		"a.yaml": []byte("apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\n"),
		"b.yaml": []byte("apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: reviews}\n"),
	}, config.WithSkipped(func(config.Skipped) { n++ }))
	if err == nil || n != 1 {
		t.Errorf("Parse: error %v, %d skipped; want an error and 1 skipped", err, n)
	}
}

// TestParseRefusedFieldDoesNotHideOthers checks that a refused field whose
// content is also malformed (a typo inside a mirror) gives one error, and that the rest of the resource is still validated.
func TestParseRefusedFieldDoesNotHideOthers(t *testing.T) {
	_, err := config.Parse(map[string][]byte{"ratings.yaml": []byte(`
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
  - mirror:
      host: ratings
      subsett: v1
    route:
    - destination: {host: ratings}
      weight: 60
    - destination: {host: ratings}
      weight: 30
`)})
	errs := fieldErrors(t, err)
	const vs = "VirtualService default/ratings"
	checkErrors(t, errs,
		want{"ratings.yaml", vs, "spec.http[0].mirror", "out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)"},
		want{"ratings.yaml", vs, "spec.http[0].route", "sum to 90"},
	)
	if len(errs) != 2 {
		t.Errorf("got %d errors, want 2:\n%s", len(errs), errorList(errs))
	}
}

func TestFieldErrorOmitsEmptyParts(t *testing.T) {
	tests := []struct {
		err  config.FieldError
		want string
	}{
		{config.FieldError{File: "reviews.yaml", Resource: "VirtualService default/reviews", Path: "spec.http[0].mirror", Reason: "not supported by meshlet (remove it)"},
			"reviews.yaml: VirtualService default/reviews: spec.http[0].mirror: not supported by meshlet (remove it)"},
		{config.FieldError{File: "reviews.yaml", Reason: "invalid YAML"}, "reviews.yaml: invalid YAML"},
		{config.FieldError{File: "reviews.yaml", Resource: "document 2", Reason: "invalid YAML"}, "reviews.yaml: document 2: invalid YAML"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestParseRetryOnWithoutEffect is the report that started the retries
// audit: retryOn conditions that no meshlet client acts on were accepted,
// and the route got no retry policy at all. Each is refused now.
func TestParseRetryOnWithoutEffect(t *testing.T) {
	_, err := config.Parse(map[string][]byte{"reviews.yaml": []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    retries:
      attempts: 3
      retryOn: retriable-headers,reset-before-request
`)})
	errs := fieldErrors(t, err)
	const vs = "VirtualService default/reviews"
	checkErrors(t, errs,
		want{"reviews.yaml", vs, "spec.http[0].retries.retryOn", `retry condition "retriable-headers" is out of scope for meshlet`},
		want{"reviews.yaml", vs, "spec.http[0].retries.retryOn", `retry condition "reset-before-request" is planned, not yet supported`},
	)
	if len(errs) != 2 {
		t.Errorf("got %d errors, want 2:\n%s", len(errs), errorList(errs))
	}
}
