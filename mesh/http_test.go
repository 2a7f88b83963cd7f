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
	seen := map[string]bool{}
	waitUntil(t, 15*time.Second, "both versions to answer over HTTP", func() bool {
		r, err := httpCall(t.Context(), c, "/", "")
		if err == nil {
			seen[r.version] = true
		}
		return seen["v1"] && seen["v2"]
	})
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
	waitUntil(t, 15*time.Second, "v1 to answer", func() bool {
		r, err := httpCall(t.Context(), c, "/", "")
		return err == nil && r.version == "v1"
	})
	traffic := startLoad(t, callerFunc(func() (string, string, error) {
		r, err := httpCall(t.Context(), c, "/", "")
		return r.version, r.instance, err
	}), 4)
	parent := t

	t.Run("live edit", func(t *testing.T) {
		edited := time.Now()
		meshtest.WriteFile(t, dir, "greeter-route.yaml", splitRoute(0, 100))
		var took time.Duration
		waitUntil(t, 5*time.Second, "the edit to take effect", func() bool {
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
		waitUntil(t, 5*time.Second, "v1 again", func() bool {
			r, err := httpCall(t.Context(), c, "/", "")
			return err == nil && r.version == "v1"
		})
	})

	t.Run("new instance gets traffic within 2s", func(t *testing.T) {
		started := time.Now()
		b := startHTTPGreeter(parent, cp.XDSAddr(), "v1", nil)
		var took time.Duration
		waitUntil(t, 5*time.Second, "the new instance to get traffic", func() bool {
			for _, r := range traffic.since(started) {
				if r.addr == b.addr {
					took = r.at.Sub(started)
					return true
				}
			}
			return false
		})
		t.Logf("new HTTP instance answered %v after it started", took)
		if took > 2*time.Second {
			t.Errorf("took %v, want within 2s", took)
		}
	})

	t.Run("graceful stop fails no request", func(t *testing.T) {
		began := time.Now()
		if err := a.server.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		time.Sleep(300 * time.Millisecond)
		failed, toA := 0, 0
		rs := traffic.since(began)
		for _, r := range rs {
			if r.err != nil {
				failed++
				t.Logf("failed: %v", r.err)
			}
			if r.addr == a.addr && r.at.After(stopped) {
				toA++
			}
		}
		var lastToA time.Time
		for _, r := range rs {
			if r.addr == a.addr {
				lastToA = r.at
			}
		}
		t.Logf("HTTP graceful stop took %v; %d requests during and after it, %d failed; last request to it %v after the stop began", stopped.Sub(began), len(rs), failed, lastToA.Sub(began))
		if failed > 0 || toA > 0 {
			t.Errorf("%d requests failed and %d reached the stopped instance, want none", failed, toA)
		}
	})

	t.Run("abrupt stop recovers within 2s", func(t *testing.T) {
		child, childAddr := startChild(parent, cp.XDSAddr(), "v1,http")
		waitUntil(t, 5*time.Second, "the child to get traffic", func() bool {
			for _, r := range traffic.since(time.Now().Add(-200 * time.Millisecond)) {
				if r.err == nil && r.addr == childAddr {
					return true
				}
			}
			return false
		})
		killed := time.Now()
		if err := child.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond)
		early, late, total := 0, 0, 0
		for _, r := range traffic.since(killed) {
			total++
			if r.err == nil {
				continue
			}
			if r.at.Sub(killed) < 2*time.Second {
				early++
			} else {
				late++
			}
		}
		t.Logf("HTTP abrupt stop: %d requests in 2.5s after the kill, %d failed in the first 2s, %d after", total, early, late)
		if early > 5 || late > 0 {
			t.Errorf("%d failures in the first 2s (want at most 5) and %d after (want 0)", early, late)
		}
	})
}
