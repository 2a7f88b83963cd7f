package mesh_test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// connCounter is a listener that counts the connections open at the
// server, the most at once, and can close them all.
type connCounter struct {
	net.Listener
	mu          sync.Mutex
	open        map[*countedServerConn]bool
	max, accept int
}

type countedServerConn struct {
	net.Conn
	l    *connCounter
	once sync.Once
}

func (l *connCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &countedServerConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = map[*countedServerConn]bool{}
	}
	l.open[sc] = true
	l.accept++
	l.max = max(l.max, len(l.open))
	return sc, nil
}

func (c *countedServerConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.open, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// stats returns the connections open, the most open at once, and the
// connections accepted.
func (l *connCounter) stats() (open, most, accepted int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open), l.max, l.accept
}

// closeAll closes every connection open, as a server that restarts.
func (l *connCounter) closeAll() {
	l.mu.Lock()
	conns := make([]*countedServerConn, 0, len(l.open))
	for c := range l.open {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

var maxConnectionsRule = greeterRule(trafficPolicy("    connectionPool:\n      tcp:\n        maxConnections: 2\n"))

// TestMaxConnectionsHTTP: with tcp.maxConnections 2, of 6 slow calls at
// once 2 are sent, over at most 2 connections at the server, and 4 fail
// fast with 503 naming the limit: net/http would open a connection for
// each. Connections closed (here by the server) give their slots back.
func TestMaxConnectionsHTTP(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"rule.yaml": maxConnectionsRule, "route.yaml": noRetries})
	lis := &connCounter{Listener: listen(t, "127.0.0.1:0")}
	serveHTTPGreeterOn(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}), lis, "v1", nil)
	waitRegistered(t, cp, 1)
	client := startMesh(t, cp.XDSAddr(), "client", nil)
	call := limitHTTP.caller(t, client)
	meshtest.WaitUntil(t, 10*time.Second, "a call to succeed", func() bool {
		r, _ := call(t.Context(), 0)
		return r == "ok"
	})

	for round := range 2 {
		start := time.Now()
		results, msgs := concurrently(t.Context(), 6, call, 500*time.Millisecond)
		t.Logf("round %d: 6 calls in %v: %v", round, time.Since(start), results)
		if ok, refused := count(results, "ok"), count(results, "unavailable"); ok != 2 || refused != 4 {
			t.Fatalf("round %d: got %v %q; want 2 ok and 4 unavailable", round, results, msgs)
		}
		for i, m := range msgs {
			if results[i] == "unavailable" && !strings.Contains(m, "circuit breaker open: maxConnections 2 of cluster outbound|50051||greeter.default.svc.cluster.local") {
				t.Errorf("a refusal says %q, want the limit and the cluster", m)
			}
		}
		if _, most, _ := lis.stats(); most > 2 {
			t.Fatalf("the server saw %d connections at once, want at most 2", most)
		}
		// The server closes the client's two connections: they must give
		// their slots back when net/http closes its side.
		lis.closeAll()
		meshtest.WaitUntil(t, 10*time.Second, "two calls at once to succeed", func() bool {
			results, _ := concurrently(t.Context(), 2, call, 0)
			return count(results, "ok") == 2
		})
		lis.closeAll()
		// net/http sees the server's close on its own goroutines: the
		// next round starts once the slots are back.
		meshtest.WaitUntil(t, 10*time.Second, "the client's connections to close", func() bool {
			return mesh.ClusterConnections(client, "outbound|50051||greeter.default.svc.cluster.local") == 0
		})
	}
	if _, most, accepted := lis.stats(); most > 2 || accepted < 4 {
		t.Errorf("the server saw %d connections at once and accepted %d; want at most 2, and new ones after it closed them", most, accepted)
	}
}

// TestMaxConnectionsGRPC: with tcp.maxConnections 2 and three servers,
// the native gRPC client connects to two of them only, and every call
// goes to one of those two: none fails. When one of the two goes away,
// its slot goes to the third.
func TestMaxConnectionsGRPC(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"rule.yaml": maxConnectionsRule, "route.yaml": noRetries})
	servers := make([]*countingServer, 3)
	instances := make([]*instance, 3)
	for i := range servers {
		servers[i] = &countingServer{}
		instances[i] = serveGreeter(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}), "v1", &countingGRPC{counts: servers[i]})
	}
	waitRegistered(t, cp, 3)
	call := limitGRPC("native gRPC").caller(t, startMesh(t, cp.XDSAddr(), "client", nil))
	for i := range 30 {
		if r, msg := call(t.Context(), 0); r != "ok" {
			t.Fatalf("call %d: %s %q, want ok", i, r, msg)
		}
	}
	reached := 0
	for _, s := range servers {
		if s.arrived.Load() > 0 {
			reached++
		}
	}
	if reached != 2 {
		t.Fatalf("calls reached %d servers (%d, %d, %d), want 2", reached, servers[0].arrived.Load(), servers[1].arrived.Load(), servers[2].arrived.Load())
	}

	third := 0
	for i, s := range servers {
		if s.arrived.Load() == 0 {
			third = i
		}
	}
	stopped := (third + 1) % 3
	instances[stopped].server.Stop()
	meshtest.WaitUntil(t, 10*time.Second, "the third server to get calls", func() bool {
		call(t.Context(), 0)
		return servers[third].arrived.Load() > 0
	})
	before := servers[stopped].arrived.Load()
	for i := range 20 {
		if r, msg := call(t.Context(), 0); r != "ok" {
			t.Fatalf("call %d after a server stopped: %s %q, want ok", i, r, msg)
		}
	}
	if n := servers[stopped].arrived.Load(); n != before {
		t.Errorf("the stopped server got %d calls", n-before)
	}
}
