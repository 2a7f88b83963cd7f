package config

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// decodeYAML decodes one YAML document as generic JSON: what
// sigs.k8s.io/yaml.YAMLToJSONStrict gives, decoded by encoding/json with
// UseNumber. nil is an empty document. An error's text is that of the
// step that failed.
//
// The JSON text between the two is a cost and nothing else: a parse of a
// churned WorkloadEntry spent a fifth of its time writing and reading
// it. So decodeYAML takes the YAML parser's value (YAMLToJSONStrict runs
// the same yaml.UnmarshalStrict) and builds what the JSON decoder would
// have, as long as that is plain: maps with string keys, lists, strings
// of valid UTF-8, integers, booleans and nulls, not nested deeper than
// maxDirectDepth. Anything else (a float, a key that is not a string, a
// YAML error) goes the whole way round, so that its value or error is
// exactly that of the round trip.
func decodeYAML(content []byte) (any, error) {
	var y any
	if yamlv2.UnmarshalStrict(content, &y) == nil {
		if v, ok := directJSON(y, 0); ok {
			return v, nil
		}
	}
	return roundTripJSON(content)
}

// roundTripJSON is decodeYAML by way of JSON text.
func roundTripJSON(content []byte) (any, error) {
	j, err := yaml.YAMLToJSONStrict(content)
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, nil // an empty document
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// maxDirectDepth is how deep directJSON goes; encoding/json refuses
// nesting past 10,000, and no Istio resource comes near either.
const maxDirectDepth = 1000

// directJSON returns the value that encoding/json, with UseNumber, would
// decode from the JSON of y, a value of yaml.v2's, and whether y is plain
// enough (see decodeYAML) for that to be sure. json.Marshal turns a
// number into its decimal text, which UseNumber keeps as a json.Number.
func directJSON(y any, depth int) (any, bool) {
	if depth > maxDirectDepth {
		return nil, false
	}
	switch t := y.(type) {
	case nil:
		return nil, true
	case bool:
		return t, true
	case string:
		// json.Marshal would replace invalid bytes (a !!binary value).
		return t, utf8.ValidString(t)
	case int:
		return json.Number(strconv.Itoa(t)), true
	case int64:
		return json.Number(strconv.FormatInt(t, 10)), true
	case uint64:
		return json.Number(strconv.FormatUint(t, 10)), true
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, v := range t {
			ks, ok := k.(string)
			if !ok || !utf8.ValidString(ks) {
				return nil, false
			}
			if m[ks], ok = directJSON(v, depth+1); !ok {
				return nil, false
			}
		}
		return m, true
	case []any:
		l := make([]any, len(t))
		for i, v := range t {
			var ok bool
			if l[i], ok = directJSON(v, depth+1); !ok {
				return nil, false
			}
		}
		return l, true
	}
	return nil, false
}
