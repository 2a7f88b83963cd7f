package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// serveTogether starts a greeter server of each version, over proto
// ("http" or "grpc"), each in its own goroutine, and returns at once: the
// servers join the mesh while the caller does. done is closed when they
// all serve, or failed (see the returned error func).
func serveTogether(t *testing.T, cpAddr, proto string, versions ...string) (done chan struct{}, failed func() error) {
	done = make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, version := range versions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveGreeterNow(t, cpAddr, proto, version); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return done, func() error {
		mu.Lock()
		defer mu.Unlock()
		return errors.Join(errs...)
	}
}

// serveGreeterNow joins the mesh and serves a greeter, without t.Fatal:
// it runs off the test's goroutine.
func serveGreeterNow(t *testing.T, cpAddr, proto, version string) error {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := joinMesh(ctx, cpAddr, "greeter", map[string]string{"version": version})
	if err != nil {
		return err
	}
	t.Cleanup(func() { m.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s, err := newGreeterServer(m, lis, proto, version)
	if err != nil {
		lis.Close()
		return err
	}
	serveUntilCleanup(t, s, lis)
	return nil
}

// A caller started at the same moment as its servers sends its first
// request before they have registered. It waits for them instead of
// failing, or of leaving the mesh: 1,000 requests, none fails, over HTTP
// and over gRPC, with a 50/50 split so that both subsets must be there.
func TestCallerStartedWithItsServers(t *testing.T) {
	for _, proto := range []string{"http", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(50, 50)})
			began := time.Now()
			served, failed := serveTogether(t, cp.XDSAddr(), proto, "v1", "v2")
			caller := startMesh(t, cp.XDSAddr(), "client", nil)
			var send func() (string, error)
			if proto == "http" {
				c := httpClientFor(t, caller) // refuses hosts outside the mesh
				send = func() (string, error) {
					r, err := httpCall(t.Context(), c, "/", "")
					return r.version, err
				}
			} else {
				c := dialGreeter(t, caller)
				send = func() (string, error) {
					r, err := call(t.Context(), c, "")
					return r.GetVersion(), err
				}
			}
			ready := time.Since(began)

			const n = 1000
			var out tally
			var first time.Duration
			deadline := time.Now().Add(60 * time.Second)
			for i := 0; i < n && time.Now().Before(deadline); i++ {
				v, err := send()
				out.add(v, err)
				if i == 0 {
					first = time.Since(began)
				}
				if err != nil && out.failures <= 3 {
					t.Logf("request %d at +%v: %v", i, time.Since(began), err)
				}
			}
			<-served
			if err := failed(); err != nil {
				t.Fatalf("servers: %v", err)
			}
			sent := out.failures + out.byKey["v1"] + out.byKey["v2"]
			t.Logf("%s: caller ready at +%v, first reply at +%v; %d requests, %d failed, v1 %d, v2 %d",
				proto, ready, first, sent, out.failures, out.byKey["v1"], out.byKey["v2"])
			if sent != n || out.failures != 0 {
				t.Errorf("%d of %d requests sent, %d failed (last: %v); want all sent, none failed", sent, n, out.failures, out.lastErr)
			}
			if out.byKey["v1"] < 400 || out.byKey["v2"] < 400 {
				t.Errorf("split v1 %d / v2 %d, want about 500 each (±100)", out.byKey["v1"], out.byKey["v2"])
			}
		})
	}
}

// A call to a host the control plane says does not exist fails as soon as
// the control plane has answered, over gRPC and HTTP, with an error that
// names the host. A service host is waited for during the registration
// grace after the caller connects, since its servers may be about to
// register; any other host is not.
func TestUnknownHostFailsFast(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules})
	m := startMesh(t, cp.XDSAddr(), "client", nil)
	rpc := func(c greeterpb.GreeterClient) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.SayHello(ctx, &greeterpb.HelloRequest{Name: "test"})
		return time.Since(start), err
	}
	check := func(what string, took time.Duration, err error, within time.Duration, host string) {
		t.Helper()
		t.Logf("%s: failed after %v: %v", what, took, err)
		if status.Code(err) != codes.Unavailable || !errors.Is(err, mesh.ErrUnknownHost) || !strings.Contains(err.Error(), host) {
			t.Errorf("%s: got %v (code %v), want Unavailable wrapping ErrUnknownHost and naming %s", what, err, status.Code(err), host)
		}
		if took > within {
			t.Errorf("%s: failed after %v, want within %v", what, took, within)
		}
	}

	// Not a service host: no grace, at once.
	took, err := rpc(dial(t, m, "nowhere.example:80"))
	check("gRPC, nowhere.example:80", took, err, time.Second, `"nowhere.example:80"`)

	// A service host asked right after the caller connected: at the end
	// of the grace at the latest.
	took, err = rpc(dial(t, m, "nowhere:80"))
	check("gRPC, nowhere:80 within the grace", took, err, mesh.DefaultRegistrationGrace+time.Second, `"nowhere.default.svc.cluster.local:80"`)

	// After it: as soon as the control plane answers for a name it was
	// never asked.
	took, err = rpc(dial(t, m, "nowhere-else.default.svc.cluster.local:80"))
	check("gRPC, nowhere-else after the grace", took, err, time.Second, `"nowhere-else.default.svc.cluster.local:80"`)

	c := httpClientFor(t, m)
	start := time.Now()
	_, err = c.Get("http://nowhere-http:80/")
	if took := time.Since(start); !errors.Is(err, mesh.ErrUnknownHost) || took > time.Second || !strings.Contains(err.Error(), "nowhere-http.default.svc.cluster.local:80") {
		t.Errorf("HTTP after the grace: got %v after %v; want ErrUnknownHost naming the host, within 1s", err, took)
	}
}

// A call routed to a subset with no endpoints says which cluster and
// subset: in the 503's body over HTTP, in the error over gRPC.
func TestEmptySubsetIsNamed(t *testing.T) {
	cluster := fmt.Sprintf("outbound|%d|v3|greeter.default.svc.cluster.local", greeterPort)
	for _, proto := range []string{"http", "grpc"} {
		t.Run(proto, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"greeter.yaml": emptySubset})
			if proto == "http" {
				startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
			} else {
				startGreeter(t, cp.XDSAddr(), "v1")
			}
			waitRegistered(t, cp, 1)
			// No grace: the subset is not about to get a server.
			m := startMesh(t, cp.XDSAddr(), "client", nil, mesh.WithConfigWait(mesh.ConfigWait{RegistrationGrace: -1}))
			var msg string
			if proto == "http" {
				resp, err := httpClientFor(t, m).Get(fmt.Sprintf("http://greeter:%d/", greeterPort))
				if err != nil {
					t.Fatal(err)
				}
				body := make([]byte, 4096)
				n, _ := resp.Body.Read(body)
				resp.Body.Close()
				msg = string(body[:n])
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("status %d, want 503", resp.StatusCode)
				}
			} else {
				_, err := call(t.Context(), dialGreeter(t, m), "")
				if status.Code(err) != codes.Unavailable {
					t.Errorf("code %v, want Unavailable", status.Code(err))
				}
				msg = status.Convert(err).Message()
			}
			t.Logf("%s: %s", proto, msg)
			if !strings.Contains(msg, cluster) || !strings.Contains(msg, `subset "v3"`) {
				t.Errorf("%s said %q; want it to name %s and subset \"v3\"", proto, msg, cluster)
			}
		})
	}
}

// A control plane restarted without a warm-up (one that holds no client
// back) answers the caller before the servers have registered again: the
// host and its clusters are gone for a moment. The caller waits through
// the registration grace instead of failing, or leaving the mesh.
func TestHTTPCallerThroughRestartWithoutWarmup(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(50, 50)})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithWarmup(0))
	addr := cp.XDSAddr()
	startHTTPGreeter(t, addr, "v1", nil)
	startHTTPGreeter(t, addr, "v2", nil)
	c := httpClientFor(t, startMesh(t, addr, "client", nil))
	waitServingHTTP(t, c, "v1", "v2")
	traffic := startLoad(t, httpCaller(t, c), 1)

	began := time.Now()
	cp.Close()
	// Long enough for the caller and the servers to back off between
	// attempts to reconnect, so that they come back in either order.
	traffic.runPast(t, began, 1500*time.Millisecond, "1.5s of requests while the control plane is down")
	cp2 := meshtest.StartControlPlane(t, dir, controlplane.WithXDSAddress(addr), controlplane.WithWarmup(0))
	waitRegistered(t, cp2, 2)
	back := time.Now()
	// The caller's grace outlasts its reconnection by 2s.
	traffic.runPast(t, back, mesh.DefaultRegistrationGrace+500*time.Millisecond, "requests well after the servers are back")
	traffic.end()
	failed, all := 0, traffic.since(began)
	for _, r := range all {
		if r.err != nil {
			if failed < 3 {
				t.Logf("failed at +%v: %v", r.at.Sub(began), r.err)
			}
			failed++
		}
	}
	t.Logf("%d requests through the restart, %d failed", len(all), failed)
	if failed > 0 {
		t.Errorf("%d of %d requests failed through a restart without warm-up, want 0", failed, len(all))
	}
}
