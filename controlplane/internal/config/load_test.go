package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlet/meshlet/controlplane/internal/config"
	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// fieldErrors returns every *FieldError joined in err.
func fieldErrors(t *testing.T, err error) []*config.FieldError {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q holds no *config.FieldError", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []*config.FieldError{fe}
	}
	var out []*config.FieldError
	for _, e := range joined.Unwrap() {
		if errors.As(e, &fe) {
			out = append(out, fe)
		}
	}
	return out
}

// want is an expected error: File, Resource and Path must be equal, and
// Reason must contain the reason given.
type want struct{ file, resource, path, reason string }

func (w want) String() string {
	return w.file + ": " + w.resource + ": " + w.path + ": ..." + w.reason + "..."
}

func (w want) matches(fe *config.FieldError) bool {
	return fe.File == w.file && fe.Resource == w.resource && fe.Path == w.path && strings.Contains(fe.Reason, w.reason)
}

// checkErrors reports each wanted error that is not among errs.
func checkErrors(t *testing.T, errs []*config.FieldError, wants ...want) {
	t.Helper()
	for _, w := range wants {
		found := false
		for _, fe := range errs {
			if w.matches(fe) {
				found = true
				// The message a user reads holds all four parts.
				for _, part := range []string{w.file, w.resource, w.path, w.reason} {
					if !strings.Contains(fe.Error(), part) {
						t.Errorf("error %q does not mention %q", fe.Error(), part)
					}
				}
				break
			}
		}
		if !found {
			t.Errorf("missing error %s\ngot:\n%s", w, errorList(errs))
		}
	}
}

func errorList(errs []*config.FieldError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("  " + e.Error() + "\n")
	}
	return b.String()
}

func TestLoadGood(t *testing.T) {
	cfg, err := config.Load(filepath.Join("testdata", "good"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	type summary struct {
		Meta  model.Meta
		Hosts []string
	}
	var got []summary
	for _, se := range cfg.ServiceEntries {
		got = append(got, summary{se.Meta, se.Spec.Hosts})
	}
	for _, we := range cfg.WorkloadEntries {
		got = append(got, summary{we.Meta, []string{we.Spec.Address}})
	}
	for _, vs := range cfg.VirtualServices {
		hosts := append([]string(nil), vs.Spec.Hosts...)
		for _, h := range vs.Spec.Http {
			for _, r := range h.Route {
				hosts = append(hosts, r.Destination.Host+"/"+r.Destination.Subset)
			}
		}
		got = append(got, summary{vs.Meta, hosts})
	}
	for _, dr := range cfg.DestinationRules {
		got = append(got, summary{dr.Meta, []string{dr.Spec.Host}})
	}

	const (
		reviews     = "reviews.default.svc.cluster.local"
		ratings     = "ratings.default.svc.cluster.local"
		productpage = "productpage.frontend.svc.cluster.local"
	)
	meta := func(kind, ns, name, file string) model.Meta {
		return model.Meta{Kind: kind, Namespace: ns, Name: name, File: file}
	}
	ratingsSE := meta("ServiceEntry", "default", "ratings", "ratings.yml")
	ratingsSE.Annotations = map[string]string{"meshlet.io/owner": "bookinfo"}
	want := []summary{
		{ratingsSE, []string{ratings}},
		{meta("ServiceEntry", "default", "reviews", "reviews.yaml"), []string{reviews}},
		{meta("WorkloadEntry", "default", "reviews-v1", "reviews.yaml"), []string{"10.0.1.1"}},
		{meta("WorkloadEntry", "default", "reviews-v2", "reviews.yaml"), []string{"10.0.1.2"}},
		{meta("VirtualService", "default", "ratings", "ratings.yml"), []string{ratings, ratings + "/v1", ratings + "/v1"}},
		{meta("VirtualService", "default", "reviews", "reviews.yaml"), []string{reviews, reviews + "/v2", reviews + "/v1", reviews + "/v2"}},
		{meta("VirtualService", "frontend", "productpage", "sub/productpage.yaml"), []string{productpage, productpage + "/v1"}},
		{meta("DestinationRule", "default", "ratings", "ratings.yml"), []string{ratings}},
		{meta("DestinationRule", "default", "reviews", "reviews.yaml"), []string{reviews}},
		{meta("DestinationRule", "frontend", "productpage", "sub/productpage.yaml"), []string{productpage}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loaded resources (-want +got):\n%s", diff)
	}

	// The 80/20 split, the header match and the policies arrive intact.
	vs := cfg.VirtualServices[1].Spec
	if got := vs.Http[0].Match[0].Headers["end-user"].GetExact(); got != "jason" {
		t.Errorf("header match end-user = %q, want exact jason", got)
	}
	if w0, w1 := vs.Http[1].Route[0].Weight, vs.Http[1].Route[1].Weight; w0 != 80 || w1 != 20 {
		t.Errorf("weights = %d/%d, want 80/20", w0, w1)
	}
	if got := vs.Http[1].Timeout.AsDuration().String(); got != "1m0s" {
		t.Errorf("timeout = %s, want 1m0s (written as 1m)", got)
	}
	if got := vs.Http[1].Retries.PerTryTimeout.AsDuration().String(); got != "2s" {
		t.Errorf("perTryTimeout = %s, want 2s", got)
	}
	dr := cfg.DestinationRules[1].Spec
	if got := dr.TrafficPolicy.LoadBalancer.GetSimple().String(); got != "LEAST_REQUEST" {
		t.Errorf("reviews loadBalancer.simple = %s, want LEAST_REQUEST", got)
	}
	if got := dr.Subsets[1].TrafficPolicy.LoadBalancer.GetConsistentHash().GetHttpHeaderName(); got != "x-user" {
		t.Errorf("subset v2 hashes on %q, want x-user", got)
	}
	if got := cfg.ServiceEntries[0].Spec.Ports[0].Protocol; got != "GRPC" {
		t.Errorf("ratings protocol = %q, want GRPC (normalised from grpc)", got)
	}
}

// TestLoadBad loads each directory of testdata/bad, one refusal each, and
// pins the exact errors a user reads.
func TestLoadBad(t *testing.T) {
	const (
		reviewsDR = "reviews.yaml: DestinationRule default/reviews: "
		reviewsVS = "reviews.yaml: VirtualService default/reviews: "
	)
	tests := []struct {
		dir  string
		want []string
	}{
		{"unknown-field", []string{reviewsVS + `spec.http[0].match[0].headers["end-user"].exactt: unknown field (did you mean "exact"?)`}},
		{"mirror", []string{reviewsVS + "spec.http[0].mirror: out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)"}},
		{"cors-policy", []string{reviewsVS + "spec.http[0].corsPolicy: out of scope for meshlet: CORS answers browsers, which reach services through an ingress, not the mesh (handle CORS in the server, or at the ingress)"}},
		{"rewrite", []string{reviewsVS + "spec.http[0].rewrite: out of scope for meshlet: the caller sends the path and authority it calls, and gRPC-Go cannot rewrite them (change them in the caller, or serve both)"}},
		{"redirect", []string{reviewsVS + "spec.http[0].redirect: out of scope for meshlet: a redirect needs a client that follows it, and gRPC clients cannot (call the new location directly)"}},
		{"headers", []string{reviewsVS + "spec.http[0].headers: planned, not yet supported: setting and removing headers is on meshlet's roadmap, for gRPC and HTTP alike (set them in the calling code for now)"}},
		{"gateways", []string{reviewsVS + `spec.gateways[1]: gateway "bookinfo-gateway" is out of scope for meshlet: a proxyless mesh has no gateway proxy (list only mesh, or leave gateways out)`}},
		{"export-to", []string{reviewsDR + `spec.exportTo: out of scope for meshlet: every namespace sees every resource, as with exportTo: ["*"] (remove it)`}},
		{"fault", []string{"ratings.yaml: VirtualService default/ratings: spec.http[0].fault.delay.percentage.value: must be between 0 and 100, got 150"}},
		{"connection-pool", []string{reviewsDR + "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: planned, not yet supported: meshlet's clients queue no request for a connection (gRPC and HTTP/2 multiplex); http2MaxRequests bounds requests in flight (use it, and remove this)"}},
		{"retry-on", []string{reviewsVS + `spec.http[0].retries.retryOn: retry condition "retriable-headers" is out of scope for meshlet: it retries on response headers that Istio has no field to name, so it would retry nothing (use retriable-status-codes or status codes)`}},
		{"workload-entry", []string{"details.yaml: WorkloadEntry default/details-vm: spec.labels: no ServiceEntry in namespace default selects this WorkloadEntry, so nothing sends it traffic (add a ServiceEntry whose workloadSelector.labels match these labels)"}},
		{"weights", []string{reviewsVS + "spec.http[0].route: the weights of the 2 destinations sum to 90: they must sum to 100"}},
		{"undefined-subset", []string{reviewsVS + `spec.http[0].route[1].destination.subset: subset "v3" is not defined by any DestinationRule for host reviews.default.svc.cluster.local (DestinationRule default/reviews in reviews.yaml, document 2 defines only "v1", "v2")`}},
		{"bad-regex", []string{reviewsVS + "spec.http[0].match[0].uri.regex: invalid regular expression (RE2 syntax): error parsing regexp: missing closing ): `/reviews/(\\d+`"}},
		{"duplicate-resource", []string{"b.yaml: DestinationRule default/reviews: metadata.name: DestinationRule default/reviews is also defined in a.yaml (define each resource once)"}},
		{"bad-kind", []string{"gateway.yaml: Gateway default/bookinfo-gateway: kind: kind Gateway is out of scope for meshlet: a proxyless mesh has no gateway proxy (remove it)"}},
		{"kind-typo", []string{"reviews.yaml: VirtualServce default/reviews: kind: kind VirtualServce is not a kind of networking.istio.io (did you mean VirtualService?)"}},
		{"bad-apiversion", []string{reviewsDR + `apiVersion: apiVersion "networking.istio.io/v2" is not supported for DestinationRule (use networking.istio.io/v1, v1beta1 or v1alpha3)`}},
		{"unknown-metadata", []string{reviewsDR + "metadata.lables: unknown metadata field (meshlet reads name, namespace, labels and annotations)"}},
		{"request-authentication", []string{"jwt.yaml: RequestAuthentication istio-system/jwt: kind: kind RequestAuthentication is planned, not yet supported: JWT request authentication is on meshlet's roadmap (remove it for now; AuthorizationPolicy can check callers' mTLS identities)"}},
		{"peer-authentication-mode", []string{`mesh.yaml: PeerAuthentication istio-system/default: spec.mtls.mode: unknown value "STRICTER" (expected one of UNSET, DISABLE, PERMISSIVE, STRICT)`}},
		{"duplicate-peer-authentication", []string{"b.yaml: PeerAuthentication shop/relaxed: spec.selector: PeerAuthentication shop/relaxed has no selector and neither has PeerAuthentication shop/default in a.yaml: a namespace has at most one PeerAuthentication for all its workloads (merge them, or add selector.matchLabels to one)"}},
		{"resolution-dns", []string{"details.yaml: ServiceEntry default/details: spec.resolution: resolution DNS is out of scope for meshlet: its control plane resolves no DNS and sends IP endpoints (set resolution: STATIC and use IP endpoints)"}},
		{"tls", []string{reviewsDR + "spec.subsets[0].trafficPolicy.tls.mode: SIMPLE is out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (use ISTIO_MUTUAL)"}},
	}
	dirs, err := os.ReadDir(filepath.Join("testdata", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if d.Name() != "many" && !slices.ContainsFunc(tests, func(tt struct {
			dir  string
			want []string
		}) bool {
			return tt.dir == d.Name()
		}) {
			t.Errorf("testdata/bad/%s has no case here", d.Name())
		}
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			cfg, err := config.Load(filepath.Join("testdata", "bad", tt.dir))
			if cfg != nil {
				t.Errorf("Load returned a config with an error")
			}
			var got []string
			for _, fe := range fieldErrors(t, err) {
				got = append(got, fe.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadSkipsKubernetesObjects loads a directory where Kubernetes
// objects sit beside the Istio config: the Istio config loads, and each
// other object is reported once as skipped.
func TestLoadSkipsKubernetesObjects(t *testing.T) {
	var skipped []config.Skipped
	cfg, err := config.Load(filepath.Join("testdata", "kubernetes"), config.WithSkipped(func(s config.Skipped) {
		skipped = append(skipped, s)
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []config.Skipped{
		{File: "bookinfo.yaml", APIVersion: "v1", Kind: "Service", Name: "reviews"},
		{File: "bookinfo.yaml", APIVersion: "v1", Kind: "ServiceAccount", Name: "bookinfo-reviews"},
		{File: "bookinfo.yaml", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "default", Name: "reviews-v1"},
		{File: "gateway-api.yaml", APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute", Namespace: "shop", Name: "reviews"},
		{File: "routing.yaml", APIVersion: "v1", Kind: "ConfigMap", Name: "reviews-settings"},
	}
	if diff := cmp.Diff(want, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
	if len(cfg.VirtualServices) != 1 || len(cfg.DestinationRules) != 1 {
		t.Errorf("got %d VirtualServices and %d DestinationRules, want 1 and 1", len(cfg.VirtualServices), len(cfg.DestinationRules))
	}
}

// TestLoadCollectsAllErrors checks that Load reports every problem in a
// directory, across files and resources, not only the first.
func TestLoadCollectsAllErrors(t *testing.T) {
	cfg, err := config.Load(filepath.Join("testdata", "bad", "many"))
	if cfg != nil {
		t.Errorf("Load returned a config with an error")
	}
	errs := fieldErrors(t, err)
	const (
		reviews = "VirtualService default/reviews"
		canary  = "VirtualService default/reviews-canary"
		rules   = "DestinationRule default/reviews"
		ext     = "ServiceEntry default/external"
		details = "VirtualService default/details"
		we      = "WorkloadEntry default/details-v1"
	)
	checkErrors(t, errs,
		want{"a-routes.yaml", reviews, "spec.http[0].route[0].destination.port.number", "between 1 and 65535"},
		want{"a-routes.yaml", reviews, "spec.http[0].route[0].weight", "set weight to 100 or leave it out"},
		want{"a-routes.yaml", reviews, "spec.http[0].timeout", "must be greater than 0"},
		want{"a-routes.yaml", reviews, "spec.http[0].retries.attempts", "must not be negative"},
		want{"a-routes.yaml", reviews, "spec.http[0].retries.retryOn", `unknown retry condition "sometimes"`},
		want{"a-routes.yaml", reviews, "spec.http[1].match[0].uri", "set one of exact, prefix or regex"},
		want{"a-routes.yaml", reviews, "spec.http[1].route", "at least one route destination is required"},
		want{"b-claims.yaml", canary, "spec.http[0].route[0].weight", "must not be negative"},
		want{"b-claims.yaml", canary, "spec.hosts[0]", "also claimed by VirtualService default/reviews in a-routes.yaml"},
		want{"b-claims.yaml", canary, "spec.http[0].route[1].destination.subset", `subset "v2" is not defined`},
		want{"b-claims.yaml", rules, "spec.trafficPolicy.loadBalancer.simple", "PASSTHROUGH is out of scope for meshlet: it sends a call to the address the caller dialled, and meshlet's clients dial services, not addresses (use ROUND_ROBIN, LEAST_REQUEST or RANDOM)"},
		want{"b-claims.yaml", rules, "spec.subsets[1].name", `subset "v1" is already defined`},
		want{"b-claims.yaml", "DestinationRule default/reviews-again", "spec.host", "also configured by DestinationRule default/reviews in b-claims.yaml, document 2"},
		want{"c-services.yaml", ext, "spec.hosts[0]", "wildcard host"},
		want{"c-services.yaml", ext, "spec.ports[0].protocol", `protocol "TCP" is out of scope for meshlet: it routes HTTP and gRPC only (use GRPC, HTTP or HTTP2)`},
		want{"c-services.yaml", ext, "spec.resolution", "set resolution: STATIC"},
		want{"c-services.yaml", ext, "spec.location", "MESH_EXTERNAL is out of scope for meshlet: it serves only services in the mesh (call external services with a plain client; set MESH_INTERNAL or leave it out)"},
		want{"c-services.yaml", ext, "spec.endpoints[0].address", "is not an IP address"},
		want{"c-services.yaml", ext, `spec.endpoints[0].ports["http"]`, "not the name of a port"},
		want{"c-services.yaml", ext, "spec.endpoints[0].locality", "region/zone/subzone"},
		want{"d-decode.yaml", details, "spec.http[0].route[0].weight", "expected a whole number"},
		want{"d-decode.yaml", details, "spec.http[0].retries.perTryTimeout", "expected a duration"},
		want{"d-decode.yaml", "DestinationRule default/details", "spec.trafficPolicy.loadBalancer.simple", `unknown value "FASTEST"`},
		want{"d-decode.yaml", "DestinationRule default/productpage", "spec.trafficPolicy.loadBalancer.simple", "consistentHash and simple cannot both be set"},
		want{"d-decode.yaml", "DestinationRule default/ratings", "spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp", "use httpHeaderName"},
		want{"d-decode.yaml", "DestinationRule default/ratings", "spec.trafficPolicy.connectionPool.tcp.connectTimeout", "planned, not yet supported: meshlet bounds the connections open (tcp.maxConnections) and does not yet set how they are made, kept alive or how long they live (remove it for now)"},
		want{"d-decode.yaml", "DestinationRule default/ratings", "spec.trafficPolicy.connectionPool.tcp.maxConnections", "must be greater than 0, got -1 (leave it out for no limit)"},
		want{"d-decode.yaml", "DestinationRule default/mongodb", "specs", "unknown field"},
		want{"d-decode.yaml", "DestinationRule (document 6)", "metadata.name", "required"},
		want{"d-decode.yaml", "document 7", "", "invalid YAML"},
		want{"e-workload.yaml", we, "spec.network", "out of scope for meshlet: the mesh is one network, with no gateway between networks (remove it)"},
		want{"e-workload.yaml", we, "spec.address", "is not an IP address"},
		want{"e-workload.yaml", we, `spec.ports["http"]`, "between 1 and 65535"},
		want{"e-workload.yaml", we, "spec.locality", "region/zone/subzone"},
		want{"e-workload.yaml", we, "spec.labels", "no ServiceEntry in namespace default selects this WorkloadEntry"},
	)
	if len(errs) != 35 {
		t.Errorf("got %d errors, want 35:\n%s", len(errs), errorList(errs))
	}
}

func TestLoadNotADirectory(t *testing.T) {
	for _, dir := range []string{
		filepath.Join("testdata", "no-such-dir"),
		filepath.Join("testdata", "good", "reviews.yaml"),
	} {
		cfg, err := config.Load(dir)
		if err == nil || cfg != nil {
			t.Errorf("Load(%q) = %v, %v; want an error", dir, cfg, err)
		}
	}
}
