package mesh_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// countingServer counts every request that reaches it, and fails them
// (503, UNAVAILABLE) while failing is set, after the sleep the request
// asks for.
type countingServer struct {
	arrived atomic.Int64
	failing atomic.Bool
}

type countingHTTP struct {
	httpGreeter
	counts *countingServer
}

func (g *countingHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.counts.arrived.Add(1)
	if g.counts.failing.Load() {
		sleep, _ := time.ParseDuration(r.URL.Query().Get("sleep"))
		pause(r.Context(), sleep)
		http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
		return
	}
	g.httpGreeter.ServeHTTP(w, r)
}

type countingGRPC struct {
	grpcGreeter
	counts *countingServer
}

func (g *countingGRPC) SayHello(ctx context.Context, req *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	g.counts.arrived.Add(1)
	if g.counts.failing.Load() {
		sleep, _, _ := strings.Cut(req.GetName(), "|")
		d, _ := time.ParseDuration(sleep)
		pause(ctx, d)
		return nil, status.Error(codes.Unavailable, "failing on purpose")
	}
	return g.grpcGreeter.SayHello(ctx, req)
}

// limitCase is one transport of the circuit-breaking tests: it serves a
// counting greeter and calls it, the server sleeping as asked. A call's
// result is "ok", "unavailable" (503 or UNAVAILABLE) or the error, with
// the message of a failure.
type limitCase struct {
	name       string
	clientOpts []mesh.Option
	serve      func(t *testing.T, m *mesh.Mesh, s *countingServer)
	caller     func(t *testing.T, m *mesh.Mesh) func(ctx context.Context, sleep time.Duration) (result, msg string)
}

var (
	limitGRPC = func(name string, opts ...mesh.Option) limitCase {
		return limitCase{
			name:       name,
			clientOpts: opts,
			serve: func(t *testing.T, m *mesh.Mesh, s *countingServer) {
				serveGreeter(t, m, "v1", &countingGRPC{counts: s})
			},
			caller: func(t *testing.T, m *mesh.Mesh) func(context.Context, time.Duration) (string, string) {
				c := dialGreeter(t, m)
				return func(ctx context.Context, sleep time.Duration) (string, string) {
					ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					_, err := c.SayHello(ctx, steer(sleep, ""))
					switch status.Code(err) {
					case codes.OK:
						return "ok", ""
					case codes.Unavailable:
						return "unavailable", status.Convert(err).Message()
					}
					return err.Error(), ""
				}
			},
		}
	}
	limitHTTP = limitCase{
		name: "HTTP",
		serve: func(t *testing.T, m *mesh.Mesh, s *countingServer) {
			serveHTTPGreeter(t, m, "v1", &countingHTTP{counts: s})
		},
		caller: func(t *testing.T, m *mesh.Mesh) func(context.Context, time.Duration) (string, string) {
			c := httpClientFor(t, m)
			return func(ctx context.Context, sleep time.Duration) (string, string) {
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				r, err := httpCall(ctx, c, fmt.Sprintf("%s?sleep=%s", sayHelloPath, sleep), "")
				switch {
				case err == nil:
					return "ok", ""
				case r.status == http.StatusServiceUnavailable:
					return "unavailable", r.body
				}
				return err.Error(), ""
			}
		},
	}
)

// startLimitCase starts a control plane with files, one counting greeter
// and a client, and waits until a call succeeds.
func startLimitCase(t *testing.T, lc limitCase, files map[string]string) (*countingServer, func(context.Context, time.Duration) (string, string)) {
	cp, _ := startControlPlane(t, files)
	s := &countingServer{}
	lc.serve(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}), s)
	waitRegistered(t, cp, 1)
	call := lc.caller(t, startMesh(t, cp.XDSAddr(), "client", nil, lc.clientOpts...))
	meshtest.WaitUntil(t, 10*time.Second, "a call to succeed", func() bool {
		r, _ := call(t.Context(), 0)
		return r == "ok"
	})
	return s, call
}

// concurrently makes n calls at once, and returns their results and
// messages.
func concurrently(ctx context.Context, n int, call func(context.Context, time.Duration) (string, string), sleep time.Duration) (results, msgs []string) {
	results, msgs = make([]string, n), make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], msgs[i] = call(ctx, sleep) })
	}
	wg.Wait()
	return results, msgs
}

func count(results []string, want string) int {
	n := 0
	for _, r := range results {
		if r == want {
			n++
		}
	}
	return n
}

// noRetries routes to the greeter without retries, so that each call is
// one attempt.
var noRetries = greeterRoute(toGreeter("", "    retries:\n      attempts: 0\n"))

// TestCircuitBreaker: after 3 failures in a row, calls fail fast without
// reaching the server; after openFor, exactly one probe goes through
// while others are refused, and its success closes the breaker.
func TestCircuitBreaker(t *testing.T) {
	rule := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
  annotations:
    meshlet.io/circuit-breaker: consecutiveErrors=3,openFor=1s
spec:
  host: greeter
`
	for _, lc := range []limitCase{limitGRPC("native gRPC"), limitHTTP} {
		t.Run(lc.name, func(t *testing.T) {
			s, call := startLimitCase(t, lc, map[string]string{"rule.yaml": rule, "route.yaml": noRetries})
			s.failing.Store(true)
			before := s.arrived.Load()
			for i := range 3 {
				if r, _ := call(t.Context(), 0); r != "unavailable" {
					t.Fatalf("failing call %d: %s, want unavailable", i, r)
				}
			}
			openedAt := time.Now()
			if got := s.arrived.Load() - before; got != 3 {
				t.Fatalf("the server got %d of the 3 failing calls", got)
			}
			for i := range 10 {
				r, msg := call(t.Context(), 0)
				if r != "unavailable" || !strings.Contains(msg, "circuit breaker open: 3 consecutive failures, open for 1s of cluster outbound|50051||greeter.default.svc.cluster.local") {
					t.Fatalf("call %d with the breaker open: %s %q, want unavailable saying the breaker is open", i, r, msg)
				}
			}
			if got := s.arrived.Load() - before; got != 3 {
				t.Fatalf("the server got %d calls while the breaker was open, want none", got-3)
			}

			s.failing.Store(false)
			// The 1s is the scenario: the breaker stays open that long.
			meshtest.WaitUntil(t, 5*time.Second, "openFor to pass", func() bool { return time.Since(openedAt) > 1100*time.Millisecond })
			results, msgs := concurrently(t.Context(), 8, call, 500*time.Millisecond)
			if ok := count(results, "ok"); ok != 1 || count(results, "unavailable") != 7 {
				t.Fatalf("8 calls when half open: %v %q; want 1 probe ok and 7 refused", results, msgs)
			}
			for i, m := range msgs {
				if results[i] == "unavailable" && !strings.Contains(m, "its one probe is in flight") {
					t.Errorf("a refusal while probing says %q", m)
				}
			}
			if got := s.arrived.Load() - before; got != 4 {
				t.Fatalf("the server got %d calls after the 3 failures, want the 1 probe", got-3)
			}
			for i := range 10 {
				if r, msg := call(t.Context(), 0); r != "ok" {
					t.Fatalf("call %d after the probe succeeded: %s %q, want ok (breaker closed)", i, r, msg)
				}
			}
		})
	}
}

// TestConnectionPoolMaxRequests: with http2MaxRequests 4, of 16 slow
// calls at once 4 reach the server and 12 fail fast. gRPC-Go's own xDS
// client enforces max_requests too (gRFC A32).
func TestConnectionPoolMaxRequests(t *testing.T) {
	rule := greeterRule(trafficPolicy("    connectionPool:\n      http:\n        http2MaxRequests: 4\n"))
	for _, lc := range []limitCase{limitGRPC("native gRPC"), limitGRPC("gRPC-Go xDS", mesh.WithGRPCGoXDS()), limitHTTP} {
		t.Run(lc.name, func(t *testing.T) {
			s, call := startLimitCase(t, lc, map[string]string{"rule.yaml": rule, "route.yaml": noRetries})
			before := s.arrived.Load()
			start := time.Now()
			results, msgs := concurrently(t.Context(), 16, call, time.Second)
			t.Logf("16 calls in %v: %d ok, %d unavailable", time.Since(start), count(results, "ok"), count(results, "unavailable"))
			if ok, refused := count(results, "ok"), count(results, "unavailable"); ok != 4 || refused != 12 {
				t.Fatalf("got %v; want 4 ok and 12 unavailable", results)
			}
			if got := s.arrived.Load() - before; got != 4 {
				t.Errorf("the server got %d calls, want 4", got)
			}
			if lc.name == "gRPC-Go xDS" {
				return // its own message
			}
			for i, m := range msgs {
				if results[i] == "unavailable" && !strings.Contains(m, "circuit breaker open: http2MaxRequests 4 of cluster outbound|50051||greeter.default.svc.cluster.local") {
					t.Errorf("a refusal says %q, want the limit and the cluster", m)
				}
			}
		})
	}
}

// TestRetryBudget: against a server that fails every call, 10 calls at
// once with a retry each would send 10 retries; a budget of 20% with a
// minimum of 1 lets at most 20% of the 10 in flight (2), plus its
// minimum, be retried.
func TestRetryBudget(t *testing.T) {
	rule := greeterRule(trafficPolicy("    retryBudget:\n      percent: 20\n      minRetryConcurrency: 1\n"))
	route := greeterRoute(toGreeter("", "    retries:\n      attempts: 1\n      retryOn: 5xx,unavailable\n"))
	for _, lc := range []limitCase{limitGRPC("native gRPC"), limitHTTP} {
		t.Run(lc.name, func(t *testing.T) {
			s, call := startLimitCase(t, lc, map[string]string{"rule.yaml": rule, "route.yaml": route})
			s.failing.Store(true)
			before := s.arrived.Load()
			results, _ := concurrently(t.Context(), 10, call, 500*time.Millisecond)
			if n := count(results, "unavailable"); n != 10 {
				t.Fatalf("got %v, want 10 unavailable", results)
			}
			retries := s.arrived.Load() - before - 10
			t.Logf("10 failing calls with 1 retry each: %d retries made", retries)
			if retries < 1 || retries > 3 {
				t.Errorf("%d retries, want 1 to 3 (the budget's 2 of 10 in flight, plus its minimum 1)", retries)
			}
		})
	}
}
