package resolver_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// outlierRule is a DestinationRule for reviews with outlier detection at
// the top level and a subset's own, and meshlet's PEAK_EWMA annotation
// over the rule's LEAST_REQUEST and RANDOM.
const outlierRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  annotations:
    meshlet.io/load-balancer: PEAK_EWMA
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
    outlierDetection:
      consecutive5xxErrors: 3
      consecutiveGatewayErrors: 2
      interval: 5s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
  subsets:
  - name: v1
    labels:
      version: v1
    trafficPolicy:
      loadBalancer:
        simple: RANDOM
      outlierDetection:
        consecutive5xxErrors: 0
        splitExternalLocalOriginErrors: true
        consecutiveLocalOriginFailures: 4
  - name: v2
    labels:
      version: v2
`

// TestClusterPoliciesFromControlPlane reads, through a real control plane,
// the Clusters of a DestinationRule with outlierDetection and the PEAK_EWMA
// annotation: every cluster of the rule is PEAK_EWMA, and the outlier
// detection is the rule's, with Envoy's defaults for what it leaves out
// and success-rate ejection off, as istiod writes it.
func TestClusterPoliciesFromControlPlane(t *testing.T) {
	services := reviewsConfig[:strings.LastIndex(reviewsConfig, "---")] // without its DestinationRule
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": services, "rule.yaml": outlierRule}))
	c := newClient(t, nodeID(t), []string{cp.XDSAddr()}, trusted(t, cp))

	defaults := resolver.OutlierDetection{
		Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second, MaxEjectionTime: 300 * time.Second,
		MaxEjectionPercent: 10, Consecutive5xx: 5, EnforcingConsecutive5xx: 100, ConsecutiveGatewayFailure: 5,
		SuccessRateMinimumHosts: 5, SuccessRateRequestVolume: 100, SuccessRateStdevFactor: 1900,
		FailurePercentageThreshold: 85, FailurePercentageMinimumHosts: 5, FailurePercentageRequestVolume: 50,
		ConsecutiveLocalOriginFailure: 5, EnforcingConsecutiveLocalOriginFailure: 100,
	}
	top := defaults
	top.Interval, top.BaseEjectionTime, top.MaxEjectionPercent = 5*time.Second, time.Minute, 50
	top.Consecutive5xx, top.ConsecutiveGatewayFailure, top.EnforcingConsecutiveGatewayFailure = 3, 2, 100
	v1 := defaults
	v1.Consecutive5xx, v1.EnforcingConsecutive5xx = 0, 0
	v1.SplitExternalLocalOriginErrors, v1.ConsecutiveLocalOriginFailure = true, 4

	for _, tt := range []struct {
		subset  string
		outlier resolver.OutlierDetection
	}{
		{"", top},
		{"v1", v1},
		{"v2", top},
	} {
		name := clusterName(tt.subset)
		want := resolver.Cluster{
			Name: name, EDSServiceName: name, LBPolicy: resolver.PeakEWMA,
			OutlierDetection: &tt.outlier,
		}
		got := watch(t, c.WatchCluster, name).value(t, 5*time.Second)
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

func TestLBPolicyString(t *testing.T) {
	for p, want := range map[resolver.LBPolicy]string{
		resolver.WeightedRoundRobin: "ROUND_ROBIN",
		resolver.LeastRequest:       "LEAST_REQUEST",
		resolver.RingHash:           "RING_HASH",
		resolver.Random:             "RANDOM",
		resolver.PeakEWMA:           "PEAK_EWMA",
		resolver.LBPolicy(9):        "LBPolicy(9)",
	} {
		if got := p.String(); got != want {
			t.Errorf("LBPolicy(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}
