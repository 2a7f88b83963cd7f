package config

import (
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// SupportedFields returns, by kind, the spec field patterns that meshlet
// accepts ("http.retries.retryOn"), for the audit in audit_test.go.
func SupportedFields() map[string][]string {
	out := map[string][]string{}
	for k, info := range kinds {
		out[k] = sortedKeys(info.support.leaves)
	}
	return out
}

// EnumValues returns, by kind and accepted field pattern of an enum type,
// the names of the enum's values.
func EnumValues() map[string]map[string][]string {
	out := map[string]map[string][]string{}
	for k, info := range kinds {
		for pattern := range info.support.leaves {
			fd := fieldAt(info.newSpec().ProtoReflect().Descriptor(), pattern)
			if fd == nil || fd.Enum() == nil {
				continue
			}
			values := fd.Enum().Values()
			names := make([]string, values.Len())
			for i := range names {
				names[i] = string(values.Get(i).Name())
			}
			if out[k] == nil {
				out[k] = map[string][]string{}
			}
			out[k][pattern] = names
		}
	}
	return out
}

// RetryConditions are the retryOn conditions meshlet accepts.
var RetryConditions = retryConditions

// fieldAt finds the field at a support pattern, through maps and lists.
func fieldAt(md protoreflect.MessageDescriptor, pattern string) protoreflect.FieldDescriptor {
	var fd protoreflect.FieldDescriptor
	for _, name := range strings.Split(pattern, ".") {
		if md == nil {
			return nil
		}
		if fd = md.Fields().ByJSONName(name); fd == nil {
			return nil
		}
		md = fd.Message()
		if fd.IsMap() {
			md = fd.MapValue().Message()
		}
	}
	return fd
}

// RefusedFields returns, by kind, each refused field at the top of a
// refused subtree ("http.fault", not "http.fault.delay") and its reason.
func RefusedFields() map[string]map[string]string {
	out := map[string]map[string]string{}
	for k, info := range kinds {
		out[k] = map[string]string{}
		var walk func(md protoreflect.MessageDescriptor, prefix string)
		walk = func(md protoreflect.MessageDescriptor, prefix string) {
			fields := md.Fields()
			for i := 0; i < fields.Len(); i++ {
				fd := fields.Get(i)
				p := prefix + fd.JSONName()
				if reason, refused := info.support.refusal(p); refused {
					out[k][p] = reason
					continue
				}
				if info.support.leaves[p] {
					continue
				}
				m := fd.Message()
				if fd.IsMap() {
					m = fd.MapValue().Message()
				}
				if m != nil {
					walk(m, p+".")
				}
			}
		}
		walk(info.newSpec().ProtoReflect().Descriptor(), "")
	}
	return out
}

// SetSample sets the field at pattern in spec, a spec decoded from JSON,
// to a value of its type, making the messages and list entries on the
// way; it returns the field's path as errors name it.
func SetSample(kind string, spec map[string]any, pattern string) string {
	md := kinds[kind].newSpec().ProtoReflect().Descriptor()
	path := "spec"
	obj := spec
	names := strings.Split(pattern, ".")
	for i, name := range names {
		fd := md.Fields().ByJSONName(name)
		path += "." + name
		if i == len(names)-1 {
			obj[name] = sample(fd)
			return path
		}
		switch {
		case fd.IsList():
			list, _ := obj[name].([]any)
			if len(list) == 0 {
				list = []any{map[string]any{}}
				obj[name] = list
			}
			obj = list[0].(map[string]any)
			path += "[0]"
			md = fd.Message()
		case fd.IsMap():
			m := map[string]any{"k": map[string]any{}}
			obj[name] = m
			obj = m["k"].(map[string]any)
			path += `["k"]`
			md = fd.MapValue().Message()
		default:
			next, _ := obj[name].(map[string]any)
			if next == nil {
				next = map[string]any{}
				obj[name] = next
			}
			obj = next
			md = fd.Message()
		}
	}
	return path
}

// sample is a value of the type of fd that sets it.
func sample(fd protoreflect.FieldDescriptor) any {
	one := func(fd protoreflect.FieldDescriptor) any {
		switch fd.Kind() {
		case protoreflect.MessageKind:
			return map[string]any{}
		case protoreflect.StringKind:
			return "x"
		case protoreflect.BoolKind:
			return true
		case protoreflect.EnumKind:
			return string(fd.Enum().Values().Get(1).Name())
		}
		return 1
	}
	switch {
	case fd.IsList():
		return []any{one(fd)}
	case fd.IsMap():
		return map[string]any{"1": one(fd.MapValue())}
	}
	return one(fd)
}

// SplitDocuments is splitDocuments, for split_test.go.
var SplitDocuments = splitDocuments

// DecodeYAML and RoundTripJSON are decodeYAML and its slow path, for
// yamljson_test.go.
var DecodeYAML, RoundTripJSON = decodeYAML, roundTripJSON

// DecodesDirectly says whether decodeYAML takes content's value from the
// YAML parser without the JSON round trip.
func DecodesDirectly(content []byte) bool {
	var y any
	if yamlv2.UnmarshalStrict(content, &y) != nil {
		return false
	}
	_, ok := directJSON(y, 0)
	return ok
}
