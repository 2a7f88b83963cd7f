package translate

import (
	"math"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/controlplane/internal/registry"
)

// buildLoadAssignment makes the ClusterLoadAssignment of one cluster: the
// endpoints whose labels carry every subset label, grouped by locality.
//
// gRPC-Go ignores a locality without load_balancing_weight, so every
// locality gets the sum of its endpoint weights. It NACKs an endpoint weight
// of 0, so a weight of 0 becomes 1. A cluster with no endpoints still gets
// an (empty) assignment, so that clients are not left waiting for one.
func buildLoadAssignment(name string, eps []endpointInfo, subsetLabels map[string]string) *endpointv3.ClusterLoadAssignment {
	byLocality := make(map[registry.Locality][]endpointInfo)
	for _, e := range eps {
		if labelsMatch(subsetLabels, e.labels) {
			byLocality[e.locality] = append(byLocality[e.locality], e)
		}
	}
	localities := make([]registry.Locality, 0, len(byLocality))
	for l := range byLocality {
		localities = append(localities, l)
	}
	sort.Slice(localities, func(i, j int) bool {
		a, b := localities[i], localities[j]
		if a.Region != b.Region {
			return a.Region < b.Region
		}
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		return a.SubZone < b.SubZone
	})

	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	scale := weightScale(byLocality)
	for _, l := range localities {
		group := byLocality[l]
		sort.Slice(group, func(i, j int) bool {
			if group[i].address != group[j].address {
				return group[i].address < group[j].address
			}
			return group[i].port < group[j].port
		})
		lle := &endpointv3.LocalityLbEndpoints{
			Locality: &corev3.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone},
		}
		var sum uint32
		for _, e := range group {
			w := scaledWeight(e.weight, scale)
			sum += w
			lle.LbEndpoints = append(lle.LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddress(e.address, e.port),
				}},
				HealthStatus:        corev3.HealthStatus_HEALTHY,
				LoadBalancingWeight: wrapperspb.UInt32(w),
			})
		}
		lle.LoadBalancingWeight = wrapperspb.UInt32(sum)
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

// weightScale returns the factor that brings the sum of every endpoint
// weight of a cluster within uint32, which Envoy and gRPC-Go require of
// the locality weights and their sum (a sum that wrapped to 0 was NACKed):
// 1 when it fits already.
func weightScale(byLocality map[registry.Locality][]endpointInfo) float64 {
	var total uint64
	for _, group := range byLocality {
		for _, e := range group {
			total += uint64(max(e.weight, 1))
		}
	}
	if total <= math.MaxUint32 {
		return 1
	}
	// Leave room for weights rounded up to 1.
	var n uint64
	for _, group := range byLocality {
		n += uint64(len(group))
	}
	return float64(math.MaxUint32-n) / float64(total)
}

// scaledWeight is an endpoint's weight (0 means 1) times scale, at least 1.
func scaledWeight(w uint32, scale float64) uint32 {
	w = max(w, 1)
	if scale >= 1 {
		return w
	}
	return max(uint32(float64(w)*scale), 1)
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
