package security

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials/tls/certprovider"
)

// ProviderPluginName is the name of meshlet's gRPC certificate-provider
// plugin, registered with certprovider.Register when this package is
// initialised. gRPC-Go's xDS credentials (credentials/xds) use it when the
// bootstrap's certificate_providers entry names it; see ProviderConfig.
const ProviderPluginName = "meshlet"

func init() {
	certprovider.Register(providerBuilder{})
}

// providerSources is the process-wide table of sources that the plugin's
// configs refer to by key.
var providerSources = struct {
	sync.RWMutex
	m    map[string]Source
	next uint64
}{m: map[string]Source{}}

// RegisterProviderSource makes src available to the "meshlet"
// certificate-provider plugin under a new key, unique in the process. Put
// ProviderConfig(key) in the xDS bootstrap's certificate_providers before
// the bootstrap is parsed: gRPC resolves the key then. unregister removes
// src from the table; providers built for the key then fail their
// handshakes. It is safe to call unregister more than once.
func RegisterProviderSource(src Source) (key string, unregister func()) {
	if src == nil {
		panic("security: RegisterProviderSource(nil)")
	}
	providerSources.Lock()
	providerSources.next++
	key = "source-" + strconv.FormatUint(providerSources.next, 10)
	providerSources.m[key] = src
	providerSources.Unlock()
	var once sync.Once
	return key, func() {
		once.Do(func() {
			providerSources.Lock()
			delete(providerSources.m, key)
			providerSources.Unlock()
		})
	}
}

// ProviderConfig returns the value of a certificate_providers entry of the
// xDS bootstrap for the source registered under key:
//
//	{"plugin_name": "meshlet", "config": {"source": key}}
func ProviderConfig(key string) map[string]any {
	return map[string]any{
		"plugin_name": ProviderPluginName,
		"config":      map[string]any{"source": key},
	}
}

func lookupProviderSource(key string) (Source, bool) {
	providerSources.RLock()
	defer providerSources.RUnlock()
	src, ok := providerSources.m[key]
	return src, ok
}

type providerConfig struct {
	Source string `json:"source"`
}

type providerBuilder struct{}

func (providerBuilder) Name() string { return ProviderPluginName }

// ParseConfig accepts the plugin's config as gRPC's bootstrap passes it
// (json.RawMessage), or as []byte, string or any value that marshals to
// JSON. The key must be registered.
func (providerBuilder) ParseConfig(c any) (*certprovider.BuildableConfig, error) {
	var raw []byte
	switch v := c.(type) {
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	case string:
		raw = []byte(v)
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("security: certificate provider %q: config of type %T: %w", ProviderPluginName, c, err)
		}
	}
	var cfg providerConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("security: certificate provider %q: config %s: %w (want {\"source\":\"<key>\"}, see security.ProviderConfig)", ProviderPluginName, raw, err)
	}
	if cfg.Source == "" {
		return nil, fmt.Errorf("security: certificate provider %q: config %s: \"source\" is missing (see security.ProviderConfig)", ProviderPluginName, raw)
	}
	if _, ok := lookupProviderSource(cfg.Source); !ok {
		return nil, fmt.Errorf("security: certificate provider %q: no source is registered under %q (call security.RegisterProviderSource before the xDS bootstrap is parsed, and keep it registered)", ProviderPluginName, cfg.Source)
	}
	canonical, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("security: certificate provider %q: %w", ProviderPluginName, err)
	}
	key := cfg.Source
	return certprovider.NewBuildableConfig(ProviderPluginName, canonical, func(certprovider.BuildOptions) certprovider.Provider {
		return &provider{key: key}
	}), nil
}

// provider reads its source on every KeyMaterial call. gRPC-Go's xDS
// credentials call KeyMaterial on every handshake (they build a tls.Config
// per handshake), so a rotation reaches the next handshake without a
// certprovider.Distributor.
type provider struct {
	key   string
	cache atomic.Pointer[cachedKeyMaterial]
}

// cachedKeyMaterial is the KeyMaterial built for one SVID and bundle, kept
// while the source keeps returning the same ones.
type cachedKeyMaterial struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
	km     *certprovider.KeyMaterial
}

// KeyMaterial returns the source's current SVID (Certs) and the bundle of
// its trust domain (Roots, and SPIFFEBundleMap with that one trust domain).
// It does not block.
func (p *provider) KeyMaterial(context.Context) (*certprovider.KeyMaterial, error) {
	src, ok := lookupProviderSource(p.key)
	if !ok {
		return nil, fmt.Errorf("security: certificate provider %q: source %q is no longer registered", ProviderPluginName, p.key)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("security: certificate provider %q: %w", ProviderPluginName, err)
	}
	if len(svid.Certificates) == 0 {
		return nil, fmt.Errorf("security: certificate provider %q: SVID %s has no certificate", ProviderPluginName, svid.ID)
	}
	td := svid.ID.TrustDomain()
	bundle, err := src.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("security: certificate provider %q: %w", ProviderPluginName, err)
	}
	if c := p.cache.Load(); c != nil && c.svid == svid && c.bundle == bundle {
		return c.km, nil
	}

	cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	authorities := bundle.X509Authorities()
	if len(authorities) == 0 {
		return nil, fmt.Errorf("security: certificate provider %q: the bundle for %q is empty", ProviderPluginName, td.Name())
	}
	roots := x509.NewCertPool()
	for _, r := range authorities {
		roots.AddCert(r)
	}
	km := &certprovider.KeyMaterial{
		Certs:           []tls.Certificate{cert},
		Roots:           roots,
		SPIFFEBundleMap: map[string]*spiffebundle.Bundle{td.Name(): spiffebundle.FromX509Bundle(bundle)},
	}
	p.cache.Store(&cachedKeyMaterial{svid: svid, bundle: bundle, km: km})
	return km, nil
}

func (p *provider) Close() {}
