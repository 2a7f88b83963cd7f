package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// strictGreeter is mesh-wide STRICT mTLS, and a greeter that lets only
// the caller's identity in: a call that succeeds was made over mTLS with
// the caller's certificate.
const strictGreeter = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: greeter
spec:
  selector:
    matchLabels:
      app: greeter
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/caller
`

const greeterPort = 50051

// TestGRPCGoClient is the "grpc-go" column of the interop suite: plain
// gRPC-Go, outside meshlet's library, configured only by meshctl
// bootstrap's file and meshctl agent's certificate files, calls a meshlet
// server under STRICT mTLS, and keeps calling without a failure while the
// agent rotates its 4s certificate, opening new connections that use the
// rotated one. The control plane sees it connected, with its certificate's
// identity and no NACK.
func TestGRPCGoClient(t *testing.T) {
	cp, roots, tokens := agentControlPlane(t, meshtest.WriteConfig(t, map[string]string{"security.yaml": strictGreeter}), 4*time.Second,
		controlplane.WithPlaintextXDSAddress("127.0.0.1:0"))
	bin := buildProgram(t, "./internal/grpcxdsclient")

	// The meshlet greeter.
	m, err := mesh.New(t.Context(), mesh.WithService("greeter"), mesh.WithControlPlane(cp.XDSAddr()),
		mesh.WithCAToken("greeter-token"), mesh.WithLogger(meshtest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	srv, err := m.NewGRPCServer(mesh.WithServicePort(greeterPort))
	if err != nil {
		t.Fatal(err)
	}
	greeterpb.RegisterGreeterServer(srv, &greeter.Server{Version: "v1"})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.GracefulStop)

	// The caller's files and bootstrap.
	svid := filepath.Join(t.TempDir(), "svid")
	agentLog, _ := startAgent(t, "--control-plane", cp.XDSAddr(), "--service-account", "caller",
		"--token-file", tokens["caller"], "--roots", roots, "--out", svid)
	waitFor(t, 15*time.Second, "the agent's first SVID", func() error { _, _, err := readSVID(svid); return err })
	bootstrap := filepath.Join(t.TempDir(), "bootstrap.json")
	const node = "grpcgo~caller"
	if code, _, stderr := meshctl(t, "bootstrap", "--control-plane", cp.XDSAddr(), "--service", "caller",
		"--node-id", node, "--cert-dir", svid, "--refresh", "1s", "-o", bootstrap); code != exitOK {
		t.Fatalf("meshctl bootstrap: exit %d:\n%s", code, stderr)
	}

	// 8s of calls: two SVID lifetimes, so the certificate the client
	// started with has expired well before the last handshakes.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-target", fmt.Sprintf("xds:///greeter.default.svc.cluster.local:%d", greeterPort),
		"-duration", "8s", "-interval", "20ms", "-reconnect", "10")
	cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP="+bootstrap)
	var stderr meshtest.LogBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	rotationsBefore := strings.Count(agentLog.String(), "wrote rotated SVID")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 10)
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(stdout); sc.Scan(); {
			lines <- sc.Text()
		}
	}()
	select {
	case l := <-lines:
		if l != "first call ok, server spiffe://cluster.local/ns/default/sa/greeter" {
			t.Errorf("first line %q, want the greeter's SPIFFE ID", l)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no first call in 60s:\n%s", &stderr)
	}

	// While it calls: the control plane has the client, with the identity
	// its certificate proves, every type ACKed and none NACKed.
	var client controlplane.Client
	waitFor(t, 10*time.Second, "the gRPC-Go client on the control plane", func() error {
		for _, c := range cp.Clients() {
			if c.NodeID == node {
				client = c
				for _, typ := range []string{"Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"} {
					if ct := c.Types[typ]; ct == nil || ct.Acked == "" {
						return fmt.Errorf("%s not ACKed: %+v", typ, c.Types)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("node %s not among the clients", node)
	})
	if client.Identity != "spiffe://cluster.local/ns/default/sa/caller" {
		t.Errorf("the control plane sees the client as %q, want its certificate's identity", client.Identity)
	}
	for typ, ct := range client.Types {
		if ct.NackCount > 0 {
			t.Errorf("the gRPC-Go client NACKed %s: %s", typ, ct.NackDetail)
		}
	}

	var last string
	for l := range lines {
		last = l
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("grpcxdsclient: %v (%s):\n%s", err, last, &stderr)
	}
	var calls, failures int
	if _, err := fmt.Sscanf(last, "calls %d failures %d", &calls, &failures); err != nil || failures != 0 || calls < 100 {
		t.Errorf("grpcxdsclient: %q, want 100 or more calls and no failure:\n%s", last, &stderr)
	}
	rotations := strings.Count(agentLog.String(), "wrote rotated SVID") - rotationsBefore
	if rotations < 2 {
		t.Errorf("the agent rotated %d times while the client called, want 2 or more:\n%s", rotations, agentLog)
	}
	t.Logf("%s; %d rotations meanwhile", last, rotations)

	// --channel-creds insecure, to the read-only plaintext port: the same
	// calls, still mTLS to the greeter.
	plain := filepath.Join(t.TempDir(), "bootstrap-insecure.json")
	if code, _, stderr := meshctl(t, "bootstrap", "--control-plane", cp.PlaintextXDSAddr(), "--channel-creds", "insecure",
		"--service", "caller", "--cert-dir", svid, "--refresh", "1s", "-o", plain); code != exitOK {
		t.Fatalf("meshctl bootstrap --channel-creds insecure: exit %d:\n%s", code, stderr)
	}
	cmd = exec.CommandContext(ctx, bin, "-target", fmt.Sprintf("xds:///greeter.default.svc.cluster.local:%d", greeterPort), "-duration", "1s")
	cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP="+plain)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "first call ok, server spiffe://cluster.local/ns/default/sa/greeter") ||
		!strings.Contains(string(out), "failures 0") {
		t.Errorf("grpcxdsclient over the plaintext xDS port: %v:\n%s", err, out)
	}
}

// buildProgram builds the main package at dir into a temporary directory
// and returns the binary's path.
func buildProgram(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(dir))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, out)
	}
	return bin
}
