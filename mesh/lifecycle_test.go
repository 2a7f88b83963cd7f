package mesh_test

import (
	"context"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// TestShutdownIsBoundedByItsContext: a server that callers keep busy never
// sees the quiet period its drain waits for; Shutdown still returns when
// its ctx ends, not after the (long) drain timeout.
func TestShutdownIsBoundedByItsContext(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(100, 0)})
	srv := startHTTPGreeter(t, cp.XDSAddr(), "v1", nil, mesh.WithDrainTimeout(time.Minute))
	client := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
	meshtest.WaitUntil(t, 10*time.Second, "the greeter to answer", func() bool {
		_, err := httpCall(t.Context(), client, "/", "")
		return err == nil
	})
	// Keep it busy: calls straight to its address (plaintext, which
	// PERMISSIVE takes), which the drain cannot move off.
	direct := &http.Client{Timeout: 5 * time.Second}
	stop := make(chan struct{})
	var calls atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if resp, err := direct.Get("http://" + srv.addr + "/"); err == nil {
				resp.Body.Close()
				calls.Add(1)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	meshtest.WaitUntil(t, 10*time.Second, "calls to flow", func() bool { return calls.Load() > 10 })

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	began := time.Now()
	srv.server.Shutdown(ctx)
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("Shutdown took %v with a 500ms context (drain timeout 1m)", took)
	}
}

// TestDrainQuietPeriodRunsOnTheClock: after the control plane says callers
// moved off, a draining server waits until no request has started for the
// quiet period (200ms), on the mesh's clock.
func TestDrainQuietPeriodRunsOnTheClock(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(100, 0)})
	clock := meshtest.NewClock(time.Now())
	srv := startHTTPGreeter(t, cp.XDSAddr(), "v1", nil, mesh.WithClock(clock))
	client := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
	meshtest.WaitUntil(t, 10*time.Second, "the greeter to answer", func() bool {
		_, err := httpCall(t.Context(), client, "/", "")
		return err == nil
	})

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		srv.server.Shutdown(t.Context())
	}()
	meshtest.WaitUntil(t, 10*time.Second, "the drain to wait for the quiet period", func() bool {
		return slices.Contains(clock.Pending(), 200*time.Millisecond)
	})
	clock.Advance(199 * time.Millisecond)
	select {
	case <-stopped:
		t.Fatal("Shutdown returned before the quiet period passed")
	default:
	}
	clock.Advance(time.Millisecond)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the quiet period passed")
	}
}

// TestClosedTransportsLeaveTheMesh: a transport closed by its user is not
// held until the mesh closes (a program that makes one per request would
// grow without bound).
func TestClosedTransportsLeaveTheMesh(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules})
	m := startMesh(t, cp.XDSAddr(), "client", nil)
	for range 50 {
		tr, err := m.HTTPTransport(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tr.Close()
	}
	kept, err := m.HTTPTransport(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n := mesh.OpenTransports(m); n != 1 {
		t.Fatalf("the mesh holds %d transports, want 1 (the one still open)", n)
	}
	m.Close()
	if n := mesh.OpenTransports(m); n != 0 {
		t.Errorf("after Close the mesh holds %d transports", n)
	}
	_ = kept
}
