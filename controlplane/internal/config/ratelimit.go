package config

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// meshlet's own kinds, for what Istio has no resource for. Its group is
// not Istio's, so documents of it are read here, not by the Istio path.
const (
	meshletPolicyGroup   = "policy.meshlet.io"
	meshletPolicyVersion = "v1alpha1"
	rateLimitPolicyKind  = "RateLimitPolicy"

	// maxRateLimitBuckets caps perBucket.maxBuckets: each server may keep
	// that many buckets per policy.
	maxRateLimitBuckets = 100000
)

// rateLimitUnits are the units of limit.unit.
var rateLimitUnits = map[string]time.Duration{"second": time.Second, "minute": time.Minute, "hour": time.Hour}

// meshletDocument reads a document of meshlet's own API group and reports
// whether it was one; a document of any other group is left to the rest
// of document.
func (p *parser) meshletDocument(file string, doc int, resName, apiVersion, kind string, meta model.Meta, obj map[string]any) bool {
	group, version, _ := strings.Cut(apiVersion, "/")
	if group != meshletPolicyGroup {
		return false
	}
	if kind != rateLimitPolicyKind {
		p.add(file, resName, "kind", "kind %s is not a kind of %s (it has %s)", kind, group, rateLimitPolicyKind)
		return true
	}
	if version != meshletPolicyVersion {
		p.add(file, resName, "apiVersion", "apiVersion %q is not supported for %s (use %s/%s)", apiVersion, kind, meshletPolicyGroup, meshletPolicyVersion)
		return true
	}
	for _, k := range sortedKeys(obj) {
		if !topLevelKeys[k] {
			p.add(file, resName, k, "unknown field (a resource has apiVersion, kind, metadata and spec)")
			return true
		}
	}
	if !p.metadata(file, resName, obj["metadata"]) {
		return true
	}
	meta.Annotations = annotations(obj["metadata"])
	r := &resource{meta: meta, doc: doc}
	p.claim(kind+"/"+meta.Namespace+"/"+meta.Name, r, resName)
	spec, ok := obj["spec"].(map[string]any)
	if !ok {
		p.add(file, resName, "spec", "required: an object with limit, got %s", describe(obj["spec"]))
		return true
	}
	report := p.reporter(r)
	before := len(p.errs)
	s := decodeRateLimitSpec(spec, p.opts, report)
	if len(p.errs) == before {
		p.rateLimits = append(p.rateLimits, &model.RateLimitPolicy{Meta: meta, Spec: s})
	}
	return true
}

// rateLimitPolicies returns the RateLimitPolicies read, by namespace and
// name.
func (p *parser) rateLimitPolicies() []*model.RateLimitPolicy {
	out := slices.Clone(p.rateLimits)
	sortByName(out, func(x *model.RateLimitPolicy) *model.Meta { return &x.Meta })
	return out
}

// decodeRateLimitSpec decodes and validates a RateLimitPolicy's spec,
// strictly: every unknown field and wrong type is reported at its path.
func decodeRateLimitSpec(spec map[string]any, o options, report reportFunc) *model.RateLimitSpec {
	d := specDecoder{report: report}
	out := &model.RateLimitSpec{}
	d.fields(spec, "spec", []string{"selector", "limit", "match", "perBucket"})
	if sel, ok := d.object(spec, "selector", "spec"); ok {
		d.fields(sel, "spec.selector", []string{"matchLabels"})
		if ml, ok := d.object(sel, "matchLabels", "spec.selector"); ok {
			out.Selector = map[string]string{}
			for _, k := range sortedKeys(ml) {
				if v, ok := ml[k].(string); ok {
					out.Selector[k] = v
				} else {
					report.add(fmt.Sprintf("spec.selector.matchLabels[%q]", k), "expected a string, got %s (quote it)", describe(ml[k]))
				}
			}
		}
	}

	if lim, ok := d.object(spec, "limit", "spec"); !ok {
		if v := spec["limit"]; v == nil {
			report.add("spec.limit", "required: {requestsPerUnit, unit, burst}")
		}
	} else {
		d.fields(lim, "spec.limit", []string{"requestsPerUnit", "unit", "burst"})
		if n, ok := d.count(lim, "requestsPerUnit", "spec.limit", true); ok {
			out.RequestsPerUnit = n
		}
		_, hasUnit := lim["unit"]
		switch u, ok := d.str(lim, "unit", "spec.limit"); {
		case !ok && hasUnit:
		case u == "":
			report.add("spec.limit.unit", "required: second, minute or hour")
		case rateLimitUnits[u] == 0:
			report.add("spec.limit.unit", "%q is not a unit (use second, minute or hour)", u)
		default:
			out.Unit = rateLimitUnits[u]
		}
		out.Burst = out.RequestsPerUnit
		if b, ok := d.count(lim, "burst", "spec.limit", false); ok && b > 0 {
			out.Burst = b
		}
	}

	if list, ok := spec["match"]; ok {
		items, isList := list.([]any)
		if !isList {
			report.add("spec.match", "expected a list, got %s", describe(list))
		}
		for i, it := range items {
			at := fmt.Sprintf("spec.match[%d]", i)
			m, ok := it.(map[string]any)
			if !ok {
				report.add(at, "expected an object, got %s", describe(it))
				continue
			}
			out.Match = append(out.Match, decodeRateLimitMatch(&d, m, at, o))
		}
	}

	if pb, ok := d.object(spec, "perBucket", "spec"); ok {
		d.fields(pb, "spec.perBucket", []string{"principal", "header", "maxBuckets"})
		b := &model.RateLimitPerBucket{MaxBuckets: 1000}
		principal, _ := pb["principal"].(bool)
		if v, set := pb["principal"]; set && !principal {
			if _, isBool := v.(bool); !isBool {
				report.add("spec.perBucket.principal", "expected true, got %s", describe(v))
			}
		}
		header, _ := d.str(pb, "header", "spec.perBucket")
		switch {
		case principal && header != "":
			report.add("spec.perBucket", "sets both principal and header (a bucket is keyed by one of them)")
		case principal:
			b.Principal = true
		case header != "":
			if !validHeaderName(header) || strings.HasPrefix(header, ":") {
				report.add("spec.perBucket.header", "%q is not a request header name", header)
			}
			b.Header = strings.ToLower(header)
		default:
			report.add("spec.perBucket", "keys buckets by nothing (set principal: true or header: NAME, or remove perBucket)")
		}
		if _, set := pb["maxBuckets"]; set {
			if n, ok := d.count(pb, "maxBuckets", "spec.perBucket", false); ok {
				if n > maxRateLimitBuckets {
					report.add("spec.perBucket.maxBuckets", "%d is over the limit of %d buckets per server", n, maxRateLimitBuckets)
				}
				b.MaxBuckets = n
			}
		}
		out.PerBucket = b
	}
	return out
}

// decodeRateLimitMatch decodes one entry of spec.match.
func decodeRateLimitMatch(d *specDecoder, m map[string]any, at string, o options) model.RateLimitMatch {
	var out model.RateLimitMatch
	d.fields(m, at, []string{"path", "method", "headers"})
	if len(m) == 0 {
		d.report.add(at, "matches every request (remove spec.match to limit every request)")
	}
	if path, ok := d.object(m, "path", at); ok {
		d.fields(path, at+".path", []string{"exact", "prefix"})
		exact, _ := d.str(path, "exact", at+".path")
		prefix, _ := d.str(path, "prefix", at+".path")
		switch {
		case exact != "" && prefix != "":
			d.report.add(at+".path", "sets both exact and prefix (set one)")
		case exact == "" && prefix == "":
			d.report.add(at+".path", "sets no match (set exact or prefix)")
		case !strings.HasPrefix(exact+prefix, "/"):
			d.report.add(at+".path", "%q does not start with / (a gRPC method is /package.Service/Method)", exact+prefix)
		}
		out.PathExact, out.PathPrefix = exact, prefix
	}
	if method, ok := d.str(m, "method", at); ok {
		if method == "" || strings.ContainsAny(method, " \t") {
			d.report.add(at+".method", "%q is not a request method (such as GET; gRPC calls are POST)", method)
		}
		out.Method = method
	}
	if hs, ok := d.object(m, "headers", at); ok {
		for _, name := range sortedKeys(hs) {
			hat := fmt.Sprintf("%s.headers[%q]", at, name)
			if !validHeaderName(name) || strings.HasPrefix(name, ":") {
				d.report.add(hat, "not a request header name (match the path and method with path and method)")
				continue
			}
			sm, ok := hs[name].(map[string]any)
			if !ok {
				d.report.add(hat, "expected an object {exact|prefix|regex}, got %s", describe(hs[name]))
				continue
			}
			d.fields(sm, hat, []string{"exact", "prefix", "regex"})
			h := model.RateLimitHeader{Name: strings.ToLower(name)}
			set := 0
			for _, k := range []string{"exact", "prefix", "regex"} {
				if v, ok := d.str(sm, k, hat); ok {
					set++
					switch k {
					case "exact":
						h.Exact = v
					case "prefix":
						h.Prefix = v
					case "regex":
						h.Regex = v
						validateRegex(v, hat+".regex", o, d.report)
					}
				}
			}
			if set != 1 {
				d.report.add(hat, "set exactly one of exact, prefix and regex")
			}
			out.Headers = append(out.Headers, h)
		}
	}
	return out
}

// validHeaderName reports whether s is an HTTP header name (an RFC 9110
// token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c > 0x7e || c <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}

// specDecoder reads a spec decoded from JSON (numbers as json.Number),
// reporting each field of the wrong type at its path.
type specDecoder struct{ report reportFunc }

// fields reports each key of m that is not one of known.
func (d specDecoder) fields(m map[string]any, at string, known []string) {
	for _, k := range sortedKeys(m) {
		if slices.Contains(known, k) {
			continue
		}
		hint := ""
		if best := closest(k, known); best != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", best)
		}
		sort.Strings(known)
		d.report.add(at+"."+k, "unknown field%s; %s has %s", hint, at, strings.Join(known, ", "))
	}
}

// object returns m[k] if it is an object; ok is false when it is absent
// or null, or not an object (reported).
func (d specDecoder) object(m map[string]any, k, at string) (map[string]any, bool) {
	v, set := m[k]
	if !set || v == nil {
		return nil, false
	}
	o, ok := v.(map[string]any)
	if !ok {
		d.report.add(at+"."+k, "expected an object, got %s", describe(v))
	}
	return o, ok
}

// str returns m[k] if it is a string; ok is false when it is absent or
// not a string (reported).
func (d specDecoder) str(m map[string]any, k, at string) (string, bool) {
	v, set := m[k]
	if !set {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		d.report.add(at+"."+k, "expected a string, got %s", describe(v))
	}
	return s, ok
}

// count returns m[k] if it is a whole number from 1 to 2^32-1; ok is false
// when it is absent (reported if required) or not such a number
// (reported).
func (d specDecoder) count(m map[string]any, k, at string, required bool) (uint32, bool) {
	v, set := m[k]
	if !set {
		if required {
			d.report.add(at+"."+k, "required: a whole number of at least 1")
		}
		return 0, false
	}
	n, isNum := v.(json.Number)
	i, err := n.Int64()
	switch {
	case !isNum || err != nil:
		d.report.add(at+"."+k, "expected a whole number of at least 1, got %s", describe(v))
	case i < 1:
		d.report.add(at+"."+k, "%d is not allowed: it must be at least 1", i)
	case i > math.MaxUint32:
		d.report.add(at+"."+k, "%d is over the limit of %d", i, uint32(math.MaxUint32))
	default:
		return uint32(i), true
	}
	return 0, false
}
