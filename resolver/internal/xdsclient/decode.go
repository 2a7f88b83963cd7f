package xdsclient

import (
	"errors"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"
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
	// Unchanged is set when the resource was not decoded because its
	// bytes are those of the value in force: Value and Raw are the cached
	// ones, so that the response's copy can be dropped.
	Unchanged bool
}

// Cached looks up the value in force of the resource name, if its
// serialized bytes are raw; ok is false if there is none or its bytes
// differ. cachedRaw is the cache's copy of raw. A decode is a function of
// the bytes alone, so the cached value stands for a decode of raw.
type Cached func(name string, raw []byte) (value any, cachedRaw []byte, ok bool)

// DecodeResponse validates and converts every resource of resp, which
// must be of type rt. A resource that cached holds with the same bytes is
// not decoded again (when rt.NameField says where its name is); cached
// nil decodes every resource. It never panics on malformed input.
func DecodeResponse(rt *ResourceType, resp *discoveryv3.DiscoveryResponse, cached Cached) Decoded {
	out := Decoded{AllNamed: true}
	var errs []error
	if resp.GetTypeUrl() != rt.URL {
		return Decoded{Err: fmt.Errorf("response type_url %q is not %q", resp.GetTypeUrl(), rt.URL)}
	}
	if rt.NameField == 0 {
		cached = nil
	}
	seen := make(map[string]int, len(resp.GetResources())) // times each name came
	for i, a := range resp.GetResources() {
		r := decodeOne(rt, a, cached)
		if r.Name == "" {
			out.AllNamed = false
			err := r.Err
			if err == nil {
				err = errors.New("resource has no name")
			}
			errs = append(errs, fmt.Errorf("%s resources[%d]: %w", rt.Short, i, err))
			continue
		}
		seen[r.Name]++
		if seen[r.Name] > 1 {
			err := fmt.Errorf("%s %q: sent twice in one response", rt.Short, r.Name)
			errs = append(errs, err)
			out.Resources = append(out.Resources, DecodedResource{Name: r.Name, Err: err})
			continue
		}
		if r.Err != nil {
			r.Err = fmt.Errorf("%s %q: %w", rt.Short, r.Name, r.Err)
			r.Value = nil
			errs = append(errs, r.Err)
		}
		out.Resources = append(out.Resources, r)
	}
	// A resource sent twice is invalid in both places.
	for i := range out.Resources {
		r := &out.Resources[i]
		if r.Err == nil && seen[r.Name] > 1 {
			r.Err = fmt.Errorf("%s %q: sent twice in one response", rt.Short, r.Name)
			r.Value, r.Unchanged = nil, false
		}
	}
	out.Err = errors.Join(errs...)
	return out
}

// decodeOne unwraps one resource and decodes it with rt, unless cached
// holds its bytes. Err is not yet prefixed with the resource's name.
func decodeOne(rt *ResourceType, a *anypb.Any, cached Cached) DecodedResource {
	var wrapper *discoveryv3.Resource
	if a.GetTypeUrl() == resourceWrapperURL {
		wrapper = &discoveryv3.Resource{}
		if err := proto.Unmarshal(a.GetValue(), wrapper); err != nil {
			return DecodedResource{Err: fmt.Errorf("cannot unmarshal the Resource wrapper: %w", err)}
		}
		a = wrapper.GetResource()
		if a.GetTypeUrl() == resourceWrapperURL {
			return DecodedResource{Name: wrapper.GetName(), Err: errors.New("a Resource wrapper inside another")}
		}
	}
	var r DecodedResource
	if a.GetTypeUrl() != rt.URL {
		r.Err = fmt.Errorf("type_url %q in a response of %q", a.GetTypeUrl(), rt.URL)
	} else if cached != nil {
		if name, ok := readString(a.GetValue(), rt.NameField); ok && name != "" {
			if v, raw, hit := cached(name, a.GetValue()); hit {
				r = DecodedResource{Name: name, Value: v, Raw: raw, Unchanged: true}
			}
		}
	}
	if !r.Unchanged && r.Err == nil {
		r.Name, r.Value, r.Err = rt.Decode(a)
		r.Raw = a.GetValue()
	}
	if wrapper != nil {
		switch w := wrapper.GetName(); {
		case r.Name == "":
			r.Name = w
		case r.Err == nil && w != "" && w != r.Name:
			r = DecodedResource{Name: r.Name, Err: fmt.Errorf("the Resource wrapper names %q but holds %q", w, r.Name)}
		}
	}
	return r
}

// readString returns the string field num of the serialized message b as
// proto.Unmarshal reads it: the last occurrence of num with the wire type
// of a string wins, and one of another wire type is an unknown field. ok
// is false when b is malformed or num is 0.
func readString(b []byte, num protowire.Number) (s string, ok bool) {
	if num == 0 {
		return "", false
	}
	var v []byte
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return "", false
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l = protowire.ConsumeBytes(b)
		} else {
			l = protowire.ConsumeFieldValue(n, typ, b)
		}
		if l < 0 {
			return "", false
		}
		b = b[l:]
	}
	return string(v), true
}
