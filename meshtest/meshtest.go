package meshtest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/security"
)

// StartControlPlane starts a control plane serving configDir, with its xDS
// and admin ports on free loopback ports, and stops it when the test ends.
// Later options override the defaults: no log output (set MESHLET_TEST_LOG=1
// to see it), a 1s registration grace period, a 1s drain-ACK timeout, a CA
// that signs any identity without a token (the control plane is on
// loopback and lives as long as the test), and a state directory of the
// test's own, which a control plane started again in the same test
// reuses, as a restart with default flags would. Workloads in the test's
// process trust it without any setup; see ControlPlaneCredentials for
// clients of your own.
func StartControlPlane(t testing.TB, configDir string, opts ...controlplane.Option) *controlplane.Server {
	t.Helper()
	all := []controlplane.Option{
		controlplane.WithConfigDir(configDir),
		controlplane.WithStateDir(stateDir(t)),
		controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress("127.0.0.1:0"),
		controlplane.WithLogger(Logger()),
		controlplane.WithRegistrationGrace(time.Second),
		controlplane.WithDrainAckTimeout(time.Second),
		controlplane.WithCAInsecureDev(true),
	}
	cp, err := controlplane.Start(t.Context(), append(all, opts...)...)
	if err != nil {
		t.Fatalf("meshtest: start control plane: %v", err)
	}
	t.Cleanup(func() { cp.Close() })
	return cp
}

var stateDirs sync.Map // testing.TB -> string

// stateDir is the test's control-plane state directory.
func stateDir(t testing.TB) string {
	if d, ok := stateDirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	stateDirs.Store(t, d)
	t.Cleanup(func() { stateDirs.Delete(t) })
	return d
}

// ControlPlaneCredentials returns mTLS credentials for a client of cp of
// your own (a raw xDS or registration client) with the identity
// spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>, issued by
// cp's CA, which must sign without a token (StartControlPlane's default).
// They verify cp's own identity against its roots.
func ControlPlaneCredentials(t testing.TB, cp *controlplane.Server, namespace, serviceAccount string) credentials.TransportCredentials {
	t.Helper()
	src, bundle, cpID := svidFrom(t, cp, namespace, serviceAccount)
	return credentials.NewTLS(tlsconfig.MTLSClientConfig(src, bundle, tlsconfig.AuthorizeID(cpID)))
}

// SVIDFiles writes an SVID from cp's CA for
// spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount> into a new
// directory, as PEM files, for clients that read files: the certificate
// chain, its key, and the trust bundle (cp's roots, which also verify cp
// itself). cp's CA must sign without a token.
func SVIDFiles(t testing.TB, cp *controlplane.Server, namespace, serviceAccount string) (certFile, keyFile, bundleFile string) {
	t.Helper()
	src, _, _ := svidFrom(t, cp, namespace, serviceAccount)
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, bundleFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "bundle.pem")
	for name, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, bundleFile: cp.Roots()} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, bundleFile
}

// svidFrom gets an SVID from cp's CA over TLS that verifies cp.
func svidFrom(t testing.TB, cp *controlplane.Server, namespace, serviceAccount string) (*security.CASource, *x509bundle.Bundle, spiffeid.ID) {
	t.Helper()
	roots, err := certfile.Parse(cp.Roots())
	if err != nil {
		t.Fatalf("meshtest: control plane roots: %v", err)
	}
	trustDomain, err := spiffeid.TrustDomainFromString(cp.TrustDomain())
	if err != nil {
		t.Fatalf("meshtest: trust domain: %v", err)
	}
	bundle := x509bundle.FromX509Authorities(trustDomain, roots)
	cpID := spiffeid.RequireFromSegments(trustDomain, "ns", wire.DefaultRootNamespace, "sa", wire.ControlPlaneServiceAccount)
	boot, err := grpc.NewClient(cp.XDSAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(cpID)))))
	if err != nil {
		t.Fatal(err)
	}
	defer boot.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	src, err := security.NewCASource(ctx, security.CAConfig{
		Conn:  boot,
		ID:    spiffeid.RequireFromSegments(trustDomain, "ns", namespace, "sa", serviceAccount),
		Roots: bundle,
		Log:   Logger(),
	})
	if err != nil {
		t.Fatalf("meshtest: SVID for ns/%s/sa/%s: %v", namespace, serviceAccount, err)
	}
	t.Cleanup(func() { src.Close() })
	return src, bundle, cpID
}

// Logger returns a logger for tests: silent unless MESHLET_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("MESHLET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// WriteConfig writes files (name -> YAML) into a new temporary directory
// and returns it.
func WriteConfig(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		WriteFile(t, dir, name, content)
	}
	return dir
}

// WriteFile writes one config file atomically (write, then rename), as a
// config management tool would, so that the control plane never reads a
// half-written file.
func WriteFile(t testing.TB, dir, name, content string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}
