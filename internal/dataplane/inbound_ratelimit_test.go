package dataplane_test

import (
	"errors"
	"testing"
	"time"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/resolver"
)

// limited is a server Listener with one local rate limit of burst, for
// POSTs, keyed by principal when keyed.
func limited(burst uint32, keyed bool) resolver.Listener {
	b := resolver.TokenBucket{MaxTokens: burst, TokensPerFill: 1, FillInterval: time.Hour}
	rule := resolver.RateLimitRule{
		Headers: []resolver.HeaderMatch{{Name: ":method", String: resolver.StringMatch{Kind: resolver.StringExact, Value: "POST"}}},
		Keyed:   0, Absent: 0,
	}
	rl := &resolver.RateLimit{Name: "ratelimit/default/api", ResourceExhausted: true, RetryAfter: true,
		Descriptors: []resolver.RateLimitDescriptor{{Bucket: b}}}
	if keyed {
		rl.Descriptors = []resolver.RateLimitDescriptor{{Bucket: b, Keyed: true, MaxKeys: 10}, {Bucket: b}}
		rule.Key, rule.Keyed, rule.Absent = resolver.RateLimitKeyPrincipal, 0, 1
	}
	rl.Rules = []resolver.RateLimitRule{rule}
	return resolver.Listener{Name: "inbound", HTTPFilters: []resolver.HTTPFilter{{Name: rl.Name, RateLimit: rl}}}
}

// allowed counts the requests in allowed of n sent by sa ("" for a
// plaintext caller) with method.
func allowed(t *testing.T, in *dataplane.Inbound, n int, sa, method string) int {
	t.Helper()
	ok := 0
	for range n {
		req := &dataplane.InboundRequest{Method: method, Path: "/a"}
		if sa != "" {
			req.PeerCertificates = peer(sa)
		}
		var rle *dataplane.InboundRateLimitError
		switch err := in.RateLimit(req); {
		case err == nil:
			ok++
		case errors.As(err, &rle):
			if rle.Policy != "ratelimit/default/api" || !rle.ResourceExhausted || rle.RetryAfterSeconds() < 3000 {
				t.Errorf("refusal %+v, want the policy named, RESOURCE_EXHAUSTED, retry in about an hour", rle)
			}
		default:
			t.Fatalf("RateLimit: %v", err)
		}
	}
	return ok
}

func TestInboundRateLimit(t *testing.T) {
	src := &listenerSource{}
	in := dataplane.WatchInbound(src, "10.0.0.1:9081", dataplane.InboundOptions{})
	defer in.Close()
	src.send(limited(3, false), nil)
	if got := allowed(t, in, 5, "x", "GET"); got != 5 {
		t.Errorf("GETs, not matched: %d of 5 allowed, want all", got)
	}
	if got := allowed(t, in, 5, "x", "POST"); got != 3 {
		t.Errorf("POSTs: %d of 5 allowed, want the burst of 3", got)
	}
	src.send(limited(3, false), nil) // the same again: the bucket stays empty
	if got := allowed(t, in, 1, "x", "POST"); got != 0 {
		t.Errorf("after the same Listener: %d allowed, want 0", got)
	}
	src.send(limited(3, true), nil) // keyed: new buckets
	for _, sa := range []string{"x", "y", ""} {
		if got := allowed(t, in, 5, sa, "POST"); got != 3 {
			t.Errorf("keyed, caller %q: %d of 5 allowed, want a burst of 3 of its own", sa, got)
		}
	}
}

func BenchmarkInboundRateLimit(b *testing.B) {
	for _, bc := range []struct {
		name  string
		keyed bool
	}{{"shared", false}, {"per principal", true}} {
		b.Run(bc.name, func(b *testing.B) {
			src := &listenerSource{}
			in := dataplane.WatchInbound(src, "10.0.0.1:9081", dataplane.InboundOptions{})
			defer in.Close()
			src.send(limited(1<<30, bc.keyed), nil)
			req := &dataplane.InboundRequest{Method: "POST", Path: "/a", PeerCertificates: peer("x")}
			b.ReportAllocs()
			for b.Loop() {
				if err := in.RateLimit(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
