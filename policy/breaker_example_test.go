package policy_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/meshlet/meshlet/policy"
)

// A destination allows 2 requests in flight; the third is refused before
// it is sent.
func ExampleGate() {
	var g policy.Gate
	g.SetLimits(&policy.Limits{MaxRequests: 2, MaxRetries: policy.Unlimited})
	for range 3 {
		if err := g.StartRequest(); err != nil {
			fmt.Println(err, errors.Is(err, policy.ErrCircuitOpen))
		}
	}
	// Output: circuit breaker open: http2MaxRequests 2 true
}

// Two failures in a row open the breaker; the next request fails fast.
func ExampleBreaker() {
	b := policy.NewBreaker(policy.BreakerSettings{ConsecutiveFailures: 2, OpenFor: time.Minute})
	for range 2 {
		tk, _ := b.Allow()
		tk.Report(policy.Failure)
	}
	_, err := b.Allow()
	fmt.Println(err)
	// Output: circuit breaker open: 2 consecutive failures, open for 1m0s
}
