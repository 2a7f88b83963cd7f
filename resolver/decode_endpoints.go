package resolver

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// convertEndpoints validates a ClusterLoadAssignment as gRPC-Go does: every
// locality is named, a locality is not listed twice at one priority,
// priorities have no gaps, no address is listed twice, and weights are at
// least 1 and sum to at most MaxUint32. Localities of weight 0 are left
// out.
func convertEndpoints(cla *endpointv3.ClusterLoadAssignment) (Endpoints, error) {
	n := 0
	for _, lle := range cla.GetEndpoints() {
		n += len(lle.GetLbEndpoints())
	}
	return convertAssignment(cla, n, func(i int, lle *endpointv3.LocalityLbEndpoints, addrs map[string]bool) ([]Endpoint, error) {
		at := fmt.Sprintf("endpoints[%d]", i)
		var eps []Endpoint
		var sum uint64
		for j, lbe := range lle.GetLbEndpoints() {
			ep, err := convertEndpoint(lbe, addrs)
			if err != nil {
				return nil, fmt.Errorf("%s.lb_endpoints[%d]: %w", at, j, err)
			}
			if err := addWeight(&sum, ep.Weight); err != nil {
				return nil, fmt.Errorf("%s: endpoint weights: %w", at, err)
			}
			eps = append(eps, ep)
		}
		return eps, nil
	})
}

// convertAssignment is convertEndpoints with the endpoints of each
// locality of weight above 0 converted by endpoints, which is given the
// locality's index and the addresses seen so far, and adds its own:
// the checks of the assignment and its localities are the same whether
// the endpoints are decoded again or reused (endpointsDecoder). n is how
// many endpoints cla holds.
func convertAssignment(cla *endpointv3.ClusterLoadAssignment, n int, endpoints func(i int, lle *endpointv3.LocalityLbEndpoints, addrs map[string]bool) ([]Endpoint, error)) (Endpoints, error) {
	out := Endpoints{ClusterName: cla.GetClusterName()}
	// No meshlet client drops requests on purpose; a drop the control
	// plane asked for would happen on gRPC-Go's path only.
	if d := cla.GetPolicy().GetDropOverloads(); len(d) > 0 {
		return Endpoints{}, fmt.Errorf("policy.drop_overloads: not supported by meshlet's client (%d categories, %q first); the control plane must not send them", len(d), d[0].GetCategory())
	}
	localities := map[uint32]map[Locality]bool{}
	sums := map[uint32]*uint64{}
	addrs := make(map[string]bool, n)
	for i, lle := range cla.GetEndpoints() {
		at := fmt.Sprintf("endpoints[%d]", i)
		l := lle.GetLocality()
		if l == nil {
			return Endpoints{}, fmt.Errorf("%s: no locality", at)
		}
		loc := Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()}
		w := lle.GetLoadBalancingWeight().GetValue()
		if w == 0 {
			continue
		}
		prio := lle.GetPriority()
		if localities[prio] == nil {
			localities[prio] = map[Locality]bool{}
			sums[prio] = new(uint64)
		}
		if localities[prio][loc] {
			return Endpoints{}, fmt.Errorf("%s: locality %q is listed twice at priority %d", at, loc, prio)
		}
		localities[prio][loc] = true
		if err := addWeight(sums[prio], w); err != nil {
			return Endpoints{}, fmt.Errorf("%s: locality weights at priority %d: %w", at, prio, err)
		}
		eps, err := endpoints(i, lle, addrs)
		if err != nil {
			return Endpoints{}, err
		}
		out.Localities = append(out.Localities, LocalityEndpoints{Locality: loc, Weight: w, Priority: prio, Endpoints: eps})
	}
	for p := range uint32(len(localities)) {
		if localities[p] == nil {
			return Endpoints{}, fmt.Errorf("endpoints: priority %d is missing (priorities must run from 0 without gaps)", p)
		}
	}
	return out, nil
}

// convertEndpoint converts lbe and adds its address to addrs, refusing
// one already there.
func convertEndpoint(lbe *endpointv3.LbEndpoint, addrs map[string]bool) (Endpoint, error) {
	addr, err := endpointAddress(lbe)
	if err != nil {
		return Endpoint{}, err
	}
	if addrs[addr] {
		return Endpoint{}, fmt.Errorf("duplicate endpoint address %s", addr)
	}
	addrs[addr] = true
	return endpointValue(lbe, addr)
}

// endpointAddress is the "host:port" of lbe.
func endpointAddress(lbe *endpointv3.LbEndpoint) (string, error) {
	e := lbe.GetEndpoint()
	if e == nil {
		return "", errors.New("endpoint: missing (endpoint_name is not supported by meshlet)")
	}
	sa := e.GetAddress().GetSocketAddress()
	if sa == nil {
		return "", errors.New("endpoint.address: must be a socket address")
	}
	if sa.GetAddress() == "" {
		return "", errors.New("endpoint.address.socket_address.address: empty")
	}
	if sa.GetResolverName() != "" {
		return "", errors.New("endpoint.address.socket_address.resolver_name is not supported by meshlet")
	}
	port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
	if !ok || port.PortValue == 0 || port.PortValue > 65535 {
		return "", errors.New("endpoint.address.socket_address: port_value must be a port number (named ports are not supported)")
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(port.PortValue), 10)), nil
}

// endpointValue converts the rest of lbe, whose address is addr.
func endpointValue(lbe *endpointv3.LbEndpoint, addr string) (Endpoint, error) {
	out := Endpoint{Address: addr, Weight: 1, Hostname: lbe.GetEndpoint().GetHostname()}
	if w := lbe.GetLoadBalancingWeight(); w != nil {
		if w.GetValue() == 0 {
			return Endpoint{}, fmt.Errorf("endpoint %s: load_balancing_weight 0 (must be at least 1)", addr)
		}
		out.Weight = w.GetValue()
	}
	switch h := lbe.GetHealthStatus(); h {
	case corev3.HealthStatus_UNKNOWN:
		out.Health, out.Healthy = HealthUnknown, true
	case corev3.HealthStatus_HEALTHY:
		out.Health, out.Healthy = HealthHealthy, true
	case corev3.HealthStatus_UNHEALTHY:
		out.Health = HealthUnhealthy
	case corev3.HealthStatus_DRAINING:
		out.Health = HealthDraining
	case corev3.HealthStatus_TIMEOUT:
		out.Health = HealthTimeout
	case corev3.HealthStatus_DEGRADED:
		out.Health = HealthDegraded
	default:
		return Endpoint{}, fmt.Errorf("endpoint %s: health_status: unknown value %d", addr, int32(h))
	}
	return out, nil
}
