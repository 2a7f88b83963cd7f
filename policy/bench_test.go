package policy_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/meshlet/meshlet/policy"
)

// BenchmarkSuccessPath is what the data plane does for one attempt that
// no policy refuses: the limits, the breaker, and the report.
func BenchmarkSuccessPath(b *testing.B) {
	var g policy.Gate
	g.SetLimits(&policy.Limits{MaxRequests: 1 << 20, MaxRetries: 3, Budget: &policy.RetryBudget{Percent: 20, MinRetryConcurrency: 3}})
	br := policy.NewBreaker(policy.BreakerSettings{})
	b.Run("limits", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := g.StartRequest(); err != nil {
				b.Fatal(err)
			}
			g.EndRequest()
		}
	})
	b.Run("breaker", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tk, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			tk.Report(policy.Success)
		}
	})
	b.Run("limits+breaker+budget", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := g.StartRequest(); err != nil {
				b.Fatal(err)
			}
			tk, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			if err := g.StartRetry(); err != nil {
				b.Fatal(err)
			}
			g.EndRetry()
			tk.Report(policy.Success)
			g.EndRequest()
		}
	})
}

// BenchmarkWholeChain is every policy of a request that none refuses, as
// the data plane runs them for one call with one retry's worth of
// bookkeeping: the client's fault decision (configured, not hit), the
// cluster's limits, retry budget and breaker, and the server's rate limit
// keyed by the caller's principal. Issue 10's budget for it: under 1 µs
// and at most 2 allocations.
func BenchmarkWholeChain(b *testing.B) {
	var g policy.Gate
	g.SetLimits(&policy.Limits{MaxRequests: 1 << 20, MaxRetries: 3, Budget: &policy.RetryBudget{Percent: 20, MinRetryConcurrency: 3}})
	br := policy.NewBreaker(policy.BreakerSettings{})
	f := &policy.Fault{Delay: time.Second, DelayPerMillion: 1, Abort: policy.Abort{HTTPStatus: 503}, AbortPerMillion: 1}
	rl := policy.NewLimiter("bench", policy.RateLimit{Rate: 1e12, Burst: 1 << 30, MaxBuckets: 1000})
	const caller = "spiffe://cluster.local/ns/default/sa/client"
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if d := f.Decide(rand.Uint32N); d.Abort || d.Delay > 0 {
			continue
		}
		if err := g.StartRequest(); err != nil {
			b.Fatal(err)
		}
		tk, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		if err := g.StartRetry(); err != nil {
			b.Fatal(err)
		}
		g.EndRetry()
		if err := rl.Allow(now, caller); err != nil {
			b.Fatal(err)
		}
		tk.Report(policy.Success)
		g.EndRequest()
	}
}
