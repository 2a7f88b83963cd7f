package resolver_test

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/resolver"
)

// BenchmarkEndpointsResponse decodes a ClusterLoadAssignment response of
// 1,000 endpoints in which 10% of the ClusterLoadAssignments changed
// since the last one, as the client does: decode-all decodes every
// resource (the client before it skipped unchanged ones), skip-unchanged
// decodes only those whose bytes differ from the ones in force. Each op
// is one response; responses alternate between two versions, so that
// every one changes the same share. decoded/op is the number of resources
// decoded.
func BenchmarkEndpointsResponse(b *testing.B) {
	for _, shape := range []struct{ clas, perCLA int }{{1000, 1}, {100, 10}} {
		v1 := endpointsResponse(b, shape.clas, shape.perCLA, -1)
		v2 := endpointsResponse(b, shape.clas, shape.perCLA, 10) // every tenth changed
		for _, skip := range []bool{false, true} {
			mode := "decode-all"
			if skip {
				mode = "skip-unchanged"
			}
			b.Run(fmt.Sprintf("%dx%d/%s", shape.clas, shape.perCLA, mode), func(b *testing.B) {
				d, err := resolver.NewResponseDecoder(resource.EndpointType, skip)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := d.Apply(v1); err != nil {
					b.Fatal(err)
				}
				decoded := 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					resp := v2
					if i%2 == 1 {
						resp = v1
					}
					n, err := d.Apply(resp)
					if err != nil {
						b.Fatal(err)
					}
					decoded += n
				}
				b.ReportMetric(float64(decoded)/float64(b.N), "decoded/op")
			})
		}
	}
}

// endpointsResponse holds n ClusterLoadAssignments of perCLA endpoints
// each; every every-th one has its endpoints on other addresses (none if
// every < 0).
func endpointsResponse(tb testing.TB, n, perCLA, every int) *discoveryv3.DiscoveryResponse {
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: resource.EndpointType}
	for i := range n {
		third := 1
		if every > 0 && i%every == 0 {
			third = 2
		}
		var eps []*endpointv3.LbEndpoint
		for j := range perCLA {
			eps = append(eps, lbEndpoint(fmt.Sprintf("10.%d.%d.%d", third, i%250, j), 9080, 1))
		}
		cla := &endpointv3.ClusterLoadAssignment{
			ClusterName: fmt.Sprintf("outbound|9080||svc%d.default.svc.cluster.local", i),
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				Locality:            &corev3.Locality{Region: "eu-west", Zone: "zone-a"},
				LbEndpoints:         eps,
				LoadBalancingWeight: wrapperspb.UInt32(1),
			}},
		}
		a, err := anypb.New(cla)
		if err != nil {
			tb.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}
