package mesh_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/mesh"
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
	version string
	result  string // ok, timeout, denied, unavailable, or the error
}

// transport runs a scenario's servers and calls over gRPC or over HTTP.
type transport struct {
	name string
	// serve starts an instance of greeter of version that fails the first
	// `failures` calls of each key.
	serve func(t *testing.T, m *mesh.Mesh, version string, failures int)
	// caller returns m's way to call greeter.
	caller func(t *testing.T, m *mesh.Mesh) func(context.Context, op) outcome
}

var transports = []transport{
	{
		name: "gRPC",
		serve: func(t *testing.T, m *mesh.Mesh, version string, failures int) {
			serveGreeter(t, m, version, &grpcGreeter{failures: failures})
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
					return outcome{r.GetVersion(), "ok"}
				case codes.DeadlineExceeded:
					return outcome{"", "timeout"}
				case codes.PermissionDenied:
					return outcome{"", "denied"}
				case codes.Unavailable:
					return outcome{"", "unavailable"}
				}
				return outcome{"", err.Error()}
			}
		},
	},
	{
		name: "HTTP",
		serve: func(t *testing.T, m *mesh.Mesh, version string, failures int) {
			serveHTTPGreeter(t, m, version, &httpGreeter{failures: failures})
		},
		caller: func(t *testing.T, m *mesh.Mesh) func(context.Context, op) outcome {
			c := httpClientFor(t, m)
			return func(ctx context.Context, o op) outcome {
				path := fmt.Sprintf("%s?sleep=%s&key=%s", sayHelloPath, o.sleep, o.key)
				r, err := httpCall(ctx, c, path, o.user)
				switch {
				case err == nil:
					return outcome{r.version, "ok"}
				case r.status == http.StatusGatewayTimeout:
					return outcome{"", "timeout"}
				case r.status == http.StatusForbidden:
					return outcome{"", "denied"}
				case r.status == http.StatusServiceUnavailable:
					return outcome{"", "unavailable"}
				}
				return outcome{"", err.Error()}
			}
		},
	},
}

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

func TestParityGRPCAndHTTP(t *testing.T) {
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
					call := tr.caller(t, startMesh(t, cp.XDSAddr(), "client", nil))
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
