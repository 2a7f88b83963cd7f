package security_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshlet/meshlet/meshtest"
)

// testCA is a one-level CA for tests: a self-signed root that signs SVIDs
// directly. Its helpers panic on error so that examples can use them too.
type testCA struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newTestCA returns a CA for td, valid from an hour ago for a day.
func newTestCA(td string) *testCA {
	now := time.Now()
	return newTestCAValid(td, now.Add(-time.Hour), now.Add(24*time.Hour))
}

// newTestCAValid returns a CA for td whose root is valid in [from, to].
func newTestCAValid(td string, from, to time.Time) *testCA {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"meshlet test"}, CommonName: "root " + td},
		NotBefore:             from,
		NotAfter:              to,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: td}},
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key))
	return &testCA{
		td:   spiffeid.RequireTrustDomainFromString(td),
		cert: must(x509.ParseCertificate(der)),
		key:  key,
	}
}

// id returns the SPIFFE ID of namespace ns, service account sa in the CA's
// trust domain.
func (ca *testCA) id(ns, sa string) spiffeid.ID {
	return spiffeid.RequireFromPath(ca.td, "/ns/"+ns+"/sa/"+sa)
}

// sign issues a leaf for pub with the URI SAN id, valid in [from, to].
func (ca *testCA) sign(pub crypto.PublicKey, id spiffeid.ID, from, to time.Time) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		NotBefore:             from,
		NotAfter:              to,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{id.URL()},
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key))
	return must(x509.ParseCertificate(der))
}

// issue returns an SVID for id that expires ttl from now (a negative ttl
// gives an expired one).
func (ca *testCA) issue(id spiffeid.ID, ttl time.Duration) *x509svid.SVID {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	now := time.Now()
	to := now.Add(ttl)
	from := now.Add(-time.Minute)
	if to.Before(from) {
		from = to.Add(-time.Hour)
	}
	return &x509svid.SVID{
		ID:           id,
		Certificates: []*x509.Certificate{ca.sign(&key.PublicKey, id, from, to)},
		PrivateKey:   key,
	}
}

func (ca *testCA) bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
}

// source returns a Source holding an SVID for id, valid for an hour.
func (ca *testCA) source(id spiffeid.ID) *testSource {
	s := &testSource{}
	s.set(ca.issue(id, time.Hour), ca.bundle())
	return s
}

// testSource is a Source whose material the test swaps.
type testSource struct {
	mu     sync.Mutex
	svid   *x509svid.SVID
	bundle x509bundle.Source // a *Bundle, or a *Set for federation
}

func (s *testSource) set(svid *x509svid.SVID, bundle x509bundle.Source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.svid, s.bundle = svid, bundle
}

func (s *testSource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svid, nil
}

func (s *testSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bundle.GetX509BundleForTrustDomain(td)
}

// pemFiles are the three files a FileSource reads.
type pemFiles struct{ cert, key, bundle string }

func newPEMFiles(dir string) pemFiles {
	return pemFiles{
		cert:   filepath.Join(dir, "tls.crt"),
		key:    filepath.Join(dir, "tls.key"),
		bundle: filepath.Join(dir, "ca.crt"),
	}
}

// write writes svid and bundle as PEM, each file by rename, as
// cert-manager and spiffe-helper do.
func (f pemFiles) write(svid *x509svid.SVID, bundle *x509bundle.Bundle) {
	certPEM, keyPEM := must2(svid.Marshal())
	bundlePEM := must(bundle.Marshal())
	writeByRename(f.cert, certPEM)
	writeByRename(f.key, keyPEM)
	writeByRename(f.bundle, bundlePEM)
}

func writeByRename(name string, data []byte) {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		panic(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		panic(err)
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	return must(rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func must2[T, U any](v T, u U, err error) (T, U) {
	if err != nil {
		panic(err)
	}
	return v, u
}

// intermediate returns a CA whose certificate the receiver signs; its SVIDs
// need the intermediate in their chain.
func (ca *testCA) intermediate() *testCA {
	key := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"meshlet test"}, CommonName: "intermediate " + ca.td.Name()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(12 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der := must(x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key))
	return &testCA{td: ca.td, cert: must(x509.ParseCertificate(der)), key: key}
}

// logOnFailure logs what logs holds if the test has failed; defer it.
func logOnFailure(t *testing.T, logs *meshtest.LogBuffer) {
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
	}
}
