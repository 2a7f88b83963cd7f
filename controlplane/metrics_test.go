package controlplane_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// scrape returns /metrics as series ("name{labels}") to values.
func scrape(t *testing.T, cp *controlplane.Server) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + cp.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want Prometheus text", ct)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// follower is a meshlet resolver that follows reviews' Listener and its
// routes, as a caller of reviews does.
func follower(t *testing.T, cp *controlplane.Server, sa string) (routes *atomic.Int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := resolver.New(ctx, resolver.WithServers(cp.XDSAddr()),
		resolver.WithNode(resolver.Node{Namespace: "default", ServiceAccount: sa, WorkloadName: sa}),
		resolver.WithDialOptions(grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", sa))),
		resolver.WithLogger(meshtest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	routes = &atomic.Int32{}
	names := make(chan string, 1)
	t.Cleanup(c.WatchListener("reviews.default.svc.cluster.local:9080", func(l resolver.Listener, err error) {
		if err == nil && l.RouteConfigName != "" {
			select {
			case names <- l.RouteConfigName:
			default:
			}
		}
	}))
	select {
	case name := <-names:
		t.Cleanup(c.WatchRouteConfig(name, func(_ resolver.RouteConfig, err error) {
			if err == nil {
				routes.Add(1)
			}
		}))
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no Listener for reviews", sa)
	}
	meshtest.WaitUntil(t, 5*time.Second, sa+"'s routes", func() bool { return routes.Load() > 0 })
	return routes
}

// nackListener opens a raw ADS stream that rejects the reviews Listener
// it is sent, and keeps it open until the test ends.
func nackListener(t *testing.T, cp *controlplane.Server) {
	t.Helper()
	ads := adsStream(t, dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "details")))
	const name = "reviews.default.svc.cluster.local:9080"
	if err := ads.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "nacker"}, TypeUrl: resource.ListenerType, ResourceNames: []string{name}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := ads.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNames: []string{name}, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "rejected by the metrics test"}}); err != nil {
		t.Fatal(err)
	}
}

func TestMetrics(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)

	productpage := follower(t, cp, "productpage")
	ratings := follower(t, cp, "ratings")
	nackListener(t, cp)
	// A registration reviews' identity may make, and one productpage's
	// may not.
	if err := tryRegister(t, dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews")),
		reviewsInstance("r1", "127.0.0.1", 9080)); err != nil {
		t.Fatal(err)
	}
	err := tryRegister(t, dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "productpage")),
		reviewsInstance("r2", "127.0.0.1", 9081))
	wantCode(t, err, codes.PermissionDenied)

	var m map[string]float64
	meshtest.WaitUntil(t, 5*time.Second, "the NACK on /metrics", func() bool {
		m = scrape(t, cp)
		return m[`meshlet_controlplane_xds_nacks_total{type="Listener"}`] == 1
	})
	for series, want := range map[string]float64{
		`meshlet_controlplane_xds_clients{client="meshlet"}`:                             2,
		`meshlet_controlplane_xds_clients{client="other"}`:                               1, // the raw stream has no user agent
		`meshlet_controlplane_registry_instances{state="SERVING"}`:                       1,
		`meshlet_controlplane_registry_services`:                                         1,
		`meshlet_controlplane_registrations_refused_total{reason="not_permitted"}`:       1,
		`meshlet_controlplane_xds_nacks_total{type="Listener"}`:                          1,
		`meshlet_controlplane_config_reloads_total{result="ok"}`:                         0,
		`meshlet_controlplane_xds_push_latency_seconds_count{cause="config"}`:            0,
		`meshlet_controlplane_registrations_refused_total{reason="address_taken"}`:       0,
		`meshlet_controlplane_xds_push_latency_seconds_bucket{cause="config",le="+Inf"}`: 0,
	} {
		if got := m[series]; got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// Three streams were each sent the Listener; two were sent routes.
	if got := m[`meshlet_controlplane_xds_pushes_total{type="Listener"}`]; got < 3 {
		t.Errorf("Listener pushes = %v, want at least 3", got)
	}
	if got := m[`meshlet_controlplane_xds_pushes_total{type="RouteConfiguration"}`]; got < 2 {
		t.Errorf("RouteConfiguration pushes = %v, want at least 2", got)
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics (go_goroutines) on /metrics")
	}

	// A config edit: both followers get the new routes, and the time from
	// the file's write to their last ACK is observed, debounce included.
	before := [2]int32{productpage.Load(), ratings.Load()}
	edited := time.Now()
	meshtest.WriteFile(t, dir, "route.yaml", strings.NewReplacer("weight: 80", "weight: 50", "weight: 20", "weight: 50").Replace(goodRoute))
	meshtest.WaitUntil(t, 5*time.Second, "a push-latency observation for the edit", func() bool {
		m = scrape(t, cp)
		return m[`meshlet_controlplane_xds_push_latency_seconds_count{cause="config"}`] == 1
	})
	bound := time.Since(edited).Seconds()
	if productpage.Load() == before[0] || ratings.Load() == before[1] {
		t.Fatal("the push latency was observed before both followers had the new routes")
	}
	// The watcher waits for writes to settle; the ACKs come after.
	after := (controlplane.DefaultDebounceAfter / 4).Seconds() // a lone change's quiet time
	if got := m[`meshlet_controlplane_xds_push_latency_seconds_sum{cause="config"}`]; got < after || got > bound {
		t.Errorf("push latency of the edit %.4fs, want between the %vs debounce and %.4fs", got, after, bound)
	}
	// The reload's debounce is observed: one wait, at least the quiet
	// time, of at least one event.
	if got := m["meshlet_controlplane_config_debounce_seconds_count"]; got != 1 {
		t.Errorf("config_debounce_seconds_count = %v, want 1", got)
	}
	if got := m["meshlet_controlplane_config_debounce_seconds_sum"]; got < after || got > bound {
		t.Errorf("debounce wait %.4fs, want between %vs and %.4fs", got, after, bound)
	}
	if got := m["meshlet_controlplane_config_events_coalesced_sum"]; got < 1 {
		t.Errorf("config_events_coalesced_sum = %v, want at least 1", got)
	}
	if got := m[`meshlet_controlplane_config_reloads_total{result="ok"}`]; got != 1 {
		t.Errorf("ok reloads = %v, want 1", got)
	}

	// A refused edit: two problems, one refused reload.
	bad := strings.NewReplacer("weight: 50", "weight: 40", "subset: v2", "subset: v9").Replace(
		strings.NewReplacer("weight: 80", "weight: 50", "weight: 20", "weight: 50").Replace(goodRoute))
	meshtest.WriteFile(t, dir, "route.yaml", bad)
	meshtest.WaitUntil(t, 5*time.Second, "the refused reload on /metrics", func() bool {
		m = scrape(t, cp)
		return m[`meshlet_controlplane_config_reloads_total{result="refused"}`] == 1
	})
	refusal := dump(t, cp).LastError
	if refusal == nil {
		t.Fatal("no refusal on /debug/config")
	}
	if want := float64(strings.Count(refusal.Message, "\n") + 1); m[`meshlet_controlplane_config_errors_total`] != want || want < 2 {
		t.Errorf("config errors = %v, want %v, one per problem of:\n%s", m[`meshlet_controlplane_config_errors_total`], want, refusal.Message)
	}
}

// A push that a client NACKs instead of ACKing is not a latency: with the
// only client rejecting it, nothing is observed.
func TestPushLatencyIgnoresNACKs(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)
	nackListener(t, cp)
	meshtest.WaitUntil(t, 5*time.Second, "the NACK on /metrics", func() bool {
		return scrape(t, cp)[`meshlet_controlplane_xds_nacks_total{type="Listener"}`] == 1
	})
	m := scrape(t, cp)
	for series, v := range m {
		if strings.HasPrefix(series, "meshlet_controlplane_xds_push_latency_seconds_count") && v != 0 {
			t.Errorf("%s = %v after only a NACK, want 0", series, v)
		}
	}
}
