package policy_test

import (
	"errors"
	"testing"

	"github.com/meshlet/meshlet/policy"
)

func TestGateMaxRequests(t *testing.T) {
	var g policy.Gate
	g.SetLimits(&policy.Limits{MaxRequests: 4, MaxRetries: 1})
	for i := range 4 {
		if err := g.StartRequest(); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	err := g.StartRequest()
	var le *policy.LimitError
	if !errors.As(err, &le) || le.Limit != "http2MaxRequests" || le.Max != 4 || !errors.Is(err, policy.ErrCircuitOpen) {
		t.Fatalf("fifth request: got %v, want a LimitError of http2MaxRequests 4", err)
	}
	if got, want := err.Error(), "circuit breaker open: http2MaxRequests 4"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	g.EndRequest()
	if err := g.StartRequest(); err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	if err := g.StartRetry(); err != nil {
		t.Fatalf("first retry: %v", err)
	}
	if err := g.StartRetry(); !errors.As(err, &le) || le.Limit != "maxRetries" {
		t.Fatalf("second retry: got %v, want maxRetries refused", err)
	}
	if req, ret := g.InFlight(); req != 4 || ret != 1 {
		t.Errorf("in flight %d requests, %d retries; want 4 and 1", req, ret)
	}
}

func TestGateRetryBudget(t *testing.T) {
	var g policy.Gate
	g.SetLimits(&policy.Limits{MaxRequests: policy.Unlimited, MaxRetries: 0, Budget: &policy.RetryBudget{Percent: 20, MinRetryConcurrency: 1}})
	for range 20 {
		g.StartRequest()
	}
	// 20% of 20 is 4, above the minimum: maxRetries 0 does not apply.
	for i := range 4 {
		if err := g.StartRetry(); err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
	}
	var le *policy.LimitError
	if err := g.StartRetry(); !errors.As(err, &le) || le.Limit != "retryBudget" || le.Max != 4 {
		t.Fatalf("fifth retry: got %v, want retryBudget 4", err)
	}
}

func TestRetryBudgetAllowed(t *testing.T) {
	b := policy.RetryBudget{Percent: 20, MinRetryConcurrency: 3}
	for _, tc := range []struct{ active, want int64 }{{0, 3}, {2, 3}, {25, 5}, {100, 20}} {
		if got := b.Allowed(tc.active); got != tc.want {
			t.Errorf("Allowed(%d) = %d, want %d", tc.active, got, tc.want)
		}
	}
}

func TestGateWithoutLimits(t *testing.T) {
	var g policy.Gate
	for range 10000 {
		if err := g.StartRequest(); err != nil {
			t.Fatal(err)
		}
		if err := g.StartRetry(); err != nil {
			t.Fatal(err)
		}
	}
}
