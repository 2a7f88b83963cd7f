package resolver_test

import (
	"strings"
	"testing"
	"time"

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

	"github.com/meshlet/meshlet/resolver"
)

// localRateLimit is a filter of the shape meshlet's control plane sends:
// a bucket per principal, one for callers without, for POSTs only.
func localRateLimit(tb testing.TB) *localratelimitv3.LocalRateLimit {
	all := &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}}
	bucket := &typev3.TokenBucket{MaxTokens: 10, TokensPerFill: wrapperspb.UInt32(50), FillInterval: durationpb.New(time.Second)}
	policy := &ratelimitv3.RateLimitDescriptor_Entry{Key: "p", Value: "default/api"}
	return &localratelimitv3.LocalRateLimit{
		StatPrefix: "rl", FilterEnabled: all, FilterEnforced: all,
		RateLimitedAsResourceExhausted: true, EnableRetryAfterHeader: true,
		MaxDynamicDescriptors: wrapperspb.UInt32(5),
		Descriptors: []*ratelimitv3.LocalRateLimitDescriptor{
			{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{policy, {Key: "k"}}, TokenBucket: bucket},
			{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{policy}, TokenBucket: bucket},
		},
		RateLimits: []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{
			{ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{HeaderValueMatch: &routev3.RateLimit_Action_HeaderValueMatch{
				DescriptorKey: "p", DescriptorValue: "default/api",
				Headers: []*routev3.HeaderMatcher{{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "POST"}}}}},
			}}},
			{ActionSpecifier: &routev3.RateLimit_Action_Extension{Extension: &corev3.TypedExtensionConfig{
				Name:        "envoy.rate_limit_descriptors.expr",
				TypedConfig: mustAny(tb, &exprv3.Descriptor{DescriptorKey: "k", SkipIfError: true, ExprSpecifier: &exprv3.Descriptor_Text{Text: "connection.uri_san_peer_certificate"}}),
			}}},
		}}},
	}
}

// withRateLimit is serverListener with f's filter before the router.
func withRateLimit(t *testing.T, lrl *localratelimitv3.LocalRateLimit) (*resolver.Listener, error) {
	t.Helper()
	v, err := resolver.Decode(serverListenerWith(t, func(h *hcmv3.HttpConnectionManager) {
		f := &hcmv3.HttpFilter{Name: "ratelimit/default/api", IsOptional: true, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, lrl)}}
		h.HttpFilters = append(h.HttpFilters[:len(h.HttpFilters)-1], f, h.HttpFilters[len(h.HttpFilters)-1])
	}))
	if err != nil {
		return nil, err
	}
	l := v.(resolver.Listener)
	return &l, nil
}

func TestDecodeLocalRateLimit(t *testing.T) {
	l, err := withRateLimit(t, localRateLimit(t))
	if err != nil {
		t.Fatal(err)
	}
	rl := l.HTTPFilters[len(l.HTTPFilters)-1].RateLimit
	if rl == nil || rl.Name != "ratelimit/default/api" || !rl.ResourceExhausted || !rl.RetryAfter || rl.Default != nil {
		t.Fatalf("RateLimit %+v", rl)
	}
	want := resolver.TokenBucket{MaxTokens: 10, TokensPerFill: 50, FillInterval: time.Second}
	if len(rl.Descriptors) != 2 || rl.Descriptors[0] != (resolver.RateLimitDescriptor{Bucket: want, Keyed: true, MaxKeys: 5}) || rl.Descriptors[1].Keyed {
		t.Errorf("descriptors %+v", rl.Descriptors)
	}
	if len(rl.Rules) != 1 || rl.Rules[0].Key != resolver.RateLimitKeyPrincipal || rl.Rules[0].Keyed != 0 || rl.Rules[0].Absent != 1 || len(rl.Rules[0].Headers) != 1 {
		t.Errorf("rules %+v", rl.Rules)
	}
}

func TestDecodeLocalRateLimitRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(*localratelimitv3.LocalRateLimit)
		want string
	}{
		{"shadow mode", func(l *localratelimitv3.LocalRateLimit) { l.FilterEnforced = nil }, "shadow mode"},
		{"a share", func(l *localratelimitv3.LocalRateLimit) {
			l.FilterEnabled = &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 50}}
		}, "a share of requests"},
		{"per connection", func(l *localratelimitv3.LocalRateLimit) { l.LocalRateLimitPerDownstreamConnection = true }, "per_downstream_connection"},
		{"a descriptor for one caller", func(l *localratelimitv3.LocalRateLimit) {
			l.Descriptors[0].Entries[1].Value = "spiffe://cluster.local/ns/default/sa/a"
		}, "for one value of a key"},
		{"other expression", func(l *localratelimitv3.LocalRateLimit) {
			l.RateLimits[0].Actions[1].GetExtension().TypedConfig = mustAny(t, &exprv3.Descriptor{DescriptorKey: "k", ExprSpecifier: &exprv3.Descriptor_Text{Text: "request.path"}})
		}, "meshlet evaluates only the expression"},
		{"remote address", func(l *localratelimitv3.LocalRateLimit) {
			l.RateLimits[0].Actions[1] = &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}}
		}, "remote_address is not supported"},
		{"route rate_limits", func(l *localratelimitv3.LocalRateLimit) { l.RateLimits = nil }, "route and virtual host rate_limits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lrl := localRateLimit(t)
			tc.f(lrl)
			_, err := withRateLimit(t, lrl)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a NACK saying %q", err, tc.want)
			}
		})
	}
	// Not enabled: nothing to enforce, and no NACK.
	lrl := localRateLimit(t)
	lrl.FilterEnabled = nil
	if l, err := withRateLimit(t, lrl); err != nil || l.HTTPFilters[len(l.HTTPFilters)-1].RateLimit != nil {
		t.Errorf("disabled filter: %v, %v", l, err)
	}
}
