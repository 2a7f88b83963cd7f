package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// A request for a host outside the mesh goes to the base transport
// unchanged, or is refused, as the caller chooses.
func TestHTTPUnknownHosts(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules})
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "outside "+r.Host)
	}))
	defer outside.Close()
	m := startMesh(t, cp.XDSAddr(), "client", nil)

	pass := httpClientFor(t, m, mesh.WithUnknownHosts(mesh.PassThrough))
	resp, err := pass.Get(outside.URL + "/x")
	if err != nil {
		t.Fatalf("pass-through: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "outside " + strings.TrimPrefix(outside.URL, "http://"); string(body) != want {
		t.Errorf("pass-through answered %q, want %q", body, want)
	}

	refuse := httpClientFor(t, m, mesh.WithUnknownHosts(mesh.Refuse))
	_, err = refuse.Get(outside.URL + "/x")
	if !errors.Is(err, mesh.ErrUnknownHost) {
		t.Errorf("refuse: got %v, want ErrUnknownHost", err)
	}
}

// closeCounter counts Close calls on a request body.
type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

// The RoundTripper does not change the caller's request and closes its
// body on every path: served, refused (no route), and failed.
func TestHTTPTransportContract(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": greeterRoute(`  - match:
    - uri:
        prefix: /served
    route:
    - destination:
        host: greeter
        subset: v1
`),
	})
	startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
	waitRegistered(t, cp, 1)
	m := startMesh(t, cp.XDSAddr(), "client", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	rt, err := m.HTTPTransport(ctx, mesh.WithUnknownHosts(mesh.Refuse))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url string
		status    int // 0: an error
	}{
		{"served", fmt.Sprintf("http://greeter:%d/served", greeterPort), http.StatusOK},
		{"no route", fmt.Sprintf("http://greeter:%d/elsewhere", greeterPort), http.StatusNotFound},
		{"unknown host", "http://nowhere.example:80/", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &closeCounter{Reader: strings.NewReader("payload")}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tc.url, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Test", "1")
			before := req.URL.String()
			resp, err := rt.RoundTrip(req)
			switch {
			case tc.status == 0 && err == nil:
				t.Errorf("got %d, want an error", resp.StatusCode)
			case tc.status != 0 && err != nil:
				t.Errorf("got %v, want status %d", err, tc.status)
			case tc.status != 0 && resp.StatusCode != tc.status:
				t.Errorf("got status %d, want %d", resp.StatusCode, tc.status)
			}
			if resp != nil {
				resp.Body.Close()
			}
			if req.URL.String() != before || req.Header.Get("X-Test") != "1" || len(req.Header) != 1 {
				t.Errorf("the caller's request was changed: %s %v", req.URL, req.Header)
			}
			meshtest.WaitUntil(t, 2*time.Second, "the body to be closed", func() bool { return body.closed.Load() > 0 })
		})
	}
}

// While the control plane is down, HTTP requests are routed on the config
// the client has; when it is back, the client follows it again.
func TestHTTPControlPlaneOutage(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(100, 0),
	})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithWarmup(3*time.Second))
	addr := cp.XDSAddr()
	startHTTPGreeter(t, addr, "v1", nil)
	startHTTPGreeter(t, addr, "v2", nil)
	c := httpClientFor(t, startMesh(t, addr, "client", nil))
	waitServingHTTP(t, c, "v1")
	traffic := startLoad(t, httpCaller(t, c), 2)
	began := time.Now()
	cp.Close()
	traffic.runPast(t, began, 1500*time.Millisecond, "1.5s of requests while the control plane is down")
	down := len(traffic.since(began))

	restarted := time.Now()
	cp2 := meshtest.StartControlPlane(t, dir, controlplane.WithXDSAddress(addr), controlplane.WithWarmup(3*time.Second))
	waitRegistered(t, cp2, 2)
	meshtest.WriteFile(t, dir, "greeter-route.yaml", splitRoute(0, 100))
	meshtest.WaitUntil(t, 20*time.Second, "the client to follow the restarted control plane", func() bool {
		for range 20 {
			r, err := httpCall(t.Context(), c, "/", "")
			if err != nil || r.version != "v2" {
				return false
			}
		}
		return true
	})
	resynced := time.Since(restarted)
	traffic.end()
	failed, all := 0, traffic.since(began)
	for _, r := range all {
		if r.err != nil {
			failed++
			t.Logf("failed at +%v: %v", r.at.Sub(began), r.err)
		}
	}
	t.Logf("HTTP: %d requests while the control plane was down (1.5s), %d through the restart, %d failed; resynced %v after the restart", down, len(all), failed, resynced)
	if down == 0 || failed > 0 {
		t.Errorf("%d requests while down, %d failed: want some, and none failed", down, failed)
	}
}

func TestHTTPLoadBalancing(t *testing.T) {
	t.Run("ring hash keeps a key on one endpoint", func(t *testing.T) {
		cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": lbRule("      consistentHash:\n        httpHeaderName: x-user")})
		for range 3 {
			startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
		}
		waitRegistered(t, cp, 3)
		c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
		home := map[string]string{}
		used := map[string]bool{}
		for i := range 300 {
			user := fmt.Sprintf("user-%d", i%50)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("http://greeter:%d/", greeterPort), nil)
			req.Header.Set("x-user", user)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			inst := resp.Header.Get("X-Instance")
			if h, ok := home[user]; ok && h != inst {
				t.Fatalf("%s went to %s, then to %s", user, h, inst)
			}
			home[user] = inst
			used[inst] = true
		}
		if len(used) < 2 {
			t.Errorf("50 keys all went to %v, want them spread", used)
		}
	})

	// One of three endpoints answers in 50ms, the others at once; under
	// concurrent load a latency-aware policy sends it far less than a
	// third. Over 1,000 requests, thresholds: least request and peak EWMA
	// below 20%; round robin, the control, 28% to 40%.
	peakEWMA := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
  annotations:
    meshlet.io/load-balancer: PEAK_EWMA
spec:
  host: greeter
`
	for _, tc := range []struct {
		name, rule string
		min, max   float64 // the slow endpoint's share, percent
	}{
		{"least request", lbRule("      simple: LEAST_REQUEST"), 0, 20},
		{"peak EWMA", peakEWMA, 0, 20},
		{"round robin (control)", lbRule("      simple: ROUND_ROBIN"), 28, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": tc.rule})
			slow := &httpGreeter{delay: 50 * time.Millisecond}
			startHTTPGreeter(t, cp.XDSAddr(), "v1", slow)
			startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
			startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
			waitRegistered(t, cp, 3)
			c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
			if _, err := httpCall(t.Context(), c, "/", ""); err != nil {
				t.Fatal(err)
			}
			var slowN, total atomic.Int64
			traffic := startLoad(t, callerFunc(func() (string, string, error) {
				r, err := httpCall(t.Context(), c, "/", "")
				if err == nil {
					total.Add(1)
					if r.instance == slow.instance {
						slowN.Add(1)
					}
				}
				return r.version, r.instance, err
			}), 8)
			meshtest.WaitUntil(t, 30*time.Second, "1,000 requests", func() bool { return total.Load() >= 1000 })
			traffic.end()
			share := 100 * float64(slowN.Load()) / float64(total.Load())
			t.Logf("%s: the slow endpoint got %.1f%% of %d requests (even share 33%%)", tc.name, share, total.Load())
			if share < tc.min || share > tc.max {
				t.Errorf("slow endpoint got %.1f%%, want %.0f%% to %.0f%%", share, tc.min, tc.max)
			}
		})
	}
}
