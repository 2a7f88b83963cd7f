package security_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/security"
)

func newFileSource(t *testing.T, f pemFiles, opts ...security.FileOption) *security.FileSource {
	t.Helper()
	src, err := security.NewFileSource(t.Context(), f.cert, f.key, f.bundle, opts...)
	if err != nil {
		t.Fatalf("NewFileSource: %v", err)
	}
	t.Cleanup(func() {
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return src
}

func currentSerial(t *testing.T, src security.Source) string {
	t.Helper()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID: %v", err)
	}
	return svid.Certificates[0].SerialNumber.String()
}

func TestFileSourceLoads(t *testing.T) {
	ca := newTestCA("example.org")
	id := ca.id("default", "web")
	inter := ca.intermediate()
	otherRoot := newTestCA("example.org")

	ecKey := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	rsaKey := must(rsa.GenerateKey(rand.Reader, 2048))
	now := time.Now()
	ecLeaf := ca.sign(&ecKey.PublicKey, id, now.Add(-time.Minute), now.Add(time.Hour))
	rsaLeaf := ca.sign(&rsaKey.PublicKey, id, now.Add(-time.Minute), now.Add(time.Hour))
	interSVID := inter.issue(id, time.Hour)

	tests := []struct {
		name             string
		cert, key, roots []byte
	}{{
		name:  "PKCS8 key",
		cert:  pemBlock("CERTIFICATE", ecLeaf.Raw),
		key:   pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(ecKey))),
		roots: pemBlock("CERTIFICATE", ca.cert.Raw),
	}, {
		name: "SEC 1 EC key after EC PARAMETERS",
		cert: pemBlock("CERTIFICATE", ecLeaf.Raw),
		key: append(pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}),
			pemBlock("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(ecKey)))...),
		roots: pemBlock("CERTIFICATE", ca.cert.Raw),
	}, {
		name:  "PKCS1 RSA key",
		cert:  pemBlock("CERTIFICATE", rsaLeaf.Raw),
		key:   pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)),
		roots: pemBlock("CERTIFICATE", ca.cert.Raw),
	}, {
		name:  "chain with an intermediate, bundle with two roots",
		cert:  append(pemBlock("CERTIFICATE", interSVID.Certificates[0].Raw), pemBlock("CERTIFICATE", inter.cert.Raw)...),
		key:   pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(interSVID.PrivateKey))),
		roots: append(pemBlock("CERTIFICATE", otherRoot.cert.Raw), pemBlock("CERTIFICATE", ca.cert.Raw)...),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newPEMFiles(t.TempDir())
			writeByRename(f.cert, tt.cert)
			writeByRename(f.key, tt.key)
			writeByRename(f.bundle, tt.roots)
			src := newFileSource(t, f)

			svid, err := src.GetX509SVID()
			if err != nil {
				t.Fatal(err)
			}
			if svid.ID != id {
				t.Errorf("ID = %s, want %s", svid.ID, id)
			}
			b, err := src.GetX509BundleForTrustDomain(ca.td)
			if err != nil {
				t.Fatal(err)
			}
			if !b.HasX509Authority(ca.cert) {
				t.Errorf("bundle lacks the root")
			}
			if _, _, err := x509svid.Verify(svid.Certificates, src); err != nil {
				t.Errorf("the SVID does not verify against the source's bundle: %v", err)
			}
			if _, err := src.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.org")); err == nil {
				t.Errorf("bundle for other.org: got no error")
			}
		})
	}
}

func TestFileSourceReloadsOnRename(t *testing.T) {
	ca := newTestCA("example.org")
	id := ca.id("default", "web")
	f := newPEMFiles(t.TempDir())
	f.write(ca.issue(id, time.Hour), ca.bundle())
	var logs meshtest.LogBuffer
	src := newFileSource(t, f, security.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	defer logOnFailure(t, &logs)
	first := currentSerial(t, src)

	// A rotation: new key and certificate, written by rename.
	next := ca.issue(id, time.Hour)
	f.write(next, ca.bundle())
	want := next.Certificates[0].SerialNumber.String()
	meshtest.WaitUntil(t, 5*time.Second, "serial "+want+" after the files were replaced", func() bool { return currentSerial(t, src) == want })
	if want == first {
		t.Fatal("test bug: the new SVID has the old serial")
	}

	// A corrupt certificate file is logged and the SVID is kept.
	writeByRename(f.cert, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	meshtest.WaitUntil(t, 5*time.Second, "the reload failure in the log", func() bool { return strings.Contains(logs.String(), "reload failed") })
	if got := currentSerial(t, src); got != want {
		t.Errorf("after a corrupt rewrite serial = %s, want the previous %s", got, want)
	}
	if !strings.Contains(logs.String(), f.cert) {
		t.Errorf("the failure log does not name %s:\n%s", f.cert, logs.String())
	}

	// Good files again are picked up.
	last := ca.issue(id, time.Hour)
	f.write(last, ca.bundle())
	want = last.Certificates[0].SerialNumber.String()
	meshtest.WaitUntil(t, 5*time.Second, "serial "+want+" after a good rewrite", func() bool { return currentSerial(t, src) == want })
}

// TestFileSourceKubernetesSymlinks replaces the files the way a Kubernetes
// Secret volume does: the names are symlinks through "..data", which is
// swapped by a rename.
func TestFileSourceKubernetesSymlinks(t *testing.T) {
	ca := newTestCA("example.org")
	id := ca.id("default", "web")
	dir := t.TempDir()
	publish := func(version string, svid *x509svid.SVID) {
		vdir := filepath.Join(dir, version)
		if err := os.Mkdir(vdir, 0o700); err != nil {
			t.Fatal(err)
		}
		newPEMFiles(vdir).write(svid, ca.bundle())
		if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("..v1", ca.issue(id, time.Hour))
	f := newPEMFiles(dir)
	for _, name := range []string{f.cert, f.key, f.bundle} {
		if err := os.Symlink(filepath.Join("..data", filepath.Base(name)), name); err != nil {
			t.Fatal(err)
		}
	}
	src := newFileSource(t, f)

	next := ca.issue(id, time.Hour)
	publish("..v2", next)
	want := next.Certificates[0].SerialNumber.String()
	meshtest.WaitUntil(t, 5*time.Second, "serial "+want+" after the ..data swap", func() bool { return currentSerial(t, src) == want })
}

func TestFileSourceErrors(t *testing.T) {
	ca := newTestCA("example.org")
	id := ca.id("default", "web")
	now := time.Now()
	expiredCA := newTestCAValid("example.org", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	expiredCASVID := &x509svid.SVID{ID: id}
	{
		key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
		expiredCASVID.PrivateKey = key
		expiredCASVID.Certificates = []*x509.Certificate{expiredCA.sign(&key.PublicKey, id, now.Add(-time.Minute), now.Add(time.Hour))}
	}

	tests := []struct {
		name  string
		setup func(f pemFiles) pemFiles
		want  func(f pemFiles) []string // substrings of the error
	}{{
		name: "expired bundle",
		setup: func(f pemFiles) pemFiles {
			f.write(expiredCASVID, expiredCA.bundle())
			return f
		},
		want: func(f pemFiles) []string { return []string{"bundle file " + f.bundle, "expired at"} },
	}, {
		name: "expired certificate",
		setup: func(f pemFiles) pemFiles {
			f.write(ca.issue(id, -time.Hour), ca.bundle())
			return f
		},
		want: func(f pemFiles) []string { return []string{"certificate file " + f.cert, id.String(), "expired at"} },
	}, {
		name: "missing key file",
		setup: func(f pemFiles) pemFiles {
			f.write(ca.issue(id, time.Hour), ca.bundle())
			f.key += ".missing"
			return f
		},
		want: func(f pemFiles) []string { return []string{"read key file", f.key, "no such file"} },
	}, {
		name: "unreadable bundle (a directory)",
		setup: func(f pemFiles) pemFiles {
			f.write(ca.issue(id, time.Hour), ca.bundle())
			f.bundle = filepath.Dir(f.bundle)
			return f
		},
		want: func(f pemFiles) []string { return []string{"read bundle file", f.bundle} },
	}, {
		name: "certificate from another CA",
		setup: func(f pemFiles) pemFiles {
			f.write(newTestCA("example.org").issue(id, time.Hour), ca.bundle())
			return f
		},
		want: func(f pemFiles) []string { return []string{f.cert, f.bundle, "does not chain"} },
	}, {
		name: "key of another certificate",
		setup: func(f pemFiles) pemFiles {
			svid := ca.issue(id, time.Hour)
			svid.PrivateKey = ca.issue(id, time.Hour).PrivateKey
			f.write(svid, ca.bundle())
			return f
		},
		want: func(f pemFiles) []string { return []string{f.cert, f.key, "does not match private key"} },
	}, {
		name: "no key in the key file",
		setup: func(f pemFiles) pemFiles {
			f.write(ca.issue(id, time.Hour), ca.bundle())
			writeByRename(f.key, pemBlock("CERTIFICATE", ca.cert.Raw))
			return f
		},
		want: func(f pemFiles) []string { return []string{"key file " + f.key, "no \"PRIVATE KEY\""} },
	}, {
		name: "certificate without a SPIFFE ID",
		setup: func(f pemFiles) pemFiles {
			svid := ca.issue(id, time.Hour)
			tmpl := *svid.Certificates[0]
			tmpl.URIs = nil
			tmpl.DNSNames = []string{"web.example.org"}
			der := must(x509.CreateCertificate(rand.Reader, &tmpl, ca.cert, svid.PrivateKey.Public(), ca.key))
			writeByRename(f.cert, pemBlock("CERTIFICATE", der))
			writeByRename(f.key, pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(svid.PrivateKey))))
			writeByRename(f.bundle, must(ca.bundle().Marshal()))
			return f
		},
		want: func(f pemFiles) []string { return []string{f.cert, "no URI SAN"} },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.setup(newPEMFiles(t.TempDir()))
			src, err := security.NewFileSource(t.Context(), f.cert, f.key, f.bundle)
			if err == nil {
				src.Close()
				t.Fatal("NewFileSource: got no error")
			}
			t.Logf("error: %v", err)
			for _, want := range tt.want(f) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestFileSourceCanceledContext(t *testing.T) {
	ca := newTestCA("example.org")
	f := newPEMFiles(t.TempDir())
	f.write(ca.issue(ca.id("default", "web"), time.Hour), ca.bundle())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := security.NewFileSource(ctx, f.cert, f.key, f.bundle); err == nil {
		t.Fatal("NewFileSource with a canceled context: got no error")
	}
}

var _ x509bundle.Source = (*security.FileSource)(nil)
