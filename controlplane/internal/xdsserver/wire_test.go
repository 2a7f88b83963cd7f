package xdsserver

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The cache's form of a resource must marshal to the bytes of the
// resource itself and keep its name, for every type served.
func TestWireResourceMarshalsToTheResourceBytes(t *testing.T) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||a.default.svc.cluster.local"}
	for i := range 3 {
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Zone: "z"},
			LoadBalancingWeight: wrapperspb.UInt32(uint32(i + 1)),
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddr("10.0.0.1", uint32(9000+i)),
			}}}},
		})
	}
	for _, r := range []types.Resource{
		cla,
		&endpointv3.ClusterLoadAssignment{}, // no name
		&clusterv3.Cluster{Name: "c", ConnectTimeout: nil, LbPolicy: clusterv3.Cluster_RING_HASH},
		&listenerv3.Listener{Name: "a.default.svc.cluster.local:9080", StatPrefix: "x"},
		&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "v", Domains: []string{"*"}}}},
	} {
		w, err := newWireResource(r)
		if err != nil {
			t.Fatal(err)
		}
		if w.wire == r && cache.GetResourceName(r) != "" {
			t.Errorf("%T %q: kept as is, not pre-marshaled", r, cache.GetResourceName(r))
		}
		if got, want := cache.GetResourceName(w.wire), cache.GetResourceName(r); got != want {
			t.Errorf("%T: name %q, want %q", r, got, want)
		}
		got, err := cache.MarshalResource(w.wire)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if string(got) != string(want) || string(w.raw) != string(want) {
			t.Errorf("%T %q: the cache's form marshals to other bytes than the resource", r, cache.GetResourceName(r))
		}
		back := r.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(got, back); err != nil || !proto.Equal(back, r) {
			t.Errorf("%T %q: the bytes do not read back as the resource (err %v)", r, cache.GetResourceName(r), err)
		}
	}
}

func TestSameResourcesComparesBytes(t *testing.T) {
	mk := func(port uint32) map[string]wireResource {
		m, err := wireResources([]types.Resource{&endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddr("10.0.0.1", port)}}}},
		}}}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if !sameResources(mk(1), mk(1)) {
		t.Error("equal resources built twice are not the same")
	}
	if sameResources(mk(1), mk(2)) {
		t.Error("resources with another port are the same")
	}
	if sameResources(mk(1), map[string]wireResource{}) {
		t.Error("a missing resource is not seen")
	}
}

func socketAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
