package translate_test

import (
	"testing"
	"time"

	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	exprv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/rate_limit_descriptors/expr/v3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/internal/wire"
)

func rateLimitPolicy(ns, name string, spec *model.RateLimitSpec) *model.RateLimitPolicy {
	return &model.RateLimitPolicy{Meta: meta("RateLimitPolicy", ns, name), Spec: spec}
}

// A RateLimitPolicy becomes an optional local_ratelimit filter, before
// the router, on the servers it selects only, in Envoy's own fields.
func TestRateLimitFilter(t *testing.T) {
	const addr = "10.0.0.1:8080"
	cfg := &model.Config{RateLimitPolicies: []*model.RateLimitPolicy{
		rateLimitPolicy("default", "api", &model.RateLimitSpec{
			RequestsPerUnit: 50, Unit: time.Second, Burst: 10,
			Match:     []model.RateLimitMatch{{PathExact: "/a.B/C", Method: "POST"}, {PathPrefix: "/x/"}},
			PerBucket: &model.RateLimitPerBucket{Principal: true, MaxBuckets: 7},
		}),
		rateLimitPolicy("default", "other-app", &model.RateLimitSpec{Selector: map[string]string{"app": "other"}, RequestsPerUnit: 1, Unit: time.Hour, Burst: 1}),
		rateLimitPolicy("elsewhere", "ns", &model.RateLimitSpec{RequestsPerUnit: 1, Unit: time.Hour, Burst: 1}),
	}}
	out := build(t, translate.Input{Config: cfg, ServerAddresses: []string{addr}})
	hcm, _ := listenerHCM(t, out, addr)
	filters := hcm.GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != "ratelimit/default/api" || !filters[0].GetIsOptional() {
		t.Fatalf("filters %v, want ratelimit/default/api (optional), then the router", filters)
	}
	lrl := &localratelimitv3.LocalRateLimit{}
	if err := filters[0].GetTypedConfig().UnmarshalTo(lrl); err != nil {
		t.Fatal(err)
	}
	if err := lrl.ValidateAll(); err != nil {
		t.Fatalf("violates Envoy's constraints: %v", err)
	}
	if lrl.GetTokenBucket() != nil || lrl.GetFilterEnforced().GetDefaultValue().GetNumerator() != 100 ||
		!lrl.GetRateLimitedAsResourceExhausted() || !lrl.GetEnableRetryAfterHeader() || lrl.GetMaxDynamicDescriptors().GetValue() != 7 {
		t.Errorf("filter config %v", lrl)
	}
	ds := lrl.GetDescriptors()
	if len(ds) != 2 || len(ds[0].GetEntries()) != 2 || ds[0].GetEntries()[1].GetValue() != "" || len(ds[1].GetEntries()) != 1 {
		t.Fatalf("descriptors %v, want a wildcard one per principal, then one for callers without", ds)
	}
	for _, d := range ds {
		if tb := d.GetTokenBucket(); tb.GetMaxTokens() != 10 || tb.GetTokensPerFill().GetValue() != 50 || tb.GetFillInterval().AsDuration() != time.Second {
			t.Errorf("token bucket %v, want 10, 50 every 1s", tb)
		}
	}
	rls := lrl.GetRateLimits()
	if len(rls) != 2 {
		t.Fatalf("rate_limits %v, want one per match entry", rls)
	}
	hvm := rls[0].GetActions()[0].GetHeaderValueMatch()
	if hvm.GetDescriptorValue() != "default/api" || len(hvm.GetHeaders()) != 2 || hvm.GetHeaders()[0].GetSafeRegexMatch().GetRegex() != `/a\.B/C(\?.*)?` {
		t.Errorf("first match %v", hvm)
	}
	expr := &exprv3.Descriptor{}
	if err := rls[1].GetActions()[1].GetExtension().GetTypedConfig().UnmarshalTo(expr); err != nil || expr.GetText() != wire.PeerPrincipalAttribute || !expr.GetSkipIfError() {
		t.Errorf("principal key %v (%v)", expr, err)
	}
}
