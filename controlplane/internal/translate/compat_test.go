package translate_test

import (
	security "istio.io/api/security/v1beta1"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
)

// TestHeaderMatchersLegacy checks that every kind of Istio header match
// (StringMatch allows exact, prefix and regex; {} and an empty prefix mean
// "present"), under headers and under withoutHeaders, becomes
// HeaderMatcher's own field: gRPC C-core 1.51 NACKs a RouteConfiguration
// with string_match ("Invalid route header matcher specified").
func TestHeaderMatchersLegacy(t *testing.T) {
	exact := &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: "jason"}}
	prefix := &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "beta"}}
	emptyPrefix := &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{}}
	regex := &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: "[0-9]+"}}
	tests := []struct {
		name  string
		match *networking.StringMatch
		want  *routev3.HeaderMatcher
	}{
		{"exact", exact, &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "jason"}}},
		{"prefix", prefix, &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "beta"}}},
		{"regex", regex, &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "[0-9]+"}}}},
		{"empty", &networking.StringMatch{}, &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}},
		{"empty prefix", emptyPrefix, &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}},
	}
	for _, tt := range tests {
		for _, invert := range []bool{false, true} {
			m := &networking.HTTPMatchRequest{}
			if invert {
				m.WithoutHeaders = map[string]*networking.StringMatch{"X-User": tt.match}
			} else {
				m.Headers = map[string]*networking.StringMatch{"X-User": tt.match}
			}
			vs := virtualService("default", "reviews", &networking.VirtualService{
				Hosts: []string{reviews},
				Http: []*networking.HTTPRoute{{
					Match: []*networking.HTTPMatchRequest{m},
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: reviews}}},
				}},
			})
			out := build(t, translate.Input{Config: &model.Config{VirtualServices: []*model.VirtualService{vs}}, Instances: reviewsInstances()})
			got := routes(t, out, reviews+":9080")[0].GetMatch().GetHeaders()
			want := proto.Clone(tt.want).(*routev3.HeaderMatcher)
			want.Name, want.InvertMatch = "x-user", invert
			if diff := cmp.Diff([]*routev3.HeaderMatcher{want}, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s (invert %v): header matchers (-want +got):\n%s", tt.name, invert, diff)
			}
		}
	}
}

// TestNoStringMatchHeaders builds a config with header matches in routes,
// AuthorizationPolicy conditions and rate limits, and checks that no
// HeaderMatcher anywhere in the output uses string_match.
func TestNoStringMatchHeaders(t *testing.T) {
	in := headerHeavyInput()
	out := build(t, in)
	var all []proto.Message
	for _, r := range out.Routes {
		all = append(all, r)
	}
	for _, l := range out.Listeners {
		all = append(all, l)
	}
	for _, rs := range out.Inbound {
		for _, l := range rs {
			all = append(all, l)
		}
	}
	found := 0
	for _, m := range all {
		walkHeaderMatchers(t, m.ProtoReflect(), func(h *routev3.HeaderMatcher) {
			found++
			if h.GetStringMatch() != nil {
				t.Errorf("%v: header %q uses string_match: %v", m, h.GetName(), h)
			}
		})
	}
	if found < 3 {
		t.Fatalf("found %d header matchers in the output, want at least 3 (routes, RBAC, rate limit)", found)
	}
}

// walkHeaderMatchers calls f on every HeaderMatcher in m, unpacking Anys.
func walkHeaderMatchers(t *testing.T, m protoreflect.Message, f func(*routev3.HeaderMatcher)) {
	t.Helper()
	if h, ok := m.Interface().(*routev3.HeaderMatcher); ok {
		f(h)
		return
	}
	if a, ok := m.Interface().(interface {
		UnmarshalNew() (proto.Message, error)
		GetTypeUrl() string
	}); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
		}
		walkHeaderMatchers(t, inner.ProtoReflect(), f)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() != protoreflect.MessageKind:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				walkHeaderMatchers(t, v.List().Get(i).Message(), f)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walkHeaderMatchers(t, mv.Message(), f)
					return true
				})
			}
		default:
			walkHeaderMatchers(t, v.Message(), f)
		}
		return true
	})
}

// TestQueryParamsOnGRPCPort checks that a match clause with queryParams
// is left out on a gRPC port, whose requests have no query string (so
// that grpc-js-xds, which ignores query_parameters, does not take the
// route for every request), and kept on an HTTP port.
func TestQueryParamsOnGRPCPort(t *testing.T) {
	q := map[string]*networking.StringMatch{"debug": {MatchType: &networking.StringMatch_Exact{Exact: "1"}}}
	h := map[string]*networking.StringMatch{"x-user": {MatchType: &networking.StringMatch_Exact{Exact: "a"}}}
	vsFor := func(host string) *model.VirtualService {
		return virtualService("default", host, &networking.VirtualService{
			Hosts: []string{host},
			Http: []*networking.HTTPRoute{{
				Name:  "r",
				Match: []*networking.HTTPMatchRequest{{Name: "query", QueryParams: q}, {Name: "header", Headers: h}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: host}}},
			}},
		})
	}
	const page = "productpage.default.svc.cluster.local"
	insts := append(reviewsInstances(), registry.Instance{ID: "p1", Service: "productpage", Namespace: "default", Address: "10.0.3.1", Port: 9080, ServicePort: 9080, Protocol: "HTTP"})
	out := build(t, translate.Input{
		Config:    &model.Config{VirtualServices: []*model.VirtualService{vsFor(reviews), vsFor(page)}},
		Instances: insts,
	})
	names := func(rs []*routev3.Route) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.GetName())
		}
		return out
	}
	if got, want := names(routes(t, out, reviews+":9080")), []string{"r.header"}; !cmp.Equal(got, want) {
		t.Errorf("gRPC port: routes %v, want %v", got, want)
	}
	if got, want := names(routes(t, out, page+":9080")), []string{"r.query", "r.header"}; !cmp.Equal(got, want) {
		t.Errorf("HTTP port: routes %v, want %v", got, want)
	}
}

// headerHeavyInput has header matches everywhere translate makes them: a
// VirtualService, an AuthorizationPolicy (methods and a header
// condition) and a RateLimitPolicy, on a server at 10.0.0.1:8080.
func headerHeavyInput() translate.Input {
	const addr = "10.0.0.1:8080"
	vs := virtualService("default", "reviews", &networking.VirtualService{
		Hosts: []string{reviews},
		Http: []*networking.HTTPRoute{{
			Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"x-user": {MatchType: &networking.StringMatch_Prefix{Prefix: "a"}}}}},
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: reviews}}},
		}},
	})
	ap := authzPolicy("default", "allow", &security.AuthorizationPolicy{
		Action: security.AuthorizationPolicy_ALLOW,
		Rules: []*security.Rule{{
			To:   []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"POST"}}}},
			When: []*security.Condition{{Key: "request.headers[x-tenant]", Values: []string{"acme", "beta-*"}, NotValues: []string{"*-blocked"}}},
		}},
	})
	rl := rateLimitPolicy("default", "api", &model.RateLimitSpec{
		RequestsPerUnit: 5, Unit: time.Second, Burst: 1,
		Match: []model.RateLimitMatch{{PathPrefix: "/x/", Method: "POST", Headers: []model.RateLimitHeader{{Name: "x-k", Exact: "v"}}}},
	})
	return translate.Input{
		Config:          &model.Config{VirtualServices: []*model.VirtualService{vs}, AuthorizationPolicies: []*model.AuthorizationPolicy{ap}, RateLimitPolicies: []*model.RateLimitPolicy{rl}},
		Instances:       reviewsInstances(),
		ServerAddresses: []string{addr},
	}
}
