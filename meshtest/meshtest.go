package meshtest

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
)

// StartControlPlane starts a control plane serving configDir, with its xDS
// and admin ports on free loopback ports, and stops it when the test ends.
// Later options override the defaults: no log output (set MESHLET_TEST_LOG=1
// to see it), a 1s registration grace period, a 1s drain timeout, and a CA
// that signs any identity without a token (the control plane is on
// loopback and lives as long as the test).
func StartControlPlane(t testing.TB, configDir string, opts ...controlplane.Option) *controlplane.Server {
	t.Helper()
	all := []controlplane.Option{
		controlplane.WithConfigDir(configDir),
		controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress("127.0.0.1:0"),
		controlplane.WithLogger(Logger()),
		controlplane.WithRegistrationGrace(time.Second),
		controlplane.WithDrainTimeout(time.Second),
		controlplane.WithCAInsecureDev(true),
	}
	cp, err := controlplane.Start(t.Context(), append(all, opts...)...)
	if err != nil {
		t.Fatalf("meshtest: start control plane: %v", err)
	}
	t.Cleanup(func() { cp.Close() })
	return cp
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
