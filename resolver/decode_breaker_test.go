package resolver_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/resolver"
)

// limitsRule is a DestinationRule for reviews with limits and a retry
// budget at the top level, a subset with limits of its own, and meshlet's
// circuit-breaker annotation.
const limitsRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  annotations:
    meshlet.io/circuit-breaker: consecutiveErrors=3,openFor=2s
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 3
      http:
        http2MaxRequests: 4
    retryBudget:
      percent: 25
  subsets:
  - name: v1
    labels:
      version: v1
    trafficPolicy:
      connectionPool:
        http:
          maxRetries: 2
  - name: v2
    labels:
      version: v2
`

// TestClusterLimitsFromControlPlane reads, through a real control plane,
// the Clusters of a rule with connectionPool, retryBudget and the
// breaker annotation: unset limits are unlimited, as istiod sends them,
// the budget's minimum is Envoy's 3, and every cluster has the breaker.
func TestClusterLimitsFromControlPlane(t *testing.T) {
	services := reviewsConfig[:strings.LastIndex(reviewsConfig, "---")]
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": services, "rule.yaml": limitsRule}))
	c := newClient(t, nodeID(t), []string{cp.XDSAddr()}, trusted(t, cp))

	breaker := &policy.BreakerSettings{ConsecutiveFailures: 3, OpenFor: 2 * time.Second}
	top := &policy.Limits{MaxRequests: 4, MaxRetries: policy.Unlimited, Budget: &policy.RetryBudget{Percent: 25, MinRetryConcurrency: 3}, MaxConnections: 3}
	v1 := &policy.Limits{MaxRequests: policy.Unlimited, MaxRetries: 2, MaxConnections: policy.Unlimited}
	for _, tt := range []struct {
		subset string
		limits *policy.Limits
	}{
		{"", top},
		{"v1", v1},
		{"v2", top},
	} {
		name := clusterName(tt.subset)
		want := resolver.Cluster{Name: name, EDSServiceName: name, Limits: tt.limits, Breaker: breaker}
		got := watch(t, c.WatchCluster, name).value(t, 5*time.Second)
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}
