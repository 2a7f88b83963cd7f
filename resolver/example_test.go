package resolver_test

import (
	"fmt"
	"net/http"

	"github.com/meshlet/meshlet/resolver"
)

// MatchRoute chooses the virtual host by authority and the first route
// that matches; PickWeightedCluster then splits by weight.
func ExampleMatchRoute() {
	rc := resolver.RouteConfig{
		Name: "reviews.default.svc.cluster.local:9080",
		VirtualHosts: []resolver.VirtualHost{{
			Name:    "reviews",
			Domains: []string{"reviews.default.svc.cluster.local:9080", "reviews:9080", "reviews"},
			Routes: []resolver.Route{
				{
					Name: "jason",
					Match: resolver.RouteMatch{Kind: resolver.PathPrefix, Path: "/", Headers: []resolver.HeaderMatch{{
						Name: "end-user", Kind: resolver.HeaderString,
						String: resolver.StringMatch{Kind: resolver.StringExact, Value: "jason"},
					}}},
					Action: resolver.RouteAction{Cluster: "outbound|9080|v2|reviews.default.svc.cluster.local"},
				},
				{
					Name:  "split",
					Match: resolver.RouteMatch{Kind: resolver.PathPrefix, Path: "/"},
					Action: resolver.RouteAction{WeightedClusters: []resolver.WeightedCluster{
						{Name: "outbound|9080|v1|reviews.default.svc.cluster.local", Weight: 80},
						{Name: "outbound|9080|v3|reviews.default.svc.cluster.local", Weight: 20},
					}},
				},
			},
		}},
	}

	h := http.Header{"End-User": {"jason"}}
	r, err := resolver.MatchRoute(rc, "reviews:9080", "/reviews/1", h.Values, http.MethodGet)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Name, resolver.PickWeightedCluster(r.Action, 0))

	r, _ = resolver.MatchRoute(rc, "reviews", "/reviews/1", nil, http.MethodGet)
	fmt.Println(r.Name, resolver.PickWeightedCluster(r.Action, 1<<31))      // 50th percentile
	fmt.Println(r.Name, resolver.PickWeightedCluster(r.Action, 0xF0000000)) // 94th percentile

	_, err = resolver.MatchRoute(rc, "ratings:9080", "/", nil, http.MethodGet)
	fmt.Println(err)
	// Output:
	// jason outbound|9080|v2|reviews.default.svc.cluster.local
	// split outbound|9080|v1|reviews.default.svc.cluster.local
	// split outbound|9080|v3|reviews.default.svc.cluster.local
	// resolver: no route: routes "reviews.default.svc.cluster.local:9080" have no virtual host for authority "ratings:9080"
}
