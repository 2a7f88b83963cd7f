package mesh_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// countingListener counts the connections the server accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// peerCounts counts the requests each client connection (its remote
// address) carried, in the order the connections came.
type peerCounts struct {
	mu     sync.Mutex
	order  []string
	counts map[string]int
}

func (p *peerCounts) add(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.counts == nil {
		p.counts = map[string]int{}
	}
	if p.counts[addr] == 0 {
		p.order = append(p.order, addr)
	}
	p.counts[addr]++
}

// perConn returns the requests of each connection, oldest first.
func (p *peerCounts) perConn() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, len(p.order))
	for i, a := range p.order {
		out[i] = p.counts[a]
	}
	return out
}

type peersGRPC struct {
	grpcGreeter
	peers *peerCounts
}

func (g *peersGRPC) SayHello(ctx context.Context, req *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	if p, ok := peer.FromContext(ctx); ok {
		g.peers.add(p.Addr.String())
	}
	return g.grpcGreeter.SayHello(ctx, req)
}

type peersHTTP struct {
	httpGreeter
	peers *peerCounts
}

func (g *peersHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.peers.add(r.RemoteAddr)
	g.httpGreeter.ServeHTTP(w, r)
}

// settled returns the connections accepted once no new one has come for
// 300ms (a replacement connection is dialed in the background), within
// 5s.
func (l *countingListener) settled(t *testing.T) int64 {
	t.Helper()
	n, since := l.accepted.Load(), time.Now()
	meshtest.WaitUntil(t, 5*time.Second, "connections to settle", func() bool {
		if m := l.accepted.Load(); m != n {
			n, since = m, time.Now()
		}
		return time.Since(since) > 300*time.Millisecond
	})
	return n
}

// lifetimeCase is one transport of the connection lifetime tests: it
// serves the greeter on a counting listener.
type lifetimeCase struct {
	limitCase
	serveOn func(t *testing.T, m *mesh.Mesh, lis net.Listener, peers *peerCounts)
}

var lifetimeCases = []lifetimeCase{
	{limitGRPC("native gRPC"), func(t *testing.T, m *mesh.Mesh, lis net.Listener, peers *peerCounts) {
		s, err := newGRPCGreeter(m, lis, "v1", &peersGRPC{peers: peers})
		if err != nil {
			t.Fatal(err)
		}
		serveUntilCleanup(t, s, lis)
	}},
	{limitHTTP, func(t *testing.T, m *mesh.Mesh, lis net.Listener, peers *peerCounts) {
		serveHTTPGreeterOn(t, m, lis, "v1", &peersHTTP{peers: peers})
	}},
}

// startLifetimeCase starts a control plane with the greeter's rule, a
// greeter on a counting listener and a client, and waits until a call
// succeeds.
func startLifetimeCase(t *testing.T, lc lifetimeCase, rule string) (*countingListener, *peerCounts, func() string) {
	cp, _ := startControlPlane(t, map[string]string{"rule.yaml": rule, "route.yaml": noRetries})
	lis := &countingListener{Listener: listen(t, "127.0.0.1:0")}
	peers := &peerCounts{}
	lc.serveOn(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}), lis, peers)
	waitRegistered(t, cp, 1)
	call := lc.caller(t, startMesh(t, cp.XDSAddr(), "client", nil, lc.clientOpts...))
	meshtest.WaitUntil(t, 10*time.Second, "a call to succeed", func() bool {
		r, _ := call(t.Context(), 0)
		return r == "ok"
	})
	return lis, peers, func() string {
		r, msg := call(t.Context(), 0)
		return r + msg
	}
}

// TestMaxRequestsPerConnection: with maxRequestsPerConnection: 2, calls
// in a row go two per connection: ten calls from a fresh start take five.
// The server sees which connection carried each call. The calls that
// waited for the first success count too, so every connection but the
// newest carried exactly 2.
func TestMaxRequestsPerConnection(t *testing.T) {
	rule := greeterRule(trafficPolicy("    connectionPool:\n      http:\n        maxRequestsPerConnection: 2\n"))
	for _, lc := range lifetimeCases {
		t.Run(lc.name, func(t *testing.T) {
			_, peers, call := startLifetimeCase(t, lc, rule)
			for i := range 10 {
				if r := call(); r != "ok" {
					t.Fatalf("call %d: %s", i, r)
				}
			}
			got := peers.perConn()
			total := 0
			for i, n := range got {
				total += n
				if n != 2 && !(i == len(got)-1 && n == 1) {
					t.Fatalf("requests per connection %v: want 2 on each but the newest", got)
				}
			}
			if total < 11 || len(got) != (total+1)/2 {
				t.Fatalf("requests per connection %v (%d requests): want %d connections", got, total, (total+1)/2)
			}
		})
	}
}

// TestIdleTimeout: with idleTimeout: 200ms, two calls 10ms apart share
// a connection, and a call 1s later needs a new one.
func TestIdleTimeout(t *testing.T) {
	rule := greeterRule(trafficPolicy("    connectionPool:\n      http:\n        idleTimeout: 200ms\n"))
	for _, lc := range lifetimeCases {
		t.Run(lc.name, func(t *testing.T) {
			lis, _, call := startLifetimeCase(t, lc, rule)
			if r := call(); r != "ok" {
				t.Fatalf("first call: %s", r)
			}
			before := lis.accepted.Load()
			time.Sleep(10 * time.Millisecond)
			if r := call(); r != "ok" {
				t.Fatalf("call 10ms later: %s", r)
			}
			if got := lis.accepted.Load() - before; got != 0 {
				t.Fatalf("a call 10ms after another took %d new connections, want none", got)
			}
			time.Sleep(time.Second)
			before = lis.settled(t)
			if r := call(); r != "ok" {
				t.Fatalf("call 1s later: %s", r)
			}
			if got := lis.settled(t) - before; got != 1 {
				t.Fatalf("a call 1s after another took %d new connections, want 1", got)
			}
		})
	}
}

// TestConnLifetimeGRPCGoXDS: gRPC-Go's own xDS client accepts a cluster
// with idleTimeout and maxRequestsPerConnection, which it ignores.
func TestConnLifetimeGRPCGoXDS(t *testing.T) {
	rule := greeterRule(trafficPolicy("    connectionPool:\n      http:\n        idleTimeout: 200ms\n        maxRequestsPerConnection: 2\n"))
	_, _, call := startLifetimeCase(t, lifetimeCase{limitGRPC("gRPC-Go xDS", mesh.WithGRPCGoXDS()), lifetimeCases[0].serveOn}, rule)
	for i := range 5 {
		if r := call(); r != "ok" {
			t.Fatalf("call %d: %s", i, r)
		}
	}
}
