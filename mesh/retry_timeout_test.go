package mesh_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/examples/greeterpb"
)

// The tests of issue 10's timeout and retry items: what the callee sees
// of the caller's deadline, a route timeout's bound, retries against a
// backend that fails at random, and the replay of HTTP bodies.

// timedGRPC is the greeter over gRPC that notes how long the caller said
// it would wait (its deadline, as grpc-timeout carried it), answers after
// delay, and fails a share failPerMille/1000 of the calls at random with
// UNAVAILABLE.
type timedGRPC struct {
	grpcGreeter
	delay        time.Duration
	failPerMille int
	served       atomic.Int64
	remaining    atomic.Int64 // of the last call, in ns; -1 without a deadline
}

func (g *timedGRPC) SayHello(ctx context.Context, req *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	g.served.Add(1)
	g.remaining.Store(-1)
	if d, ok := ctx.Deadline(); ok {
		g.remaining.Store(int64(time.Until(d)))
	}
	if !pause(ctx, g.delay) {
		return nil, ctx.Err()
	}
	if rand.IntN(1000) < g.failPerMille {
		return nil, status.Error(codes.Unavailable, "failing on purpose")
	}
	return g.reply(ctx, ""), nil
}

// timedHTTP is timedGRPC over HTTP: it notes the
// x-envoy-expected-rq-timeout-ms header, fails with 503, and keeps the
// bodies it was sent. A request with ?key=k fails the first time that k
// is seen.
type timedHTTP struct {
	httpGreeter
	delay        time.Duration
	failPerMille int
	served       atomic.Int64
	expected     atomic.Value // string: the header of the last call

	mu     sync.Mutex
	bodies []string
	keys   map[string]bool
}

func (g *timedHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.served.Add(1)
	g.expected.Store(r.Header.Get("x-envoy-expected-rq-timeout-ms"))
	body, _ := io.ReadAll(r.Body)
	key := r.URL.Query().Get("key")
	g.mu.Lock()
	g.bodies = append(g.bodies, string(body))
	first := key != "" && !g.keys[key]
	if g.keys == nil {
		g.keys = map[string]bool{}
	}
	g.keys[key] = true
	g.mu.Unlock()
	if !pause(r.Context(), g.delay) {
		// nginx's "client closed request": if a caller ever reads this,
		// the answer came from a handler its own cancel ended (seen
		// once as a 200 after 101ms, when this wrote nothing).
		w.WriteHeader(499)
		return
	}
	if first || rand.IntN(1000) < g.failPerMille {
		http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
		return
	}
	g.httpGreeter.ServeHTTP(w, r)
}

func (g *timedHTTP) sent() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.bodies...)
}

// timedPath starts, for one of faultPaths, a greeter of impl (a
// *timedGRPC or *timedHTTP as the path needs) and returns a call that
// ends within ctx, saying how: "ok", "grpc <code>", "http <status>" or
// "deadline".
func timedPath(t *testing.T, p faultPath, files map[string]string, g named) func(context.Context) string {
	t.Helper()
	cp, _ := startControlPlane(t, files)
	if p.http {
		startHTTPGreeter(t, cp.XDSAddr(), "v1", g.(*timedHTTP))
	} else {
		startGreeterWith(t, cp.XDSAddr(), "v1", g.(*timedGRPC))
	}
	waitRegistered(t, cp, 1)
	m := startMesh(t, cp.XDSAddr(), "client", nil, p.clientOpts...)
	if p.http {
		c := httpClientFor(t, m)
		return func(ctx context.Context) string {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://greeter:%d%s", greeterPort, sayHelloPath), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				if ctx.Err() != nil {
					return "deadline"
				}
				return err.Error()
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "ok"
			}
			return fmt.Sprintf("http %d", resp.StatusCode)
		}
	}
	c := dialGreeter(t, m)
	return func(ctx context.Context) string {
		_, err := c.SayHello(ctx, &greeterpb.HelloRequest{Name: "test"})
		if err == nil {
			return "ok"
		}
		return "grpc " + status.Code(err).String()
	}
}

// A 100ms route timeout against a backend that answers in 500ms ends the
// call with DEADLINE_EXCEEDED, or 504, after 100ms (under 400ms, on a
// noisy machine). Retries are off, so that only the timeout acts.
func TestRouteTimeoutBound(t *testing.T) {
	files := map[string]string{"route.yaml": greeterRoute(toGreeter("", "    timeout: 100ms\n    retries:\n      attempts: 0\n"))}
	for _, p := range faultPaths {
		t.Run(p.name, func(t *testing.T) {
			var g named = &timedGRPC{delay: 500 * time.Millisecond}
			want := "grpc DeadlineExceeded"
			if p.http {
				g, want = &timedHTTP{delay: 500 * time.Millisecond}, "http 504"
			}
			call := timedPath(t, p, files, g)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			call(ctx) // waits for the config
			cancel()
			for i := range 5 {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				start := time.Now()
				got := call(ctx)
				took := time.Since(start)
				cancel()
				if got != want || took < 100*time.Millisecond || took >= 400*time.Millisecond {
					t.Errorf("call %d: %s after %v, want %s after 100ms (100 to 400ms)", i, got, took, want)
				}
			}
		})
	}
}

// The callee sees how long the caller waits: over gRPC as the call's
// deadline (grpc-timeout), which is the route's timeout unless the
// caller's own deadline is shorter; over HTTP as Envoy's
// x-envoy-expected-rq-timeout-ms header, set on each attempt from what
// remains, and never on the caller's request.
func TestCalleeSeesRemainingTime(t *testing.T) {
	files := map[string]string{"route.yaml": greeterRoute(toGreeter("", "    timeout: 2s\n"))}
	check := func(t *testing.T, what string, got, lo, hi time.Duration) {
		t.Helper()
		if got <= lo || got > hi {
			t.Errorf("%s: the callee saw %v left, want more than %v and at most %v", what, got, lo, hi)
		}
	}
	t.Run("gRPC", func(t *testing.T) {
		g := &timedGRPC{}
		call := timedPath(t, faultPaths[0], files, g)
		if got := call(t.Context()); got != "ok" {
			t.Fatal(got)
		}
		check(t, "route timeout 2s", time.Duration(g.remaining.Load()), time.Second, 2*time.Second)
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		if got := call(ctx); got != "ok" {
			t.Fatal(got)
		}
		check(t, "caller's deadline 500ms", time.Duration(g.remaining.Load()), 0, 500*time.Millisecond)
	})
	t.Run("HTTP", func(t *testing.T) {
		g := &timedHTTP{}
		cp, _ := startControlPlane(t, files)
		startHTTPGreeter(t, cp.XDSAddr(), "v1", g)
		waitRegistered(t, cp, 1)
		c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
		get := func(ctx context.Context) time.Duration {
			t.Helper()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://greeter:%d/", greeterPort), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Envoy-Expected-Rq-Timeout-Ms", "99999") // replaced, as Envoy does
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := req.Header.Get("X-Envoy-Expected-Rq-Timeout-Ms"); got != "99999" || len(req.Header) != 1 {
				t.Errorf("the caller's headers changed: %v", req.Header)
			}
			ms, err := strconv.Atoi(g.expected.Load().(string))
			if err != nil {
				t.Fatalf("x-envoy-expected-rq-timeout-ms: %v", err)
			}
			return time.Duration(ms) * time.Millisecond
		}
		check(t, "route timeout 2s", get(t.Context()), time.Second, 2*time.Second)
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		check(t, "caller's deadline 500ms", get(ctx), 0, 500*time.Millisecond)
	})
}

// A backend that fails 30% of calls at random, behind a route with
// attempts: 3, answers nearly every call: each fails only if 4 attempts
// in a row fail, 0.3^4 = 0.81% of calls. Over 1,000 calls that is 8 on
// average (sd 2.8); more than 20 fails the test, and so would a client
// that retried less (attempts: 2 gives 27 on average).
func TestRetriesAgainstFlakyBackend(t *testing.T) {
	files := map[string]string{"route.yaml": greeterRoute(toGreeter("", "    retries:\n      attempts: 3\n      retryOn: 5xx,unavailable\n      backoff: 2ms\n"))}
	for _, p := range faultPaths {
		t.Run(p.name, func(t *testing.T) {
			var g named = &timedGRPC{failPerMille: 300}
			if p.http {
				g = &timedHTTP{failPerMille: 300}
			}
			call := timedPath(t, p, files, g)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			call(ctx)
			const n = 1000
			results := map[string]int{}
			for range n {
				results[call(ctx)]++
			}
			t.Logf("%v", results)
			if failed := n - results["ok"]; failed > 20 {
				t.Errorf("%d of %d calls failed (%.1f%% succeeded), want at most 20 (0.3^4 = 0.81%% expected)", failed, n, 100*float64(results["ok"])/n)
			}
		})
	}
}

// onlyReader hides everything but Read, so that http.NewRequest sets no
// GetBody and the body is sent as a stream of unknown length.
type onlyReader struct{ io.Reader }

// An HTTP POST whose body has no GetBody is retried with the same body
// when the body is small enough to keep (64 KiB); a larger one is sent
// once, and its failure comes back.
func TestHTTPRetryReplaysBody(t *testing.T) {
	files := map[string]string{"route.yaml": greeterRoute(toGreeter("", "    retries:\n      attempts: 2\n      retryOn: 5xx\n      backoff: 2ms\n"))}
	g := &timedHTTP{}
	cp, _ := startControlPlane(t, files)
	startHTTPGreeter(t, cp.XDSAddr(), "v1", g)
	waitRegistered(t, cp, 1)
	c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
	post := func(key, body string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, fmt.Sprintf("http://greeter:%d/?key=%s", greeterPort, key), onlyReader{strings.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		if req.GetBody != nil {
			t.Fatal("the request has GetBody")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	small := "a body of no known length"
	if got := post("small", small); got != http.StatusOK {
		t.Errorf("small body: status %d, want 200 after a retry", got)
	}
	if sent := g.sent(); len(sent) != 2 || sent[0] != small || sent[1] != small {
		t.Errorf("the server got %d bodies, want the same body twice", len(sent))
	}
	large := strings.Repeat("x", 64<<10+1)
	if got := post("large", large); got != http.StatusServiceUnavailable {
		t.Errorf("large body: status %d, want the first attempt's 503, not retried", got)
	}
	if sent := g.sent(); len(sent) != 3 || sent[2] != large {
		t.Errorf("the server got %d bodies in all, want 3: a large body is sent once, whole", len(sent))
	}
}
