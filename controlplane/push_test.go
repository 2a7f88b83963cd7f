package controlplane_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/meshtest"
)

// edsResponse is one EDS response as a raw client saw it.
type edsResponse struct {
	version string
	clas    map[string]*endpointv3.ClusterLoadAssignment
}

// watchEndpoints subscribes to the ClusterLoadAssignments names on a raw
// ADS stream of its own, ACKs every response, and sends each on the
// channel it returns, until the test ends.
func watchEndpoints(t *testing.T, cp *controlplane.Server, names ...string) <-chan edsResponse {
	t.Helper()
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "watcher"))
	ctx, cancel := context.WithCancel(context.Background())
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	n := node("watcher", "default", "watcher", nil)
	if err := ads.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: resource.EndpointType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	out := make(chan edsResponse, 100)
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		for {
			resp, err := ads.Recv()
			if err != nil {
				return // the test ended
			}
			r := edsResponse{version: resp.GetVersionInfo(), clas: map[string]*endpointv3.ClusterLoadAssignment{}}
			for _, a := range resp.GetResources() {
				var cla endpointv3.ClusterLoadAssignment
				if err := a.UnmarshalTo(&cla); err != nil {
					t.Errorf("EDS response: %v", err)
					return
				}
				r.clas[cla.GetClusterName()] = &cla
			}
			select {
			case out <- r:
			default:
				t.Errorf("more than %d EDS responses unread", cap(out))
				return
			}
			if err := ads.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: names,
				VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
				return
			}
		}
	}()
	return out
}

func nextEDS(t *testing.T, ch <-chan edsResponse, what string) edsResponse {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("no EDS response in 10s: %s", what)
		return edsResponse{}
	}
}

func endpointCount(cla *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}

var reviewsCluster = wire.ClusterName(9080, "", "reviews.default.svc.cluster.local")

// A burst of registrations within the registry debounce's quiet time
// reaches clients as one push.
func TestRegistrationBurstIsOnePush(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig})
	// A quiet time far longer than the burst takes: the test does not
	// depend on the machine's speed.
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithRegistryDebounce(controlplane.Debounce{After: 500 * time.Millisecond, Max: time.Minute}))
	eds := watchEndpoints(t, cp, reviewsCluster)
	if r := nextEDS(t, eds, "initial"); endpointCount(r.clas[reviewsCluster]) != 0 {
		t.Fatalf("initial EDS response: %d endpoints, want 0", endpointCount(r.clas[reviewsCluster]))
	}
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	// Spaced out, so that without the debounce each would be a push of
	// its own.
	const n = 20
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		if err := tryRegister(t, cc, reviewsInstance(fmt.Sprintf("reviews-%d", i), "127.0.0.1", uint32(20000+i))); err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
	}
	r := nextEDS(t, eds, "after the registrations")
	if got := endpointCount(r.clas[reviewsCluster]); got != n {
		t.Errorf("the first EDS push after a burst of %d registrations holds %d endpoints: the burst was not coalesced", n, got)
	}
	select {
	case r := <-eds:
		t.Errorf("a second EDS push after the burst, version %s", r.version)
	case <-time.After(700 * time.Millisecond): // past the quiet time
	}
}

// ratingsConfig is a second service, whose endpoints are a WorkloadEntry
// at port.
func ratingsConfig(port int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  ports:
  - number: 9080
    name: grpc
    protocol: GRPC
  resolution: STATIC
  workloadSelector:
    labels:
      app: ratings
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ratings-1
spec:
  address: 127.0.0.1
  ports:
    grpc: %d
  labels:
    app: ratings
`, port)
}

var ratingsCluster = wire.ClusterName(9080, "", "ratings.default.svc.cluster.local")

// A change of one service's endpoints, by registration or by a config
// edit, sends a client only that service's ClusterLoadAssignment: the
// others' bytes did not change and the client ACKed them.
func TestEndpointPushHoldsOnlyWhatChanged(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "ratings.yaml": ratingsConfig(7000)})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithRegistryDebounce(controlplane.Debounce{After: time.Millisecond}))
	eds := watchEndpoints(t, cp, reviewsCluster, ratingsCluster)
	r := nextEDS(t, eds, "initial")
	if len(r.clas) != 2 || endpointCount(r.clas[ratingsCluster]) != 1 {
		t.Fatalf("initial EDS response holds %d assignments (%d ratings endpoints), want both (1)", len(r.clas), endpointCount(r.clas[ratingsCluster]))
	}

	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	if err := tryRegister(t, cc, reviewsInstance("reviews-1", "127.0.0.1", 20001)); err != nil {
		t.Fatal(err)
	}
	r = nextEDS(t, eds, "after a registration")
	if _, ok := r.clas[ratingsCluster]; ok || len(r.clas) != 1 || endpointCount(r.clas[reviewsCluster]) != 1 {
		t.Errorf("EDS push after a reviews registration holds %v, want reviews' assignment alone, with its endpoint", names(r))
	}

	meshtest.WriteFile(t, dir, "ratings.yaml", ratingsConfig(7001))
	r = nextEDS(t, eds, "after a config edit")
	if _, ok := r.clas[reviewsCluster]; ok || len(r.clas) != 1 {
		t.Errorf("EDS push after a ratings edit holds %v, want ratings' assignment alone", names(r))
	}
	port := r.clas[ratingsCluster].GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
	if port != 7001 {
		t.Errorf("ratings endpoint port %d after the edit, want 7001", port)
	}
}

func names(r edsResponse) []string {
	var out []string
	for n := range r.clas {
		out = append(out, n)
	}
	return out
}

// A client whose assignments did not change is sent no EDS response at
// all, not an empty one, and still gets the next change of its own.
func TestEndpointPushGoesOnlyToWatchersOfWhatChanged(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "ratings.yaml": ratingsConfig(7000)})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithRegistryDebounce(controlplane.Debounce{After: time.Millisecond}))
	reviews := watchEndpoints(t, cp, reviewsCluster)
	ratings := watchEndpoints(t, cp, ratingsCluster)
	nextEDS(t, reviews, "reviews, initial")
	first := nextEDS(t, ratings, "ratings, initial")

	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	for i := range 3 {
		if err := tryRegister(t, cc, reviewsInstance(fmt.Sprintf("reviews-%d", i), "127.0.0.1", uint32(20001+i))); err != nil {
			t.Fatal(err)
		}
		if r := nextEDS(t, reviews, "after a registration"); endpointCount(r.clas[reviewsCluster]) != i+1 {
			t.Fatalf("reviews watcher: %d endpoints after registration %d", endpointCount(r.clas[reviewsCluster]), i+1)
		}
	}
	// A config edit of something else than endpoints (routes) moves other
	// types' versions: still nothing for the ratings watcher.
	meshtest.WriteFile(t, dir, "route.yaml", goodRoute)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := cp.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	// Synced: a response sent to the ratings watcher would have been
	// read (and queued) before its ACK.
	select {
	case r := <-ratings:
		t.Fatalf("the ratings watcher was sent %v at version %q; none of its endpoints changed", names(r), r.version)
	default:
	}

	meshtest.WriteFile(t, dir, "ratings.yaml", ratingsConfig(7001))
	r := nextEDS(t, ratings, "after a ratings edit")
	if len(r.clas) != 1 || r.version == first.version {
		t.Fatalf("after a ratings edit: %v at version %q, want ratings' assignment at a new version", names(r), r.version)
	}
	if port := r.clas[ratingsCluster].GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); port != 7001 {
		t.Errorf("ratings endpoint port %d after the edit, want 7001", port)
	}
}

// A registry change waits for clients to answer the previous EDS push,
// but a client that never answers holds it back one second at most.
func TestRegistryPushWaitsForAnswersOneSecondAtMost(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithRegistryDebounce(controlplane.Debounce{After: time.Millisecond}))
	eds := watchEndpoints(t, cp, reviewsCluster)
	nextEDS(t, eds, "initial")

	// A client that reads its first response and never answers it.
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "silent"))
	silent := adsStream(t, cc)
	if err := silent.Send(&discovery.DiscoveryRequest{Node: node("silent", "default", "silent", nil), TypeUrl: resource.EndpointType, ResourceNames: []string{reviewsCluster}}); err != nil {
		t.Fatal(err)
	}
	first, err := silent.Recv()
	if err != nil {
		t.Fatal(err)
	}

	reg := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	start := time.Now()
	if err := tryRegister(t, reg, reviewsInstance("reviews-1", "127.0.0.1", 20001)); err != nil {
		t.Fatal(err)
	}
	r := nextEDS(t, eds, "after the registration")
	took := time.Since(start)
	if n := endpointCount(r.clas[reviewsCluster]); n != 1 {
		t.Errorf("after the registration: %d endpoints, want 1", n)
	}
	if took < 800*time.Millisecond || took > 5*time.Second {
		t.Errorf("the registration reached the answering client after %v; want it held back by the silent one for about 1s", took)
	}

	// Once the silent client answers, the next change is not held back.
	if err := silent.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{reviewsCluster},
		VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	// It is sent the registration (it answered the first response), and
	// answers that too, from a goroutine: Recv is not bounded in time.
	answered := make(chan error, 1)
	go func() {
		resp, err := silent.Recv()
		if err == nil {
			err = silent.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{reviewsCluster},
				VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()})
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the silent client was not sent the registration after it answered")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := cp.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := tryRegister(t, reg, reviewsInstance("reviews-2", "127.0.0.1", 20002)); err != nil {
		t.Fatal(err)
	}
	nextEDS(t, eds, "after the second registration")
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("with every client answered, the registration took %v to arrive; want no wait", took)
	}
}
