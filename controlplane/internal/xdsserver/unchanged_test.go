package xdsserver

import (
	"slices"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

func claAny(t *testing.T, name string, port uint32) *anypb.Any {
	t.Helper()
	w, err := newWireResource(&endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddr("10.0.0.1", port)}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", Value: w.raw}
}

func sent(t *testing.T, e *edsState, nonce string, rs ...*anypb.Any) []string {
	t.Helper()
	resp := &discovery.DiscoveryResponse{Nonce: nonce, Resources: rs}
	e.filterLocked(resp)
	var out []string
	for _, a := range resp.GetResources() {
		n, _ := resourceName(a.GetValue())
		out = append(out, n)
	}
	return out
}

// A stream is sent an assignment again unless it ACKed the same bytes and
// still asks for it.
func TestEDSSendsOnlyWhatTheClientLacks(t *testing.T) {
	var e edsState
	if got := sent(t, &e, "1", claAny(t, "a", 1), claAny(t, "b", 1)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first response: %v", got)
	}
	// Not ACKed yet (or NACKed): everything again.
	if got := sent(t, &e, "2", claAny(t, "a", 1), claAny(t, "b", 1)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("before an ACK: %v, want both", got)
	}
	e.ackedLocked("1") // an old nonce: not the last response's
	if got := sent(t, &e, "3", claAny(t, "a", 1), claAny(t, "b", 2)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after an ACK of an older response: %v, want both", got)
	}
	e.ackedLocked("3")
	if got := sent(t, &e, "4", claAny(t, "a", 1), claAny(t, "b", 3)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after the ACK: %v, want only the changed b", got)
	}
	e.ackedLocked("4")
	e.requestedLocked([]string{"b"}) // a dropped, then asked again
	if got := sent(t, &e, "5", claAny(t, "a", 1), claAny(t, "b", 3)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after a was dropped and asked again: %v, want a alone", got)
	}
}
