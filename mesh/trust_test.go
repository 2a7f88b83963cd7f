package mesh_test

import (
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// TestRegistrationHijackRefused is the hijack of the trusted-control-plane
// issue through the public API: a workload with a valid identity for
// sa/attacker serves "greeter" with a heavy weight. It is refused at
// registration, and every call reaches the legitimate instance.
func TestRegistrationHijackRefused(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(100, 0)})
	addr := cp.XDSAddr()
	legit := startGreeter(t, addr, "v1")
	waitRegistered(t, cp, 1)

	refusals := &logRecorder{}
	attacker := startMesh(t, addr, "greeter", map[string]string{"version": "v1"}, mesh.WithServiceAccount("attacker"), mesh.WithLogger(slog.New(refusals)))
	evil := serveGreeter(t, attacker, "v1", &greeter.Server{Version: "v1", Instance: "attacker"}, mesh.WithWeight(1000))

	client := dialGreeter(t, startMesh(t, addr, "productpage", nil))
	waitServing(t, client, "v1")
	// Give the attacker's registration every chance: it retries with
	// backoff, and is refused each time.
	meshtest.WaitUntil(t, 10*time.Second, "the attacker's registration to be refused three times", func() bool {
		return refusals.count("DEBUG", "sa/attacker may not serve greeter") >= 3
	})
	for i := range 40 {
		r, err := call(t.Context(), client, "")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if r.GetInstance() != legit.addr {
			t.Fatalf("call %d reached %q, want the legitimate instance %s", i, r.GetInstance(), legit.addr)
		}
	}
	if n := registered(t, cp); n != 1 {
		t.Errorf("%d instances serve greeter, want 1", n)
	}
	// It has no Listener either, and so no policy: it serves nothing.
	err := direct(t, evil.addr, insecure.NewCredentials())
	t.Logf("a direct call to the attacker's server: %v", err)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("a direct call to the refused server: %v, want Unavailable", err)
	}
}

// TestManInTheMiddleRefused: a workload holds the control plane's roots
// out of band; a server in between with a certificate of another CA is
// refused, with the reason.
func TestManInTheMiddleRefused(t *testing.T) {
	real, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules})
	// Another control plane with a CA of its own, reached through a TCP
	// forwarder so that no in-process trust applies to its address.
	other := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, nil), controlplane.WithStateDir(t.TempDir()))
	mitm := forward(t, other.XDSAddr())
	rootsFile := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(rootsFile, real.Roots(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err := mesh.New(ctx, mesh.WithService("victim"), mesh.WithControlPlane(mitm), mesh.WithControlPlaneRootsFile(rootsFile), mesh.WithLogger(meshtest.Logger()))
	if err == nil || !strings.Contains(err.Error(), "x509svid: could not verify leaf certificate") {
		t.Fatalf("mesh.New through a man in the middle: %v, want a verification error", err)
	}
	// The same forwarder in front of the real control plane works: the
	// refusal was the certificate, not the forwarder.
	good := forward(t, real.XDSAddr())
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	m, err := mesh.New(ctx2, mesh.WithService("victim"), mesh.WithControlPlane(good), mesh.WithControlPlaneRootsFile(rootsFile), mesh.WithLogger(meshtest.Logger()))
	if err != nil {
		t.Fatalf("mesh.New through a plain forwarder to the real control plane: %v", err)
	}
	m.Close()
}

// forward relays TCP connections from a new loopback port to addr, until
// the test ends.
func forward(t *testing.T, addr string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}

// TestRestartKeepsTrust: with default flags the CA's root is on disk, so
// after a control-plane restart a workload started before it and one
// started after it trust each other: zero failed calls between them.
func TestRestartKeepsTrust(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(100, 0)})
	cp1 := meshtest.StartControlPlane(t, dir, controlplane.WithWarmup(time.Second))
	addr := cp1.XDSAddr()
	before := startGreeter(t, addr, "v1")
	waitRegistered(t, cp1, 1)
	cp1.Close()

	cp2 := meshtest.StartControlPlane(t, dir, controlplane.WithXDSAddress(addr), controlplane.WithWarmup(time.Second))
	waitRegistered(t, cp2, 1)
	after := dialGreeter(t, startMesh(t, addr, "productpage", nil))
	waitServing(t, after, "v1")
	for i := range 200 {
		r, err := call(t.Context(), after, "")
		if err != nil {
			t.Fatalf("call %d from a workload started after the restart: %v", i, err)
		}
		if r.GetInstance() != before.addr {
			t.Fatalf("call %d reached %s", i, r.GetInstance())
		}
	}
}

// TestInMemoryRootWarns: choosing an in-memory root says what breaks.
func TestInMemoryRootWarns(t *testing.T) {
	log, logs := meshtest.CaptureLog()
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, nil), controlplane.WithCAInMemory(true), controlplane.WithLogger(log))
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "no longer trust") {
		t.Errorf("log %q, want a WARN that says trust is lost at restart", logs.String())
	}
	if b, _ := pem.Decode(cp.Roots()); b == nil {
		t.Error("no roots")
	}
}

// TestInsecurePlaintextDevelopmentMode: with the explicit development flag
// on both sides, the control channel is plaintext on loopback and the mesh
// still works (claims are believed; the control plane says so loudly).
func TestInsecurePlaintextDevelopmentMode(t *testing.T) {
	log, logs := meshtest.CaptureLog()
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(100, 0)}),
		controlplane.WithInsecurePlaintext(true), controlplane.WithLogger(log))
	if !strings.Contains(logs.String(), "INSECURE") {
		t.Errorf("no loud warning in %q", logs.String())
	}
	srv := startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}, mesh.WithInsecureControlPlane())
	in := serveGreeter(t, srv, "v1", nil)
	client := dialGreeter(t, startMesh(t, cp.XDSAddr(), "productpage", nil, mesh.WithInsecureControlPlane()))
	waitServing(t, client, "v1")
	if r, err := call(t.Context(), client, ""); err != nil || r.GetInstance() != in.addr {
		t.Fatalf("call: %v %v", r, err)
	}
	// A workload that expects TLS does not fall back to plaintext.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := mesh.New(ctx, mesh.WithService("strict"), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithLogger(meshtest.Logger())); err == nil {
		t.Fatal("a TLS workload joined a plaintext control plane")
	}
}
