package balancer_test

import (
	"testing"

	"github.com/meshlet/meshlet/balancer"
)

// Status names the detector that ejected an endpoint, and Ejections
// counts every ejection.
func TestEjectReasonAndCount(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     balancer.OutlierConfig
		failure balancer.FailureKind
		want    string
	}{
		{"5xx", balancer.OutlierConfig{}, balancer.Failure5xx, balancer.Eject5xx},
		{"gateway", balancer.OutlierConfig{Consecutive5xx: -1, ConsecutiveGatewayErrors: 3}, balancer.FailureGateway, balancer.EjectGateway},
		{"local origin, split", balancer.OutlierConfig{SplitLocalOriginErrors: true}, balancer.FailureLocalOrigin, balancer.EjectLocalOrigin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			b := newBalancer(t, balancer.Config{Outlier: &tc.cfg, Now: clk.Now}, endpoints(10))
			if b.Ejections() != 0 {
				t.Fatalf("Ejections = %d before any failure", b.Ejections())
			}
			drive(t, b, 50, map[string]balancer.FailureKind{addr(4): tc.failure})
			for _, s := range b.Status() {
				switch {
				case s.Endpoint.Address == addr(4) && (!s.Ejected || s.EjectReason != tc.want):
					t.Errorf("endpoint 4: ejected %v for %q, want ejected for %q", s.Ejected, s.EjectReason, tc.want)
				case s.Endpoint.Address != addr(4) && (s.Ejected || s.EjectReason != ""):
					t.Errorf("endpoint %s: ejected %v for %q, want neither", s.Endpoint.Address, s.Ejected, s.EjectReason)
				}
			}
			if b.Ejections() != 1 {
				t.Errorf("Ejections = %d, want 1", b.Ejections())
			}
		})
	}
}
