package security_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials/tls/certprovider"

	"github.com/meshlet/meshlet/security"
)

// bootstrapProvider turns ProviderConfig(key) into a provider the way
// gRPC-Go's xDS bootstrap does: JSON, then certprovider.ParseConfig with
// the raw config, then Build.
func bootstrapProvider(t *testing.T, key string) (certprovider.Provider, error) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"certificate_providers": map[string]any{"default": security.ProviderConfig(key)}})
	if err != nil {
		t.Fatal(err)
	}
	var bootstrap struct {
		CertificateProviders map[string]struct {
			PluginName string          `json:"plugin_name"`
			Config     json.RawMessage `json:"config"`
		} `json:"certificate_providers"`
	}
	if err := json.Unmarshal(raw, &bootstrap); err != nil {
		t.Fatal(err)
	}
	entry := bootstrap.CertificateProviders["default"]
	if entry.PluginName != security.ProviderPluginName {
		t.Fatalf("plugin_name = %q, want %q", entry.PluginName, security.ProviderPluginName)
	}
	bc, err := certprovider.ParseConfig(entry.PluginName, entry.Config)
	if err != nil {
		return nil, err
	}
	return bc.Build(certprovider.BuildOptions{CertName: "default", WantIdentity: true, WantRoot: true})
}

func TestCertProvider(t *testing.T) {
	ca := newTestCA("cluster.local")
	id := ca.id("shop", "cart")
	src := ca.source(id)
	key, unregister := security.RegisterProviderSource(src)
	defer unregister()

	p, err := bootstrapProvider(t, key)
	if err != nil {
		t.Fatalf("build provider: %v", err)
	}
	defer p.Close()

	km, err := p.KeyMaterial(t.Context())
	if err != nil {
		t.Fatalf("KeyMaterial: %v", err)
	}
	if len(km.Certs) != 1 || km.Certs[0].Leaf == nil {
		t.Fatalf("KeyMaterial.Certs = %v, want one certificate with its leaf", km.Certs)
	}
	if got, want := km.Certs[0].Leaf.SerialNumber.String(), currentSerial(t, src); got != want {
		t.Errorf("serial %s, want %s", got, want)
	}
	if _, err := km.Certs[0].Leaf.Verify(x509.VerifyOptions{Roots: km.Roots}); err != nil {
		t.Errorf("the leaf does not verify against Roots: %v", err)
	}
	b := km.SPIFFEBundleMap["cluster.local"]
	if b == nil || len(b.X509Authorities()) != 1 || !b.X509Authorities()[0].Equal(ca.cert) {
		t.Errorf("SPIFFEBundleMap = %v, want cluster.local with the CA", km.SPIFFEBundleMap)
	}
	handshake(t, km)

	// Unchanged source, same material.
	if again, _ := p.KeyMaterial(t.Context()); again != km {
		t.Error("KeyMaterial rebuilt unchanged material")
	}

	// A rotation reaches the next KeyMaterial call.
	src.set(ca.issue(id, time.Hour), ca.bundle())
	km2, err := p.KeyMaterial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := km2.Certs[0].Leaf.SerialNumber.String(), currentSerial(t, src); got != want {
		t.Errorf("after rotation serial %s, want %s", got, want)
	}
	if km2.Certs[0].Leaf.SerialNumber.Cmp(km.Certs[0].Leaf.SerialNumber) == 0 {
		t.Error("after rotation KeyMaterial returns the old certificate")
	}
	handshake(t, km2)

	// Unregistered: handshakes fail, and the key can no longer be parsed.
	unregister()
	if _, err := p.KeyMaterial(t.Context()); err == nil || !strings.Contains(err.Error(), "no longer registered") {
		t.Errorf("KeyMaterial after unregister: %v, want a 'no longer registered' error", err)
	}
	if _, err := bootstrapProvider(t, key); err == nil {
		t.Error("ParseConfig accepted an unregistered key")
	}
}

func TestCertProviderConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		config any
		want   string
	}{
		{json.RawMessage(`{"source":"no-such-key"}`), `no source is registered under "no-such-key"`},
		{json.RawMessage(`{}`), `"source" is missing`},
		{json.RawMessage(`{"src":"x"}`), `unknown field "src"`},
		{json.RawMessage(`[1]`), `want {"source":"<key>"}`},
		{map[string]any{"source": "no-such-key"}, `no source is registered under "no-such-key"`},
	} {
		_, err := certprovider.ParseConfig(security.ProviderPluginName, tt.config)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConfig(%v) = %v, want an error containing %q", tt.config, err, tt.want)
		}
	}
}

func TestRegisterProviderSourceKeysAreFresh(t *testing.T) {
	ca := newTestCA("cluster.local")
	src := ca.source(ca.id("a", "b"))
	k1, u1 := security.RegisterProviderSource(src)
	k2, u2 := security.RegisterProviderSource(src)
	u1()
	u1() // twice is fine
	defer u2()
	if k1 == k2 {
		t.Fatalf("two registrations got the same key %q", k1)
	}
	if _, err := certprovider.ParseConfig(security.ProviderPluginName, json.RawMessage(`{"source":"`+k2+`"}`)); err != nil {
		t.Errorf("unregistering %s removed %s: %v", k1, k2, err)
	}
}

// handshake runs mTLS over a pipe with km on both sides, configured as
// gRPC-Go's xDS credentials configure it.
func handshake(t *testing.T, km *certprovider.KeyMaterial) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	server := tls.Server(a, &tls.Config{Certificates: km.Certs, ClientCAs: km.Roots, ClientAuth: tls.RequireAndVerifyClientCert})
	client := tls.Client(b, &tls.Config{
		Certificates:       km.Certs,
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: km.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	err := errors.Join(client.Handshake(), <-errc)
	if err != nil {
		t.Fatalf("handshake with the provider's key material: %v", err)
	}
}
