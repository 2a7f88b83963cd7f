package xdsclient

import (
	"errors"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// resourceWrapperURL is the type URL of envoy.service.discovery.v3.Resource,
// which a server may wrap each resource in.
var resourceWrapperURL = "type.googleapis.com/" + string((&discoveryv3.Resource{}).ProtoReflect().Descriptor().FullName())

// Decoded is a response taken apart.
type Decoded struct {
	Resources []DecodedResource
	// AllNamed is set when every resource's name could be read, so that a
	// full-state response says which names are absent.
	AllNamed bool
	// Err joins every problem found; it is the NACK reason. Nil means the
	// response is to be ACKed.
	Err error
}

// DecodedResource is one resource of a response.
type DecodedResource struct {
	Name  string
	Value any    // set when Err is nil
	Raw   []byte // the serialized resource
	Err   error
}

// DecodeResponse validates and converts every resource of resp, which
// must be of type rt. It never panics on malformed input.
func DecodeResponse(rt *ResourceType, resp *discoveryv3.DiscoveryResponse) Decoded {
	out := Decoded{AllNamed: true}
	var errs []error
	if resp.GetTypeUrl() != rt.URL {
		return Decoded{Err: fmt.Errorf("response type_url %q is not %q", resp.GetTypeUrl(), rt.URL)}
	}
	seen := map[string]bool{}
	for i, a := range resp.GetResources() {
		name, value, raw, err := decodeOne(rt, a)
		if name == "" {
			out.AllNamed = false
			if err == nil {
				err = errors.New("resource has no name")
			}
			errs = append(errs, fmt.Errorf("%s resources[%d]: %w", rt.Short, i, err))
			continue
		}
		if seen[name] {
			err = fmt.Errorf("%s %q: sent twice in one response", rt.Short, name)
			errs = append(errs, err)
			out.Resources = append(out.Resources, DecodedResource{Name: name, Err: err})
			continue
		}
		seen[name] = true
		if err != nil {
			err = fmt.Errorf("%s %q: %w", rt.Short, name, err)
			errs = append(errs, err)
		}
		out.Resources = append(out.Resources, DecodedResource{Name: name, Value: value, Raw: raw, Err: err})
	}
	// A resource sent twice is invalid in both places.
	for i := range out.Resources {
		r := &out.Resources[i]
		if r.Err == nil && seen[r.Name] && countName(out.Resources, r.Name) > 1 {
			r.Err = fmt.Errorf("%s %q: sent twice in one response", rt.Short, r.Name)
			r.Value = nil
		}
	}
	out.Err = errors.Join(errs...)
	return out
}

func countName(rs []DecodedResource, name string) int {
	n := 0
	for _, r := range rs {
		if r.Name == name {
			n++
		}
	}
	return n
}

// decodeOne unwraps one resource and decodes it with rt.
func decodeOne(rt *ResourceType, a *anypb.Any) (name string, value any, raw []byte, err error) {
	if a.GetTypeUrl() == resourceWrapperURL {
		w := &discoveryv3.Resource{}
		if err := proto.Unmarshal(a.GetValue(), w); err != nil {
			return "", nil, nil, fmt.Errorf("cannot unmarshal the Resource wrapper: %w", err)
		}
		if w.GetResource().GetTypeUrl() == resourceWrapperURL {
			return w.GetName(), nil, nil, errors.New("a Resource wrapper inside another")
		}
		name, value, raw, err = decodeOne(rt, w.GetResource())
		if name == "" {
			name = w.GetName()
		}
		if err == nil && w.GetName() != "" && w.GetName() != name {
			err = fmt.Errorf("the Resource wrapper names %q but holds %q", w.GetName(), name)
		}
		return name, value, raw, err
	}
	if a.GetTypeUrl() != rt.URL {
		return "", nil, nil, fmt.Errorf("type_url %q in a response of %q", a.GetTypeUrl(), rt.URL)
	}
	name, value, err = rt.Decode(a)
	return name, value, a.GetValue(), err
}
