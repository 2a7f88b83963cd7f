package mesh_test

import (
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

func TestControlPlaneRestart(t *testing.T) {
	const warmup = 3 * time.Second
	dir := meshtest.WriteConfig(t, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(100, 0),
	})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithWarmup(warmup))
	addr := cp.XDSAddr()
	startGreeter(t, addr, "v1")
	startGreeter(t, addr, "v2")
	client := dialGreeter(t, startMesh(t, addr, "client", nil))
	waitServing(t, client, "v1")
	traffic := startLoad(t, grpcCaller(t, client), 2)

	began := time.Now()
	cp.Close()
	traffic.runPast(t, began, 1500*time.Millisecond, "1.5s of RPCs while the control plane is down")
	down := traffic.since(began)
	if len(down) == 0 {
		t.Fatal("no RPCs ran while the control plane was down")
	}

	restarted := time.Now()
	cp2 := meshtest.StartControlPlane(t, dir, controlplane.WithXDSAddress(addr), controlplane.WithWarmup(warmup))
	waitRegistered(t, cp2, 2)
	t.Logf("servers registered again %v after the restart", time.Since(restarted))

	// The clients follow the new control plane: a route change reaches them.
	meshtest.WriteFile(t, dir, "greeter-route.yaml", splitRoute(0, 100))
	meshtest.WaitUntil(t, 20*time.Second, "clients to follow the restarted control plane", func() bool {
		r := countVersions(t, client, 20, "")
		return r.byKey["v2"] == 20
	})
	t.Logf("clients resynced %v after the restart", time.Since(restarted))
	traffic.end()

	failed := 0
	all := traffic.since(began)
	for _, r := range all {
		if r.err != nil {
			failed++
			t.Logf("failed at +%v: %v", r.at.Sub(began), r.err)
		}
	}
	t.Logf("%d RPCs while down (1.5s), %d in all through the restart, %d failed", len(down), len(all), failed)
	if failed > 0 {
		t.Errorf("%d RPCs failed through a control-plane restart, want 0", failed)
	}
}
