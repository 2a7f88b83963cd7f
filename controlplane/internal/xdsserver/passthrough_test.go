package xdsserver

import (
	"io"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
)

// A response holds the build's bytes of each resource, not a copy of
// them per stream, both when the watch is answered at once and when it
// waits for a change.
func TestResponsesShareTheBuildsBytes(t *testing.T) {
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), "", nil, Limits{}, Hooks{})
	cla := func(port uint32) []types.Resource {
		return []types.Resource{&endpointv3.ClusterLoadAssignment{ClusterName: "a", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddr("10.0.0.1", port)}}}},
		}}}}
	}
	update := func(port uint32) {
		t.Helper()
		if err := s.Update(t.Context(), Change{At: time.Now()}, map[resource.Type][]types.Resource{resource.EndpointType: cla(port)}, nil); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.cache.SetSnapshot(t.Context(), "k", s.shared); err != nil {
			t.Fatal(err)
		}
	}
	check := func(r cache.Response, port uint32) {
		t.Helper()
		dr, err := r.GetDiscoveryResponse()
		if err != nil || len(dr.GetResources()) != 1 {
			t.Fatalf("response %v, err %v: want one resource", dr, err)
		}
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(cla(port)[0])
		got := dr.GetResources()[0].GetValue()
		if string(got) != string(want) {
			t.Fatalf("the response's bytes are not the resource's")
		}
		s.mu.Lock()
		build := s.current[resource.EndpointType].resources["a"].raw
		s.mu.Unlock()
		if &got[0] != &build[0] {
			t.Errorf("the response holds a copy of the build's bytes")
		}
	}
	watch := func(version string) (chan cache.Response, func()) {
		out := make(chan cache.Response, 1)
		req := &cache.Request{Node: &corev3.Node{Id: "k"}, TypeUrl: resource.EndpointType, ResourceNames: []string{"a"}, VersionInfo: version}
		sub := streamv3.NewSotwSubscription([]string{"a"}, false)
		if version != "" {
			// What the server records once it sent the version.
			sub.SetReturnedResources(map[string]string{"a": version})
		}
		cancel, err := sharedCache{s.cache, s}.CreateWatch(req, sub, out)
		if err != nil {
			t.Fatal(err)
		}
		return out, cancel
	}

	update(1)
	out, cancel := watch("")
	check(<-out, 1) // answered at once: out was filled before CreateWatch returned
	cancel()

	out, cancel = watch(s.Version(resource.EndpointType))
	defer cancel()
	select {
	case r := <-out:
		t.Fatalf("a watch of the current version was answered: %v", r)
	default:
	}
	update(2)
	select {
	case r := <-out:
		check(r, 2)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting watch was not answered after the change")
	}
}
