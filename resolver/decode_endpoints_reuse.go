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
	// held holds, by cluster_name, the endpoints of the assignment's last
	// successful decode, by their LbEndpoint's bytes: at most the
	// endpoints the assignment holds.
	held map[string]map[string]*heldEndpoint
	gen  uint64 // counts decodes
	// unmarshals counts the LbEndpoints unmarshalled one by one, for
	// tests.
	unmarshals int

	// Scratch space of one decode, kept between decodes so that the next
	// one does not allocate it again.
	skeleton []byte
	raws     [][]byte // every serialized LbEndpoint, in order; they alias the resource
	starts   []int    // where each locality's LbEndpoints start in raws
	added    []string // keys added to the held map in this decode
}

// heldEndpoint is the Endpoint converted from an LbEndpoint's bytes.
type heldEndpoint struct {
	ep  Endpoint
	gen uint64 // of the last decode that used it
}

func newEndpointsDecoder() *endpointsDecoder {
	return &endpointsDecoder{held: map[string]map[string]*heldEndpoint{}}
}

// decode is a ResourceType's Decode.
func (d *endpointsDecoder) decode(a *anypb.Any) (string, any, error) {
	d.mu.Lock()
	v, ok := d.reuse(a.GetValue())
	d.mu.Unlock()
	if ok {
		return v.ClusterName, v, nil
	}
	name, value, err := endpointsType.Decode(a)
	if err == nil {
		// What d holds is no longer the last successful decode's.
		d.forget(name)
	}
	return name, value, err
}

// forget drops what d holds for the assignment name: it is no longer
// watched.
func (d *endpointsDecoder) forget(name string) {
	d.mu.Lock()
	delete(d.held, name)
	d.mu.Unlock()
}

// reuse decodes the serialized ClusterLoadAssignment b, reusing the
// endpoints of the last decode of its name. It returns false when b is not
// a valid assignment meshlet accepts, or has something unexpected in its
// layout: the caller decodes it in full.
func (d *endpointsDecoder) reuse(b []byte) (Endpoints, bool) {
	defer func() {
		// Hold on to neither the resource's bytes nor the keys.
		clear(d.raws)
		clear(d.added)
		d.skeleton, d.raws, d.starts, d.added = d.skeleton[:0], d.raws[:0], d.starts[:0], d.added[:0]
		if cap(d.raws) > maxScratch { // an assignment far larger than most: keep no scratch space for it
			d.skeleton, d.raws, d.starts, d.added = nil, nil, nil, nil
		}
	}()
	if !d.split(b) {
		return Endpoints{}, false
	}
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := proto.Unmarshal(d.skeleton, cla); err != nil {
		return Endpoints{}, false
	}
	name := cla.GetClusterName()
	if name == "" || len(cla.GetEndpoints()) != len(d.starts) {
		return Endpoints{}, false
	}
	// Envoy's constraints hold for the whole assignment when they hold for
	// it without its LbEndpoints and for each of those: the list has no
	// constraint of its own.
	if cla.Validate() != nil {
		return Endpoints{}, false
	}
	d.gen++
	held := d.held[name]
	if held == nil {
		held = make(map[string]*heldEndpoint, len(d.raws))
	}
	v, ok := d.convert(cla, held)
	if !ok {
		// Back to what the last successful decode held.
		for _, k := range d.added {
			delete(held, k)
		}
		return Endpoints{}, false
	}
	// Keep only what this decode used.
	for k, e := range held {
		if e.gen != d.gen {
			delete(held, k)
		}
	}
	d.held[name] = held
	return v, true
}

// convert converts cla, whose LbEndpoints are in d.raws, reusing and
// adding to held.
func (d *endpointsDecoder) convert(cla *endpointv3.ClusterLoadAssignment, held map[string]*heldEndpoint) (Endpoints, bool) {
	// lookup returns the endpoint of raw: held, or unmarshalled,
	// validated, converted and added to held. It does not check that its
	// address is new.
	lookup := func(raw []byte) (*heldEndpoint, bool) {
		if e := held[string(raw)]; e != nil {
			e.gen = d.gen
			return e, true
		}
		d.unmarshals++
		lbe := &endpointv3.LbEndpoint{}
		if err := proto.Unmarshal(raw, lbe); err != nil || lbe.Validate() != nil {
			return nil, false
		}
		addr, err := endpointAddress(lbe)
		if err != nil {
			return nil, false
		}
		ep, err := endpointValue(lbe, addr)
		if err != nil {
			return nil, false
		}
		k := string(raw)
		e := &heldEndpoint{ep: ep, gen: d.gen}
		held[k] = e
		d.added = append(d.added, k)
		return e, true
	}
	locality := func(i int) [][]byte {
		end := len(d.raws)
		if i+1 < len(d.starts) {
			end = d.starts[i+1]
		}
		return d.raws[d.starts[i]:end]
	}
	converted := 0 // localities whose endpoints were converted: those of weight above 0
	v, err := convertAssignment(cla, len(d.raws), func(i int, _ *endpointv3.LocalityLbEndpoints, addrs map[string]bool) ([]Endpoint, error) {
		converted++
		raws := locality(i)
		if len(raws) == 0 {
			return nil, nil
		}
		eps := make([]Endpoint, 0, len(raws))
		var sum uint64
		for _, raw := range raws {
			e, ok := lookup(raw)
			if !ok || addrs[e.ep.Address] {
				return nil, errNoReuse
			}
			addrs[e.ep.Address] = true
			if addWeight(&sum, e.ep.Weight) != nil {
				return nil, errNoReuse
			}
			eps = append(eps, e.ep)
		}
		return eps, nil
	})
	if err != nil {
		return Endpoints{}, false
	}
	// The LbEndpoints of localities of weight 0 are left out, but
	// Envoy's constraints still apply to them.
	if converted < len(d.starts) {
		for i := range d.starts {
			if cla.GetEndpoints()[i].GetLoadBalancingWeight().GetValue() != 0 {
				continue
			}
			for _, raw := range locality(i) {
				if _, ok := lookup(raw); !ok {
					return Endpoints{}, false
				}
			}
		}
	}
	return v, true
}

// split takes the serialized ClusterLoadAssignment b apart, into
// d.skeleton, the assignment without its LbEndpoints, and d.raws and
// d.starts, the serialized LbEndpoints of each LocalityLbEndpoints, in
// order. Unmarshalling the skeleton, then each LbEndpoint into its
// locality, builds the message b does. It returns false when b is
// malformed, or has a field of those numbers of another wire type (which
// proto.Unmarshal would keep as unknown).
func (d *endpointsDecoder) split(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		if num != claEndpointsField {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return false
			}
			d.skeleton = append(d.skeleton, b[:n+m]...)
			b = b[n+m:]
			continue
		}
		if typ != protowire.BytesType {
			return false
		}
		lle, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return false
		}
		b = b[n+m:]
		d.starts = append(d.starts, len(d.raws))
		// The locality's other fields go to the skeleton after a length
		// that is known only once they are copied; reserve the most it can
		// take, and move them down if less.
		d.skeleton = protowire.AppendTag(d.skeleton, claEndpointsField, protowire.BytesType)
		at := len(d.skeleton)
		d.skeleton = append(d.skeleton, make([]byte, maxVarintLen)...)
		if !d.splitLocality(lle) {
			return false
		}
		rest := len(d.skeleton) - at - maxVarintLen
		l := protowire.AppendVarint(d.skeleton[at:at], uint64(rest))
		d.skeleton = append(d.skeleton[:at+len(l)], d.skeleton[at+maxVarintLen:]...)
	}
	return true
}

// maxScratch is the most LbEndpoints the scratch space of a decoder is
// kept for between decodes.
const maxScratch = 4096

// maxVarintLen is the most bytes a length takes.
const maxVarintLen = 10

// splitLocality appends the serialized LocalityLbEndpoints b's LbEndpoints
// to d.raws and its other fields to d.skeleton.
func (d *endpointsDecoder) splitLocality(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		if num == localityLbEndpointsField {
			if typ != protowire.BytesType {
				return false
			}
			ep, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return false
			}
			d.raws = append(d.raws, ep)
			b = b[n+m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false
		}
		d.skeleton = append(d.skeleton, b[:n+m]...)
		b = b[n+m:]
	}
	return true
}
