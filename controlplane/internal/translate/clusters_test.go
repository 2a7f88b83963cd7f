package translate_test

import (
	"strings"
	"testing"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/internal/wire"
)

// TestOutlierDetection checks that outlierDetection becomes the Cluster's
// outlier_detection as istiod writes it, and that a subset's own setting
// replaces the top-level one. resolver's tests read these Clusters back
// from a real control plane.
func TestOutlierDetection(t *testing.T) {
	dr := destinationRule("default", "reviews", &networking.DestinationRule{
		Host: reviews,
		TrafficPolicy: &networking.TrafficPolicy{OutlierDetection: &networking.OutlierDetection{
			Consecutive_5XxErrors:    wrapperspb.UInt32(3),
			ConsecutiveGatewayErrors: wrapperspb.UInt32(2),
			Interval:                 durationpb.New(5 * time.Second),
			BaseEjectionTime:         durationpb.New(time.Minute),
			MaxEjectionPercent:       50,
		}},
		Subsets: []*networking.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: &networking.TrafficPolicy{OutlierDetection: &networking.OutlierDetection{
				Consecutive_5XxErrors:          wrapperspb.UInt32(0),
				SplitExternalLocalOriginErrors: true,
				ConsecutiveLocalOriginFailures: wrapperspb.UInt32(4),
			}}},
			{Name: "v3", Labels: map[string]string{"version": "v3"}, TrafficPolicy: &networking.TrafficPolicy{
				LoadBalancer:     simpleLB(networking.LoadBalancerSettings_RANDOM),
				OutlierDetection: &networking.OutlierDetection{Interval: durationpb.New(time.Second)},
			}},
		},
	})
	insts := append(reviewsInstances(), instance("t1", "ratings", "10.0.1.1", 9080, 9080, nil))
	out := build(t, translate.Input{Config: &model.Config{DestinationRules: []*model.DestinationRule{dr}}, Instances: insts})

	top := &clusterv3.OutlierDetection{
		Consecutive_5Xx: wrapperspb.UInt32(3), EnforcingConsecutive_5Xx: wrapperspb.UInt32(100),
		ConsecutiveGatewayFailure: wrapperspb.UInt32(2), EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		Interval: durationpb.New(5 * time.Second), BaseEjectionTime: durationpb.New(time.Minute),
		MaxEjectionPercent: wrapperspb.UInt32(50), EnforcingSuccessRate: wrapperspb.UInt32(0),
	}
	tests := []struct {
		cluster string
		want    *clusterv3.OutlierDetection
	}{
		{wire.ClusterName(9080, "", reviews), top},
		{wire.ClusterName(9080, "v1", reviews), top},
		{wire.ClusterName(9080, "v2", reviews), &clusterv3.OutlierDetection{
			Consecutive_5Xx: wrapperspb.UInt32(0), EnforcingConsecutive_5Xx: wrapperspb.UInt32(0),
			SplitExternalLocalOriginErrors: true,
			ConsecutiveLocalOriginFailure:  wrapperspb.UInt32(4), EnforcingConsecutiveLocalOriginFailure: wrapperspb.UInt32(100),
			EnforcingLocalOriginSuccessRate: wrapperspb.UInt32(0), EnforcingSuccessRate: wrapperspb.UInt32(0),
		}},
		{wire.ClusterName(9080, "v3", reviews), &clusterv3.OutlierDetection{
			Interval: durationpb.New(time.Second), EnforcingSuccessRate: wrapperspb.UInt32(0),
		}},
		{wire.ClusterName(9080, "", ratings), nil},
	}
	for _, tt := range tests {
		c := findCluster(t, out, tt.cluster)
		if diff := cmp.Diff(tt.want, c.GetOutlierDetection(), protocmp.Transform()); diff != "" {
			t.Errorf("%s: outlier_detection (-want +got):\n%s", tt.cluster, diff)
		}
	}
	// The rule's settings are copied, not shared with the Cluster.
	if findCluster(t, out, wire.ClusterName(9080, "", reviews)).GetOutlierDetection().GetInterval() == dr.Spec.TrafficPolicy.OutlierDetection.Interval {
		t.Error("outlier_detection.interval is the rule's own Duration")
	}
}

// checkPeakEWMAPolicy checks a peak-EWMA cluster: meshlet.peak_ewma as a
// TypedStruct, then fallback for gRPC clients.
func checkPeakEWMAPolicy(t *testing.T, c *clusterv3.Cluster, fallback []*clusterv3.LoadBalancingPolicy_Policy) {
	t.Helper()
	ps := c.GetLoadBalancingPolicy().GetPolicies()
	if len(ps) == 0 {
		t.Fatalf("%s: no load_balancing_policy", c.GetName())
	}
	first := ps[0].GetTypedExtensionConfig()
	ts := &xdstypev3.TypedStruct{}
	if first.GetName() != wire.PeakEWMAPolicy || first.GetTypedConfig().UnmarshalTo(ts) != nil || ts.GetTypeUrl() != "type.googleapis.com/meshlet.peak_ewma" {
		t.Errorf("%s: first policy = %v, want a TypedStruct for type.googleapis.com/meshlet.peak_ewma", c.GetName(), first)
	}
	if diff := cmp.Diff(fallback, ps[1:], protocmp.Transform()); diff != "" {
		t.Errorf("%s: fallback policies (-want +got):\n%s", c.GetName(), diff)
	}
}

// TestPeakEWMA checks meshlet's load-balancer annotation: every cluster of
// the annotated rule asks for meshlet.peak_ewma first, and keeps the
// rule's own policy behind it for gRPC clients; other rules are untouched.
func TestPeakEWMA(t *testing.T) {
	annotate := func(dr *model.DestinationRule) *model.DestinationRule {
		dr.Annotations = map[string]string{model.LoadBalancerAnnotation: model.LoadBalancerPeakEWMA}
		return dr
	}
	rules := []*model.DestinationRule{
		annotate(destinationRule("default", "reviews", &networking.DestinationRule{
			Host:          reviews,
			TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_LEAST_REQUEST)},
			Subsets: []*networking.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_RANDOM)}},
				{Name: "v3", Labels: map[string]string{"version": "v3"}, TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_ROUND_ROBIN)}},
			},
		})),
		annotate(destinationRule("default", "ratings", &networking.DestinationRule{Host: ratings})),
		destinationRule("default", "details", &networking.DestinationRule{
			Host:          "details.default.svc.cluster.local",
			TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_LEAST_REQUEST)},
		}),
	}
	insts := append(reviewsInstances(),
		instance("t1", "ratings", "10.0.1.1", 9080, 9080, nil),
		instance("d1", "details", "10.0.2.1", 9080, 9080, nil))
	out := build(t, translate.Input{Config: &model.Config{DestinationRules: rules}, Instances: insts})

	// The fallbacks are what the cluster would have without the annotation.
	randomCluster := findCluster(t, build(t, translate.Input{
		Config:    &model.Config{DestinationRules: []*model.DestinationRule{destinationRule("default", "reviews", &networking.DestinationRule{Host: reviews, TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: simpleLB(networking.LoadBalancerSettings_RANDOM)}})}},
		Instances: reviewsInstances(),
	}), wire.ClusterName(9080, "", reviews))
	checkRandomPolicy(t, randomCluster)
	random := randomCluster.GetLoadBalancingPolicy().GetPolicies()
	roundRobin := random[1:]
	leastRequest := append([]*clusterv3.LoadBalancingPolicy_Policy{{TypedExtensionConfig: typedConfig(t, "envoy.load_balancing_policies.least_request", &leastrequestv3.LeastRequest{})}}, roundRobin...)

	tests := []struct {
		cluster  string
		lbPolicy clusterv3.Cluster_LbPolicy
		fallback []*clusterv3.LoadBalancingPolicy_Policy
	}{
		{wire.ClusterName(9080, "", reviews), clusterv3.Cluster_ROUND_ROBIN, leastRequest},
		{wire.ClusterName(9080, "v1", reviews), clusterv3.Cluster_ROUND_ROBIN, leastRequest},
		{wire.ClusterName(9080, "v2", reviews), clusterv3.Cluster_ROUND_ROBIN, random},
		{wire.ClusterName(9080, "v3", reviews), clusterv3.Cluster_ROUND_ROBIN, roundRobin},
		{wire.ClusterName(9080, "", ratings), clusterv3.Cluster_ROUND_ROBIN, roundRobin},
	}
	for _, tt := range tests {
		c := findCluster(t, out, tt.cluster)
		if c.GetLbPolicy() != tt.lbPolicy {
			t.Errorf("%s: lb_policy = %v, want %v", tt.cluster, c.GetLbPolicy(), tt.lbPolicy)
		}
		checkPeakEWMAPolicy(t, c, tt.fallback)
	}
	details := findCluster(t, out, "outbound|9080||details.default.svc.cluster.local")
	// Not annotated: least_request then round robin, under lb_policy
	// ROUND_ROBIN, which every gRPC client accepts (C-core and grpc-js-xds
	// NACK lb_policy LEAST_REQUEST).
	if details.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("details, not annotated: lb_policy %v, want ROUND_ROBIN", details.GetLbPolicy())
	}
	if diff := cmp.Diff(leastRequest, details.GetLoadBalancingPolicy().GetPolicies(), protocmp.Transform()); diff != "" {
		t.Errorf("details, not annotated: load_balancing_policy (-want +got):\n%s", diff)
	}
}

func typedConfig(t *testing.T, name string, m proto.Message) *corev3.TypedExtensionConfig {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TypedExtensionConfig{Name: name, TypedConfig: a}
}

// TestPeakEWMAWithConsistentHash checks that a rule the config package
// would refuse, the annotation with consistentHash, fails to translate
// with a message that names the field.
func TestPeakEWMAWithConsistentHash(t *testing.T) {
	dr := destinationRule("default", "reviews", &networking.DestinationRule{
		Host:    reviews,
		Subsets: []*networking.Subset{{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: &networking.TrafficPolicy{LoadBalancer: headerHashLB("x-user", 0)}}},
	})
	dr.Annotations = map[string]string{model.LoadBalancerAnnotation: model.LoadBalancerPeakEWMA}
	_, err := translate.Build(translate.Input{Config: &model.Config{DestinationRules: []*model.DestinationRule{dr}}, Instances: reviewsInstances()})
	const want = "reviews.yaml: DestinationRule default/reviews: spec.subsets[0].trafficPolicy.loadBalancer.consistentHash cannot be combined with the annotation meshlet.io/load-balancer: PEAK_EWMA"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Build error = %v, want one containing %q", err, want)
	}
}
