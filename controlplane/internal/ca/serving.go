package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ServingConfig says what the control plane's own serving certificate
// names: its SPIFFE ID, and the DNS names and IPs that clients which check
// host names (gRPC's file-based TLS channel credentials, say) dial.
type ServingConfig struct {
	ID       spiffeid.ID
	DNSNames []string
	IPs      []net.IP
	// TTL is the certificate's lifetime; it is renewed at half of it.
	// Default the CA's DefaultTTL.
	TTL time.Duration
}

// ServingCertificate keeps a serving certificate for the control plane,
// issued by the CA itself, and renews it at half-life on the next
// handshake. Its GetCertificate is safe for concurrent use.
type ServingCertificate struct {
	ca  *CA
	cfg ServingConfig

	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

// NewServingCertificate issues the first certificate. Every error names
// what was wrong.
func (c *CA) NewServingCertificate(cfg ServingConfig) (*ServingCertificate, error) {
	if cfg.ID.IsZero() || !cfg.ID.MemberOf(c.td) {
		return nil, fmt.Errorf("ca: serving certificate: %q is not an ID of trust domain %q", cfg.ID, c.td.Name())
	}
	if cfg.TTL <= 0 {
		cfg.TTL = c.defaultTTL
	}
	s := &ServingCertificate{ca: c, cfg: cfg}
	if _, err := s.current(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate is a tls.Config.GetCertificate callback.
func (s *ServingCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current()
}

// Leaf returns the certificate being served now.
func (s *ServingCertificate) Leaf() (*x509.Certificate, error) {
	c, err := s.current()
	if err != nil {
		return nil, err
	}
	return c.Leaf, nil
}

func (s *ServingCertificate) current() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.ca.now()
	if s.cert != nil && now.Before(s.renewAt) {
		return s.cert, nil
	}
	cert, err := s.issue(now)
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			s.ca.log.Warn("ca: renewing the control plane's serving certificate failed; keeping the current one", "err", err)
			return s.cert, nil
		}
		return nil, err
	}
	s.cert = cert
	s.renewAt = now.Add(cert.Leaf.NotAfter.Sub(now) / 2)
	return cert, nil
}

func (s *ServingCertificate) issue(now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: serving certificate key: %w", err)
	}
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(s.ca.auth.notBefore) {
		notBefore = s.ca.auth.notBefore
	}
	notAfter := now.Add(s.cfg.TTL)
	if notAfter.After(s.ca.auth.notAfter) {
		notAfter = s.ca.auth.notAfter
	}
	if !notAfter.After(now) {
		return nil, errCAExpired
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"meshlet"}, CommonName: "meshlet-controlplane"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{s.cfg.ID.URL()},
		DNSNames:              s.cfg.DNSNames,
		IPAddresses:           s.cfg.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.auth.cert, key.Public(), s.ca.auth.signer)
	if err != nil {
		return nil, fmt.Errorf("ca: serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: serving certificate: %w", err)
	}
	chain := [][]byte{der}
	for _, ic := range s.ca.auth.chain {
		chain = append(chain, ic.Raw)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// Ephemeral reports whether the CA's root lives in memory only: it changes
// at every start, so workloads of an earlier start no longer verify.
func (c *CA) Ephemeral() bool { return c.ephemeral }

// VersionKey returns a secret derived from the CA's signing key, for
// authenticating values this control plane gives out (xDS versions) and
// recognising them after a restart with the same CA. It is different for
// every use label.
func (c *CA) VersionKey(label string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.auth.signer)
	if err != nil {
		return nil, errors.New("ca: the signing key cannot be marshalled for a derived key")
	}
	mac := hmac.New(sha256.New, der)
	mac.Write([]byte("meshlet " + label))
	return mac.Sum(nil), nil
}
