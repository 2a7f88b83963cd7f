package resolver_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"regexp"
	"testing"

	"github.com/meshlet/meshlet/resolver"
)

func exact(v string) resolver.StringMatch {
	return resolver.StringMatch{Kind: resolver.StringExact, Value: v}
}

func TestMatchRouteVirtualHost(t *testing.T) {
	rc := resolver.RouteConfig{Name: "rc", VirtualHosts: []resolver.VirtualHost{
		{Name: "any", Domains: []string{"*"}, Routes: []resolver.Route{{Name: "any"}}},
		{Name: "exact", Domains: []string{"reviews:9080", "reviews.default.svc.cluster.local"}, Routes: []resolver.Route{{Name: "exact"}}},
		{Name: "suffix", Domains: []string{"*.example.com"}, Routes: []resolver.Route{{Name: "suffix"}}},
		{Name: "longer-suffix", Domains: []string{"*.api.example.com"}, Routes: []resolver.Route{{Name: "longer-suffix"}}},
		{Name: "prefix", Domains: []string{"ratings.*"}, Routes: []resolver.Route{{Name: "prefix"}}},
	}}
	tests := []struct{ authority, want string }{
		{"reviews:9080", "exact"},
		{"REVIEWS:9080", "exact"},
		{"reviews.default.svc.cluster.local:9080", "exact"}, // without the port
		{"reviews:8080", "any"},                             // "reviews" alone is not a domain
		{"www.example.com", "suffix"},
		{"v1.api.example.com:443", "longer-suffix"},
		{".example.com", "any"}, // a wildcard stands for at least one character
		{"ratings.default", "prefix"},
		{"unknown", "any"},
	}
	for _, tt := range tests {
		r, err := resolver.MatchRoute(rc, tt.authority, "/", nil, http.MethodGet)
		if err != nil {
			t.Errorf("%s: %v", tt.authority, err)
			continue
		}
		if r.Name != tt.want {
			t.Errorf("%s: virtual host %q, want %q", tt.authority, r.Name, tt.want)
		}
	}

	rc.VirtualHosts = rc.VirtualHosts[1:]
	if _, err := resolver.MatchRoute(rc, "unknown", "/", nil, http.MethodGet); !errors.Is(err, resolver.ErrNoRoute) {
		t.Errorf("unknown authority: got %v, want ErrNoRoute", err)
	}
}

func TestMatchRouteRoutes(t *testing.T) {
	routes := []resolver.Route{
		{Name: "exact", Match: resolver.RouteMatch{Kind: resolver.PathExact, Path: "/exact"}},
		{Name: "exact-ci", Match: resolver.RouteMatch{Kind: resolver.PathExact, Path: "/CI", CaseInsensitive: true}},
		{Name: "regex", Match: resolver.RouteMatch{Kind: resolver.PathRegex, Path: "/v[0-9]+/items", Regex: regexp.MustCompile(`^(?:/v[0-9]+/items)$`)}},
		{Name: "jason", Match: resolver.RouteMatch{Path: "/", Headers: []resolver.HeaderMatch{{Name: "end-user", Kind: resolver.HeaderString, String: exact("jason")}}}},
		{Name: "not-beta", Match: resolver.RouteMatch{Path: "/beta", Headers: []resolver.HeaderMatch{{Name: "x-beta", Kind: resolver.HeaderString, String: exact("yes"), Invert: true}}}},
		{Name: "no-canary-header", Match: resolver.RouteMatch{Path: "/canary", Headers: []resolver.HeaderMatch{{Name: "x-canary", Kind: resolver.HeaderPresent, Present: true, Invert: true}}}},
		{Name: "post", Match: resolver.RouteMatch{Path: "/", Headers: []resolver.HeaderMatch{{Name: ":method", Kind: resolver.HeaderString, String: exact("POST")}}}},
		{Name: "range", Match: resolver.RouteMatch{Path: "/", Headers: []resolver.HeaderMatch{{Name: "x-n", Kind: resolver.HeaderRange, RangeStart: 10, RangeEnd: 20}}}},
		{Name: "query", Match: resolver.RouteMatch{Path: "/q", QueryParams: []resolver.QueryParamMatch{{Name: "debug", String: exact("1")}}}},
		{Name: "api", Match: resolver.RouteMatch{Path: "/api/"}},
		{Name: "never", Match: resolver.RouteMatch{Path: "/", Fraction: new(uint32)}},
		{Name: "default", Match: resolver.RouteMatch{Path: "/"}},
	}
	rc := resolver.RouteConfig{Name: "rc", VirtualHosts: []resolver.VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: routes}}}
	tests := []struct {
		name, path, method string
		header             http.Header
		want               string
	}{
		{"exact", "/exact", "GET", nil, "exact"},
		{"exact with query", "/exact?x=1", "GET", nil, "exact"},
		{"exact is not a prefix", "/exact/more", "GET", nil, "default"},
		{"case-insensitive exact", "/ci", "GET", nil, "exact-ci"},
		{"regex", "/v12/items", "GET", nil, "regex"},
		{"regex must match the whole path", "/v12/items/3", "GET", nil, "default"},
		{"header", "/x", "GET", http.Header{"End-User": {"jason"}}, "jason"},
		{"other header value", "/x", "GET", http.Header{"End-User": {"json"}}, "default"},
		{"inverted header", "/beta", "GET", http.Header{"X-Beta": {"no"}}, "not-beta"},
		{"inverted header, absent: no match, as gRPC-Go", "/beta", "GET", nil, "default"},
		{"inverted present match, absent", "/canary", "GET", nil, "no-canary-header"},
		{"inverted present match, present", "/canary", "GET", http.Header{"X-Canary": {"1"}}, "default"},
		{"method", "/x", "POST", nil, "post"},
		{"range", "/x", "GET", http.Header{"X-N": {"15"}}, "range"},
		{"out of range", "/x", "GET", http.Header{"X-N": {"20"}}, "default"},
		{"query", "/q?debug=1&x=2", "GET", nil, "query"},
		{"query mismatch", "/q?debug=0", "GET", nil, "default"},
		{"prefix", "/api/v1", "GET", nil, "api"},
		{"empty path is /", "", "GET", nil, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := func(name string) []string { return tt.header.Values(name) }
			r, err := resolver.MatchRoute(rc, "any", tt.path, hdr, tt.method)
			if err != nil {
				t.Fatal(err)
			}
			if r.Name != tt.want {
				t.Errorf("route %q, want %q", r.Name, tt.want)
			}
		})
	}

	rc.VirtualHosts[0].Routes = routes[:1]
	if _, err := resolver.MatchRoute(rc, "any", "/other", nil, "GET"); !errors.Is(err, resolver.ErrNoRoute) {
		t.Errorf("no matching route: got %v, want ErrNoRoute", err)
	}
}

// TestPickWeightedCluster checks an 80/20 split over 2,000 random picks
// and exact shares over the whole range of rnd.
func TestPickWeightedCluster(t *testing.T) {
	a := resolver.RouteAction{WeightedClusters: []resolver.WeightedCluster{{Name: "v1", Weight: 80}, {Name: "v2", Weight: 20}}}
	const n = 2000
	counts := map[string]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for range n {
		counts[resolver.PickWeightedCluster(a, rng.Uint32())]++
	}
	share := float64(counts["v1"]) / n
	if math.Abs(share-0.8) > 0.03 {
		t.Errorf("v1 got %.3f of %d picks, want 0.80±0.03 (%v)", share, n, counts)
	}
	if counts["v1"]+counts["v2"] != n {
		t.Errorf("picks outside the split: %v", counts)
	}

	// Over evenly spaced rnd values the shares are exact.
	counts = map[string]int{}
	for i := range uint64(1000) {
		counts[resolver.PickWeightedCluster(a, uint32((i<<32+999)/1000))]++
	}
	if counts["v1"] != 800 || counts["v2"] != 200 {
		t.Errorf("evenly spaced picks: %v, want 800/200", counts)
	}
	if got := resolver.PickWeightedCluster(a, math.MaxUint32); got != "v2" {
		t.Errorf("rnd MaxUint32 picked %q, want the last cluster", got)
	}
	if got := resolver.PickWeightedCluster(resolver.RouteAction{Cluster: "c"}, 7); got != "c" {
		t.Errorf("single cluster: got %q", got)
	}
	if got := resolver.PickWeightedCluster(resolver.RouteAction{}, 7); got != "" {
		t.Errorf("no cluster: got %q", got)
	}
}

func TestStringAndHeaderMatch(t *testing.T) {
	tests := []struct {
		m    resolver.StringMatch
		in   string
		want bool
	}{
		{resolver.StringMatch{Kind: resolver.StringExact, Value: "Jason", IgnoreCase: true}, "jASON", true},
		{resolver.StringMatch{Kind: resolver.StringPrefix, Value: "spiffe://cluster.local/ns/"}, "spiffe://cluster.local/ns/default/sa/x", true},
		{resolver.StringMatch{Kind: resolver.StringSuffix, Value: "/sa/x"}, "spiffe://cluster.local/ns/default/sa/x", true},
		{resolver.StringMatch{Kind: resolver.StringContains, Value: "/ns/"}, "a/ns/b", true},
		{resolver.StringMatch{Kind: resolver.StringContains, Value: "/ns/"}, "a/nsb", false},
		{resolver.StringMatch{Kind: resolver.StringRegex, Regex: regexp.MustCompile(`^(?:.+)$`)}, "", false},
	}
	for _, tt := range tests {
		if got := tt.m.Match(tt.in); got != tt.want {
			t.Errorf("%v %q matches %q: %v, want %v", tt.m.Kind, tt.m.Value, tt.in, got, tt.want)
		}
	}
	h := resolver.HeaderMatch{Name: "x", Kind: resolver.HeaderString, String: exact("a,b")}
	if !h.Match([]string{"a", "b"}) {
		t.Error("a header sent twice is not matched as its values joined with a comma")
	}
	absent := resolver.HeaderMatch{Name: "x", Kind: resolver.HeaderPresent, Present: false}
	if !absent.Match(nil) || absent.Match([]string{"1"}) {
		t.Error("present_match false does not mean absent")
	}
}
