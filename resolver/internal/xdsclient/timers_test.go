package xdsclient_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

// The timers of the client run on a meshtest.Clock: these tests move time
// on instead of waiting it out, against a real go-control-plane server.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errNotFound = errors.New("does not exist")

// clusterType decodes Clusters to their lb_policy, and rejects MAGLEV.
// Unlike real CDS it is not full-state, so that only the timer can say a
// name does not exist.
var clusterType = &xdsclient.ResourceType{
	URL:   resource.ClusterType,
	Short: "Cluster",
	Decode: func(a *anypb.Any) (string, any, error) {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			return "", nil, err
		}
		if c.GetLbPolicy() == clusterv3.Cluster_MAGLEV {
			return c.GetName(), nil, errors.New("lb_policy: MAGLEV is refused")
		}
		return c.GetName(), c.GetLbPolicy().String(), nil
	},
}

func cluster(name string, lb clusterv3.Cluster_LbPolicy) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, LbPolicy: lb}
}

// adsServer is a go-control-plane ADS server (snapshot cache, not ADS
// mode, as meshlet's control plane runs it) that records the Cluster
// requests it gets. It can be stopped and started again on its address.
type adsServer struct {
	t     *testing.T
	addr  string
	cache cachev3.SnapshotCache

	mu   sync.Mutex
	reqs []*discoveryv3.DiscoveryRequest
	stop func()
}

type oneKey struct{}

func (oneKey) ID(*corev3.Node) string { return "k" }

func startADS(t *testing.T) *adsServer {
	s := &adsServer{t: t, addr: "127.0.0.1:0", cache: cachev3.NewSnapshotCache(false, oneKey{}, nil)}
	s.start()
	t.Cleanup(s.shutdown)
	return s
}

func (s *adsServer) start() {
	s.t.Helper()
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, s.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.reqs = append(s.reqs, req)
			return nil
		},
	})
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(lis)
	}()
	s.mu.Lock()
	s.stop = func() {
		g.Stop()
		cancel()
		<-done
	}
	s.mu.Unlock()
}

// shutdown stops the server, if it runs; its address refuses connections
// until start.
func (s *adsServer) shutdown() {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (s *adsServer) set(version string, clusters ...*clusterv3.Cluster) {
	s.t.Helper()
	res := make([]types.Resource, len(clusters))
	for i, c := range clusters {
		res[i] = c
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.ClusterType: res})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), "k", snap); err != nil {
		s.t.Fatal(err)
	}
}

// count returns how many requests the server got that match.
func (s *adsServer) count(match func(*discoveryv3.DiscoveryRequest) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.reqs {
		if match(r) {
			n++
		}
	}
	return n
}

func isNACK(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil }

func newClient(t *testing.T, clock *meshtest.Clock, notFound time.Duration, servers ...string) *xdsclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := xdsclient.New(ctx, xdsclient.Config{
		Servers:         servers,
		Node:            &corev3.Node{Id: "test"},
		DialOptions:     []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Log:             meshtest.Logger(),
		BackoffBase:     time.Second,
		BackoffMax:      4 * time.Second,
		NotFoundTimeout: notFound,
		Types:           []*xdsclient.ResourceType{clusterType},
		NotFound:        errNotFound,
		Now:             clock.Now,
		AfterFunc:       clock.AfterFunc,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

type update struct {
	v   any
	err error
}

// watch watches name and returns the updates its watcher gets.
func watch(c *xdsclient.Client, name string) <-chan update {
	ch := make(chan update, 100)
	c.Watch(resource.ClusterType, name, func(v any, err error) { ch <- update{v, err} })
	return ch
}

func next(t *testing.T, ch <-chan update, what string) update {
	t.Helper()
	select {
	case u := <-ch:
		return u
	case <-time.After(5 * time.Second):
		t.Fatalf("no update: want %s", what)
		return update{}
	}
}

// none checks that the watcher has not been called. The calls that a
// timer causes are queued by the time Advance returns, so a missing call
// is not a race.
func none(t *testing.T, ch <-chan update, when string) {
	t.Helper()
	select {
	case u := <-ch:
		t.Fatalf("%s: watcher called with %v, %v", when, u.v, u.err)
	default:
	}
}

// waitTimer waits until the client has set exactly one timer, and returns
// its delay.
func waitTimer(t *testing.T, clock *meshtest.Clock, what string) time.Duration {
	t.Helper()
	var pending []time.Duration
	meshtest.WaitUntil(t, 5*time.Second, what, func() bool {
		pending = clock.Pending()
		return len(pending) == 1
	})
	return pending[0]
}

// within checks that d is want with the client's ±20% jitter.
func within(t *testing.T, what string, d, want time.Duration) {
	t.Helper()
	if lo, hi := want*8/10, want*12/10; d < lo || d > hi {
		t.Errorf("%s: %v, want %v±20%%", what, d, want)
	}
}

func epoch() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// A name no response carries is reported as not existing when its timer
// runs out, not a moment before; a name that arrives stops its timer.
func TestNotFoundTimer(t *testing.T) {
	const timeout = 15 * time.Second
	srv := startADS(t)
	srv.set("1", cluster("present", clusterv3.Cluster_LEAST_REQUEST))
	clock := meshtest.NewClock(epoch())
	c := newClient(t, clock, timeout, srv.addr)

	present := watch(c, "present")
	if u := next(t, present, "the cluster"); u.err != nil || u.v != "LEAST_REQUEST" {
		t.Fatalf("present: %v, %v", u.v, u.err)
	}
	absent := watch(c, "absent")
	if d := waitTimer(t, clock, "the does-not-exist timer of absent alone"); d != timeout {
		t.Fatalf("timer of %v, want %v", d, timeout)
	}
	clock.Advance(timeout - time.Nanosecond)
	none(t, absent, "just before the timeout")
	clock.Advance(time.Nanosecond)
	if u := next(t, absent, "does not exist"); !errors.Is(u.err, errNotFound) || u.v != nil {
		t.Fatalf("absent: %v, %v; want the NotFound error", u.v, u.err)
	}
	none(t, present, "after the other name's timeout")

	// The name arriving later brings it back.
	srv.set("2", cluster("present", clusterv3.Cluster_LEAST_REQUEST), cluster("absent", clusterv3.Cluster_RANDOM))
	if u := next(t, absent, "the late cluster"); u.err != nil || u.v != "RANDOM" {
		t.Fatalf("absent, then sent: %v, %v", u.v, u.err)
	}
	if got := clock.Pending(); len(got) != 0 {
		t.Errorf("timers %v left, want none", got)
	}
}

// A client whose stream breaks tries the next server at once. After a
// round in which no server answered it backs off: base, doubling to max,
// with jitter, and a stream that got a response resets it.
func TestReconnectBackoff(t *testing.T) {
	a, b := startADS(t), startADS(t)
	for _, s := range []*adsServer{a, b} {
		s.set("1", cluster("c", clusterv3.Cluster_ROUND_ROBIN))
	}
	clock := meshtest.NewClock(epoch())
	c := newClient(t, clock, 0, a.addr, b.addr)
	updates := watch(c, "c")
	next(t, updates, "the cluster")
	asked := func(r *discoveryv3.DiscoveryRequest) bool { return slices.Contains(r.GetResourceNames(), "c") }

	a.shutdown()
	meshtest.WaitUntil(t, 5*time.Second, "the failover to b, without a timer", func() bool { return b.count(asked) > 0 })
	if got := clock.Pending(); len(got) != 0 {
		t.Fatalf("timers %v while b answers", got)
	}

	b.shutdown()
	for round, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		d := waitTimer(t, clock, fmt.Sprintf("the backoff after round %d", round+1))
		within(t, fmt.Sprintf("backoff after round %d", round+1), d, want)
		clock.Advance(d)
	}

	// b is back, with a new version: the next round reaches it, and its
	// answer resets the backoff.
	d := waitTimer(t, clock, "the backoff after round 5")
	before := b.count(asked)
	b.set("2", cluster("c", clusterv3.Cluster_ROUND_ROBIN))
	b.start()
	clock.Advance(d)
	meshtest.WaitUntil(t, 5*time.Second, "the reconnection to b", func() bool { return b.count(asked) > before })
	none(t, updates, "after the reconnection")
	b.shutdown()
	within(t, "backoff after a stream that got a response", waitTimer(t, clock, "the backoff after b is gone again"), time.Second)
}

// go-control-plane answers a NACK, which carries the last good version,
// with the rejected version again at once. The client sends its repeated
// NACKs of one version further and further apart: base, doubling to max.
func TestRepeatedNACKsBackOff(t *testing.T) {
	srv := startADS(t)
	srv.set("1", cluster("c", clusterv3.Cluster_MAGLEV))
	clock := meshtest.NewClock(epoch())
	c := newClient(t, clock, 0, srv.addr)
	updates := watch(c, "c")
	if u := next(t, updates, "the rejection"); u.err == nil || u.v != nil {
		t.Fatalf("first update: %v, %v; want the rejection", u.v, u.err)
	}

	nacks := func() int { return srv.count(isNACK) }
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		d := waitTimer(t, clock, fmt.Sprintf("the wait before NACK %d", i+2))
		if got := nacks(); got != i+1 {
			t.Fatalf("%d NACKs before the wait for NACK %d, want %d", got, i+2, i+1)
		}
		within(t, fmt.Sprintf("wait before NACK %d", i+2), d, want)
		clock.Advance(d)
		meshtest.WaitUntil(t, 5*time.Second, fmt.Sprintf("NACK %d", i+2), func() bool { return nacks() == i+2 })
	}
	none(t, updates, "after the repeats of the same rejection")

	// A good version is taken, and ACKed, when the NACK held back goes.
	srv.set("2", cluster("c", clusterv3.Cluster_RANDOM))
	clock.Advance(waitTimer(t, clock, "the wait before NACK 6"))
	if u := next(t, updates, "the fixed cluster"); u.err != nil || u.v != "RANDOM" {
		t.Fatalf("fixed: %v, %v", u.v, u.err)
	}
	meshtest.WaitUntil(t, 5*time.Second, "the ACK of version 2", func() bool {
		return srv.count(func(r *discoveryv3.DiscoveryRequest) bool { return r.GetVersionInfo() == "2" && !isNACK(r) }) > 0
	})

	// A new bad version is NACKed at once, and its repeat waits base again.
	before := nacks()
	srv.set("3", cluster("c", clusterv3.Cluster_MAGLEV))
	meshtest.WaitUntil(t, 5*time.Second, "the NACK of version 3, without a timer", func() bool { return nacks() == before+1 })
	within(t, "wait before the repeated NACK of version 3", waitTimer(t, clock, "the wait before the repeated NACK of version 3"), time.Second)
}
