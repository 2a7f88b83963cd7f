package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// op is one call of a parity scenario.
type op struct {
	user  string        // end-user header
	sleep time.Duration // the server sleeps this long
	key   string        // the server fails the first calls of this key
}

// outcome is what a call came to, in words that mean the same over gRPC
// and HTTP.
type outcome struct {
	version, instance string
	result            string // ok, timeout, denied, unavailable, or the error
}

// transport runs a scenario's servers and calls over one of meshlet's
// paths: gRPC (native, or through gRPC-Go's xDS client) or HTTP.
type transport struct {
	name string
	// clientOpts are the options of the client's mesh.
	clientOpts []mesh.Option
	// serve starts an instance of greeter of version that fails the first
	// `failures` calls of each key.
	serve func(t *testing.T, m *mesh.Mesh, version string, failures int)
	// serveFlaky starts an instance of greeter of version that answers
	// after delay, and fails while the test says.
	serveFlaky func(t *testing.T, m *mesh.Mesh, version string, delay time.Duration) *flakyInstance
	// caller returns m's way to call greeter.
	caller func(t *testing.T, m *mesh.Mesh) func(context.Context, op) outcome
}

// flakyInstance is an instance of either transport that the test makes
// fail: while failing is set, every call fails with 503, or UNAVAILABLE
// over gRPC, and is counted in failed.
type flakyInstance struct {
	addr    string
	failing *atomic.Bool
	failed  *atomic.Int64
	stop    func() // gracefully
}

// grpcTransport calls over gRPC from a mesh made with clientOpts.
func grpcTransport(name string, clientOpts ...mesh.Option) transport {
	return transport{
		name:       name,
		clientOpts: clientOpts,
		serve: func(t *testing.T, m *mesh.Mesh, version string, failures int) {
			serveGreeter(t, m, version, &grpcGreeter{failures: failures})
		},
		serveFlaky: func(t *testing.T, m *mesh.Mesh, version string, delay time.Duration) *flakyInstance {
			g := &flakyGRPC{grpcGreeter: grpcGreeter{delay: delay}}
			in := serveGreeter(t, m, version, g)
			return &flakyInstance{addr: in.addr, failing: &g.failing, failed: &g.failed, stop: in.server.GracefulStop}
		},
		caller: func(t *testing.T, m *mesh.Mesh) func(context.Context, op) outcome {
			c := dialGreeter(t, m)
			return func(ctx context.Context, o op) outcome {
				if o.user != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, "end-user", o.user)
				}
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				r, err := c.SayHello(ctx, steer(o.sleep, o.key))
				switch status.Code(err) {
				case codes.OK:
					return outcome{r.GetVersion(), r.GetInstance(), "ok"}
				case codes.DeadlineExceeded:
					return outcome{result: "timeout"}
				case codes.PermissionDenied:
					return outcome{result: "denied"}
				case codes.Unavailable:
					return outcome{result: "unavailable"}
				}
				return outcome{result: err.Error()}
			}
		},
	}
}

var (
	nativeGRPC = grpcTransport("native gRPC")
	grpcGoXDS  = grpcTransport("gRPC-Go xDS", mesh.WithGRPCGoXDS())
	httpPath   = transport{
		name: "HTTP",
		serve: func(t *testing.T, m *mesh.Mesh, version string, failures int) {
			serveHTTPGreeter(t, m, version, &httpGreeter{failures: failures})
		},
		serveFlaky: func(t *testing.T, m *mesh.Mesh, version string, delay time.Duration) *flakyInstance {
			g := &flakyHTTP{httpGreeter: httpGreeter{delay: delay}}
			in := serveHTTPGreeter(t, m, version, g)
			return &flakyInstance{addr: in.addr, failing: &g.failing, failed: &g.failed, stop: func() {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				in.server.Shutdown(ctx)
			}}
		},
		caller: func(t *testing.T, m *mesh.Mesh) func(context.Context, op) outcome {
			c := httpClientFor(t, m)
			return func(ctx context.Context, o op) outcome {
				path := fmt.Sprintf("%s?sleep=%s&key=%s", sayHelloPath, o.sleep, o.key)
				r, err := httpCall(ctx, c, path, o.user)
				switch {
				case err == nil:
					return outcome{r.version, r.instance, "ok"}
				case r.status == http.StatusGatewayTimeout:
					return outcome{result: "timeout"}
				case r.status == http.StatusForbidden:
					return outcome{result: "denied"}
				case r.status == http.StatusServiceUnavailable:
					return outcome{result: "unavailable"}
				}
				return outcome{result: err.Error()}
			}
		},
	}
)

// transports are every path a call can take.
var transports = []transport{nativeGRPC, grpcGoXDS, httpPath}

// ejectingTransports are the paths that eject an endpoint after
// consecutive errors, gRPC statuses counted as the HTTP statuses Envoy
// maps them to, and balance by peak EWMA. gRPC-Go's xDS client does
// neither: its outlier detection is gRFC A50's success-rate and
// failure-percentage ejection only, and it has no peak EWMA balancer (the
// control plane gives it round robin).
var ejectingTransports = []transport{nativeGRPC, httpPath}

// A parity scenario: the same YAML, the same servers and calls, over each
// transport; check judges the outcomes of the calls.
type scenario struct {
	name     string
	files    map[string]string
	failures int // of each server
	calls    []op
	check    func(t *testing.T, got []outcome)
}

func repeatOp(n int, o op) []op {
	out := make([]op, n)
	for i := range out {
		out[i] = o
	}
	return out
}

func versionShare(got []outcome, version string) float64 {
	n := 0
	for _, o := range got {
		if o.version == version {
			n++
		}
	}
	return 100 * float64(n) / float64(len(got))
}

func allResults(t *testing.T, got []outcome, want string) {
	t.Helper()
	for i, o := range got {
		if o.result != want {
			t.Errorf("call %d: %s, want %s", i, o.result, want)
			return
		}
	}
}

func TestParity(t *testing.T) {
	scenarios := []scenario{
		{
			name:  "weighted split",
			files: map[string]string{"rules.yaml": greeterRules, "route.yaml": splitRoute(80, 20)},
			calls: repeatOp(2000, op{}),
			check: func(t *testing.T, got []outcome) {
				allResults(t, got, "ok")
				if v1 := versionShare(got, "v1"); math.Abs(v1-80) > 4 {
					t.Errorf("v1 got %.1f%%, want 80 ±4", v1)
				}
			},
		},
		{
			name:  "header match",
			files: map[string]string{"rules.yaml": greeterRules, "route.yaml": splitRoute(100, 0)},
			calls: repeatOp(100, op{user: "jason"}),
			check: func(t *testing.T, got []outcome) {
				allResults(t, got, "ok")
				if v2 := versionShare(got, "v2"); v2 != 100 {
					t.Errorf("jason reached v2 in %.0f%% of calls, want 100", v2)
				}
			},
		},
		{
			name:  "path match",
			files: map[string]string{"rules.yaml": greeterRules, "route.yaml": matchRoute("    - uri:\n        prefix: /meshlet.example.greeter.v1.Greeter/")},
			calls: repeatOp(100, op{}),
			check: func(t *testing.T, got []outcome) {
				allResults(t, got, "ok")
				if v2 := versionShare(got, "v2"); v2 != 100 {
					t.Errorf("the Greeter path reached v2 in %.0f%% of calls, want 100", v2)
				}
			},
		},
		{
			name:  "subset",
			files: map[string]string{"rules.yaml": greeterRules, "route.yaml": greeterRoute(toGreeter("v1", ""))},
			calls: repeatOp(100, op{}),
			check: func(t *testing.T, got []outcome) {
				allResults(t, got, "ok")
				if v1 := versionShare(got, "v1"); v1 != 100 {
					t.Errorf("subset v1 got %.0f%% of calls, want 100", v1)
				}
			},
		},
		{
			name:  "retries outlast failures",
			files: map[string]string{"route.yaml": greeterRoute(toGreeter("", "    retries:\n      attempts: 3\n      retryOn: unavailable,503\n"))},
			// Each of the two servers fails each key once: three tries.
			failures: 1,
			calls:    []op{{key: "a"}, {key: "b"}, {key: "c"}},
			check:    func(t *testing.T, got []outcome) { allResults(t, got, "ok") },
		},
		{
			name:  "retries run out",
			files: map[string]string{"route.yaml": greeterRoute(toGreeter("", "    retries:\n      attempts: 1\n      retryOn: unavailable,503\n"))},
			// Each of the two servers fails each key twice: two tries fail.
			failures: 2,
			calls:    []op{{key: "a"}, {key: "b"}},
			check:    func(t *testing.T, got []outcome) { allResults(t, got, "unavailable") },
		},
		{
			name:  "timeout",
			files: map[string]string{"route.yaml": greeterRoute(toGreeter("", "    timeout: 200ms\n"))},
			calls: []op{{sleep: 2 * time.Second}},
			check: func(t *testing.T, got []outcome) { allResults(t, got, "timeout") },
		},
		{
			name:  "authorization deny",
			files: map[string]string{"deny.yaml": authzPolicy("deny-client", "DENY", "client")},
			calls: repeatOp(3, op{}),
			check: func(t *testing.T, got []outcome) { allResults(t, got, "denied") },
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, tr := range transports {
				t.Run(tr.name, func(t *testing.T) {
					cp, _ := startControlPlane(t, sc.files)
					tr.serve(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}), "v1", sc.failures)
					tr.serve(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v2"}), "v2", sc.failures)
					waitRegistered(t, cp, 2)
					call := tr.caller(t, startMesh(t, cp.XDSAddr(), "client", nil, tr.clientOpts...))
					// The first call waits for the client's config; its
					// outcome is not judged.
					call(t.Context(), op{user: "warm-up"})
					got := make([]outcome, 0, len(sc.calls))
					for _, o := range sc.calls {
						got = append(got, call(t.Context(), o))
					}
					sc.check(t, got)
				})
			}
		})
	}
}

// callerOn makes call a callerFunc: one plain call, which says which
// version and instance answered.
func callerOn(ctx context.Context, call func(context.Context, op) outcome) callerFunc {
	return func() (string, string, error) {
		o := call(ctx, op{})
		if o.result != "ok" {
			return "", "", errors.New(o.result)
		}
		return o.version, o.instance, nil
	}
}

// v1Labels are the labels of an instance of greeter v1.
// waitServingInstances waits until calls have answered from n instances.
func waitServingInstances(t testing.TB, call callerFunc, n int) {
	t.Helper()
	seen := map[string]bool{}
	meshtest.WaitUntil(t, 15*time.Second, fmt.Sprintf("calls to reach %d instances", n), func() bool {
		if _, inst, err := call(); err == nil {
			seen[inst] = true
		}
		return len(seen) == n
	})
}

var v1Labels = map[string]string{"version": "v1"}

// An instance that fails with 503, or UNAVAILABLE (503 as Envoy maps gRPC
// statuses), three times in a row is ejected, and the calls go to the
// other one; until then, Istio's default retries take its failures to
// the other one too.
func TestParityOutlierEjection(t *testing.T) {
	rule := greeterRule(trafficPolicy(`    outlierDetection:
      consecutiveGatewayErrors: 3
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
`))
	for _, tr := range ejectingTransports {
		t.Run(tr.name, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"rules.yaml": rule})
			bad := tr.serveFlaky(t, startMesh(t, cp.XDSAddr(), "greeter", v1Labels), "v1", 0)
			good := tr.serveFlaky(t, startMesh(t, cp.XDSAddr(), "greeter", v1Labels), "v1", 0)
			waitRegistered(t, cp, 2)
			call := tr.caller(t, startMesh(t, cp.XDSAddr(), "client", nil, tr.clientOpts...))
			waitServingInstances(t, callerOn(t.Context(), call), 2)

			bad.failing.Store(true)
			calls := 0
			meshtest.WaitUntil(t, 10*time.Second, "three calls to fail on the bad instance", func() bool {
				call(t.Context(), op{})
				calls++
				return bad.failed.Load() >= 3
			})
			before := bad.failed.Load()
			got := make([]outcome, 0, 200)
			for range 200 {
				got = append(got, call(t.Context(), op{}))
			}
			after := bad.failed.Load() - before
			t.Logf("ejected after %d calls; then it got %d of 200", calls, after)
			allResults(t, got, "ok")
			if after > 0 {
				t.Errorf("the failing instance got %d of 200 calls after three failures in a row, want 0 (ejected for 30s)", after)
			}
			for i, o := range got {
				if o.instance != good.addr {
					t.Errorf("call %d answered by %q, want the good instance %s", i, o.instance, good.addr)
					break
				}
			}
		})
	}
}

// One of three instances answers in 50ms, the others at once. Under
// concurrent calls, peak EWMA sends it far less than a third; round
// robin, the control, about a third.
func TestParityPeakEWMA(t *testing.T) {
	peakEWMA := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
  annotations:
    meshlet.io/load-balancer: PEAK_EWMA
spec:
  host: greeter
`
	for _, tr := range ejectingTransports {
		for _, tc := range []struct {
			name, rule string
			min, max   float64 // the slow instance's share, percent
		}{
			{"peak EWMA", peakEWMA, 0, 20},
			{"round robin (control)", lbRule("      simple: ROUND_ROBIN"), 28, 40},
		} {
			t.Run(tr.name+"/"+tc.name, func(t *testing.T) {
				cp, _ := startControlPlane(t, map[string]string{"rules.yaml": tc.rule})
				slow := tr.serveFlaky(t, startMesh(t, cp.XDSAddr(), "greeter", v1Labels), "v1", 50*time.Millisecond)
				tr.serveFlaky(t, startMesh(t, cp.XDSAddr(), "greeter", v1Labels), "v1", 0)
				tr.serveFlaky(t, startMesh(t, cp.XDSAddr(), "greeter", v1Labels), "v1", 0)
				waitRegistered(t, cp, 3)
				call := callerOn(t.Context(), tr.caller(t, startMesh(t, cp.XDSAddr(), "client", nil, tr.clientOpts...)))
				waitServingInstances(t, call, 3)
				var slowN, total atomic.Int64
				traffic := startLoad(t, callerFunc(func() (string, string, error) {
					v, inst, err := call()
					if err == nil {
						total.Add(1)
						if inst == slow.addr {
							slowN.Add(1)
						}
					}
					return v, inst, err
				}), 8)
				meshtest.WaitUntil(t, 30*time.Second, "1,000 calls", func() bool { return total.Load() >= 1000 })
				traffic.end()
				share := 100 * float64(slowN.Load()) / float64(total.Load())
				t.Logf("the slow instance got %.1f%% of %d calls (even share 33%%)", share, total.Load())
				if share < tc.min || share > tc.max {
					t.Errorf("the slow instance got %.1f%%, want %.0f%% to %.0f%%", share, tc.min, tc.max)
				}
			})
		}
	}
}

// With outlier detection (which Istio requires for locality failover),
// calls stay in the caller's zone while its instance is up, go to the
// other zone once it fails and is ejected, come back when it recovers,
// and go to the other zone, failing none, when it stops. gRPC-Go's xDS
// client would not eject the failing instance (see ejectingTransports).
func TestParityLocalityFailover(t *testing.T) {
	z1 := mesh.WithLocality(mesh.Locality{Region: "r1", Zone: "z1"})
	z2 := mesh.WithLocality(mesh.Locality{Region: "r1", Zone: "z2"})
	for _, tr := range ejectingTransports {
		t.Run(tr.name, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"rules.yaml": outlierRule})
			near := tr.serveFlaky(t, startMesh(t, cp.XDSAddr(), "greeter", v1Labels, z1), "v1", 0)
			far := tr.serveFlaky(t, startMesh(t, cp.XDSAddr(), "greeter", v1Labels, z2), "v1", 0)
			waitRegistered(t, cp, 2)
			call := tr.caller(t, startMesh(t, cp.XDSAddr(), "client", nil, append(tr.clientOpts, z1)...))
			waitServingInstances(t, callerOn(t.Context(), call), 1)

			// share makes n calls and counts where they went.
			share := func(n int) (nearN, farN, failed int) {
				for range n {
					o := call(t.Context(), op{})
					switch {
					case o.result != "ok":
						failed++
					case o.instance == near.addr:
						nearN++
					case o.instance == far.addr:
						farN++
					}
				}
				return
			}
			if n, f, x := share(100); n != 100 {
				t.Fatalf("healthy: %d near, %d far, %d failed; want all 100 in the caller's zone", n, f, x)
			}

			near.failing.Store(true)
			// Until three failures in a row eject it, the near instance is
			// still picked first, and its calls are retried in the far zone.
			meshtest.WaitUntil(t, 10*time.Second, "three calls to fail in the near zone", func() bool {
				share(1)
				return near.failed.Load() >= 3
			})
			before := near.failed.Load()
			n, f, x := share(100)
			// It is ejected for 2s; on a slow machine it may come back
			// within the 100 calls, and take three more to be ejected again.
			if tried := near.failed.Load() - before; f != 100 || tried > 3 {
				t.Errorf("near zone failing: %d near, %d far, %d failed, and %d calls tried the near instance; want all 100 in the far zone, at most 3 trying the near one", n, f, x, tried)
			}

			near.failing.Store(false)
			meshtest.WaitUntil(t, 10*time.Second, "calls to come back to the caller's zone", func() bool {
				n, _, _ := share(20)
				return n == 20
			})

			near.stop()
			if n, f, x := share(100); f != 100 {
				t.Errorf("near instance stopped: %d near, %d far, %d failed; want all 100 in the far zone", n, f, x)
			}
		})
	}
}
