package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// issue is a problem at a field path inside one resource.
type issue struct{ path, reason string }

// decodeSpec decodes the spec of a resource, as generic JSON, into msg.
// It refuses what protojson would accept and what istio.io/client-go would
// drop: every key must be a field of the message, by JSON or proto name.
// Durations are read as Go durations ("1m", "250ms"), as Istio documents
// them, and given to protojson in its own form.
//
// A field that sup refuses is not checked in depth: if its content is
// also malformed, the refusal is the one error reported for it, as the
// field has to go anyway. Refused fields that decode are left for
// support.check to report.
//
// It returns every problem found, and whether msg was decoded: it is not
// if any problem other than such a refusal was found.
func decodeSpec(spec map[string]any, msg proto.Message, sup *support) ([]issue, bool) {
	w := &strictWalker{support: sup}
	v := w.message(msg.ProtoReflect().Descriptor(), spec, "spec", "", sup != nil)
	if len(w.issues) > 0 {
		return append(w.issues, w.refusals...), false
	}
	b, err := json.Marshal(v)
	if err == nil {
		err = protojson.UnmarshalOptions{}.Unmarshal(b, msg)
	}
	if err != nil {
		return append(w.refusals, issue{"spec", fmt.Sprintf("cannot decode: %v", err)}), false
	}
	return w.refusals, true
}

// strictWalker checks generic JSON against a message descriptor and
// collects every problem it finds.
//
// Its methods take the field path of a value ("spec.http[0].route") and,
// while checked is true, its support pattern ("http.route").
type strictWalker struct {
	support  *support
	issues   []issue
	refusals []issue // refused fields, removed from the JSON
}

func (w *strictWalker) add(path, format string, args ...any) {
	w.issues = append(w.issues, issue{path, fmt.Sprintf(format, args...)})
}

var wrapperTypes = map[protoreflect.FullName]bool{
	"google.protobuf.DoubleValue": true,
	"google.protobuf.FloatValue":  true,
	"google.protobuf.Int64Value":  true,
	"google.protobuf.UInt64Value": true,
	"google.protobuf.Int32Value":  true,
	"google.protobuf.UInt32Value": true,
	"google.protobuf.BoolValue":   true,
	"google.protobuf.StringValue": true,
	"google.protobuf.BytesValue":  true,
}

// message checks v against md. It returns v, with durations rewritten to
// the form protojson reads.
func (w *strictWalker) message(md protoreflect.MessageDescriptor, v any, path, pattern string, checked bool) any {
	if v == nil {
		return nil
	}
	switch {
	case md.FullName() == "google.protobuf.Duration":
		return w.duration(v, path)
	case wrapperTypes[md.FullName()]:
		return w.single(md.Fields().ByName("value"), v, path, "", false)
	case strings.HasPrefix(string(md.FullName()), "google.protobuf."):
		// Struct, Value, ListValue and the rest have their own JSON
		// forms, which protojson checks.
		return v
	}
	obj, ok := v.(map[string]any)
	if !ok {
		w.add(path, "expected an object, got %s", describe(v))
		return v
	}
	fields := md.Fields()
	seen := map[protoreflect.FieldNumber]string{}
	oneofs := map[protoreflect.FullName]string{}
	for _, k := range sortedKeys(obj) {
		p := path + "." + k
		fd := fields.ByJSONName(k)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(k))
		}
		if fd == nil {
			if md.ReservedNames().Has(protoreflect.Name(k)) {
				w.add(p, "unknown field: it was removed from the Istio API (remove it)")
			} else {
				w.add(p, "unknown field%s", suggest(md, k))
			}
			continue
		}
		if prev, dup := seen[fd.Number()]; dup {
			w.add(p, "same field as %q (set it once)", prev)
			continue
		}
		seen[fd.Number()] = k
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && obj[k] != nil {
			if prev, dup := oneofs[od.FullName()]; dup {
				w.add(p, "%s and %s cannot both be set (choose one)", prev, k)
				continue
			}
			oneofs[od.FullName()] = k
		}
		fpat := fd.JSONName()
		if pattern != "" {
			fpat = pattern + "." + fpat
		}
		if checked {
			if reason, refused := w.support.refusal(fpat); refused {
				sub := &strictWalker{}
				v := sub.field(fd, obj[k], p, "", false)
				if len(sub.issues) > 0 {
					w.refusals = append(w.refusals, issue{p, reason})
					delete(obj, k)
				} else {
					obj[k] = v
				}
				continue
			}
		}
		obj[k] = w.field(fd, obj[k], p, fpat, checked && !w.support.leaves[fpat])
	}
	return obj
}

// field checks the value of one field, which may be a map or a list.
func (w *strictWalker) field(fd protoreflect.FieldDescriptor, v any, path, pattern string, checked bool) any {
	if v == nil {
		return nil // null leaves a field unset, as in protojson
	}
	switch {
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			w.add(path, "expected a map, got %s", describe(v))
			return v
		}
		for _, k := range sortedKeys(obj) {
			p := path + "[" + strconv.Quote(k) + "]"
			if kk := fd.MapKey().Kind(); kk != protoreflect.StringKind && kk != protoreflect.BoolKind {
				// JSON keys are strings; protojson reads an integer key
				// from its decimal form.
				n := len(w.issues)
				w.single(fd.MapKey(), k, p, "", false)
				if len(w.issues) > n {
					continue
				}
			}
			if obj[k] == nil {
				w.add(p, "expected a value, got null")
				continue
			}
			obj[k] = w.single(fd.MapValue(), obj[k], p, pattern, checked)
		}
		return obj
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			w.add(path, "expected a list, got %s", describe(v))
			return v
		}
		for i := range list {
			p := fmt.Sprintf("%s[%d]", path, i)
			if list[i] == nil {
				w.add(p, "expected a value, got null")
				continue
			}
			list[i] = w.single(fd, list[i], p, pattern, checked)
		}
		return list
	}
	return w.single(fd, v, path, pattern, checked)
}

// single checks one value of the type of fd (for a map, its value type).
func (w *strictWalker) single(fd protoreflect.FieldDescriptor, v any, path, pattern string, checked bool) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return w.message(fd.Message(), v, path, pattern, checked)
	case protoreflect.EnumKind:
		w.enum(fd.Enum(), v, path)
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			w.add(path, "expected true or false, got %s", describe(v))
		}
	case protoreflect.StringKind, protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			w.add(path, "expected a string, got %s (quote it)", describe(v))
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		w.integer(v, path, 32, true)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		w.integer(v, path, 64, true)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		w.integer(v, path, 32, false)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		w.integer(v, path, 64, false)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		switch x := v.(type) {
		case json.Number:
		case string:
			if _, err := strconv.ParseFloat(x, 64); err != nil {
				w.add(path, "expected a number, got %s", describe(v))
			}
		default:
			w.add(path, "expected a number, got %s", describe(v))
		}
	}
	return v
}

func (w *strictWalker) integer(v any, path string, bits int, signed bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		w.add(path, "expected a whole number, got %s", describe(v))
		return
	}
	var err error
	if signed {
		_, err = strconv.ParseInt(s, 10, bits)
	} else {
		_, err = strconv.ParseUint(s, 10, bits)
	}
	if err == nil {
		return
	}
	switch {
	case signed && bits == 32:
		w.add(path, "expected a whole number from -2147483648 to 2147483647, got %s", s)
	case signed:
		w.add(path, "expected a 64-bit whole number, got %s", s)
	case bits == 32:
		w.add(path, "expected a whole number from 0 to 4294967295, got %s", s)
	default:
		w.add(path, "expected an unsigned 64-bit whole number, got %s", s)
	}
}

func (w *strictWalker) enum(ed protoreflect.EnumDescriptor, v any, path string) {
	values := ed.Values()
	switch x := v.(type) {
	case string:
		if values.ByName(protoreflect.Name(x)) != nil {
			return
		}
	case json.Number:
		if n, err := strconv.ParseInt(x.String(), 10, 32); err == nil && values.ByNumber(protoreflect.EnumNumber(n)) != nil {
			return
		}
	}
	names := make([]string, values.Len())
	for i := range names {
		names[i] = string(values.Get(i).Name())
	}
	w.add(path, "unknown value %s (expected one of %s)", describe(v), strings.Join(names, ", "))
}

// duration reads a Go duration string and returns it in protojson's form.
func (w *strictWalker) duration(v any, path string) any {
	s, ok := v.(string)
	if !ok {
		w.add(path, `expected a duration such as "5s" or "250ms", got %s`, describe(v))
		return v
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		w.add(path, `expected a duration such as "5s" or "250ms", got %q`, s)
		return v
	}
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%d.%09ds", sign, d/time.Second, d%time.Second)
}

// describe names the JSON type and value of v for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case json.Number:
		return "number " + x.String()
	case bool:
		return strconv.FormatBool(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// suggest proposes the field that the unknown key k was probably meant to
// be, as " (did you mean \"x\"?)", or returns "".
func suggest(md protoreflect.MessageDescriptor, k string) string {
	fields := md.Fields()
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = fields.Get(i).JSONName()
	}
	if best := closest(k, names); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// closest returns the candidate nearest to word, ignoring case, if it is
// at most 2 edits away; the first of equals wins. It returns "" if none is.
func closest(word string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(word), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
