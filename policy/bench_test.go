package policy_test

import (
	"testing"

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
