package resolver

import (
	"bytes"
	"errors"
	"slices"
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
	// held holds, by cluster_name, the last successful decode of the
	// assignment.
	held map[string]*heldAssignment
	// unmarshals counts the LbEndpoints unmarshalled one by one, for
	// tests.
	unmarshals int

	// Scratch space of one decode, kept between decodes so that the next
	// one does not allocate it again.
	skeleton []byte
	raws     [][]byte   // every serialized LbEndpoint, in order; they alias the resource
	starts   []int      // where each locality's LbEndpoints start in raws
	matches  []int      // for each of raws, the held endpoint of the same bytes, or -1
	eps      []Endpoint // for each of raws, its Endpoint once converted
}

// heldAssignment is what the last successful decode of one assignment
// converted: the bytes of its LbEndpoints and the Endpoint of each, in
// the order they came. It is kept in order, not in a map by bytes: a
// client holds thousands of endpoints, and hashing each one's bytes into
// a map scattered over the heap cost more, in cache misses, than the
// comparisons in order that find nearly all of them (match).
type heldAssignment struct {
	raws []byte // the LbEndpoints' bytes, one after the other
	ends []int  // where each one ends in raws
	eps  []Endpoint
}

// raw is the bytes of the i-th LbEndpoint.
func (h *heldAssignment) raw(i int) []byte {
	start := 0
	if i > 0 {
		start = h.ends[i-1]
	}
	return h.raws[start:h.ends[i]]
}

// matchWindow is how many held endpoints, from the cursor on, match
// compares an LbEndpoint with: enough to step over a few that were
// removed before it.
const matchWindow = 8

func newEndpointsDecoder() *endpointsDecoder {
	return &endpointsDecoder{held: map[string]*heldAssignment{}}
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
		// Hold on to neither the resource's bytes nor the endpoints.
		clear(d.raws)
		clear(d.eps)
		d.skeleton, d.raws, d.starts, d.matches, d.eps = d.skeleton[:0], d.raws[:0], d.starts[:0], d.matches[:0], d.eps[:0]
		if cap(d.raws) > maxScratch { // an assignment far larger than most: keep no scratch space for it
			d.skeleton, d.raws, d.starts, d.matches, d.eps = nil, nil, nil, nil, nil
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
	held := d.held[name]
	d.match(held)
	v, ok := d.convert(cla, held)
	if !ok {
		return Endpoints{}, false
	}
	// What this decode converted is what the next one reuses. The held
	// buffers are written over: v holds copies of the Endpoints.
	if held == nil {
		held = &heldAssignment{}
		d.held[name] = held
	}
	held.raws, held.ends = held.raws[:0], held.ends[:0]
	for _, raw := range d.raws {
		held.raws = append(held.raws, raw...)
		held.ends = append(held.ends, len(held.raws))
	}
	held.eps = append(held.eps[:0], d.eps...)
	if cap(held.eps) > 4*len(held.eps)+64 { // the assignment shrank a lot: let the rest go
		held.raws, held.ends, held.eps = slices.Clip(held.raws), slices.Clip(held.ends), slices.Clip(held.eps)
	}
	return v, true
}

// match sets d.matches: for each of d.raws, the index of the held
// endpoint of the same bytes, or -1. It walks both in order, as the
// control plane keeps endpoints sorted: a cursor into held moves past
// each match, and each raw is compared with the matchWindow held ones
// from the cursor on, which steps over endpoints removed before it; a new
// endpoint leaves the cursor where it was. An endpoint that moved further
// is not found and is decoded again, which costs time, never correctness:
// only equal bytes are reused.
func (d *endpointsDecoder) match(held *heldAssignment) {
	j := 0
	for _, raw := range d.raws {
		m := -1
		if held != nil {
			for k := j; k < min(j+matchWindow, len(held.ends)); k++ {
				if bytes.Equal(raw, held.raw(k)) {
					m, j = k, k+1
					break
				}
			}
		}
		d.matches = append(d.matches, m)
	}
}

// convert converts cla, whose LbEndpoints are in d.raws, reusing the held
// endpoints d.matches names, and fills d.eps.
func (d *endpointsDecoder) convert(cla *endpointv3.ClusterLoadAssignment, held *heldAssignment) (Endpoints, bool) {
	d.eps = slices.Grow(d.eps[:0], len(d.raws))[:len(d.raws)]
	// lookup returns the endpoint of the i-th raw: held, or unmarshalled,
	// validated and converted. It does not check that its address is new.
	lookup := func(i int) (Endpoint, bool) {
		if m := d.matches[i]; m >= 0 {
			d.eps[i] = held.eps[m]
			return d.eps[i], true
		}
		d.unmarshals++
		lbe := &endpointv3.LbEndpoint{}
		if err := proto.Unmarshal(d.raws[i], lbe); err != nil || lbe.Validate() != nil {
			return Endpoint{}, false
		}
		addr, err := endpointAddress(lbe)
		if err != nil {
			return Endpoint{}, false
		}
		ep, err := endpointValue(lbe, addr)
		if err != nil {
			return Endpoint{}, false
		}
		d.eps[i] = ep
		return ep, true
	}
	// locality is the range of d.raws that holds the i-th locality's.
	locality := func(i int) (start, end int) {
		end = len(d.raws)
		if i+1 < len(d.starts) {
			end = d.starts[i+1]
		}
		return d.starts[i], end
	}
	converted := 0 // localities whose endpoints were converted: those of weight above 0
	v, err := convertAssignment(cla, len(d.raws), func(i int, _ *endpointv3.LocalityLbEndpoints, addrs map[string]bool) ([]Endpoint, error) {
		converted++
		start, end := locality(i)
		if start == end {
			return nil, nil
		}
		eps := make([]Endpoint, 0, end-start)
		var sum uint64
		for r := start; r < end; r++ {
			ep, ok := lookup(r)
			if !ok || addrs[ep.Address] {
				return nil, errNoReuse
			}
			addrs[ep.Address] = true
			if addWeight(&sum, ep.Weight) != nil {
				return nil, errNoReuse
			}
			eps = append(eps, ep)
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
			start, end := locality(i)
			for r := start; r < end; r++ {
				if _, ok := lookup(r); !ok {
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
