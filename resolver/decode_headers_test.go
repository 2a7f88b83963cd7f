package resolver_test

//lint:file-ignore SA1019 the deprecated HeaderMatcher fields are what meshlet's control plane sends, for gRPC C-core 1.51.

import (
	"regexp"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/resolver"
)

// TestDecodeHeaderMatcherForms checks that each legacy HeaderMatcher field
// (exact_match, prefix_match, suffix_match, safe_regex_match,
// present_match, with invert_match), which meshlet's control plane sends
// because gRPC C-core 1.51 NACKs string_match, decodes to the same match
// as its string_match form, which other control planes send, and that the
// decoded match accepts and refuses the same header values.
func TestDecodeHeaderMatcherForms(t *testing.T) {
	sm := func(p *matcherv3.StringMatcher) *routev3.HeaderMatcher {
		return &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: p}}
	}
	tests := []struct {
		name     string
		legacy   *routev3.HeaderMatcher
		modern   *routev3.HeaderMatcher // nil: no string_match form
		invert   bool
		accepts  []string
		refuses  []string
		wantKind resolver.HeaderMatchKind
	}{
		{"exact", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "jason"}},
			sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}), false,
			[]string{"jason"}, []string{"jason2", ""}, resolver.HeaderString},
		{"prefix", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "beta"}},
			sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "beta"}}), false,
			[]string{"beta", "beta-1"}, []string{"alpha"}, resolver.HeaderString},
		{"suffix", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_SuffixMatch{SuffixMatch: "-blocked"}},
			sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "-blocked"}}), false,
			[]string{"x-blocked"}, []string{"x-blocke"}, resolver.HeaderString},
		{"regex", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "[0-9]+"}}},
			sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "[0-9]+"}}}), false,
			[]string{"42"}, []string{"4a", ""}, resolver.HeaderString},
		{"exact inverted", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "jason"}},
			sm(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}), true,
			[]string{"bob"}, []string{"jason"}, resolver.HeaderString},
		{"present", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}, nil, false,
			[]string{"", "1"}, nil, resolver.HeaderPresent},
		{"present inverted", &routev3.HeaderMatcher{HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}, nil, true,
			nil, []string{"1"}, resolver.HeaderPresent},
	}
	decode := func(t *testing.T, hm *routev3.HeaderMatcher, invert bool) resolver.HeaderMatch {
		t.Helper()
		hm = proto.Clone(hm).(*routev3.HeaderMatcher)
		hm.Name, hm.InvertMatch = "X-User", invert
		rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{
			Name: "r", Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{
					PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
					Headers:       []*routev3.HeaderMatcher{hm},
				},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
			}},
		}}}
		v, err := resolver.Decode(rc)
		if err != nil {
			t.Fatalf("decode %v: %v", hm, err)
		}
		hs := v.(resolver.RouteConfig).VirtualHosts[0].Routes[0].Match.Headers
		if len(hs) != 1 {
			t.Fatalf("decode %v: %d header matches, want 1", hm, len(hs))
		}
		return hs[0]
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decode(t, tt.legacy, tt.invert)
			if got.Name != "x-user" || got.Kind != tt.wantKind || got.Invert != tt.invert {
				t.Errorf("legacy form: name %q kind %v invert %v, want x-user %v %v", got.Name, got.Kind, got.Invert, tt.wantKind, tt.invert)
			}
			if tt.modern != nil {
				modern := decode(t, tt.modern, tt.invert)
				if diff := cmp.Diff(modern, got, cmp.Comparer(sameRegexp)); diff != "" {
					t.Errorf("legacy and string_match forms differ (-string_match +legacy):\n%s", diff)
				}
			}
			for _, v := range tt.accepts {
				if !got.Match([]string{v}) {
					t.Errorf("refuses %q, want it accepted", v)
				}
			}
			for _, v := range tt.refuses {
				if got.Match([]string{v}) {
					t.Errorf("accepts %q, want it refused", v)
				}
			}
		})
	}
}

func sameRegexp(a, b *regexp.Regexp) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.String() == b.String()
}
