package resolver

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	exprv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/rate_limit_descriptors/expr/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/meshlet/meshlet/internal/wire"
)

var localRateLimitName = fullName(&localratelimitv3.LocalRateLimit{})

// RateLimit is a local rate limit filter (Envoy's local_ratelimit) of a
// server Listener, as meshlet enforces it: each request is given the
// descriptors its Rules make, each descriptor takes a token from the
// bucket of the first of Descriptors it matches, and the request is
// refused if one of them has none. A request no rule applies to takes one
// from Default, if set (and also when rules apply, with
// AlwaysConsumeDefault).
type RateLimit struct {
	// Name is the filter's name. It identifies the buckets: a Listener
	// update that keeps a filter's name and buckets keeps their tokens.
	Name string
	// Default is the filter-level token bucket; nil for none.
	Default              *TokenBucket
	AlwaysConsumeDefault bool
	Rules                []RateLimitRule
	Descriptors          []RateLimitDescriptor
	// ResourceExhausted answers a refused gRPC call with
	// RESOURCE_EXHAUSTED rather than UNAVAILABLE.
	ResourceExhausted bool
	// RetryAfter adds Retry-After to a refused HTTP request's 429.
	RetryAfter bool
}

// TokenBucket is Envoy's TokenBucket: MaxTokens, refilled by
// TokensPerFill every FillInterval. meshlet refills it continuously, at
// the same average rate.
type TokenBucket struct {
	MaxTokens     uint32
	TokensPerFill uint32
	FillInterval  time.Duration
}

// RateLimitDescriptor is one of a filter's descriptors: its bucket. A
// Keyed one (a wildcard entry) has a bucket per key, at most MaxKeys
// (max_dynamic_descriptors).
type RateLimitDescriptor struct {
	Bucket  TokenBucket
	Keyed   bool
	MaxKeys uint32
}

// RateLimitKeyKind says what keys a rule's bucket.
type RateLimitKeyKind int

// The kinds of key.
const (
	RateLimitKeyNone      RateLimitKeyKind = iota
	RateLimitKeyHeader                     // the value of request header KeyHeader
	RateLimitKeyPrincipal                  // the caller's SPIFFE ID (its certificate's first URI SAN)
)

// RateLimitRule is one rate_limits entry, resolved against the
// descriptors: a request whose headers all match Headers makes a
// descriptor; with a key, it takes from Descriptors[Keyed], without one
// (no header, no certificate) from Descriptors[Absent]. An index of -1
// means the request matches no descriptor.
type RateLimitRule struct {
	// Headers must all match; the request's method and path are
	// ":method" and ":path".
	Headers   []HeaderMatch
	Key       RateLimitKeyKind
	KeyHeader string // lower-case
	Keyed     int
	Absent    int
}

// maxRateLimitDescriptors bounds a filter's descriptors, so that the data
// plane can note those a request used in one word.
const maxRateLimitDescriptors = 64

// convertLocalRateLimit converts a local_ratelimit filter named name. It
// refuses what meshlet would not enforce as Envoy does.
func convertLocalRateLimit(name string, f *localratelimitv3.LocalRateLimit) (*RateLimit, error) {
	switch {
	case f.GetStatus() != nil && f.GetStatus().GetCode() != typev3.StatusCode_TooManyRequests:
		return nil, fmt.Errorf("status %v is not supported by meshlet (it answers 429)", f.GetStatus().GetCode())
	case len(f.GetRequestHeadersToAddWhenNotEnforced()) > 0, len(f.GetResponseHeadersToAdd()) > 0:
		return nil, errors.New("adding headers is not supported by meshlet")
	case f.GetStage() != 0:
		return nil, errors.New("stage is not supported by meshlet")
	case f.GetLocalRateLimitPerDownstreamConnection():
		return nil, errors.New("local_rate_limit_per_downstream_connection is not supported by meshlet")
	case f.GetLocalClusterRateLimit() != nil:
		return nil, errors.New("local_cluster_rate_limit is not supported by meshlet")
	case f.GetEnableXRatelimitHeaders() != ratelimitv3.XRateLimitHeadersRFCVersion_OFF:
		return nil, errors.New("enable_x_ratelimit_headers is not supported by meshlet")
	case len(f.GetDescriptors()) > 0 && len(f.GetRateLimits()) == 0:
		return nil, errors.New("descriptors without rate_limits: route and virtual host rate_limits are not supported by meshlet")
	case len(f.GetDescriptors()) > maxRateLimitDescriptors:
		return nil, fmt.Errorf("more than %d descriptors", maxRateLimitDescriptors)
	}
	enabled, err := allOrNothing(f, "filter_enabled")
	if err != nil || !enabled {
		return nil, err // a filter enabled for no request does nothing
	}
	if enforced, err := allOrNothing(f, "filter_enforced"); err != nil || !enforced {
		return nil, cmp.Or(err, errors.New("filter_enforced: a filter enabled but not enforced (shadow mode) is not supported by meshlet"))
	}
	out := &RateLimit{
		Name:                 name,
		AlwaysConsumeDefault: f.GetAlwaysConsumeDefaultTokenBucket() == nil || f.GetAlwaysConsumeDefaultTokenBucket().GetValue(),
		ResourceExhausted:    f.GetRateLimitedAsResourceExhausted(),
		RetryAfter:           f.GetEnableRetryAfterHeader(),
	}
	if tb := f.GetTokenBucket(); tb != nil {
		b, err := convertTokenBucket(tb)
		if err != nil {
			return nil, fmt.Errorf("token_bucket: %w", err)
		}
		out.Default = &b
	}
	maxKeys := uint32(20) // Envoy's default
	if m := f.GetMaxDynamicDescriptors(); m != nil {
		maxKeys = m.GetValue()
	}
	type shape struct {
		keys   []string
		values []string // "" for a wildcard
	}
	var shapes []shape
	for i, d := range f.GetDescriptors() {
		b, err := convertTokenBucket(d.GetTokenBucket())
		if err != nil {
			return nil, fmt.Errorf("descriptors[%d].token_bucket: %w", i, err)
		}
		var s shape
		for _, e := range d.GetEntries() {
			s.keys, s.values = append(s.keys, e.GetKey()), append(s.values, e.GetValue())
		}
		wild := slices.Index(s.values, "")
		if wild >= 0 && (wild != len(s.values)-1) {
			return nil, fmt.Errorf("descriptors[%d]: a wildcard entry is supported by meshlet only as the last", i)
		}
		shapes = append(shapes, s)
		out.Descriptors = append(out.Descriptors, RateLimitDescriptor{Bucket: b, Keyed: wild >= 0, MaxKeys: maxKeys})
	}
	// find is the first descriptor that entries (the last one's value
	// dynamic if keyed) match.
	find := func(keys, values []string, keyed bool) int {
		for i, s := range shapes {
			if slices.Equal(s.keys, keys) && out.Descriptors[i].Keyed == keyed && slices.Equal(s.values[:len(s.values)-boolInt(keyed)], values) {
				return i
			}
		}
		return -1
	}
	for i, rl := range f.GetRateLimits() {
		r, keys, values, err := convertRateLimitActions(rl)
		if err != nil {
			return nil, fmt.Errorf("rate_limits[%d]: %w", i, err)
		}
		skipAbsent := r.Absent != -2
		r.Absent = find(keys, values, false)
		r.Keyed = r.Absent
		if !skipAbsent {
			r.Absent = -1
		}
		if r.Key != RateLimitKeyNone {
			r.Keyed = find(append(keys, rateLimitKeyName(rl)), values, true)
			// A fixed value for a key (a descriptor of its own for one
			// caller) is not supported: it would match no wildcard.
			for j, s := range shapes {
				if len(s.keys) == len(keys)+1 && slices.Equal(s.keys[:len(keys)], keys) && s.keys[len(keys)] == rateLimitKeyName(rl) && !out.Descriptors[j].Keyed {
					return nil, fmt.Errorf("descriptors[%d]: a descriptor for one value of a key is not supported by meshlet (leave the value empty)", j)
				}
			}
		}
		out.Rules = append(out.Rules, r)
	}
	return out, nil
}

// convertRateLimitActions reads one rate_limits entry: the fixed entries
// its actions make (keys and values), the headers they need, and at most
// one key that varies by request, as the last action.
func convertRateLimitActions(rl *routev3.RateLimit) (r RateLimitRule, keys, values []string, err error) {
	switch {
	case rl.GetStage() != nil && rl.GetStage().GetValue() != 0, rl.GetDisableKey() != "", rl.GetLimit() != nil,
		rl.GetApplyOnStreamDone(), rl.GetHitsAddend() != nil:
		return r, nil, nil, errors.New("only actions are supported by meshlet")
	case len(rl.GetActions()) == 0:
		return r, nil, nil, errors.New("no actions")
	}
	for i, a := range rl.GetActions() {
		at := fmt.Sprintf("actions[%d]", i)
		if r.Key != RateLimitKeyNone {
			return r, nil, nil, fmt.Errorf("%s: meshlet supports a request-dependent entry only as the last action", at)
		}
		switch s := a.GetActionSpecifier().(type) {
		case *routev3.RateLimit_Action_GenericKey_:
			keys = append(keys, cmp.Or(s.GenericKey.GetDescriptorKey(), "generic_key"))
			values = append(values, s.GenericKey.GetDescriptorValue())
		case *routev3.RateLimit_Action_HeaderValueMatch_:
			h := s.HeaderValueMatch
			if h.GetExpectMatch() != nil && !h.GetExpectMatch().GetValue() {
				return r, nil, nil, fmt.Errorf("%s: header_value_match with expect_match false is not supported by meshlet", at)
			}
			for j, hm := range h.GetHeaders() {
				m, err := convertHeaderMatcher(hm)
				if err != nil {
					return r, nil, nil, fmt.Errorf("%s.headers[%d]: %w", at, j, err)
				}
				r.Headers = append(r.Headers, m)
			}
			keys = append(keys, cmp.Or(h.GetDescriptorKey(), "header_match"))
			values = append(values, h.GetDescriptorValue())
		case *routev3.RateLimit_Action_RequestHeaders_:
			if !s.RequestHeaders.GetSkipIfAbsent() {
				// Envoy makes no descriptor at all without the header.
				r.Absent = -2
			}
			r.Key, r.KeyHeader = RateLimitKeyHeader, strings.ToLower(s.RequestHeaders.GetHeaderName())
			if r.KeyHeader == "" || s.RequestHeaders.GetDescriptorKey() == "" {
				return r, nil, nil, fmt.Errorf("%s: request_headers needs header_name and descriptor_key", at)
			}
		case *routev3.RateLimit_Action_Extension:
			ex := &exprv3.Descriptor{}
			if err := unpack(s.Extension.GetTypedConfig(), ex); err != nil {
				return r, nil, nil, fmt.Errorf("%s: extension: %w", at, err)
			}
			if ex.GetText() != wire.PeerPrincipalAttribute || ex.GetDescriptorKey() == "" {
				return r, nil, nil, fmt.Errorf("%s: meshlet evaluates only the expression %q, with a descriptor_key", at, wire.PeerPrincipalAttribute)
			}
			if !ex.GetSkipIfError() {
				r.Absent = -2
			}
			r.Key = RateLimitKeyPrincipal
		default:
			return r, nil, nil, fmt.Errorf("%s: %s is not supported by meshlet (use generic_key, header_value_match, request_headers or the expr extension)", at, oneofName(a, "action_specifier"))
		}
	}
	return r, keys, values, nil
}

// rateLimitKeyName is the descriptor key of a rule's varying entry, its
// last action's.
func rateLimitKeyName(rl *routev3.RateLimit) string {
	a := rl.GetActions()[len(rl.GetActions())-1]
	if h := a.GetRequestHeaders(); h != nil {
		return h.GetDescriptorKey()
	}
	ex := &exprv3.Descriptor{}
	_ = unpack(a.GetExtension().GetTypedConfig(), ex) // read once already
	return ex.GetDescriptorKey()
}

func convertTokenBucket(tb *typev3.TokenBucket) (TokenBucket, error) {
	b := TokenBucket{MaxTokens: tb.GetMaxTokens(), TokensPerFill: 1, FillInterval: tb.GetFillInterval().AsDuration()}
	if tb.GetTokensPerFill() != nil {
		b.TokensPerFill = tb.GetTokensPerFill().GetValue()
	}
	if b.MaxTokens == 0 || b.TokensPerFill == 0 || b.FillInterval <= 0 {
		return b, errors.New("needs max_tokens, tokens_per_fill and fill_interval above zero")
	}
	return b, nil
}

// allOrNothing reads filter_enabled or filter_enforced: unset or 0% is
// false (Envoy's default), 100% is true, a share between is refused.
func allOrNothing(f *localratelimitv3.LocalRateLimit, field string) (bool, error) {
	v := f.GetFilterEnabled()
	if field == "filter_enforced" {
		v = f.GetFilterEnforced()
	}
	if v == nil {
		return false, nil
	}
	pm, err := perMillion(v.GetDefaultValue())
	switch {
	case err != nil:
		return false, fmt.Errorf("%s: %w", field, err)
	case pm == 0:
		return false, nil
	case pm == 1_000_000:
		return true, nil
	}
	return false, fmt.Errorf("%s: a share of requests (%d per million) is not supported by meshlet (use 0%% or 100%%)", field, pm)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
