package dataplane

import (
	"time"

	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/resolver"
)

// The server side's rate limits: the local_ratelimit filters of an
// Inbound's Listener, enforced with policy.Limiter. Their buckets outlive
// Listener updates: a bucket whose filter name, place and settings are
// unchanged keeps its tokens, so a push of unrelated config gives no one
// a fresh burst; a changed one starts full.

// InboundRateLimitError is the error RateLimit returns for a refused
// request. It wraps the *policy.RateLimitError (and so
// policy.ErrRateLimited) and says how the filter wants the refusal told.
type InboundRateLimitError struct {
	*policy.RateLimitError
	// ResourceExhausted: a gRPC call gets RESOURCE_EXHAUSTED, else
	// UNAVAILABLE (Envoy's default).
	ResourceExhausted bool
	// RetryAfter: an HTTP 429 carries Retry-After.
	RetryAfter bool
}

// Unwrap returns the *policy.RateLimitError.
func (e *InboundRateLimitError) Unwrap() error { return e.RateLimitError }

// inboundLimits are the limiters of one Listener's filters.
type inboundLimits struct {
	filters []filterLimits
}

// filterLimits are the limiters of one local_ratelimit filter: one per
// descriptor, and one for its default bucket, if it has one.
type filterLimits struct {
	rl          *resolver.RateLimit
	descriptors []*policy.Limiter
	def         *policy.Limiter
}

// limiterKey identifies a bucket across Listener updates.
type limiterKey struct {
	filter     string
	descriptor int // -1 for the default bucket
	settings   policy.RateLimit
}

// updateLimits makes the limiters of l, keeping those of the Listener
// before that l leaves unchanged. It runs under in.mu.
func (in *Inbound) updateLimits(l *resolver.Listener) {
	old := map[limiterKey]*policy.Limiter{}
	if cur := in.limits.Load(); cur != nil {
		for _, f := range cur.filters {
			for i, lim := range f.descriptors {
				old[limiterKey{f.rl.Name, i, lim.Settings()}] = lim
			}
			if f.def != nil {
				old[limiterKey{f.rl.Name, -1, f.def.Settings()}] = f.def
			}
		}
	}
	limiter := func(filter string, i int, b resolver.TokenBucket, maxKeys uint32) *policy.Limiter {
		s := policy.RateLimit{
			Rate:       float64(b.TokensPerFill) / b.FillInterval.Seconds(),
			Burst:      int(b.MaxTokens),
			MaxBuckets: int(maxKeys),
		}
		if lim := old[limiterKey{filter, i, s}]; lim != nil {
			return lim
		}
		return policy.NewLimiter(filter, s)
	}
	next := &inboundLimits{}
	for _, f := range l.HTTPFilters {
		rl := f.RateLimit
		if rl == nil {
			continue
		}
		fl := filterLimits{rl: rl}
		for i, d := range rl.Descriptors {
			var maxKeys uint32
			if d.Keyed {
				maxKeys = d.MaxKeys
			}
			fl.descriptors = append(fl.descriptors, limiter(rl.Name, i, d.Bucket, maxKeys))
		}
		if rl.Default != nil {
			fl.def = limiter(rl.Name, -1, *rl.Default, 0)
		}
		next.filters = append(next.filters, fl)
	}
	if len(next.filters) == 0 {
		next = nil
	}
	in.limits.Store(next)
}

// RateLimit takes a token for req from each rate limit of the Listener in
// effect, in filter order. It returns nil, or an *InboundRateLimitError
// from the first filter that refuses it. A transport calls it once a
// request is authorized. It does not block, and when every bucket the
// request uses exists and allows it, it does not allocate (keying by the
// caller's principal costs one allocation: its SPIFFE ID as a string).
func (in *Inbound) RateLimit(req *InboundRequest) error {
	lim := in.limits.Load()
	if lim == nil {
		return nil
	}
	now := time.Now()
	for i := range lim.filters {
		if err := lim.filters[i].allow(now, req); err != nil {
			return err
		}
	}
	return nil
}

// RateLimit applies the rate limits of the Listener of req's local
// address, as Inbound.RateLimit does.
func (s *InboundSet) RateLimit(req *InboundRequest) error {
	if in := s.For(req.Local); in != nil {
		return in.RateLimit(req)
	}
	return nil
}

// allow takes a token from the bucket of each descriptor req makes, each
// bucket at most once, then from the default bucket if no descriptor
// matched or the filter always takes from it.
func (f *filterLimits) allow(now time.Time, req *InboundRequest) error {
	var used uint64 // descriptors already taken from (at most 64: the resolver's bound)
	matched := false
	for ri := range f.rl.Rules {
		r := &f.rl.Rules[ri]
		if !rateLimitHeadersMatch(r.Headers, req) {
			continue
		}
		d, key := r.Keyed, ""
		if r.Key != resolver.RateLimitKeyNone {
			if key = rateLimitKey(r, req); key == "" {
				d = r.Absent
			}
		}
		if d < 0 {
			continue
		}
		matched = true
		if used&(1<<d) != 0 {
			continue
		}
		used |= 1 << d
		if err := f.descriptors[d].Allow(now, key); err != nil {
			return f.refusal(err)
		}
	}
	if f.def != nil && (!matched || f.rl.AlwaysConsumeDefault) {
		if err := f.def.Allow(now, ""); err != nil {
			return f.refusal(err)
		}
	}
	return nil
}

func (f *filterLimits) refusal(err error) error {
	e, _ := err.(*policy.RateLimitError) // Limiter.Allow returns no other
	return &InboundRateLimitError{RateLimitError: e, ResourceExhausted: f.rl.ResourceExhausted, RetryAfter: f.rl.RetryAfter}
}

// rateLimitKey is the value of the key a rule buckets req by; "" when req
// has none (no such header, a plaintext caller, a certificate without a
// URI).
func rateLimitKey(r *resolver.RateLimitRule, req *InboundRequest) string {
	switch r.Key {
	case resolver.RateLimitKeyHeader:
		if req.Header == nil {
			return ""
		}
		if v := req.Header(r.KeyHeader); len(v) > 0 {
			return v[0]
		}
	case resolver.RateLimitKeyPrincipal:
		if len(req.PeerCertificates) > 0 && len(req.PeerCertificates[0].URIs) > 0 {
			return req.PeerCertificates[0].URIs[0].String()
		}
	}
	return ""
}

// rateLimitHeadersMatch reports whether req matches every header match;
// ":method", ":path" and ":authority" are the request's.
func rateLimitHeadersMatch(hs []resolver.HeaderMatch, req *InboundRequest) bool {
	for i := range hs {
		var one [1]string
		var values []string
		switch hs[i].Name {
		case ":method":
			one[0], values = req.Method, one[:]
		case ":path":
			one[0], values = req.Path, one[:]
		case ":authority":
			one[0], values = req.Authority, one[:]
		default:
			if req.Header != nil {
				values = req.Header(hs[i].Name)
			}
		}
		if !hs[i].Match(values) {
			return false
		}
	}
	return true
}
