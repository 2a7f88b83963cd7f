package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/mesh"
)

// faultPath is one way to call the greeter for the fault tests: the
// server counts the calls that reach it, and each call says how it ended
// in the same words on every path: "ok", "grpc <code>" or "http <status>".
type faultPath struct {
	name       string
	clientOpts []mesh.Option
	http       bool
}

// faultPaths are the paths that inject faults: meshlet's gRPC and HTTP
// clients, and gRPC-Go's xDS client, which implements Envoy's fault
// filter (gRFC A33).
var faultPaths = []faultPath{
	{name: "native gRPC"},
	{name: "gRPC-Go xDS", clientOpts: []mesh.Option{mesh.WithGRPCGoXDS()}},
	{name: "HTTP", http: true},
}

// start serves one greeter under files' config and returns the client's
// call and the count of calls that reached the server.
func (p faultPath) start(t *testing.T, files map[string]string) (call func(context.Context) string, served func() int) {
	t.Helper()
	cp, _ := startControlPlane(t, files)
	if p.http {
		g := &httpGreeter{}
		startHTTPGreeter(t, cp.XDSAddr(), "v1", g)
		served = func() int { return g.calls.total() }
	} else {
		g := &grpcGreeter{}
		startGreeterWith(t, cp.XDSAddr(), "v1", g)
		served = func() int { return g.calls.total() }
	}
	waitRegistered(t, cp, 1)
	m := startMesh(t, cp.XDSAddr(), "client", nil, p.clientOpts...)
	if p.http {
		c := httpClientFor(t, m)
		call = func(ctx context.Context) string {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://greeter:%d%s?key=f", greeterPort, sayHelloPath), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if errors.Is(err, context.DeadlineExceeded) {
				return "deadline"
			}
			if err != nil {
				return err.Error()
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "ok"
			}
			return fmt.Sprintf("http %d", resp.StatusCode)
		}
	} else {
		c := dialGreeter(t, m)
		call = func(ctx context.Context) string {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := c.SayHello(ctx, steer(0, "f"))
			if err == nil {
				return "ok"
			}
			if s := status.Convert(err); s.Code() != codes.Unknown || strings.Contains(s.Message(), "fault injection") {
				return "grpc " + s.Code().String()
			}
			return err.Error()
		}
	}
	return call, served
}

// faultRoute routes every call to the greeter with fault, its lines
// indented 6 spaces.
func faultRoute(fault string, extra ...string) map[string]string {
	return map[string]string{"route.yaml": greeterRoute(toGreeter("", "    fault:\n"+fault+strings.Join(extra, "")))}
}

// A 20% abort aborts 20 ±4% of 2,000 calls (4.5 sigma), with the configured status
// (555, which gRPC sees as UNKNOWN), and the server sees only the others.
func TestFaultAbortShare(t *testing.T) {
	files := faultRoute("      abort:\n        httpStatus: 555\n        percentage:\n          value: 20\n")
	for _, p := range faultPaths {
		t.Run(p.name, func(t *testing.T) {
			call, served := p.start(t, files)
			want := "grpc Unknown"
			if p.http {
				want = "http 555"
			}
			call(t.Context()) // waits for the config
			before := served()
			const n = 2000
			results := map[string]int{}
			for range n {
				results[call(t.Context())]++
			}
			aborted := 100 * float64(results[want]) / n
			t.Logf("%v", results)
			if math.Abs(aborted-20) > 4 {
				t.Errorf("%s: %.1f%% of calls, want 20 ±4", want, aborted)
			}
			if results["ok"]+results[want] != n {
				t.Errorf("calls ended otherwise than ok or %s: %v", want, results)
			}
			if got := served() - before; got != results["ok"] {
				t.Errorf("the server served %d calls, want %d (only those not aborted)", got, results["ok"])
			}
		})
	}
}

// A 100% abort with grpcStatus UNAVAILABLE fails every call, as
// UNAVAILABLE or 503, and none reaches the server (nor is retried,
// though Istio's default retries retry UNAVAILABLE and 503).
func TestFaultAbortAllGRPCStatus(t *testing.T) {
	files := faultRoute("      abort:\n        grpcStatus: UNAVAILABLE\n        percentage:\n          value: 100\n")
	for _, p := range faultPaths {
		t.Run(p.name, func(t *testing.T) {
			call, served := p.start(t, files)
			want := "grpc Unavailable"
			if p.http {
				want = "http 503"
			}
			for i := range 50 {
				if got := call(t.Context()); got != want {
					t.Fatalf("call %d: %s, want %s", i, got, want)
				}
			}
			if got := served(); got != 0 {
				t.Errorf("the server served %d calls, want 0", got)
			}
		})
	}
}

// A 10% delay of 1s delays about 10% of the calls by at least 1s; the
// others are not delayed. The calls run 10 at a time, so that the test
// takes a few seconds.
func TestFaultDelayShare(t *testing.T) {
	files := faultRoute("      delay:\n        fixedDelay: 1s\n        percentage:\n          value: 10\n")
	for _, p := range faultPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			call, served := p.start(t, files)
			call(t.Context())
			before := served()
			const n, workers = 200, 10
			var (
				mu              sync.Mutex
				delayed, failed int
				slowest         time.Duration // of the calls not delayed
			)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for range n / workers {
						start := time.Now()
						res := call(t.Context())
						took := time.Since(start)
						mu.Lock()
						switch {
						case res != "ok":
							failed++
						case took >= time.Second:
							delayed++
						default:
							slowest = max(slowest, took)
						}
						mu.Unlock()
					}
					_ = w
				})
			}
			wg.Wait()
			t.Logf("%d of %d calls delayed; the slowest other took %v", delayed, n, slowest)
			if failed > 0 {
				t.Errorf("%d calls failed", failed)
			}
			// Binomial(200, 0.1): mean 20, sd 4.2; 5..40 is > 3.5 sd.
			if delayed < 5 || delayed > 40 {
				t.Errorf("%d of %d calls delayed by 1s, want about 20 (5 to 40)", delayed, n)
			}
			if slowest >= 900*time.Millisecond {
				t.Errorf("a call that was not delayed took %v", slowest)
			}
			if got := served() - before; got != n {
				t.Errorf("the server served %d calls, want %d: a delay delays, it does not drop", got, n)
			}
		})
	}
}

// A delay is not part of the route's timeout, as in Envoy, where the
// router starts the timeout after the fault filter, and in gRPC-Go: a
// 500ms delay under a 200ms timeout delays a call that then succeeds. The
// caller's own deadline does bound it: a call whose deadline ends during
// the delay fails, and never reaches the server.
func TestFaultDelayAndDeadlines(t *testing.T) {
	files := faultRoute("      delay:\n        fixedDelay: 500ms\n        percentage:\n          value: 100\n", "    timeout: 200ms\n")
	for _, p := range faultPaths {
		t.Run(p.name, func(t *testing.T) {
			call, served := p.start(t, files)
			call(t.Context())
			for i := range 3 {
				start := time.Now()
				got := call(t.Context())
				if took := time.Since(start); got != "ok" || took < 500*time.Millisecond {
					t.Errorf("call %d: %s after %v, want ok after at least 500ms", i, got, took)
				}
			}
			before := served()
			want := "grpc DeadlineExceeded"
			if p.http {
				want = "deadline"
			}
			for i := range 3 {
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				got := call(ctx)
				cancel()
				if got != want {
					t.Errorf("call %d within 200ms: %s, want %s", i, got, want)
				}
			}
			time.Sleep(600 * time.Millisecond) // a call let through would have arrived by now
			if got := served() - before; got != 0 {
				t.Errorf("the server served %d calls whose deadline ended during the delay, want 0", got)
			}
		})
	}
}
