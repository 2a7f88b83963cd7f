package controlplane_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

// lbConfig asks reviews' clusters for LEAST_REQUEST and consecutive-error
// outlier detection.
const lbConfig = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  ports:
  - number: 9080
    name: grpc
    protocol: GRPC
  resolution: STATIC
  workloadSelector:
    labels:
      app: reviews
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 10s
      baseEjectionTime: 30s
`

// TestUnsupportedReportedPerClient connects raw ADS streams whose nodes say
// they are gRPC Python 1.51 (C-core), gRPC-Go and meshlet's resolver, asks
// each for reviews' Cluster, and checks what /debug/clients reports for
// each: C-core has neither least request nor consecutive-error ejection,
// gRPC-Go only lacks the latter, and meshlet lacks nothing.
func TestUnsupportedReportedPerClient(t *testing.T) {
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": lbConfig}))
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	const cluster = "outbound|9080||reviews.default.svc.cluster.local"
	clients := []struct {
		id, name, version string
		want              []string // substrings, one per expected sentence
	}{
		{"python", "gRPC Python", "1.51.1", []string{"LEAST_REQUEST load balancing: gRPC Python 1.51.1 has no least-request balancer", "outlierDetection by consecutive errors"}},
		{"core", "gRPC C-core linux Python", "C-core 29.0.0 Python 1.51.1", []string{"LEAST_REQUEST", "outlierDetection"}},
		{"go", "gRPC Go", "1.85.0", []string{"outlierDetection by consecutive errors"}},
		{"meshlet", "meshlet-resolver", "dev", nil},
	}
	for _, c := range clients {
		ads := adsStream(t, cc)
		n := node(c.id, "default", "reviews", nil)
		n.UserAgentName, n.UserAgentVersionType = c.name, &core.Node_UserAgentVersion{UserAgentVersion: c.version}
		if err := ads.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: resource.ClusterType, ResourceNames: []string{cluster}}); err != nil {
			t.Fatal(err)
		}
		resp, err := ads.Recv()
		if err != nil || len(resp.GetResources()) != 1 {
			t.Fatalf("%s: response %v, %v; want the cluster", c.id, resp, err)
		}
	}
	byID := map[string]controlplane.Client{}
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; len(byID) < len(clients); i++ {
		if time.Now().After(deadline) || i > 1000 {
			t.Fatalf("streams seen: %v", byID)
		}
		byID = map[string]controlplane.Client{}
		for _, c := range cp.Clients() {
			if c.Types["Cluster"] != nil {
				byID[c.NodeID] = c
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range clients {
		got := byID[c.id].Unsupported
		if len(got) != len(c.want) {
			t.Errorf("%s: unsupported %q, want %d sentences matching %q", c.id, got, len(c.want), c.want)
			continue
		}
		for _, w := range c.want {
			if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, w) && strings.Contains(s, cluster) }) {
				t.Errorf("%s: unsupported %q, want one naming %s with %q", c.id, got, cluster, w)
			}
		}
	}
}
