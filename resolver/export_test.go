package resolver

import (
	"errors"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

// Decode validates and converts one resource as the client does when it
// arrives, for tests.
func Decode(m proto.Message) (any, error) {
	a, err := anypb.New(m)
	if err != nil {
		return nil, err
	}
	for _, rt := range resourceTypes(newEndpointsDecoder()) {
		if rt.URL == a.GetTypeUrl() {
			_, v, err := rt.Decode(a)
			return v, err
		}
	}
	return nil, fmt.Errorf("not a resource type: %s", a.GetTypeUrl())
}

// ValidateResponse handles a serialized DiscoveryResponse as the client
// does when one arrives, and returns the NACK reason, nil for an ACK.
func ValidateResponse(b []byte) error {
	resp := &discoveryv3.DiscoveryResponse{}
	if err := proto.Unmarshal(b, resp); err != nil {
		return err
	}
	for _, rt := range resourceTypes(newEndpointsDecoder()) {
		if rt.URL == resp.GetTypeUrl() {
			d := xdsclient.DecodeResponse(rt, resp, nil)
			if d.Err == nil {
				for _, r := range d.Resources {
					if r.Err != nil || r.Value == nil {
						return errors.New("resource without value in an ACKed response")
					}
				}
			}
			return d.Err
		}
	}
	return fmt.Errorf("not a resource type: %q", resp.GetTypeUrl())
}

func typeOf(url string) (*xdsclient.ResourceType, error) {
	for _, rt := range resourceTypes(newEndpointsDecoder()) {
		if rt.URL == url {
			return rt, nil
		}
	}
	return nil, fmt.Errorf("not a resource type: %q", url)
}

// Names returns the name of the serialized resource raw of type url as
// the client reads it for a resource whose bytes it holds, without
// decoding it, and as decoding it reads it.
func Names(url string, raw []byte) (cheap, decoded string, err error) {
	rt, err := typeOf(url)
	if err != nil {
		return "", "", err
	}
	a := &anypb.Any{TypeUrl: url, Value: raw}
	xdsclient.DecodeResponse(rt, &discoveryv3.DiscoveryResponse{TypeUrl: url, Resources: []*anypb.Any{a}},
		func(name string, raw []byte) (any, []byte, bool) {
			cheap = name
			return nil, raw, true
		})
	decoded, _, _ = rt.Decode(a)
	return cheap, decoded, nil
}

// ResponseDecoder decodes the responses of one type as the client does,
// and keeps the values in force by name as the client's cache does. With
// skip false it decodes every resource, as the client did before it
// skipped unchanged ones.
type ResponseDecoder struct {
	rt   *xdsclient.ResourceType
	skip bool
	held map[string]xdsclient.DecodedResource
}

func NewResponseDecoder(url string, skip bool) (*ResponseDecoder, error) {
	rt, err := typeOf(url)
	if err != nil {
		return nil, err
	}
	return &ResponseDecoder{rt: rt, skip: skip, held: map[string]xdsclient.DecodedResource{}}, nil
}

// Apply decodes resp and keeps its valid resources. It returns how many
// resources were decoded, and the NACK reason.
func (d *ResponseDecoder) Apply(resp *discoveryv3.DiscoveryResponse) (decoded int, err error) {
	var cached xdsclient.Cached
	if d.skip {
		cached = func(name string, raw []byte) (any, []byte, bool) {
			h, ok := d.held[name]
			if !ok || string(h.Raw) != string(raw) {
				return nil, nil, false
			}
			return h.Value, h.Raw, true
		}
	}
	dec := xdsclient.DecodeResponse(d.rt, resp, cached)
	for _, r := range dec.Resources {
		if !r.Unchanged {
			decoded++
		}
		if r.Err == nil {
			d.held[r.Name] = r
		}
	}
	return decoded, dec.Err
}

// EndpointsDecoder decodes serialized ClusterLoadAssignments as one
// client does: reusing the endpoints of the last decode of each name.
type EndpointsDecoder struct{ d *endpointsDecoder }

func NewEndpointsDecoder() *EndpointsDecoder { return &EndpointsDecoder{d: newEndpointsDecoder()} }

func (d *EndpointsDecoder) Decode(raw []byte) (name string, value any, err error) {
	return d.d.decode(&anypb.Any{TypeUrl: endpointsType.URL, Value: raw})
}

// Unmarshals is how many LbEndpoints d has unmarshalled one by one.
func (d *EndpointsDecoder) Unmarshals() int {
	d.d.mu.Lock()
	defer d.d.mu.Unlock()
	return d.d.unmarshals
}

// Held is how many endpoints d holds for the name, and for all names.
func (d *EndpointsDecoder) Held(name string) (held, all int) {
	d.d.mu.Lock()
	defer d.d.mu.Unlock()
	for n, h := range d.d.held {
		if n == name {
			held = len(h.eps)
		}
		all += len(h.eps)
	}
	return held, all
}

func (d *EndpointsDecoder) Forget(name string) { d.d.forget(name) }

// EndpointsDecoder is the decoder of c's ClusterLoadAssignments.
func (c *Client) EndpointsDecoder() *EndpointsDecoder { return &EndpointsDecoder{d: c.eds} }

// DecodeEndpointsFull decodes a serialized ClusterLoadAssignment in full,
// as a client did before it reused endpoints.
func DecodeEndpointsFull(raw []byte) (name string, value any, err error) {
	return endpointsType.Decode(&anypb.Any{TypeUrl: endpointsType.URL, Value: raw})
}
