package policy_test

import (
	"errors"
	"testing"

	"github.com/meshlet/meshlet/policy"
)

func TestGateMaxConnections(t *testing.T) {
	var g policy.Gate
	g.SetLimits(&policy.Limits{MaxRequests: policy.Unlimited, MaxRetries: policy.Unlimited, MaxConnections: 2})
	for i := range 2 {
		if err := g.StartConnection(); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	err := g.StartConnection()
	var le *policy.LimitError
	if !errors.As(err, &le) || le.Limit != "maxConnections" || le.Max != 2 || !errors.Is(err, policy.ErrCircuitOpen) {
		t.Fatalf("third connection: %v, want maxConnections 2", err)
	}
	if g.ConnectionsFull() == nil {
		t.Error("ConnectionsFull with 2 of 2 open: nil")
	}
	g.EndConnection()
	if err := g.ConnectionsFull(); err != nil {
		t.Errorf("ConnectionsFull with 1 of 2 open: %v", err)
	}
	if err := g.StartConnection(); err != nil {
		t.Errorf("after one closed: %v", err)
	}
	if n := g.Connections(); n != 2 {
		t.Errorf("Connections() = %d, want 2", n)
	}
}

func BenchmarkConnectionSlot(b *testing.B) {
	var g policy.Gate
	g.SetLimits(&policy.Limits{MaxRequests: policy.Unlimited, MaxRetries: policy.Unlimited, MaxConnections: 1 << 20})
	b.ReportAllocs()
	for b.Loop() {
		if err := g.StartConnection(); err != nil {
			b.Fatal(err)
		}
		if err := g.ConnectionsFull(); err != nil {
			b.Fatal(err)
		}
		g.EndConnection()
	}
}
