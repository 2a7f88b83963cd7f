package resolver_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// TestWatchChain follows a client target down to its endpoints through a
// real control plane, and checks that every value is converted right.
func TestWatchChain(t *testing.T) {
	cp := meshtest.StartControlPlane(t, writeReviews(t))
	c := newClient(t, nodeID(t), []string{cp.XDSAddr()}, trusted(t, cp))

	l := watch(t, c.WatchListener, reviewsTarget).value(t, 5*time.Second)
	if diff := cmp.Diff(resolver.Listener{Name: reviewsTarget, RouteConfigName: reviewsTarget}, l, cmpOpts...); diff != "" {
		t.Errorf("Listener (-want +got):\n%s", diff)
	}

	rc := watch(t, c.WatchRouteConfig, l.RouteConfigName).value(t, 5*time.Second)
	istioRetry := &resolver.RetryPolicy{ // Istio's default retries
		NumRetries: 2, RetryOn: []string{"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"},
		RetriableStatusCodes: []uint32{503}, BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond,
	}
	wantRoutes := []resolver.Route{
		{
			Name: "jason.end-user",
			Match: resolver.RouteMatch{Kind: resolver.PathPrefix, Path: "/", Headers: []resolver.HeaderMatch{{
				Name: "end-user", Kind: resolver.HeaderString, String: resolver.StringMatch{Kind: resolver.StringExact, Value: "jason"},
			}}},
			Action: resolver.RouteAction{Cluster: clusterName("v3"), Retry: istioRetry},
		},
		{
			Name:  "canary",
			Match: resolver.RouteMatch{Kind: resolver.PathPrefix, Path: "/"},
			Action: resolver.RouteAction{
				WeightedClusters: []resolver.WeightedCluster{{Name: clusterName("v1"), Weight: 80}, {Name: clusterName("v2"), Weight: 20}},
				Timeout:          3 * time.Second,
				Retry: &resolver.RetryPolicy{
					NumRetries: 3, RetryOn: []string{"5xx", "connect-failure", "retriable-status-codes"},
					RetriableStatusCodes: []uint32{503}, PerTryTimeout: time.Second,
					BackoffBase: 25 * time.Millisecond, BackoffMax: 250 * time.Millisecond,
				},
				// v2 is a ring-hash subset: its routes hash the x-user header.
				HashPolicies: []resolver.HashPolicy{{Kind: resolver.HashHeader, Name: "x-user"}},
			},
		},
	}
	if rc.Name != reviewsTarget || len(rc.VirtualHosts) != 1 {
		t.Fatalf("RouteConfig %q has %d virtual hosts, want %q with 1", rc.Name, len(rc.VirtualHosts), reviewsTarget)
	}
	if diff := cmp.Diff(wantRoutes, rc.VirtualHosts[0].Routes, cmpOpts...); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	for _, d := range []string{reviewsTarget, "reviews:9080", "reviews"} {
		if !slices.Contains(rc.VirtualHosts[0].Domains, d) {
			t.Errorf("domains %v lack %q", rc.VirtualHosts[0].Domains, d)
		}
	}

	// The routes as an HTTP client applies them.
	r, err := resolver.MatchRoute(rc, "reviews:9080", "/reviews/1", func(name string) []string {
		return http.Header{"End-User": {"jason"}}.Values(name)
	}, http.MethodGet)
	if err != nil || r.Action.Cluster != clusterName("v3") {
		t.Errorf("jason's request: route %+v, %v; want cluster %s", r, err, clusterName("v3"))
	}
	r, err = resolver.MatchRoute(rc, "reviews.default.svc.cluster.local", "/reviews/1", nil, http.MethodGet)
	if err != nil || r.Name != "canary" {
		t.Fatalf("anonymous request: route %+v, %v; want canary", r, err)
	}

	sa := func(name string) string { return "spiffe://cluster.local/ns/default/sa/" + name }
	clusters := []struct {
		subset string
		want   resolver.Cluster
	}{
		{"", resolver.Cluster{LBPolicy: resolver.WeightedRoundRobin, TLS: &resolver.UpstreamTLS{SANs: []string{sa("bookinfo-reviews"), sa("default")}}}},
		{"v1", resolver.Cluster{LBPolicy: resolver.Random, TLS: &resolver.UpstreamTLS{SANs: []string{sa("bookinfo-reviews")}}}},
		{"v2", resolver.Cluster{LBPolicy: resolver.RingHash, RingHash: resolver.RingHashConfig{MinRingSize: 2048, MaxRingSize: 8 << 20}, TLS: &resolver.UpstreamTLS{SANs: []string{sa("default")}}}},
		{"v3", resolver.Cluster{LBPolicy: resolver.LeastRequest}},
	}
	for _, tc := range clusters {
		name := clusterName(tc.subset)
		got := watch(t, c.WatchCluster, name).value(t, 5*time.Second)
		tc.want.Name, tc.want.EDSServiceName = name, name
		if diff := cmp.Diff(tc.want, got, cmpOpts...); diff != "" {
			t.Errorf("Cluster %s (-want +got):\n%s", name, diff)
		}
	}

	eps := watch(t, c.WatchEndpoints, clusterName("")).value(t, 5*time.Second)
	want := resolver.Endpoints{ClusterName: clusterName(""), Localities: []resolver.LocalityEndpoints{
		{
			Locality: resolver.Locality{Region: "eu-west", Zone: "zone-a"}, Weight: 2,
			Endpoints: []resolver.Endpoint{
				{Address: "10.0.1.1:9080", Weight: 1, Health: resolver.HealthHealthy, Healthy: true},
				{Address: "10.0.1.3:9080", Weight: 1, Health: resolver.HealthHealthy, Healthy: true},
			},
		},
		{
			Locality: resolver.Locality{Region: "eu-west", Zone: "zone-b", SubZone: "rack-1"}, Weight: 2,
			Endpoints: []resolver.Endpoint{{Address: "10.0.1.2:9080", Weight: 2, Health: resolver.HealthHealthy, Healthy: true}},
		},
	}}
	if diff := cmp.Diff(want, eps, cmpOpts...); diff != "" {
		t.Errorf("Endpoints (-want +got):\n%s", diff)
	}

	// ACKs are visible in the control plane, with the node's metadata.
	st := waitClient(t, cp, nodeID(t), "an ACK of every type", func(cs clientStatus) bool {
		for _, typ := range []string{"Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"} {
			ts := cs.Types[typ]
			if ts == nil || ts.Acked == "" || ts.Acked != ts.Sent || ts.NackDetail != "" {
				return false
			}
		}
		return true
	})
	if got := st.Types["Cluster"].Requested; len(got) != 4 {
		t.Errorf("Cluster subscription %v, want the 4 clusters watched", got)
	}
	wantMD := map[string]any{
		"NAMESPACE": "default", "SERVICE_ACCOUNT": "bookinfo-productpage", "WORKLOAD_NAME": "productpage",
		"LABELS": map[string]any{"app": "productpage"}, "GENERATOR": "grpc",
	}
	if diff := cmp.Diff(wantMD, st.Metadata); diff != "" {
		t.Errorf("node metadata (-want +got):\n%s", diff)
	}
}

// TestLiveUpdate rewrites the VirtualService and expects the new routes
// within 2s.
func TestLiveUpdate(t *testing.T) {
	dir := writeReviews(t)
	cp := meshtest.StartControlPlane(t, dir)
	c := newClient(t, nodeID(t), []string{cp.XDSAddr()}, trusted(t, cp))
	w := watch(t, c.WatchRouteConfig, reviewsTarget)
	w.value(t, 5*time.Second)

	meshtest.WriteFile(t, dir, "route.yaml", strings.NewReplacer("weight: 80", "weight: 50", "weight: 20", "weight: 50", "exact: jason", "exact: kim").Replace(reviewsRoute))
	start := time.Now()
	u := w.until(t, 2*time.Second, "the rewritten routes", func(rc resolver.RouteConfig, err error) bool { return err == nil })
	routes := u.v.VirtualHosts[0].Routes
	if got := routes[0].Match.Headers[0].String.Value; got != "kim" {
		t.Errorf("header match %q, want kim", got)
	}
	if diff := cmp.Diff([]resolver.WeightedCluster{{Name: clusterName("v1"), Weight: 50}, {Name: clusterName("v2"), Weight: 50}}, routes[1].Action.WeightedClusters); diff != "" {
		t.Errorf("weights (-want +got):\n%s", diff)
	}
	t.Logf("route change seen %v after the file was written", time.Since(start).Round(time.Millisecond))
}

// TestSharedWatchAndCache checks that watches of one name share one
// subscription, that a new watch of a cached name is answered at once,
// and that the subscription ends with the last watch.
func TestSharedWatchAndCache(t *testing.T) {
	cp := meshtest.StartControlPlane(t, writeReviews(t))
	c := newClient(t, nodeID(t), []string{cp.XDSAddr()}, trusted(t, cp))
	w1 := watch(t, c.WatchCluster, clusterName("v1"))
	v := w1.value(t, 5*time.Second)

	w2 := watch(t, c.WatchCluster, clusterName("v1"))
	if got := w2.value(t, 100*time.Millisecond); got.Name != v.Name {
		t.Errorf("second watch got %q", got.Name)
	}
	st := waitClient(t, cp, nodeID(t), "the cluster subscription", func(cs clientStatus) bool {
		return cs.Types["Cluster"] != nil && cs.Types["Cluster"].Acked != ""
	})
	if got := st.Types["Cluster"].Requested; !slices.Equal(got, []string{clusterName("v1")}) {
		t.Errorf("subscription %v, want the one name once", got)
	}
	w1.cancel()
	w2.cancel()
	waitClient(t, cp, nodeID(t), "the unsubscription", func(cs clientStatus) bool {
		return cs.Types["Cluster"] != nil && len(cs.Types["Cluster"].Requested) == 0
	})
	w1.quiet(t, 100*time.Millisecond)
}

// TestResourceNotFound checks removal of a Listener (a full-state type)
// and the timeout for a name that is never answered.
func TestResourceNotFound(t *testing.T) {
	ratings := strings.NewReplacer("reviews", "ratings").Replace(reviewsConfig[:strings.Index(reviewsConfig, "---")])
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": reviewsConfig, "ratings.yaml": ratings})
	cp := meshtest.StartControlPlane(t, dir)
	c := newClient(t, nodeID(t), []string{cp.XDSAddr()}, trusted(t, cp), resolver.WithResourceNotFoundTimeout(500*time.Millisecond))

	w := watch(t, c.WatchListener, "ratings.default.svc.cluster.local:9080")
	w.value(t, 5*time.Second)
	meshtest.WriteFile(t, dir, "ratings.yaml", "# removed\n")
	if u := w.next(t, 5*time.Second); !isNotFound(u.err) {
		t.Fatalf("after removal got %+v, %v; want ErrResourceNotFound", u.v, u.err)
	}

	start := time.Now()
	for _, name := range []string{"nothing.default.svc.cluster.local:80"} {
		u := watch(t, c.WatchListener, name).next(t, 5*time.Second)
		if !isNotFound(u.err) {
			t.Errorf("%s: got %v, want ErrResourceNotFound", name, u.err)
		}
	}
	u := watch(t, c.WatchEndpoints, "outbound|1||nothing").next(t, 5*time.Second)
	if !isNotFound(u.err) {
		t.Errorf("endpoints: got %v, want ErrResourceNotFound", u.err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("not found after %v, before the 500ms timeout", d)
	}
}

// TestControlPlaneOutage closes the control plane: the cache keeps
// answering, and a control plane started again on the same address gets
// the client back, which then follows a change.
func TestControlPlaneOutage(t *testing.T) {
	dir := writeReviews(t)
	cp := meshtest.StartControlPlane(t, dir)
	addr := cp.XDSAddr()
	c := newClient(t, nodeID(t), []string{addr}, trusted(t, cp))
	routes := watch(t, c.WatchRouteConfig, reviewsTarget)
	routes.value(t, 5*time.Second)
	watch(t, c.WatchEndpoints, clusterName("v1")).value(t, 5*time.Second)

	cp.Close()
	routes.quiet(t, 300*time.Millisecond) // no error, no removal: last known good

	// New watches of cached names are answered from the cache at once.
	if got := watch(t, c.WatchRouteConfig, reviewsTarget).value(t, 100*time.Millisecond); got.Name != reviewsTarget {
		t.Errorf("cached routes: %q", got.Name)
	}
	if got := watch(t, c.WatchEndpoints, clusterName("v1")).value(t, 100*time.Millisecond); len(got.Localities) != 1 {
		t.Errorf("cached endpoints: %+v", got)
	}

	meshtest.WriteFile(t, dir, "route.yaml", strings.Replace(reviewsRoute, "exact: jason", "exact: kim", 1))
	// The restarted control plane answers clients of the earlier one when
	// its warm-up ends, on a clock that the test moves.
	clock := meshtest.NewClock(time.Now())
	cp2 := meshtest.StartControlPlane(t, dir, controlplane.WithXDSAddress(addr), controlplane.WithWarmup(time.Second), controlplane.WithClock(clock))
	waitClient(t, cp2, nodeID(t), "the reconnection", func(cs clientStatus) bool {
		rt := cs.Types["RouteConfiguration"]
		return rt != nil && slices.Equal(rt.Requested, []string{reviewsTarget})
	})
	select {
	case u := <-routes.ch:
		t.Fatalf("the restarted control plane answered a client of the earlier one during its warm-up: %+v, %v", u.v, u.err)
	default:
	}
	clock.Advance(time.Second)
	routes.until(t, 5*time.Second, "the routes of the restarted control plane", func(rc resolver.RouteConfig, err error) bool {
		return err == nil && rc.VirtualHosts[0].Routes[0].Match.Headers[0].String.Value == "kim"
	})
	waitClient(t, cp2, nodeID(t), "the resubscription", func(cs clientStatus) bool {
		rt := cs.Types["RouteConfiguration"]
		return rt != nil && rt.Acked != "" && slices.Equal(rt.Requested, []string{reviewsTarget})
	})

	// A change after the restart is seen too. The restarted control
	// plane's config debounce runs on the test's clock as well: move it
	// on until the change is in.
	meshtest.WriteFile(t, dir, "route.yaml", strings.Replace(reviewsRoute, "exact: jason", "exact: lee", 1))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				clock.Advance(controlplane.DefaultDebounceAfter)
			}
		}
	}()
	routes.until(t, 2*time.Second, "a change after the restart", func(rc resolver.RouteConfig, err error) bool {
		return err == nil && rc.VirtualHosts[0].Routes[0].Match.Headers[0].String.Value == "lee"
	})
}

// TestFailover gives the client two control planes; when the first one
// closes, the client moves to the second.
func TestFailover(t *testing.T) {
	dir := writeReviews(t)
	// Two replicas that are both up: no warm-up holds a client that moves.
	cp1 := meshtest.StartControlPlane(t, dir, controlplane.WithWarmup(0))
	cp2 := meshtest.StartControlPlane(t, dir, controlplane.WithWarmup(0))
	c := newClient(t, nodeID(t), []string{cp1.XDSAddr(), cp2.XDSAddr()}, trusted(t, cp1))
	routes := watch(t, c.WatchRouteConfig, reviewsTarget)
	routes.value(t, 5*time.Second)
	waitClient(t, cp1, nodeID(t), "the client on the first control plane", func(cs clientStatus) bool { return true })

	cp1.Close()
	waitClient(t, cp2, nodeID(t), "the client on the second control plane", func(cs clientStatus) bool {
		rt := cs.Types["RouteConfiguration"]
		return rt != nil && rt.Acked != ""
	})
	meshtest.WriteFile(t, dir, "route.yaml", strings.Replace(reviewsRoute, "exact: jason", "exact: kim", 1))
	routes.until(t, 2*time.Second, "a change through the second control plane", func(rc resolver.RouteConfig, err error) bool {
		return err == nil && rc.VirtualHosts[0].Routes[0].Match.Headers[0].String.Value == "kim"
	})

	// A client whose first control plane is down from the start uses the
	// next one.
	c2 := newClient(t, nodeID(t)+"-2", []string{cp1.XDSAddr(), cp2.XDSAddr()}, trusted(t, cp2))
	watch(t, c2.WatchRouteConfig, reviewsTarget).value(t, 5*time.Second)
}

// TestNewFailsWithoutControlPlane checks that New gives up when ctx ends.
func TestNewFailsWithoutControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := resolver.New(ctx, resolver.WithServers("127.0.0.1:1"), resolver.WithLogger(meshtest.Logger()))
	if err == nil {
		t.Fatal("New succeeded without a control plane")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %q does not name the address", err)
	}
	if _, err := resolver.New(t.Context(), resolver.WithLogger(meshtest.Logger())); err == nil || !strings.Contains(err.Error(), "use WithServers") {
		t.Errorf("New without an address: %v, want an error naming WithServers", err)
	}
}

// policyConfig makes productpage STRICT, denies /admin*, and allows GETs
// on port 8080 from some callers with an x-token header.
const policyConfig = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
spec:
  mtls:
    mode: STRICT
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
spec:
  selector:
    matchLabels:
      app: productpage
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-some
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/reviews", "*"]
        namespaces: ["default"]
    to:
    - operation:
        methods: ["GET"]
        ports: ["8080"]
    when:
    - key: request.headers[x-token]
      values: ["abc*"]
`

// productpageGroup lets the test node's identity serve productpage.
const productpageGroup = `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: productpage
spec:
  template:
    serviceAccount: bookinfo-productpage
    labels:
      app: productpage
`

// TestServerListener watches the Listener of a server address, which the
// control plane builds for the workload that registered the address: its
// TLS requirement and RBAC filters come through converted.
func TestServerListener(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": reviewsConfig, "policy.yaml": policyConfig, "group.yaml": productpageGroup})
	cp := meshtest.StartControlPlane(t, dir)
	creds := meshtest.ControlPlaneCredentials(t, cp, "default", "bookinfo-productpage")
	c := newClient(t, nodeID(t), []string{cp.XDSAddr()}, resolver.WithDialOptions(grpc.WithTransportCredentials(creds)))
	register(t, cp, creds, &registrypb.Instance{Id: "pp-1", Service: "productpage", Namespace: "default", Address: "127.0.0.1", Port: 8080, Protocol: "HTTP"})
	name := strings.Replace(wire.ServerListenerTemplate, "%s", "127.0.0.1:8080", 1)
	l := watch(t, c.WatchListener, name).value(t, 5*time.Second)

	if l.Address != "127.0.0.1" || l.Port != 8080 {
		t.Errorf("address %s port %d, want 127.0.0.1 8080", l.Address, l.Port)
	}
	if l.TLS == nil || !l.TLS.RequireClientCert {
		t.Errorf("TLS %+v, want client certificates required (STRICT)", l.TLS)
	}
	if l.Inline == nil || len(l.Inline.VirtualHosts) != 1 || !l.Inline.VirtualHosts[0].Routes[0].NonForwarding {
		t.Errorf("inline routes %+v, want one non-forwarding route", l.Inline)
	}
	if len(l.HTTPFilters) != 2 {
		t.Fatalf("HTTP filters %+v, want DENY and ALLOW", l.HTTPFilters)
	}
	deny := &resolver.RBAC{Action: resolver.RBACDeny, Policies: []resolver.RBACPolicy{{
		Name:        "ns[default]-policy[deny-admin]-rule[0]",
		Permissions: []resolver.Permission{{Kind: resolver.PermissionURLPath, String: resolver.StringMatch{Kind: resolver.StringPrefix, Value: "/admin"}}},
		Principals:  []resolver.Principal{{Kind: resolver.PrincipalAny}},
	}}}
	if diff := cmp.Diff(deny, l.HTTPFilters[0].RBAC, cmpOpts...); diff != "" {
		t.Errorf("DENY filter (-want +got):\n%s", diff)
	}
	allow := l.HTTPFilters[1].RBAC
	if allow == nil || allow.Action != resolver.RBACAllow || len(allow.Policies) != 1 {
		t.Fatalf("ALLOW filter %+v", allow)
	}
	p := allow.Policies[0]
	if p.Name != "ns[default]-policy[allow-some]-rule[0]" || len(p.Principals) != 1 || p.Principals[0].Kind != resolver.PrincipalAnd {
		t.Errorf("ALLOW policy %+v", p)
	}
	// principals: [reviews, "*"] ORed, ANDed with the namespace.
	ids := p.Principals[0].IDs
	if len(ids) != 2 || ids[0].Kind != resolver.PrincipalOr || ids[1].Kind != resolver.PrincipalAuthenticated {
		t.Fatalf("principals %+v", ids)
	}
	if n := ids[0].IDs[0].Name; n == nil || n.Value != "spiffe://cluster.local/ns/default/sa/reviews" {
		t.Errorf("first principal %+v", ids[0].IDs[0])
	}
	if n := ids[0].IDs[1].Name; n == nil || n.Kind != resolver.StringRegex || !n.Match("spiffe://x") || n.Match("") {
		t.Errorf(`"*" principal %+v, want any non-empty name`, ids[0].IDs[1])
	}
	if len(p.Permissions) != 1 || p.Permissions[0].Kind != resolver.PermissionAnd {
		t.Errorf("permissions %+v", p.Permissions)
	}
}

// A name watched again right after its last watch was cancelled, before
// the request that unsubscribes it goes out, is still subscribed as the
// control plane sees it: the new watch gets the cached value at once,
// rather than waiting for an answer the control plane will not send.
func TestWatchAgainRightAfterCancel(t *testing.T) {
	cp := meshtest.StartControlPlane(t, writeReviews(t))
	c := newClient(t, nodeID(t), []string{cp.XDSAddr()}, trusted(t, cp))
	w := watch(t, c.WatchCluster, clusterName("v1"))
	w.value(t, 5*time.Second)
	for i := range 50 {
		w.cancel()
		w = watch(t, c.WatchCluster, clusterName("v1"))
		if got := w.value(t, 2*time.Second); got.Name != clusterName("v1") {
			t.Fatalf("round %d: %+v", i, got)
		}
	}
	w.cancel()
}
