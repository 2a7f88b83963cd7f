package controlplane_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const goodConfig = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  ports:
  - number: 9080
    name: grpc
    protocol: GRPC
  resolution: STATIC
  workloadSelector:
    labels:
      app: reviews
`

const goodRoute = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 80
    - destination:
        host: reviews
        subset: v2
      weight: 20
`

func dump(t *testing.T, cp *controlplane.Server) controlplane.ConfigDump {
	t.Helper()
	resp, err := http.Get("http://" + cp.AdminAddr() + "/debug/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d controlplane.ConfigDump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestInvalidConfigIsRefusedAndTheLastGoodOneServed(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)
	before := dump(t, cp)
	routes := before.XDS[resource.RouteType]
	if len(routes.Resources) == 0 || !strings.Contains(string(routes.Resources[0]), "outbound|9080|v2|reviews.default.svc.cluster.local") {
		t.Fatalf("the good config's routes are not served: %s", routes.Resources)
	}

	cases := []struct {
		name, yaml string
		want       []string // in the error: file, resource, field path, reason
	}{
		{
			name: "unknown field",
			yaml: strings.Replace(goodRoute, "  - route:", "  - routez:\n    - {}\n    route:", 1),
			want: []string{"route.yaml", "VirtualService default/reviews", "spec.http[0].routez", "unknown field"},
		},
		{
			name: "unsupported field",
			yaml: strings.Replace(goodRoute, "  - route:", "  - mirror:\n      host: reviews\n    route:", 1),
			want: []string{"route.yaml", "VirtualService default/reviews", "spec.http[0].mirror", "out of scope for meshlet"},
		},
		{
			name: "weights do not sum to 100",
			yaml: strings.Replace(goodRoute, "weight: 20", "weight: 30", 1),
			want: []string{"route.yaml", "VirtualService default/reviews", "spec.http[0].route", "100"},
		},
		{
			name: "undefined subset",
			yaml: strings.Replace(goodRoute, "subset: v2", "subset: v3", 1),
			want: []string{"route.yaml", "VirtualService default/reviews", "spec.http[0].route[1].destination.subset", `"v3"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			meshtest.WriteFile(t, dir, "route.yaml", tc.yaml)
			var d controlplane.ConfigDump
			meshtest.WaitUntil(t, 3*time.Second, "the error on /debug/config", func() bool {
				d = dump(t, cp)
				return d.LastError != nil
			})
			for _, w := range tc.want {
				if !strings.Contains(d.LastError.Message, w) {
					t.Errorf("error %q does not mention %q", d.LastError.Message, w)
				}
			}
			if got := d.XDS[resource.RouteType].Version; got != routes.Version {
				t.Errorf("routes version changed from %s to %s: the bad config replaced the good one", routes.Version, got)
			}
			meshtest.WriteFile(t, dir, "route.yaml", goodRoute)
			meshtest.WaitUntil(t, 3*time.Second, "the error to clear", func() bool { return dump(t, cp).LastError == nil })
		})
	}
}

func TestStartRefusesInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(strings.Replace(goodRoute, "weight: 20", "weight: 21", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := controlplane.Start(t.Context(), controlplane.WithConfigDir(dir), controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress(""), controlplane.WithLogger(meshtest.Logger()))
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("Start with an invalid config: got %v, want an error naming bad.yaml", err)
	}
}

func TestReloadWithinOneSecond(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)
	v := dump(t, cp).XDS[resource.RouteType].Version
	edited := time.Now()
	meshtest.WriteFile(t, dir, "route.yaml", strings.NewReplacer("weight: 80", "weight: 50", "weight: 20", "weight: 50").Replace(goodRoute))
	meshtest.WaitUntil(t, 3*time.Second, "the new routes", func() bool { return dump(t, cp).XDS[resource.RouteType].Version != v })
	took := time.Since(edited)
	t.Logf("a valid edit was served after %v", took)
	if took > time.Second {
		t.Errorf("a valid edit took %v to be served, want within 1s", took)
	}
}

// A client that rejects a resource shows up in /debug/clients with the
// reason, and is not sent the rejected resource again and again.
func TestNackIsShownAndNotResent(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)
	cc, err := grpc.NewClient(cp.XDSAddr(), grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", "productpage")))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const name = "reviews.default.svc.cluster.local:9080"
	if err := ads.Send(&discovery.DiscoveryRequest{
		Node: &core.Node{Id: "nack-test"}, TypeUrl: resource.ListenerType, ResourceNames: []string{name},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 1 {
		t.Fatalf("got %d listeners for %s, want 1", len(resp.GetResources()), name)
	}
	if err := ads.Send(&discovery.DiscoveryRequest{
		TypeUrl: resource.ListenerType, ResourceNames: []string{name}, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "listener is unacceptable for a test"},
	}); err != nil {
		t.Fatal(err)
	}

	var nodes []map[string]any
	meshtest.WaitUntil(t, 3*time.Second, "the NACK on /debug/clients", func() bool {
		r, err := http.Get("http://" + cp.AdminAddr() + "/debug/clients")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		nodes = nil
		json.NewDecoder(r.Body).Decode(&nodes)
		for _, n := range nodes {
			if n["nodeID"] == "nack-test" {
				lds, _ := n["types"].(map[string]any)["Listener"].(map[string]any)
				return lds["nackDetail"] == "listener is unacceptable for a test" && lds["nackedVersion"] == resp.GetVersionInfo()
			}
		}
		return false
	})

	// No re-send of the rejected version: the next message, if any, must
	// be a new version, and none comes without a config change.
	got := make(chan *discovery.DiscoveryResponse, 1)
	go func() {
		r, err := ads.Recv()
		if err == nil {
			got <- r
		}
		close(got)
	}()
	select {
	case r, ok := <-got:
		if ok {
			t.Fatalf("the control plane sent version %s again after a NACK", r.GetVersionInfo())
		}
	case <-time.After(time.Second):
	}
	cancel()
	<-got
}

// A request that go-control-plane skips (its nonce is not the last
// response's) does not count as having asked for its names: the client's
// ACK that names a missing Listener again is answered at once, so the
// client learns it does not exist in one round trip, not 15s.
func TestStaleRequestNamesAreAskedAgain(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)
	cc, err := grpc.NewClient(cp.XDSAddr(), grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", "productpage")))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const known, missing = "reviews.default.svc.cluster.local:9080", "nosuch.default.svc.cluster.local:80"
	send := func(r *discovery.DiscoveryRequest) {
		t.Helper()
		r.TypeUrl = resource.ListenerType
		if err := ads.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "stale-test"}, ResourceNames: []string{known}})
	first, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	// Sent as if the first response were still in flight: no nonce.
	send(&discovery.DiscoveryRequest{ResourceNames: []string{known, missing}})
	// The ACK of the first response names the missing Listener too.
	send(&discovery.DiscoveryRequest{ResourceNames: []string{known, missing}, VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()})

	got := make(chan *discovery.DiscoveryResponse, 1)
	go func() {
		defer close(got)
		if r, err := ads.Recv(); err == nil {
			got <- r
		}
	}()
	select {
	case r := <-got:
		if r == nil {
			t.Fatal("the stream ended before an answer")
		}
		for _, a := range r.GetResources() {
			var l listenerv3.Listener
			if err := a.UnmarshalTo(&l); err != nil {
				t.Fatal(err)
			}
			if l.GetName() == missing {
				t.Fatalf("the answer holds %s", missing)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer to the ACK that asks for a missing Listener: the skipped request was taken as having asked for it")
	}
	cancel()
	<-got
}

// A restarted control plane starts with an empty registry. A client of the
// earlier one must not be sent empty endpoint sets before servers had the
// warm-up to register again; a brand-new client is not held back, and
// neither is one that only claims an earlier version. The warm-up runs on
// a fake clock, which the test moves past it.
func TestRestartWithholdsEndpointsDuringWarmup(t *testing.T) {
	const warmup = 5 * time.Second
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	const cla = "outbound|9080|v1|reviews.default.svc.cluster.local"

	// firstCLA opens an ADS stream that asks for the assignment with
	// version, and returns the version of the first response that holds
	// it, on the channel, or "" if the stream fails first.
	firstCLA := func(cp *controlplane.Server, version string) <-chan string {
		got := make(chan string, 1)
		cc, err := grpc.NewClient(cp.XDSAddr(), grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", "productpage")))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		ads, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		t.Cleanup(func() {
			cancel()
			<-done
			cc.Close()
		})
		req := &discovery.DiscoveryRequest{Node: &core.Node{Id: "warmup-test"}, TypeUrl: resource.EndpointType, ResourceNames: []string{cla}, VersionInfo: version}
		go func() {
			defer close(done)
			defer close(got)
			for {
				if err := ads.Send(req); err != nil {
					return
				}
				resp, err := ads.Recv()
				if err != nil {
					return
				}
				if len(resp.GetResources()) > 0 {
					got <- resp.GetVersionInfo()
					return
				}
				// ACK the empty response and keep waiting.
				req = &discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{cla},
					VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			}
		}()
		return got
	}
	receive := func(got <-chan string, who string) string {
		t.Helper()
		select {
		case v := <-got:
			if v == "" {
				t.Fatalf("%s: the stream failed before the assignment came", who)
			}
			return v
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no assignment, and the clock did not move", who)
			return ""
		}
	}
	claServed := func(cp *controlplane.Server) bool { return len(dump(t, cp).XDS[resource.EndpointType].Resources) > 0 }

	// A first process, whose version a client keeps.
	cp0 := meshtest.StartControlPlane(t, dir)
	earlier := receive(firstCLA(cp0, ""), "a client of the first process")
	cp0.Close()

	// The restart (the same state directory: the same CA), on a clock that
	// moves only when the test says.
	clock := meshtest.NewClock(time.Now())
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithWarmup(warmup), controlplane.WithClock(clock))
	if got := clock.Pending(); !slices.Equal(got, []time.Duration{warmup}) {
		t.Fatalf("timers %v after the start, want the warm-up's, %v", got, warmup)
	}

	// A forged "earlier" version, and one with a wrong signature, are not
	// a restart: answered without the clock moving.
	for _, forged := range []string{"earlier-42", "abc.0123456789abcdef-7"} {
		receive(firstCLA(cp, forged), "a client claiming version "+forged)
	}
	if !claServed(cp) {
		t.Fatal("forged versions started the warm-up: endpoints withheld")
	}

	// A client of the earlier control plane reconnects with the version
	// that process sent: it is held, and endpoints are withheld from
	// everyone, until the warm-up ends.
	old := firstCLA(cp, earlier)
	meshtest.WaitUntil(t, 5*time.Second, "endpoints withheld for the warm-up", func() bool { return !claServed(cp) })
	clock.Advance(warmup - time.Nanosecond)
	select {
	case v := <-old:
		t.Fatalf("a reconnecting client got endpoints (version %q) before the warm-up ended", v)
	default:
	}
	if claServed(cp) {
		t.Fatal("endpoints served before the warm-up ended")
	}
	clock.Advance(time.Nanosecond)
	receive(old, "the reconnecting client, after the warm-up")
	if !claServed(cp) {
		t.Error("endpoints withheld after the warm-up")
	}

	// After the warm-up, a new client, and one of the earlier process, are
	// served at once.
	receive(firstCLA(cp, ""), "a new client after the warm-up")
	receive(firstCLA(cp, earlier), "a client of the earlier process after the warm-up")
}

func TestStartRefusesABadCARoot(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig})
	notAFile := t.TempDir()
	cases := []struct {
		name      string
		cert, key string
		want      string
	}{
		{"missing root", filepath.Join(notAFile, "missing.pem"), filepath.Join(notAFile, "missing-key.pem"), "missing.pem"},
		{"unreadable root", notAFile, notAFile, notAFile},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := controlplane.Start(t.Context(), controlplane.WithConfigDir(dir), controlplane.WithXDSAddress("127.0.0.1:0"),
				controlplane.WithAdminAddress(""), controlplane.WithLogger(meshtest.Logger()), controlplane.WithCARoot(tc.cert, tc.key))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
