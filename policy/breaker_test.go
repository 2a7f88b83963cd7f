package policy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/meshlet/meshlet/policy"
)

func TestBreakerOpensAndProbes(t *testing.T) {
	b := policy.NewBreaker(policy.BreakerSettings{ConsecutiveFailures: 3, OpenFor: 50 * time.Millisecond})
	// A caller's cancellation says nothing: it does not count.
	for range 5 {
		tk, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		tk.Report(policy.Ignored)
	}
	for i := range 3 {
		tk, err := b.Allow()
		if err != nil {
			t.Fatalf("failure %d: %v", i, err)
		}
		tk.Report(policy.Failure)
	}
	_, err := b.Allow()
	var oe *policy.OpenError
	if !errors.As(err, &oe) || !errors.Is(err, policy.ErrCircuitOpen) {
		t.Fatalf("after 3 failures: got %v, want the breaker open", err)
	}
	// After OpenFor, exactly one probe goes through.
	var probe policy.Ticket
	deadline := time.Now().Add(10 * time.Second)
	for {
		if probe, err = b.Allow(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no probe within 10s of a 50ms OpenFor")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.Allow(); !errors.As(err, &oe) || !oe.Probing {
		t.Fatalf("a second request while the probe is in flight: got %v, want refused", err)
	}
	probe.Report(policy.Success)
	for i := range 10 {
		tk, err := b.Allow()
		if err != nil {
			t.Fatalf("request %d after the probe succeeded: %v", i, err)
		}
		tk.Report(policy.Success)
	}
}

func TestNilBreakerAllows(t *testing.T) {
	var b *policy.Breaker
	tk, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	tk.Report(policy.Failure)
}
