package resolver

import (
	"errors"
	"sync"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Field numbers of the ClusterLoadAssignment that endpointsDecoder takes
// apart (envoy/config/endpoint/v3/endpoint.proto and
// endpoint_components.proto).
const (
	claEndpointsField        protowire.Number = 2 // ClusterLoadAssignment.endpoints
	localityLbEndpointsField protowire.Number = 2 // LocalityLbEndpoints.lb_endpoints
)

// errNoReuse makes endpointsDecoder decode the whole assignment again:
// something is wrong with it, and the full decode says what.
var errNoReuse = errors.New("decode the whole assignment")

// endpointsDecoder decodes the ClusterLoadAssignments of one client. It
// reuses the Endpoint converted from every LbEndpoint whose bytes equal
// one in the last successful decode of the same assignment: when a
// service's endpoints churn, most LbEndpoints of its assignment are the
// same bytes as before, and unmarshalling, validating and converting them
// all again was most of a client's CPU. What it returns is what a full
// decode (endpointsType.Decode) returns, value and error: anything that
// would fail, or that it does not expect, it hands to the full decode.
//
// It is per client, not shared by the process, so that one client's
// churn does not keep another's entries. It is safe for concurrent use.
type endpointsDecoder struct {
	mu sync.Mutex
	// last holds, by cluster_name, the endpoints of the assignment's last
	// successful decode, by their LbEndpoint's bytes: at most the
	// endpoints the assignment holds.
	last map[string]map[string]reusedEndpoint
	// unmarshals counts the LbEndpoints unmarshalled one by one, for
	// tests.
	unmarshals int
}

// reusedEndpoint is an LbEndpoint's converted Endpoint, and its bytes: the
// key it is held under, kept so that the next decode can hold it under
// the same string without copying the bytes again.
type reusedEndpoint struct {
	raw string
	ep  Endpoint
}

func newEndpointsDecoder() *endpointsDecoder {
	return &endpointsDecoder{last: map[string]map[string]reusedEndpoint{}}
}

// decode is a ResourceType's Decode.
func (d *endpointsDecoder) decode(a *anypb.Any) (string, any, error) {
	d.mu.Lock()
	v, ok := d.reuse(a.GetValue())
	d.mu.Unlock()
	if ok {
		return v.ClusterName, v, nil
	}
	return endpointsType.Decode(a)
}

// forget drops what d holds for the assignment name: it is no longer
// watched.
func (d *endpointsDecoder) forget(name string) {
	d.mu.Lock()
	delete(d.last, name)
	d.mu.Unlock()
}

// reuse decodes the serialized ClusterLoadAssignment b, reusing the
// endpoints of the last decode of its name. It returns false when b is not
// a valid assignment meshlet accepts, or has something unexpected in its
// layout: the caller decodes it in full.
func (d *endpointsDecoder) reuse(b []byte) (Endpoints, bool) {
	skeleton, raws, ok := splitAssignment(b)
	if !ok {
		return Endpoints{}, false
	}
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := proto.Unmarshal(skeleton, cla); err != nil {
		return Endpoints{}, false
	}
	name := cla.GetClusterName()
	if name == "" || len(cla.GetEndpoints()) != len(raws) {
		return Endpoints{}, false
	}
	// Envoy's constraints hold for the whole assignment when they hold for
	// it without its LbEndpoints and for each of those: the list has no
	// constraint of its own.
	if cla.Validate() != nil {
		return Endpoints{}, false
	}
	last := d.last[name]
	n := 0
	for _, r := range raws {
		n += len(r)
	}
	next := make(map[string]reusedEndpoint, n)
	// lookup returns the endpoint of raw: held, or unmarshalled,
	// validated and converted. It does not check that its address is
	// new.
	lookup := func(raw []byte) (reusedEndpoint, bool) {
		if e, ok := last[string(raw)]; ok {
			return e, true
		}
		if e, ok := next[string(raw)]; ok {
			return e, true
		}
		d.unmarshals++
		lbe := &endpointv3.LbEndpoint{}
		if err := proto.Unmarshal(raw, lbe); err != nil || lbe.Validate() != nil {
			return reusedEndpoint{}, false
		}
		addr, err := endpointAddress(lbe)
		if err != nil {
			return reusedEndpoint{}, false
		}
		ep, err := endpointValue(lbe, addr)
		if err != nil {
			return reusedEndpoint{}, false
		}
		return reusedEndpoint{raw: string(raw), ep: ep}, true
	}
	converted := make([]bool, len(raws))
	v, err := convertAssignment(cla, func(i int, _ *endpointv3.LocalityLbEndpoints, addrs map[string]bool) ([]Endpoint, error) {
		converted[i] = true
		if len(raws[i]) == 0 {
			return nil, nil
		}
		eps := make([]Endpoint, 0, len(raws[i]))
		var sum uint64
		for _, raw := range raws[i] {
			e, ok := lookup(raw)
			if !ok || addrs[e.ep.Address] {
				return nil, errNoReuse
			}
			addrs[e.ep.Address] = true
			if addWeight(&sum, e.ep.Weight) != nil {
				return nil, errNoReuse
			}
			next[e.raw] = e
			eps = append(eps, e.ep)
		}
		return eps, nil
	})
	if err != nil {
		return Endpoints{}, false
	}
	// The LbEndpoints of localities of weight 0 are left out, but
	// Envoy's constraints still apply to them.
	for i, rs := range raws {
		if converted[i] {
			continue
		}
		for _, raw := range rs {
			if _, ok := lookup(raw); !ok {
				return Endpoints{}, false
			}
		}
	}
	d.last[name] = next
	return v, true
}

// splitAssignment takes the serialized ClusterLoadAssignment b apart: the
// assignment without its LbEndpoints (skeleton), and the serialized
// LbEndpoints of each LocalityLbEndpoints, in order. Unmarshalling the
// skeleton, then each LbEndpoint into its locality, builds the message
// b does. ok is false when b is malformed, or has a field of those
// numbers of another wire type (which proto.Unmarshal would keep as
// unknown).
func splitAssignment(b []byte) (skeleton []byte, raws [][][]byte, ok bool) {
	skeleton = make([]byte, 0, len(b))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, false
		}
		if num != claEndpointsField {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return nil, nil, false
			}
			skeleton = append(skeleton, b[:n+m]...)
			b = b[n+m:]
			continue
		}
		if typ != protowire.BytesType {
			return nil, nil, false
		}
		lle, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, nil, false
		}
		b = b[n+m:]
		rest, eps, ok := splitLocality(lle)
		if !ok {
			return nil, nil, false
		}
		skeleton = protowire.AppendTag(skeleton, claEndpointsField, protowire.BytesType)
		skeleton = protowire.AppendBytes(skeleton, rest)
		raws = append(raws, eps)
	}
	return skeleton, raws, true
}

// splitLocality takes the serialized LocalityLbEndpoints b apart: its
// other fields, and its serialized LbEndpoints, which alias b.
func splitLocality(b []byte) (rest []byte, eps [][]byte, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, false
		}
		if num == localityLbEndpointsField {
			if typ != protowire.BytesType {
				return nil, nil, false
			}
			ep, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return nil, nil, false
			}
			eps = append(eps, ep)
			b = b[n+m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, nil, false
		}
		rest = append(rest, b[:n+m]...)
		b = b[n+m:]
	}
	return rest, eps, true
}
