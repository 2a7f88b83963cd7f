package interop_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
)

// What a client outside meshlet's library gets from meshctl: its SVID
// files from `meshctl agent` and its GRPC_XDS_BOOTSTRAP from `meshctl
// bootstrap`, run as the real program.

// binDir holds the programs built for this test binary; TestMain removes
// it.
var binDir string

var (
	meshctlOnce sync.Once
	meshctlPath string
	meshctlErr  error
)

// meshctl returns the path of cmd/meshctl, built once per test binary.
func meshctl(t testing.TB) string {
	t.Helper()
	meshctlOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		meshctlPath = filepath.Join(binDir, "meshctl")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", meshctlPath, "github.com/meshlet/meshlet/cmd/meshctl").CombinedOutput()
		if err != nil {
			meshctlErr = err
			meshctlPath = string(out)
		}
	})
	if meshctlErr != nil {
		t.Fatalf("interop: go build cmd/meshctl: %v\n%s", meshctlErr, meshctlPath)
	}
	return meshctlPath
}

// rootsFile writes cp's roots, which the agent verifies the control plane
// with, held out of band.
func rootsFile(t testing.TB, cp *controlplane.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(path, cp.Roots(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// agentSVID runs `meshctl agent --once` for ns/default/sa/<serviceAccount>
// and returns the directory of its cert.pem, key.pem and bundle.pem.
func agentSVID(t testing.TB, cp *controlplane.Server, serviceAccount string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "svid")
	p := start(t, "meshctl agent --once", nil, meshctl(t), "agent", "--control-plane", cp.XDSAddr(),
		"--service-account", serviceAccount, "--roots", rootsFile(t, cp), "--out", dir, "--once", "--wait", "30s")
	p.finish(t)
	return dir
}

// startAgent runs `meshctl agent` for ns/default/sa/<serviceAccount` until
// the test ends, and returns its directory, once the first files are
// there, and the agent's process (whose log says when it rotates).
func startAgent(t testing.TB, cp *controlplane.Server, serviceAccount string) (string, *process) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "svid")
	p := start(t, "meshctl agent", nil, meshctl(t), "agent", "--control-plane", cp.XDSAddr(),
		"--service-account", serviceAccount, "--roots", rootsFile(t, cp), "--out", dir)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "cert.pem")); err == nil {
			return dir, p
		}
		select {
		case <-p.done:
			t.Fatalf("interop: meshctl agent ended (%v) before writing %s", p.err, dir)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("interop: meshctl agent wrote no SVID into %s in 30s", dir)
		}
	}
}

// rotations is how many times the agent has logged a rotation.
func rotations(agent *process) int { return strings.Count(agent.log.String(), "wrote rotated SVID") }

// writeBootstrap runs `meshctl bootstrap` for a client of service whose
// SVID files are in certDir, refreshed every refresh (0: meshctl's
// default), and returns the file and the node ID in it. The clients here
// cannot do TLS to the control plane (python3-grpcio 1.51 and grpc-js-xds
// 1.14 know only "insecure" and "google_default" channel credentials), so
// they use its read-only plaintext port; their calls still use mTLS where
// xDS says so, with the "meshlet" certificate provider over the files.
func writeBootstrap(t testing.TB, cp *controlplane.Server, service, certDir string, refresh time.Duration) (path, nodeID string) {
	t.Helper()
	return writeBootstrapFor(t, pythonLang, cp, service, certDir, refresh)
}

// writeBootstrapFor is writeBootstrap for lang's client: one that has
// gRPC's tls channel credentials reaches the main port with its SVID.
func writeBootstrapFor(t testing.TB, lang language, cp *controlplane.Server, service, certDir string, refresh time.Duration) (path, nodeID string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "bootstrap.json")
	args := []string{"bootstrap", "--control-plane", cp.PlaintextXDSAddr(), "--channel-creds", "insecure",
		"--service", service, "--cert-dir", certDir, "-o", path}
	if lang.tlsControlPlane {
		args = []string{"bootstrap", "--control-plane", cp.XDSAddr(), "--channel-creds", "tls",
			"--service", service, "--cert-dir", certDir, "-o", path}
	}
	if refresh > 0 {
		args = append(args, "--refresh", refresh.String())
	}
	start(t, "meshctl bootstrap", nil, append([]string{meshctl(t)}, args...)...).finish(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Node struct{ ID string } }
	if err := json.Unmarshal(b, &file); err != nil || file.Node.ID == "" {
		t.Fatalf("interop: meshctl bootstrap wrote %s without a node ID (%v):\n%s", path, err, b)
	}
	return path, file.Node.ID
}
