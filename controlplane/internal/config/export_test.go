package config

import (
	"strings"

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
