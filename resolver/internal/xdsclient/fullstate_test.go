package xdsclient_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

// These tests script the server's side of one ADS stream, so that a
// response can answer an older request than the client's last: the race
// of a name subscribed while a full-state response is in flight.

// fullStateClusters is clusterType as real CDS is: full-state.
var fullStateClusters = func() *xdsclient.ResourceType {
	rt := *clusterType
	rt.FullState = true
	return &rt
}()

// scriptedServer is an ADS server on loopback that hands the test every
// request and sends only the responses the test gives it.
type scriptedServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	addr  string
	reqs  chan *discoveryv3.DiscoveryRequest
	resps chan *discoveryv3.DiscoveryResponse
}

func startScripted(t *testing.T) *scriptedServer {
	t.Helper()
	s := &scriptedServer{
		reqs:  make(chan *discoveryv3.DiscoveryRequest, 100),
		resps: make(chan *discoveryv3.DiscoveryResponse),
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return s
}

func (s *scriptedServer) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	ctx := stream.Context()
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case s.reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { <-recvDone }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-recvDone:
			return nil
		case resp := <-s.resps:
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

// request returns the next request the server got, which must name names
// (in the client's sorted order) and carry nonce.
func (s *scriptedServer) request(t *testing.T, nonce string, names ...string) {
	t.Helper()
	select {
	case r := <-s.reqs:
		if !slices.Equal(r.GetResourceNames(), names) || r.GetResponseNonce() != nonce {
			t.Fatalf("request for %v with nonce %q, want %v with nonce %q", r.GetResourceNames(), r.GetResponseNonce(), names, nonce)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no request for %v with nonce %q", names, nonce)
	}
}

// respond sends a full-state Cluster response holding clusters.
func (s *scriptedServer) respond(t *testing.T, nonce, version string, clusters ...*clusterv3.Cluster) {
	t.Helper()
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: resource.ClusterType, VersionInfo: version, Nonce: nonce}
	for _, c := range clusters {
		a, err := anypb.New(c)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	select {
	case s.resps <- resp:
	case <-time.After(5 * time.Second):
		t.Fatalf("response %q not sent: no stream", nonce)
	}
}

// newFullStateClient returns a client of full-state Clusters without a
// does-not-exist timer, so that the only timer is the confirmation's.
func newFullStateClient(t *testing.T, clock *meshtest.Clock, addr string) *xdsclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := xdsclient.New(ctx, xdsclient.Config{
		Servers:     []string{addr},
		Node:        &corev3.Node{Id: "test"},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Log:         meshtest.Logger(),
		BackoffBase: time.Second,
		BackoffMax:  4 * time.Second,
		Types:       []*xdsclient.ResourceType{fullStateClusters},
		NotFound:    errNotFound,
		Now:         clock.Now,
		AfterFunc:   clock.AfterFunc,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var (
	clusterA = cluster("A", clusterv3.Cluster_ROUND_ROBIN)
	clusterB = cluster("B", clusterv3.Cluster_RANDOM)
)

// inFlight subscribes A, then B before the server answers, and has the
// server answer the request for A alone: the race. It returns B's
// updates once the client has ACKed that answer, naming B.
func inFlight(t *testing.T, srv *scriptedServer, c *xdsclient.Client) <-chan update {
	t.Helper()
	a := watch(c, "A")
	srv.request(t, "", "A")
	b := watch(c, "B")
	srv.request(t, "", "A", "B")
	srv.respond(t, "1", "v1", clusterA) // the answer to [A]
	if u := next(t, a, "A"); u.err != nil || u.v != "ROUND_ROBIN" {
		t.Fatalf("A: %v, %v", u.v, u.err)
	}
	srv.request(t, "1", "A", "B") // the ACK, the server's cue about B
	return b
}

// A name subscribed while a full-state response to a request without it
// is in flight is not declared absent by that response: the next one
// brings it, even a moment before the confirmation delay ends.
func TestSubscribedWhileResponseInFlight(t *testing.T) {
	srv := startScripted(t)
	clock := meshtest.NewClock(epoch())
	c := newFullStateClient(t, clock, srv.addr)
	b := inFlight(t, srv, c)

	if d := waitTimer(t, clock, "the confirmation timer of B"); d != xdsclient.DefaultAbsentConfirmDelay {
		t.Fatalf("confirmation timer of %v, want %v", d, xdsclient.DefaultAbsentConfirmDelay)
	}
	clock.Advance(xdsclient.DefaultAbsentConfirmDelay - time.Nanosecond)
	srv.respond(t, "2", "v1", clusterA, clusterB)
	// Watcher calls come in order: a not-found from the first response
	// or the timer would come before the value.
	if u := next(t, b, "B"); u.err != nil || u.v != "RANDOM" {
		t.Fatalf("B's first update: %v, %v; want its value", u.v, u.err)
	}
	if got := clock.Pending(); len(got) != 0 {
		t.Errorf("timers %v left, want none", got)
	}
	clock.Advance(time.Hour)
	none(t, b, "after B came")
}

// A name left out of a response that may predate it, and not sent in
// answer to the ACK that names it, is declared absent when the
// confirmation delay has passed since that ACK, not a moment before.
func TestSuspectedAbsentAfterConfirmDelay(t *testing.T) {
	srv := startScripted(t)
	clock := meshtest.NewClock(epoch())
	c := newFullStateClient(t, clock, srv.addr)
	b := inFlight(t, srv, c)

	d := waitTimer(t, clock, "the confirmation timer of B")
	clock.Advance(d - time.Nanosecond)
	none(t, b, "just before the confirmation delay")
	clock.Advance(time.Nanosecond)
	if u := next(t, b, "does not exist"); !errors.Is(u.err, errNotFound) || u.v != nil {
		t.Fatalf("B: %v, %v; want the NotFound error", u.v, u.err)
	}

	// It exists after all: the next response naming it brings it back.
	srv.respond(t, "2", "v1", clusterA, clusterB)
	if u := next(t, b, "B"); u.err != nil || u.v != "RANDOM" {
		t.Fatalf("B, then sent: %v, %v", u.v, u.err)
	}
}

// A second full-state response without the suspected name, which answers
// the ACK that names it, says it does not exist, without the delay.
func TestSuspectedAbsentAtSecondOmission(t *testing.T) {
	srv := startScripted(t)
	clock := meshtest.NewClock(epoch())
	c := newFullStateClient(t, clock, srv.addr)
	b := inFlight(t, srv, c)

	waitTimer(t, clock, "the confirmation timer of B")
	srv.respond(t, "2", "v1", clusterA)
	if u := next(t, b, "does not exist"); !errors.Is(u.err, errNotFound) || u.v != nil {
		t.Fatalf("B: %v, %v; want the NotFound error", u.v, u.err)
	}
	if got := clock.Pending(); len(got) != 0 {
		t.Errorf("timers %v left, want none", got)
	}
}

// A name subscribed with no response in flight is asked of the server by
// every request the next response can answer, but for those that ask for
// nothing new (the ACK of the last response, or one that drops a name),
// which a server answers only with a new version. A full-state response
// of the same version without the name says it does not exist at once, as
// before: this is what keeps unknown hosts fast. A new version may answer
// such a request instead, and only raises a suspicion, which the next
// response settles.
func TestUnknownNameAbsentAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name, version string
		drop          bool // a name is dropped before B is subscribed
		atOnce        bool
	}{
		{"same version", "v1", false, true},
		{"same version after a name was dropped", "v1", true, true},
		{"new version", "v2", false, false},
		{"new version after a name was dropped", "v2", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startScripted(t)
			clock := meshtest.NewClock(epoch())
			c := newFullStateClient(t, clock, srv.addr)
			a := watch(c, "A")
			srv.request(t, "", "A")
			cancelC := c.Watch(resource.ClusterType, "C", func(any, error) {})
			srv.request(t, "", "A", "C")
			srv.respond(t, "1", "v1", clusterA, cluster("C", clusterv3.Cluster_RANDOM))
			next(t, a, "A")
			srv.request(t, "1", "A", "C") // the ACK
			if tc.drop {
				cancelC()
				srv.request(t, "1", "A")
			}

			b := watch(c, "B")
			held := []*clusterv3.Cluster{clusterA}
			names := []string{"A", "B"}
			if !tc.drop {
				held = append(held, cluster("C", clusterv3.Cluster_RANDOM))
				names = []string{"A", "B", "C"}
			}
			srv.request(t, "1", names...)
			srv.respond(t, "2", tc.version, held...)
			if !tc.atOnce {
				srv.request(t, "2", names...)
				waitTimer(t, clock, "the confirmation timer of B")
				none(t, b, "after a new version that may answer a request without B")
				srv.respond(t, "3", tc.version, held...)
			}
			if u := next(t, b, "does not exist"); !errors.Is(u.err, errNotFound) || u.v != nil {
				t.Fatalf("B: %v, %v; want the NotFound error", u.v, u.err)
			}
			if got := clock.Pending(); len(got) != 0 {
				t.Errorf("timers %v, want none", got)
			}
			none(t, a, "after B's answer")
		})
	}
}

// A name received before and left out of a full-state response was
// removed: its watchers are told at once.
func TestReceivedNameRemovedAtOnce(t *testing.T) {
	srv := startScripted(t)
	clock := meshtest.NewClock(epoch())
	c := newFullStateClient(t, clock, srv.addr)
	a := watch(c, "A")
	srv.request(t, "", "A")
	b := watch(c, "B")
	srv.request(t, "", "A", "B")
	srv.respond(t, "1", "v1", clusterA, clusterB)
	next(t, a, "A")
	next(t, b, "B")
	srv.request(t, "1", "A", "B")

	srv.respond(t, "2", "v2", clusterA)
	if u := next(t, b, "the removal"); !errors.Is(u.err, errNotFound) || u.v != nil {
		t.Fatalf("B: %v, %v; want the NotFound error", u.v, u.err)
	}
	if got := clock.Pending(); len(got) != 0 {
		t.Errorf("timers %v, want none", got)
	}
	none(t, a, "after B's removal")
}
