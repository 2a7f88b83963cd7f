package translate

import (
	"regexp"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	exprv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/rate_limit_descriptors/expr/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/internal/wire"
)

// RateLimitFilterPrefix begins the name of the local_ratelimit HTTP filter
// of each RateLimitPolicy: RateLimitFilterPrefix + "namespace/name". The
// name identifies the policy's buckets in the data plane.
const RateLimitFilterPrefix = "ratelimit/"

// The descriptor keys of a policy's rate_limits and descriptors: every
// descriptor starts with the policy's name under rateLimitPolicyKey, and a
// keyed one then has the caller's key under rateLimitKeyKey.
const (
	rateLimitPolicyKey = "meshlet.policy"
	rateLimitKeyKey    = "meshlet.key"
)

// rateLimitFilters are the local_ratelimit filters of the
// RateLimitPolicies that apply to workload w, one per policy, in the
// config's order. A request must pass every one.
//
// Each is marked is_optional: gRPC-Go does not implement local_ratelimit
// and would NACK it otherwise; it drops it, and only meshlet's own data
// plane enforces it. The encoding uses only Envoy's fields: rate_limits
// make each request's descriptor (the policy's name when a match entry
// matches, by header_value_match on :path, :method and headers, and the
// caller's key, by request_headers or the expr descriptor of the peer's
// URI SAN), and descriptors hold the token buckets: a wildcard one per
// key, bounded by max_dynamic_descriptors, and one for requests without a
// key. There is no default bucket: a request no entry matches is not
// limited.
func (t *translator) rateLimitFilters(w Workload) ([]*hcmv3.HttpFilter, error) {
	var out []*hcmv3.HttpFilter
	for _, rl := range t.cfg.RateLimitPolicies {
		if !t.rateLimitApplies(rl, w) {
			continue
		}
		cfg, err := toAny(localRateLimit(rl))
		if err != nil {
			return nil, err
		}
		out = append(out, &hcmv3.HttpFilter{
			Name:       RateLimitFilterPrefix + rl.Namespace + "/" + rl.Name,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg},
			IsOptional: true,
		})
	}
	return out, nil
}

// rateLimitApplies reports whether a RateLimitPolicy applies to w, as an
// AuthorizationPolicy would (policyApplies).
func (t *translator) rateLimitApplies(rl *model.RateLimitPolicy, w Workload) bool {
	if rl.Namespace != w.Namespace && rl.Namespace != t.rootNamespace {
		return false
	}
	return len(rl.Spec.Selector) == 0 || labelsMatch(rl.Spec.Selector, w.Labels)
}

func localRateLimit(rl *model.RateLimitPolicy) *localratelimitv3.LocalRateLimit {
	s := rl.Spec
	name := rl.Namespace + "/" + rl.Name
	bucket := &typev3.TokenBucket{
		MaxTokens:     s.Burst,
		TokensPerFill: wrapperspb.UInt32(s.RequestsPerUnit),
		FillInterval:  durationpb.New(s.Unit),
	}
	all := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
	out := &localratelimitv3.LocalRateLimit{
		StatPrefix:                      RateLimitFilterPrefix + name,
		FilterEnabled:                   all,
		FilterEnforced:                  all,
		AlwaysConsumeDefaultTokenBucket: wrapperspb.Bool(false),
		RateLimitedAsResourceExhausted:  true,
		EnableRetryAfterHeader:          true,
	}
	policyEntry := &ratelimitv3.RateLimitDescriptor_Entry{Key: rateLimitPolicyKey, Value: name}
	out.Descriptors = append(out.Descriptors, &ratelimitv3.LocalRateLimitDescriptor{
		Entries:     []*ratelimitv3.RateLimitDescriptor_Entry{policyEntry},
		TokenBucket: bucket,
	})
	var keyAction *routev3.RateLimit_Action
	if pb := s.PerBucket; pb != nil {
		out.Descriptors = append([]*ratelimitv3.LocalRateLimitDescriptor{{
			Entries:     []*ratelimitv3.RateLimitDescriptor_Entry{policyEntry, {Key: rateLimitKeyKey}},
			TokenBucket: bucket,
		}}, out.Descriptors...)
		out.MaxDynamicDescriptors = wrapperspb.UInt32(pb.MaxBuckets)
		keyAction = rateLimitKeyAction(pb)
	}
	var matches []*routev3.RateLimit_Action
	for _, m := range s.Match {
		matches = append(matches, &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{
			HeaderValueMatch: &routev3.RateLimit_Action_HeaderValueMatch{
				DescriptorKey:   rateLimitPolicyKey,
				DescriptorValue: name,
				ExpectMatch:     wrapperspb.Bool(true),
				Headers:         rateLimitHeaders(m),
			},
		}})
	}
	if len(matches) == 0 {
		matches = append(matches, &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{
			GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorKey: rateLimitPolicyKey, DescriptorValue: name},
		}})
	}
	for _, m := range matches {
		actions := []*routev3.RateLimit_Action{m}
		if keyAction != nil {
			actions = append(actions, keyAction)
		}
		out.RateLimits = append(out.RateLimits, &routev3.RateLimit{Actions: actions})
	}
	return out
}

// rateLimitKeyAction makes the descriptor entry of a caller's bucket; a
// request without a key (no header, or a plaintext caller) leaves it out,
// and so falls to the descriptor without a key.
func rateLimitKeyAction(pb *model.RateLimitPerBucket) *routev3.RateLimit_Action {
	if pb.Header != "" {
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{
			RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{HeaderName: pb.Header, DescriptorKey: rateLimitKeyKey, SkipIfAbsent: true},
		}}
	}
	expr, err := toAny(&exprv3.Descriptor{
		DescriptorKey: rateLimitKeyKey,
		SkipIfError:   true,
		ExprSpecifier: &exprv3.Descriptor_Text{Text: wire.PeerPrincipalAttribute},
	})
	if err != nil {
		panic(err) // a fixed, valid message
	}
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_Extension{
		Extension: &corev3.TypedExtensionConfig{Name: "envoy.rate_limit_descriptors.expr", TypedConfig: expr},
	}}
}

// rateLimitHeaders are the header matchers of one match entry. Envoy's
// :path holds the query string, so an exact path also matches the path
// followed by a query.
func rateLimitHeaders(m model.RateLimitMatch) []*routev3.HeaderMatcher {
	var out []*routev3.HeaderMatcher
	str := func(name string, sm *matcherv3.StringMatcher) {
		out = append(out, legacyHeaderMatcher(name, sm, false))
	}
	switch {
	case m.PathExact != "":
		str(":path", regexMatcher(regexp.QuoteMeta(m.PathExact)+`(\?.*)?`))
	case m.PathPrefix != "":
		str(":path", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: m.PathPrefix}})
	}
	if m.Method != "" {
		str(":method", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m.Method}})
	}
	for _, h := range m.Headers {
		switch {
		case h.Regex != "":
			str(h.Name, regexMatcher(h.Regex))
		case h.Prefix != "":
			str(h.Name, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: h.Prefix}})
		default:
			str(h.Name, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.Exact}})
		}
	}
	return out
}

func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}
