package xdsserver

import (
	"bytes"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// wireResource is one resource marshaled once per build, not once per
// stream: go-control-plane's snapshot cache marshals every resource of
// every response again, which at 100 streams was most of the control
// plane's CPU.
type wireResource struct {
	msg types.Resource // as built: what the admin pages show
	raw []byte         // its deterministic bytes: what is compared between builds
	// wire is what the cache holds: a message of the same type with only
	// its name set and every other field kept as unknown bytes, so that
	// marshaling it copies bytes. It marshals to exactly raw.
	wire types.Resource
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// newWireResource marshals m. Resources whose name is not field 1 (none
// served today) are kept as they are: correct, only marshaled per stream.
func newWireResource(m types.Resource) (wireResource, error) {
	raw, err := deterministic.Marshal(m)
	if err != nil {
		return wireResource{}, fmt.Errorf("xdsserver: marshal %s: %w", cache.GetResourceName(m), err)
	}
	w := wireResource{msg: m, raw: raw, wire: m}
	src := m.ProtoReflect()
	fd := src.Descriptor().Fields().ByNumber(1)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated || fd.ContainingOneof() != nil {
		return w, nil
	}
	skel := src.New()
	if src.Has(fd) {
		skel.Set(fd, src.Get(fd))
	}
	prefix, err := deterministic.Marshal(skel.Interface())
	if err != nil || !bytes.HasPrefix(raw, prefix) {
		return w, nil
	}
	// The unknown bytes follow the name, as deterministic marshaling of
	// the whole message puts field 1 first: the bytes are raw's.
	skel.SetUnknown(raw[len(prefix):])
	w.wire = skel.Interface()
	return w, nil
}

// wireResources marshals rs, by name.
func wireResources(rs []types.Resource) (map[string]wireResource, error) {
	out := make(map[string]wireResource, len(rs))
	for _, r := range rs {
		w, err := newWireResource(r)
		if err != nil {
			return nil, err
		}
		out[cache.GetResourceName(r)] = w
	}
	return out, nil
}

// sameResources reports whether a and b hold the same names with the same
// bytes.
func sameResources(a, b map[string]wireResource) bool {
	if len(a) != len(b) {
		return false
	}
	for name, ra := range a {
		rb, ok := b[name]
		if !ok || !bytes.Equal(ra.raw, rb.raw) {
			return false
		}
	}
	return true
}

// wires returns the cache's form of every resource of m.
func wires(m map[string]wireResource) []types.Resource {
	out := make([]types.Resource, 0, len(m))
	for _, w := range m {
		out = append(out, w.wire)
	}
	return out
}
