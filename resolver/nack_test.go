package resolver_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	maglevv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/maglev/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// rawServer is a plain go-control-plane ADS server (snapshot cache,
// ads=false, as meshlet's control plane runs it) that serves whatever a
// test puts in it, valid or not, and records every request.
type rawServer struct {
	addr  string
	cache cachev3.SnapshotCache

	mu   sync.Mutex
	reqs []*discoveryv3.DiscoveryRequest
}

type oneKey struct{}

func (oneKey) ID(*corev3.Node) string { return "k" }

func startRawServer(t *testing.T) *rawServer {
	t.Helper()
	s := &rawServer{cache: cachev3.NewSnapshotCache(false, oneKey{}, nil)}
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, s.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			s.reqs = append(s.reqs, req)
			s.mu.Unlock()
			return nil
		},
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		cancel()
		<-done
	})
	s.addr = lis.Addr().String()
	return s
}

func (s *rawServer) setClusters(t *testing.T, version string, clusters ...*clusterv3.Cluster) {
	t.Helper()
	res := make([]types.Resource, len(clusters))
	for i, c := range clusters {
		res[i] = c
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.ClusterType: res})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), "k", snap); err != nil {
		t.Fatal(err)
	}
}

// requests returns the Cluster requests received after the first skip.
func (s *rawServer) requests(skip int) []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*discoveryv3.DiscoveryRequest
	for _, r := range s.reqs[min(skip, len(s.reqs)):] {
		if r.GetTypeUrl() == resource.ClusterType {
			out = append(out, r)
		}
	}
	return out
}

func (s *rawServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

// waitRequest waits for a Cluster request after skip that cond accepts.
func (s *rawServer) waitRequest(t *testing.T, skip int, what string, cond func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	var found *discoveryv3.DiscoveryRequest
	meshtest.WaitUntil(t, 5*time.Second, "a request with "+what, func() bool {
		for _, r := range s.requests(skip) {
			if cond(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// TestNACK serves malformed Clusters: each is NACKed with a reason that
// names the cluster and the problem, the watcher is told and keeps the
// last good cluster, and a new watch still gets the good one.
func TestNACK(t *testing.T) {
	srv := startRawServer(t)
	good := plainCluster("c1")
	srv.setClusters(t, "1", good)
	c := newClient(t, nodeID(t), []string{srv.addr}, resolver.WithBackoff(50*time.Millisecond, time.Second))
	w := watch(t, c.WatchCluster, "c1")
	if got := w.value(t, 5*time.Second); got.LBPolicy != resolver.WeightedRoundRobin {
		t.Fatalf("first cluster: %+v", got)
	}
	srv.waitRequest(t, 0, "the ACK of version 1", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetVersionInfo() == "1" && r.GetResponseNonce() != "" && r.GetErrorDetail() == nil
	})

	cases := []struct {
		name   string
		mutate func(*clusterv3.Cluster)
		reason []string
	}{
		{"unknown lb_policy", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_LbPolicy(42) },
			[]string{`Cluster "c1"`, "lb_policy: unknown value 42"}},
		{"no supported load_balancing_policy", func(c *clusterv3.Cluster) {
			c.LoadBalancingPolicy = &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{{
				TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "maglev", TypedConfig: mustAny(t, &maglevv3.Maglev{})},
			}}}
		}, []string{`Cluster "c1"`, "load_balancing_policy", "no policy that meshlet supports"}},
		{"no EDS config", func(c *clusterv3.Cluster) { c.EdsClusterConfig = nil },
			[]string{`Cluster "c1"`, "eds_cluster_config: missing"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			version := string(rune('a' + i))
			bad := plainCluster("c1")
			tc.mutate(bad)
			skip := srv.count()
			srv.setClusters(t, version, bad)

			nack := srv.waitRequest(t, skip, "a NACK of version "+version, func(r *discoveryv3.DiscoveryRequest) bool {
				return strings.Contains(r.GetErrorDetail().GetMessage(), tc.reason[1])
			})
			if nack.GetVersionInfo() != "1" {
				t.Errorf("NACK carries version %q, want the last good one, 1", nack.GetVersionInfo())
			}
			for _, want := range tc.reason {
				if !strings.Contains(nack.GetErrorDetail().GetMessage(), want) {
					t.Errorf("NACK reason %q does not say %q", nack.GetErrorDetail().GetMessage(), want)
				}
			}

			u := w.until(t, 5*time.Second, "the rejection", func(_ resolver.Cluster, err error) bool {
				return err != nil && strings.Contains(err.Error(), tc.reason[1])
			})
			if isNotFound(u.err) {
				t.Errorf("rejection %v wraps ErrResourceNotFound", u.err)
			}
			if u.v.Name != "c1" || u.v.LBPolicy != resolver.WeightedRoundRobin {
				t.Errorf("watcher was given %+v with the error, want the last good cluster", u.v)
			}
			if got := watch(t, c.WatchCluster, "c1").value(t, 100*time.Millisecond); got.Name != "c1" || got.LBPolicy != resolver.WeightedRoundRobin {
				t.Errorf("a new watch got %+v, want the last good cluster", got)
			}
		})
	}

	// go-control-plane answers a NACK (which carries the old version) with
	// the rejected version again at once; the client spaces its NACKs out
	// with its backoff instead of spinning with the server. The xdsclient
	// package's TestRepeatedNACKsBackOff counts them on a fake clock.

	// A good version is taken again.
	fixed := plainCluster("c1")
	fixed.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	skip := srv.count()
	srv.setClusters(t, "2", fixed)
	w.until(t, 5*time.Second, "the fixed cluster", func(c resolver.Cluster, err error) bool {
		return err == nil && c.LBPolicy == resolver.LeastRequest
	})
	srv.waitRequest(t, skip, "the ACK of version 2", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetVersionInfo() == "2" && r.GetErrorDetail() == nil
	})
}

// TestPartialNACK sends one good and one bad cluster in a response: the
// good one is used, the bad one keeps its last good value, and the
// response is NACKed naming only the bad one.
func TestPartialNACK(t *testing.T) {
	srv := startRawServer(t)
	srv.setClusters(t, "1", plainCluster("good"), plainCluster("bad"))
	c := newClient(t, nodeID(t), []string{srv.addr})
	good := watch(t, c.WatchCluster, "good")
	bad := watch(t, c.WatchCluster, "bad")
	good.value(t, 5*time.Second)
	bad.value(t, 5*time.Second)

	g, b := plainCluster("good"), plainCluster("bad")
	g.LbPolicy = clusterv3.Cluster_RANDOM
	b.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
	skip := srv.count()
	srv.setClusters(t, "2", g, b)

	if got := good.value(t, 5*time.Second); got.LBPolicy != resolver.Random {
		t.Errorf("good cluster: %+v", got)
	}
	if u := bad.next(t, 5*time.Second); u.err == nil || u.v.Name != "bad" {
		t.Errorf("bad cluster: %+v, %v; want the last good value and the error", u.v, u.err)
	}
	nack := srv.waitRequest(t, skip, "a NACK", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil })
	msg := nack.GetErrorDetail().GetMessage()
	if !strings.Contains(msg, `Cluster "bad": type: LOGICAL_DNS is not supported`) || strings.Contains(msg, `"good"`) {
		t.Errorf("NACK reason %q", msg)
	}

	// Removing a cluster from a full-state response removes it.
	srv.setClusters(t, "3", g)
	bad.until(t, 5*time.Second, "the removal", func(_ resolver.Cluster, err error) bool { return isNotFound(err) })
}
