package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

// agentControlPlane starts a control plane whose CA signs only with a
// token (reviews-token for default/reviews, caller-token for
// default/caller, greeter-token for default/greeter), SVIDs living ttl, and returns it with its roots file
// and the token files.
func agentControlPlane(t *testing.T, configDir string, ttl time.Duration, opts ...controlplane.Option) (cp *controlplane.Server, roots string, tokens map[string]string) {
	t.Helper()
	dir := t.TempDir()
	tokensFile := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokensFile, []byte(`tokens:
- token: reviews-token
  namespace: default
  serviceAccount: reviews
- token: caller-token
  namespace: default
  serviceAccount: caller
- token: greeter-token
  namespace: default
  serviceAccount: greeter
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cp = meshtest.StartControlPlane(t, configDir, append([]controlplane.Option{controlplane.WithCAInsecureDev(false),
		controlplane.WithCATokensFile(tokensFile), controlplane.WithSVIDTTL(ttl)}, opts...)...)
	roots = filepath.Join(dir, "roots.pem")
	tokens = map[string]string{}
	for name, data := range map[string][]byte{roots: cp.Roots(), "reviews": []byte("reviews-token\n"), "caller": []byte("caller-token"), "wrong": []byte("guess")} {
		path := name
		if !filepath.IsAbs(name) {
			path = filepath.Join(dir, name+".token")
			tokens[name] = path
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cp, roots, tokens
}

// startAgent runs meshctl agent until the test ends, and returns its
// stderr and a function that stops it (as SIGTERM does) and returns its
// exit code.
func startAgent(t *testing.T, args ...string) (stderr *meshtest.LogBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &meshtest.LogBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"agent"}, args...), &meshtest.LogBuffer{}, stderr) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("the agent did not stop within 10s of its signal:\n%s", stderr)
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stderr, stop
}

// readSVID reads dir's files and checks them: cert and key are a pair,
// and the chain verifies against the bundle. It returns the leaf's ID
// and serial.
func readSVID(dir string) (spiffeid.ID, *big.Int, error) {
	cert, key, bundle := svidPaths(dir)
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("cert.pem and key.pem are not a pair: %w", err)
	}
	svid, err := x509svid.Parse(certPEM, keyPEM)
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	b, err := x509bundle.Load(svid.ID.TrustDomain(), bundle)
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	id, _, err := x509svid.Verify(svid.Certificates, b)
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("cert.pem does not verify against bundle.pem: %w", err)
	}
	return id, svid.Certificates[0].SerialNumber, nil
}

// waitFor polls cond every 50ms until it returns nil, for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The agent gets an SVID from the CA with its token, writes files that
// verify against the bundle with the right SPIFFE ID, rewrites them on
// every rotation, and stops cleanly when told to.
func TestAgentRotates(t *testing.T) {
	cp, roots, tokens := agentControlPlane(t, t.TempDir(), 3*time.Second)
	out := filepath.Join(t.TempDir(), "svid")
	stderr, stop := startAgent(t, "--control-plane", cp.XDSAddr(), "--service-account", "reviews",
		"--token-file", tokens["reviews"], "--roots", roots, "--out", out)

	want := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/reviews")
	var first *big.Int
	waitFor(t, 15*time.Second, "the first SVID", func() error {
		id, serial, err := readSVID(out)
		if err == nil && id != want {
			t.Fatalf("the agent wrote an SVID for %s, want %s", id, want)
		}
		first = serial
		return err
	})
	// bundle.pem holds the control plane's roots.
	bundle, err := os.ReadFile(filepath.Join(out, "bundle.pem"))
	if err != nil || !bytes.Contains(bundle, bytes.TrimSpace(cp.Roots())) {
		t.Errorf("bundle.pem does not hold the control plane's roots (err %v)", err)
	}
	if fi, err := os.Stat(filepath.Join(out, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v, mode %v; want 0600", err, fi.Mode())
	}

	// A 3s SVID is renewed every 1.5s: two rotations, each a new pair
	// that verifies, within 10s.
	seen := map[string]bool{first.String(): true}
	waitFor(t, 10*time.Second, "two rotations", func() error {
		id, serial, err := readSVID(out)
		if err != nil {
			return err // a reader between the two renames; the next read is whole
		}
		if id != want {
			t.Fatalf("rotated SVID for %s, want %s", id, want)
		}
		seen[serial.String()] = true
		if len(seen) < 3 {
			return fmt.Errorf("serials seen: %d", len(seen))
		}
		return nil
	})
	if code := stop(); code != exitOK {
		t.Errorf("agent exit %d after its signal, want 0:\n%s", code, stderr)
	}
	log := stderr.String()
	for _, w := range []string{"meshctl agent: wrote first SVID", "meshctl agent: wrote rotated SVID", "id=" + want.String(), "meshctl agent: stopping"} {
		if !strings.Contains(log, w) {
			t.Errorf("the agent's log does not say %q:\n%s", w, log)
		}
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(out)
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files in --out: %q, want cert.pem, key.pem and bundle.pem", names)
	}
}

func TestAgentOnceAndErrors(t *testing.T) {
	cp, roots, tokens := agentControlPlane(t, t.TempDir(), time.Hour)
	t.Setenv("MESHLET_CA_TOKEN", "")
	t.Setenv("MESHLET_CONTROL_PLANE_ROOTS", "")

	// --once: the files, then exit 0. The token may come from the
	// environment.
	out := filepath.Join(t.TempDir(), "once")
	t.Setenv("MESHLET_CA_TOKEN", "caller-token")
	code, _, stderr := meshctl(t, "agent", "--control-plane", cp.XDSAddr(), "--service-account", "caller", "--roots", roots, "--out", out, "--once")
	if code != exitOK {
		t.Fatalf("agent --once: exit %d:\n%s", code, stderr)
	}
	if id, _, err := readSVID(out); err != nil || id.String() != "spiffe://cluster.local/ns/default/sa/caller" {
		t.Errorf("agent --once wrote %v, %v", id, err)
	}
	t.Setenv("MESHLET_CA_TOKEN", "")

	// Another workload's token, and a guessed one: refused at once.
	for _, tok := range []string{tokens["caller"], tokens["wrong"]} {
		start := time.Now()
		code, _, stderr = meshctl(t, "agent", "--control-plane", cp.XDSAddr(), "--service-account", "reviews", "--token-file", tok,
			"--roots", roots, "--out", t.TempDir(), "--once")
		if code != exitError || !strings.Contains(stderr, "refused spiffe://cluster.local/ns/default/sa/reviews") ||
			!strings.Contains(stderr, "--token-file or MESHLET_CA_TOKEN") {
			t.Errorf("agent with token %s: exit %d:\n%s", filepath.Base(tok), code, stderr)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("a refused token took %s to fail; it should fail at once", time.Since(start))
		}
	}

	// No roots to verify the control plane with.
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	code, _, stderr = meshctl(t, "agent", "--control-plane", cp.XDSAddr(), "--service-account", "reviews",
		"--token-file", tokens["reviews"], "--out", t.TempDir(), "--once")
	if code != exitError || !strings.Contains(stderr, "no roots to verify the control plane") || !strings.Contains(stderr, "--roots") {
		t.Errorf("agent without roots: exit %d:\n%s", code, stderr)
	}

	// Roots that do not verify the control plane: it keeps trying until
	// --wait, then says what it trusted.
	other := filepath.Join(t.TempDir(), "other.pem")
	_, _, otherRoots := meshtest.SVIDFiles(t, meshtest.StartControlPlane(t, t.TempDir(), controlplane.WithStateDir(t.TempDir())), "default", "x")
	if data, err := os.ReadFile(otherRoots); err != nil || os.WriteFile(other, data, 0o600) != nil {
		t.Fatal(err)
	}
	code, _, stderr = meshctl(t, "agent", "--control-plane", cp.XDSAddr(), "--service-account", "reviews",
		"--token-file", tokens["reviews"], "--roots", other, "--out", t.TempDir(), "--once", "--wait", "1s")
	if code != exitError || !strings.Contains(stderr, "no SVID for spiffe://cluster.local/ns/default/sa/reviews") || !strings.Contains(stderr, other) {
		t.Errorf("agent with the wrong roots: exit %d:\n%s", code, stderr)
	}

	// Bad command lines.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--control-plane", "127.0.0.1:1", "--service-account", "r"}, "--out is required"},
		{[]string{"--out", "x", "--service-account", "r"}, "--control-plane is required"},
		{[]string{"--out", "x", "--control-plane", "127.0.0.1:1"}, "--service-account is required"},
		{[]string{"--out", "x", "--control-plane", "127.0.0.1:1", "--service-account", "r", "--namespace", "a/b"}, `--namespace "a/b" --service-account "r"`},
		{[]string{"--out", "x", "--spiffe-socket", "unix:///x", "--token-file", "t"}, "--token-file and --ttl are for the control plane's CA"},
		{[]string{"--out", "x", "--control-plane", "127.0.0.1:1", "--service-account", "r", "--wait", "0s"}, "--wait 0s: want a positive duration"},
	} {
		code, _, stderr := meshctl(t, append([]string{"agent"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("agent %q: exit %d:\n%s\nwant exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// With --spiffe-socket the SVID comes from a real SPIRE agent's Workload
// API: the one of --service-account among those it offers, with SPIRE's
// bundle.
func TestAgentSPIRE(t *testing.T) {
	spire := meshtest.StartSPIRE(t)
	// Two entries for this process: the agent picks its own.
	spire.CreateEntry(t, "spiffe://cluster.local/ns/default/sa/other", 0)
	spire.CreateEntry(t, "spiffe://cluster.local/ns/default/sa/reviews", 0)
	out := filepath.Join(t.TempDir(), "svid")
	code, _, stderr := meshctl(t, "agent", "--spiffe-socket", spire.Addr(), "--service-account", "reviews", "--out", out, "--once")
	if code != exitOK {
		t.Fatalf("agent --spiffe-socket: exit %d:\n%s", code, stderr)
	}
	id, _, err := readSVID(out)
	if err != nil || id.String() != "spiffe://cluster.local/ns/default/sa/reviews" {
		t.Errorf("agent --spiffe-socket wrote %v, %v", id, err)
	}
	// bundle.pem is SPIRE's bundle.
	b, err := x509bundle.Load(id.TrustDomain(), filepath.Join(out, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range spire.Bundle(t) {
		if !b.HasX509Authority(r) {
			t.Errorf("bundle.pem lacks SPIRE's root %s", r.Subject)
		}
	}
}
