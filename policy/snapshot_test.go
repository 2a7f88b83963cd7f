package policy_test

import (
	"testing"
	"time"

	"github.com/meshlet/meshlet/policy"
)

// State follows a breaker from closed to open, with its counts, and Opens
// counts the openings.
func TestBreakerState(t *testing.T) {
	var none *policy.Breaker
	if st := none.State(); st.State != policy.BreakerClosed || none.Opens() != 0 {
		t.Errorf("nil breaker: %+v, want closed", st)
	}
	b := policy.NewBreaker(policy.BreakerSettings{ConsecutiveFailures: 3, OpenFor: time.Minute})
	tk, _ := b.Allow()
	tk.Report(policy.Success)
	for range 2 {
		tk, _ := b.Allow()
		tk.Report(policy.Failure)
	}
	st := b.State()
	if st.State != policy.BreakerClosed || st.Requests != 3 || st.Successes != 1 || st.Failures != 2 || st.ConsecutiveFailures != 2 || st.Opens != 0 || !st.OpenedAt.IsZero() {
		t.Errorf("after 1 success and 2 failures: %+v", st)
	}
	before := time.Now()
	tk, _ = b.Allow()
	tk.Report(policy.Failure)
	st = b.State()
	if st.State != policy.BreakerOpen || st.Opens != 1 || b.Opens() != 1 || st.OpenedAt.Before(before) || st.Settings.OpenFor != time.Minute {
		t.Errorf("after the third failure: %+v, want open once, just now", st)
	}
}

// State shows the tokens each bucket holds, without taking any, and the
// counts of allowed and refused requests.
func TestLimiterState(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := policy.NewLimiter("rl", policy.RateLimit{Rate: 1, Burst: 5, MaxBuckets: 2})
	for range 3 {
		l.Allow(t0, "")
	}
	for range 6 {
		l.Allow(t0, "a")
	}
	l.Allow(t0, "b")
	l.Allow(t0, "c") // no slot: a and b are not full; c shares the overflow bucket
	st := l.State(t0, 10)
	if st.Name != "rl" || st.Shared.Tokens != 2 || st.Keys != 2 || st.Overflow == nil || st.Overflow.Tokens != 4 {
		t.Errorf("state = %+v, want 2 shared tokens, 2 keys, 4 overflow tokens", st)
	}
	if len(st.Keyed) != 2 || st.Keyed[0] != (policy.BucketState{Key: "b", Tokens: 4}) || st.Keyed[1] != (policy.BucketState{Key: "a", Tokens: 0}) {
		t.Errorf("keyed = %+v, want b (4 tokens) then a (0)", st.Keyed)
	}
	if st.Allowed != 10 || st.Limited != 1 {
		t.Errorf("allowed %d, limited %d; want 10 and 1", st.Allowed, st.Limited)
	}
	if again := l.State(t0.Add(1500*time.Millisecond), 1); again.Shared.Tokens != 3.5 || len(again.Keyed) != 1 {
		t.Errorf("1.5s later, with 1 key asked for: %+v, want 3.5 shared tokens and one keyed bucket", again)
	}
	if a, r := l.Counts(); a != 10 || r != 1 {
		t.Errorf("Counts = %d, %d; State took tokens", a, r)
	}
}

// A gate's State shows its limits and what is in flight.
func TestGateState(t *testing.T) {
	var g policy.Gate
	if st := g.State(); st.Limits != nil || st.RetriesAllowed != -1 {
		t.Errorf("no limits: %+v", st)
	}
	g.SetLimits(&policy.Limits{MaxRequests: 10, MaxRetries: 2, MaxConnections: 4})
	g.StartRequest()
	g.StartRequest()
	g.StartRetry()
	g.StartConnection()
	st := g.State()
	if st.Requests != 2 || st.Retries != 1 || st.Connections != 1 || st.RetriesAllowed != 2 || st.Limits.MaxRequests != 10 {
		t.Errorf("state = %+v", st)
	}
	g.SetLimits(&policy.Limits{MaxRequests: 10, MaxRetries: policy.Unlimited})
	if st := g.State(); st.RetriesAllowed != -1 {
		t.Errorf("unlimited retries: RetriesAllowed %d, want -1", st.RetriesAllowed)
	}
}
