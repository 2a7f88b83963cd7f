package policy_test

import (
	"fmt"
	"time"

	"github.com/meshlet/meshlet/policy"
)

// A bucket of 2 that gains 1 token a second: the third request at once is
// refused, and told when to come back.
func ExampleLimiter_Allow() {
	l := policy.NewLimiter("default/api", policy.RateLimit{Rate: 1, Burst: 2})
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for range 3 {
		fmt.Println(l.Allow(now, ""))
	}
	fmt.Println(l.Allow(now.Add(time.Second), ""))
	// Output:
	// <nil>
	// <nil>
	// policy: rate limited by default/api (retry after 1s)
	// <nil>
}
