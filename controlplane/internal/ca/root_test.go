package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane/internal/ca"
	"github.com/meshlet/meshlet/internal/capb"
)

func TestRootPersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca") // New creates it
	t0, now := fixedNow()
	first := newCA(t, ca.Config{Dir: dir, Now: now, Tokens: map[string]ca.Identity{tokenA: identityA}})
	root := first.Bundle()[0]

	if !root.IsCA || !root.BasicConstraintsValid {
		t.Error("root is not a CA")
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("root key is %T, want ECDSA P-256", root.PublicKey)
	}
	if got := root.NotAfter; !got.Equal(t0.AddDate(10, 0, 0)) {
		t.Errorf("root NotAfter = %v, want 10 years from now (%v)", got, t0.AddDate(10, 0, 0))
	}
	if got := root.Subject.Organization; len(got) != 1 || got[0] != "meshlet" {
		t.Errorf("root subject O = %v, want [meshlet]", got)
	}
	if len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://cluster.local" {
		t.Errorf("root URIs = %v, want [spiffe://cluster.local]", root.URIs)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}

	fi, err := os.Stat(filepath.Join(dir, "root-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("root-key.pem mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != ".lock" { // serialises control planes starting on one directory
			names = append(names, e.Name())
		}
	}
	if strings.Join(names, ",") != "root-cert.pem,root-key.pem" {
		t.Errorf("dir holds %v, want only root-cert.pem and root-key.pem", names)
	}

	// An SVID from the first CA verifies against the second's bundle: the
	// second New reuses the root.
	key := newKey(t)
	resp, err := sign(t, serve(t, first), tokenA, &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idA}})})
	if err != nil {
		t.Fatal(err)
	}
	second := newCA(t, ca.Config{Dir: dir, Now: now})
	if !second.Bundle()[0].PublicKey.(*ecdsa.PublicKey).Equal(root.PublicKey) {
		t.Fatal("a second New on the same Dir made a new root")
	}
	parseSVID(t, resp, key, second.Bundle(), t0)
	if got := second.TrustDomain().String(); got != "cluster.local" {
		t.Errorf("TrustDomain() = %q", got)
	}
}

func TestMemoryRoot(t *testing.T) {
	a := newCA(t, ca.Config{TrustDomain: "example.org"})
	b := newCA(t, ca.Config{TrustDomain: "example.org"})
	if a.Bundle()[0].PublicKey.(*ecdsa.PublicKey).Equal(b.Bundle()[0].PublicKey) {
		t.Error("two in-memory CAs share a root")
	}
	if got := a.TrustDomain().Name(); got != "example.org" {
		t.Errorf("TrustDomain() = %q, want example.org", got)
	}
}

// makeCert creates a certificate from tmpl, signed by parent (self-signed
// if parent is nil), and returns it with its new key.
func makeCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func caTemplate(cn string, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"test"}, CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func TestIntermediate(t *testing.T) {
	t0, now := fixedNow()
	root, rootKey := makeCert(t, caTemplate("test root", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), nil, nil)
	inter, interKey := makeCert(t, caTemplate("test intermediate", t0.Add(-time.Hour), t0.Add(2*time.Hour)), root, rootKey)

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	writePEM(t, certFile, certBlock(inter), certBlock(root))
	writePEM(t, keyFile, keyBlock(t, interKey))

	// MaxTTL lets the 10h asked for below reach past the intermediate.
	c := newCA(t, ca.Config{CertFile: certFile, KeyFile: keyFile, Dir: "/nonexistent/unused", Now: now, MaxTTL: 24 * time.Hour, Tokens: map[string]ca.Identity{tokenA: identityA}})
	if b := c.Bundle(); len(b) != 1 || !b[0].Equal(root) {
		t.Fatalf("Bundle() is not the root in the file")
	}
	client := serve(t, c)
	key := newKey(t)
	resp, err := sign(t, client, tokenA, &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idA}}), TtlSeconds: 10 * 3600})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if len(resp.GetCertChain()) != 2 || string(resp.GetCertChain()[1]) != string(inter.Raw) {
		t.Fatalf("cert_chain has %d certificates, want [leaf, intermediate]", len(resp.GetCertChain()))
	}
	svid := parseSVID(t, resp, key, c.Bundle(), t0)
	if got := svid.Certificates[0].NotAfter; !got.Equal(inter.NotAfter) {
		t.Errorf("leaf NotAfter = %v, want capped at the intermediate's %v", got, inter.NotAfter)
	}
}

func TestTTLCappedByRootLife(t *testing.T) {
	dir := t.TempDir()
	t0, _ := fixedNow()
	first := newCA(t, ca.Config{Dir: dir, Now: func() time.Time { return t0 }})
	rootEnd := first.Bundle()[0].NotAfter

	late := rootEnd.Add(-30 * time.Minute)
	c := newCA(t, ca.Config{Dir: dir, Now: func() time.Time { return late }, Tokens: map[string]ca.Identity{tokenA: identityA}})
	key := newKey(t)
	resp, err := sign(t, serve(t, c), tokenA, &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idA}})})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	svid := parseSVID(t, resp, key, c.Bundle(), late)
	if got := svid.Certificates[0].NotAfter; !got.Equal(rootEnd) {
		t.Errorf("leaf NotAfter = %v, want the root's %v (30m left, 1h asked)", got, rootEnd)
	}
}

func TestLoadErrors(t *testing.T) {
	t0, now := fixedNow()
	// genDir makes a directory holding a generated root.
	genDir := func(t *testing.T) string {
		dir := t.TempDir()
		newCA(t, ca.Config{Dir: dir, Now: now})
		return dir
	}

	tests := []struct {
		name  string
		setup func(t *testing.T) ca.Config
		want  []string
	}{
		{
			name: "root cert is a directory",
			setup: func(t *testing.T) ca.Config {
				dir := genDir(t)
				p := filepath.Join(dir, "root-cert.pem")
				must(t, os.Remove(p))
				must(t, os.Mkdir(p, 0o700))
				return ca.Config{Dir: dir}
			},
			want: []string{"root-cert.pem", "not a regular file (directory)"},
		},
		{
			name: "root key is a directory",
			setup: func(t *testing.T) ca.Config {
				dir := genDir(t)
				p := filepath.Join(dir, "root-key.pem")
				must(t, os.Remove(p))
				must(t, os.Mkdir(p, 0o700))
				return ca.Config{Dir: dir}
			},
			want: []string{"root-key.pem", "not a regular file (directory)"},
		},
		{
			name: "cert file missing",
			setup: func(t *testing.T) ca.Config {
				dir := t.TempDir()
				return ca.Config{CertFile: filepath.Join(dir, "missing.pem"), KeyFile: filepath.Join(dir, "key.pem")}
			},
			want: []string{"missing.pem", "no such file"},
		},
		{
			name: "root cert lost, key kept",
			setup: func(t *testing.T) ca.Config {
				dir := genDir(t)
				must(t, os.Remove(filepath.Join(dir, "root-cert.pem")))
				return ca.Config{Dir: dir}
			},
			want: []string{"root-key.pem exists", "root-cert.pem does not"},
		},
		{
			name: "key does not match cert",
			setup: func(t *testing.T) ca.Config {
				a, b := genDir(t), genDir(t)
				key, err := os.ReadFile(filepath.Join(b, "root-key.pem"))
				must(t, err)
				must(t, os.WriteFile(filepath.Join(a, "root-key.pem"), key, 0o600))
				return ca.Config{Dir: a}
			},
			want: []string{"root-key.pem", "does not match", "root-cert.pem"},
		},
		{
			name: "expired root",
			setup: func(t *testing.T) ca.Config {
				return ca.Config{Dir: genDir(t), Now: func() time.Time { return t0.AddDate(11, 0, 0) }}
			},
			want: []string{"ca: root ", "root-cert.pem expired at " + t0.AddDate(10, 0, 0).UTC().Format(time.RFC3339)},
		},
		{
			name: "expired root written to a file",
			setup: func(t *testing.T) ca.Config {
				dir := t.TempDir()
				root, key := makeCert(t, caTemplate("old root", t0.AddDate(-2, 0, 0), t0.AddDate(-1, 0, 0)), nil, nil)
				certFile, keyFile := filepath.Join(dir, "old.pem"), filepath.Join(dir, "old-key.pem")
				writePEM(t, certFile, certBlock(root))
				writePEM(t, keyFile, keyBlock(t, key))
				return ca.Config{CertFile: certFile, KeyFile: keyFile}
			},
			want: []string{"ca: root ", "old.pem expired at"},
		},
		{
			name: "root not yet valid",
			setup: func(t *testing.T) ca.Config {
				return ca.Config{Dir: genDir(t), Now: func() time.Time { return t0.Add(-time.Hour) }}
			},
			want: []string{"root-cert.pem is not valid until", "clock"},
		},
		{
			name: "not a CA certificate",
			setup: func(t *testing.T) ca.Config {
				dir := t.TempDir()
				leaf, key := makeCert(t, &x509.Certificate{
					Subject:   pkix.Name{CommonName: "a leaf"},
					NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
					KeyUsage: x509.KeyUsageDigitalSignature,
				}, nil, nil)
				certFile, keyFile := filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "leaf-key.pem")
				writePEM(t, certFile, certBlock(leaf))
				writePEM(t, keyFile, keyBlock(t, key))
				return ca.Config{CertFile: certFile, KeyFile: keyFile}
			},
			want: []string{"leaf.pem", "is not a CA certificate"},
		},
		{
			name: "garbage certificate file",
			setup: func(t *testing.T) ca.Config {
				dir := t.TempDir()
				certFile, keyFile := filepath.Join(dir, "junk.pem"), filepath.Join(dir, "key.pem")
				must(t, os.WriteFile(certFile, []byte("not pem at all"), 0o600))
				writePEM(t, keyFile, keyBlock(t, newKey(t)))
				return ca.Config{CertFile: certFile, KeyFile: keyFile}
			},
			want: []string{"junk.pem", "no PEM CERTIFICATE"},
		},
		{
			name: "key file holds a certificate",
			setup: func(t *testing.T) ca.Config {
				dir := t.TempDir()
				root, _ := makeCert(t, caTemplate("root", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), nil, nil)
				certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "key.pem")
				writePEM(t, certFile, certBlock(root))
				writePEM(t, keyFile, certBlock(root))
				return ca.Config{CertFile: certFile, KeyFile: keyFile}
			},
			want: []string{"key.pem", `"CERTIFICATE"`, "PRIVATE KEY"},
		},
		{
			name: "intermediate without its root",
			setup: func(t *testing.T) ca.Config {
				dir := t.TempDir()
				root, rootKey := makeCert(t, caTemplate("root", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), nil, nil)
				inter, interKey := makeCert(t, caTemplate("inter", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), root, rootKey)
				certFile, keyFile := filepath.Join(dir, "inter.pem"), filepath.Join(dir, "inter-key.pem")
				writePEM(t, certFile, certBlock(inter))
				writePEM(t, keyFile, keyBlock(t, interKey))
				return ca.Config{CertFile: certFile, KeyFile: keyFile}
			},
			want: []string{"inter.pem", "holds no root"},
		},
		{
			name: "intermediate with another root",
			setup: func(t *testing.T) ca.Config {
				dir := t.TempDir()
				root, rootKey := makeCert(t, caTemplate("root", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), nil, nil)
				other, _ := makeCert(t, caTemplate("other root", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), nil, nil)
				inter, interKey := makeCert(t, caTemplate("inter", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), root, rootKey)
				certFile, keyFile := filepath.Join(dir, "inter.pem"), filepath.Join(dir, "inter-key.pem")
				writePEM(t, certFile, certBlock(inter), certBlock(other))
				writePEM(t, keyFile, keyBlock(t, interKey))
				return ca.Config{CertFile: certFile, KeyFile: keyFile}
			},
			want: []string{"inter.pem", "does not chain to a root"},
		},
		{
			name: "root made for another trust domain",
			setup: func(t *testing.T) ca.Config {
				return ca.Config{Dir: genDir(t), TrustDomain: "example.org"}
			},
			want: []string{"root-cert.pem", `trust domain "cluster.local", not "example.org"`},
		},
		{
			name:  "cert file without key file",
			setup: func(t *testing.T) ca.Config { return ca.Config{CertFile: "ca.pem"} },
			want:  []string{"set both or neither"},
		},
		{
			name:  "bad trust domain",
			setup: func(t *testing.T) ca.Config { return ca.Config{TrustDomain: "Not A Domain"} },
			want:  []string{`trust domain "Not A Domain"`},
		},
		{
			name:  "default TTL above max",
			setup: func(t *testing.T) ca.Config { return ca.Config{DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour} },
			want:  []string{"DefaultTTL 2h0m0s is more than MaxTTL 1h0m0s"},
		},
		{
			name: "config token with a bad identity",
			setup: func(t *testing.T) ca.Config {
				return ca.Config{Tokens: map[string]ca.Identity{"secret-xyz": {Namespace: "default", ServiceAccount: "a/b"}}}
			},
			want: []string{"Config.Tokens", "serviceAccount"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.setup(t)
			cfg.Log = discardLog()
			if cfg.Now == nil {
				cfg.Now = now
			}
			c, err := ca.New(cfg)
			if err == nil {
				t.Fatalf("New succeeded (bundle %d), want an error", len(c.Bundle()))
			}
			wantErr(t, err, tt.want...)
			if strings.Contains(err.Error(), "secret-xyz") {
				t.Errorf("the error quotes a token: %v", err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
