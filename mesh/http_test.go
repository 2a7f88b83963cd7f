package mesh_test

import (
	"math"
	"testing"
	"time"

	"github.com/meshlet/meshlet/meshtest"
)

func TestHTTPWeightedSplitAndHeaderMatch(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(80, 20),
	})
	startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
	startHTTPGreeter(t, cp.XDSAddr(), "v2", nil)
	c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
	waitServingHTTP(t, c, "v1", "v2")
	const n = 2000
	var got tally
	for range n {
		r, err := httpCall(t.Context(), c, "/", "")
		got.add(r.version, err)
	}
	if got.failures > 0 {
		t.Fatalf("%d of %d requests failed, last: %v", got.failures, n, got.lastErr)
	}
	if v1 := share(&got, "v1"); math.Abs(v1-80) > 4 {
		t.Errorf("v1 got %.1f%% of %d requests, want 80 ±4 (counts %v)", v1, n, got.byKey)
	} else {
		t.Logf("80/20 split over %d HTTP requests: v1 %.1f%%, v2 %.1f%%", n, v1, share(&got, "v2"))
	}
	var jason tally
	for range 200 {
		r, err := httpCall(t.Context(), c, "/", "jason")
		jason.add(r.version, err)
	}
	if jason.failures > 0 || jason.byKey["v2"] != 200 {
		t.Errorf("end-user: jason went to %v (%d failed), want all 200 to v2", jason.byKey, jason.failures)
	}
}

func TestHTTPLiveEditAndChurn(t *testing.T) {
	cp, dir := startControlPlane(t, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(100, 0),
	})
	a := startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
	startHTTPGreeter(t, cp.XDSAddr(), "v2", nil)
	c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
	waitServingHTTP(t, c, "v1")
	traffic := startLoad(t, httpCaller(t, c), 4)
	parent := t

	t.Run("live edit", func(t *testing.T) {
		edited := time.Now()
		meshtest.WriteFile(t, dir, "greeter-route.yaml", splitRoute(0, 100))
		var took time.Duration
		meshtest.WaitUntil(t, 5*time.Second, "the edit to take effect", func() bool {
			for range 20 {
				r, err := httpCall(t.Context(), c, "/", "")
				if err != nil || r.version != "v2" {
					return false
				}
			}
			took = time.Since(edited)
			return true
		})
		failed := 0
		for _, r := range traffic.since(edited) {
			if r.err != nil {
				failed++
			}
		}
		t.Logf("edit in force over HTTP after %v; %d failed", took, failed)
		if took > 2*time.Second || failed > 0 {
			t.Errorf("edit took %v with %d failures, want within 2s and none", took, failed)
		}
		meshtest.WriteFile(t, dir, "greeter-route.yaml", splitRoute(100, 0))
		meshtest.WaitUntil(t, 5*time.Second, "v1 again", func() bool {
			r, err := httpCall(t.Context(), c, "/", "")
			return err == nil && r.version == "v1"
		})
	})

	t.Run("new instance gets traffic within 2s", func(t *testing.T) {
		checkNewInstance(t, traffic, func() string { return startHTTPGreeter(parent, cp.XDSAddr(), "v1", nil).addr })
	})
	t.Run("graceful stop fails no request", func(t *testing.T) {
		checkGracefulStop(t, traffic, a.addr, func() {
			if err := a.server.Shutdown(t.Context()); err != nil {
				t.Error(err)
			}
		})
	})
	t.Run("abrupt stop recovers within 2s", func(t *testing.T) {
		child, childAddr := startChild(parent, cp.XDSAddr(), "http", "v1")
		checkAbruptStop(t, traffic, child, childAddr)
	})
}
