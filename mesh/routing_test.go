package mesh_test

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlet/meshlet/meshtest"
)

// share returns the percentage of n that version got.
func share(t *tally, version string) float64 {
	total := 0
	for _, n := range t.byKey {
		total += n
	}
	if total == 0 {
		return 0
	}
	return 100 * float64(t.byKey[version]) / float64(total)
}

func TestWeightedSplitAndHeaderMatch(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(80, 20),
	})
	startGreeter(t, cp.XDSAddr(), "v1")
	startGreeter(t, cp.XDSAddr(), "v2")
	client := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
	waitServing(t, client, "v1", "v2")

	const n = 2000
	got := countVersions(t, client, n, "")
	if got.failures > 0 {
		t.Fatalf("%d of %d RPCs failed, last: %v", got.failures, n, got.lastErr)
	}
	if v1 := share(got, "v1"); math.Abs(v1-80) > 4 {
		t.Errorf("v1 got %.1f%% of %d RPCs, want 80 ±4 (counts %v)", v1, n, got.byKey)
	} else {
		t.Logf("80/20 split over %d RPCs: v1 %.1f%%, v2 %.1f%%", n, v1, share(got, "v2"))
	}

	jason := countVersions(t, client, 200, "jason")
	if jason.failures > 0 || jason.byKey["v2"] != 200 {
		t.Errorf("end-user: jason went to %v (%d failed), want all 200 to v2", jason.byKey, jason.failures)
	}
	other := countVersions(t, client, 500, "alice")
	if v1 := share(other, "v1"); math.Abs(v1-80) > 8 {
		t.Errorf("end-user: alice got v1 %.1f%%, want the 80/20 weights (counts %v)", v1, other.byKey)
	}
}

func TestLiveEditChangesSplitWithoutFailures(t *testing.T) {
	cp, dir := startControlPlane(t, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(100, 0),
	})
	startGreeter(t, cp.XDSAddr(), "v1")
	startGreeter(t, cp.XDSAddr(), "v2")
	client := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
	waitServing(t, client, "v1")

	// Steady traffic from four callers through the whole change.
	var traffic tally
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000 && !stop.Load(); i++ {
				r, err := call(t.Context(), client, "")
				traffic.add(r.GetVersion(), err)
			}
		}()
	}

	edited := time.Now()
	meshtest.WriteFile(t, dir, "greeter-route.yaml", splitRoute(0, 100))
	// The change is in force once v2 answers every call of a run of 50.
	var took time.Duration
	meshtest.WaitUntil(t, 5*time.Second, "the edit to take effect", func() bool {
		r := countVersions(t, client, 50, "")
		if r.byKey["v2"] == 50 {
			took = time.Since(edited)
			return true
		}
		return false
	})
	stop.Store(true)
	wg.Wait()
	t.Logf("edit in force after %v; %d RPCs during the change, %d failed", took, traffic.byKey["v1"]+traffic.byKey["v2"], traffic.failures)
	if took > 2*time.Second {
		t.Errorf("the edit took %v to take effect, want within 2s", took)
	}
	if traffic.failures > 0 {
		t.Errorf("%d RPCs failed during the change, want 0; last: %v", traffic.failures, traffic.lastErr)
	}
}

// A ServiceEntry with a WorkloadEntry routes to a static endpoint that is
// not a meshlet server.
func TestServiceEntryWithWorkloadEntry(t *testing.T) {
	addr := startPlainGreeter(t, "static")
	host, port := splitHostPort(t, addr)
	cp, _ := startControlPlane(t, map[string]string{
		"legacy.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: legacy
spec:
  hosts:
  - legacy
  ports:
  - number: 7070
    name: grpc
    protocol: GRPC
    targetPort: %d
  resolution: STATIC
  workloadSelector:
    labels:
      app: legacy
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: legacy-1
spec:
  address: %s
  labels:
    app: legacy
`, port, host),
	})
	m := startMesh(t, cp.XDSAddr(), "client", nil)
	r := waitCall(t, dial(t, m, "legacy:7070"), "a call to legacy:7070")
	if r.GetVersion() != "static" {
		t.Errorf("answered by %q, want the static endpoint", r.GetVersion())
	}
}

// Path and method matches route the greeter's only method to v2, or not.
func TestMatchOnPathAndMethod(t *testing.T) {
	cases := []struct {
		name, match string
		want        string
	}{
		{"uri exact", "    - uri:\n        exact: " + sayHelloPath, "v2"},
		{"uri prefix", "    - uri:\n        prefix: /meshlet.example.greeter.v1.Greeter/", "v2"},
		{"uri regex", "    - uri:\n        regex: '/meshlet\\.example\\..*/Say.*'", "v2"},
		{"uri prefix of another service", "    - uri:\n        prefix: /other.Service/", "v1"},
		{"method POST", "    - method:\n        exact: POST", "v2"},
		{"method GET", "    - method:\n        exact: GET", "v1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": matchRoute(tc.match)})
			startGreeter(t, cp.XDSAddr(), "v1")
			startGreeter(t, cp.XDSAddr(), "v2")
			client := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
			// Both instances must be up before the count means anything.
			waitRegistered(t, cp, 2)
			meshtest.WaitUntil(t, 15*time.Second, "a first answer", func() bool {
				_, err := call(t.Context(), client, "")
				return err == nil
			})
			got := countVersions(t, client, 50, "")
			if got.failures > 0 || got.byKey[tc.want] != 50 {
				t.Errorf("calls went to %v (%d failed), want all 50 to %s", got.byKey, got.failures, tc.want)
			}
		})
	}
}
