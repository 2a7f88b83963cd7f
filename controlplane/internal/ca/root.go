package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The files of a generated root in Config.Dir.
const (
	rootCertFile = "root-cert.pem"
	rootKeyFile  = "root-key.pem"
)

// rootValidity is the lifetime of a generated root.
const rootValidityYears = 10

// clockSkew is how far before now a certificate's NotBefore is set, so that
// a peer whose clock is a little behind accepts it.
const clockSkew = time.Minute

// authority is the key and certificates the CA signs with. It does not
// change after New.
type authority struct {
	signer crypto.Signer
	// cert is the certificate that signs SVIDs: a root or an intermediate.
	cert *x509.Certificate
	// chain is sent after the leaf: the path from cert up to, but not
	// including, the root. Empty when cert is the root.
	chain []*x509.Certificate
	// roots are the trust bundle.
	roots []*x509.Certificate
	// notBefore and notAfter bound the time when every certificate from
	// cert to its root is valid. An SVID never outlives notAfter.
	notBefore, notAfter time.Time
}

// newSerial returns a random, positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// generateRoot makes a self-signed ECDSA P-256 root for td, valid for
// ten years from now.
func generateRoot(td spiffeid.TrustDomain, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: generate root key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("ca: generate root serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"meshlet"},
			CommonName:   "meshlet root CA",
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(rootValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: parse generated root certificate: %w", err)
	}
	return cert, key, nil
}

// newMemoryRoot generates a root that lives only in memory.
func newMemoryRoot(td spiffeid.TrustDomain, now time.Time) (*authority, error) {
	cert, key, err := generateRoot(td, now)
	if err != nil {
		return nil, err
	}
	return rootAuthority(cert, key), nil
}

func rootAuthority(cert *x509.Certificate, key crypto.Signer) *authority {
	return &authority{
		signer:    key,
		cert:      cert,
		roots:     []*x509.Certificate{cert},
		notBefore: cert.NotBefore,
		notAfter:  cert.NotAfter,
	}
}

// loadOrCreateRoot loads the root kept in dir, or generates and keeps one
// if dir holds none.
func loadOrCreateRoot(dir string, td spiffeid.TrustDomain, now time.Time, log *slog.Logger) (*authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: create root directory %s: %w", dir, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	certPath := filepath.Join(dir, rootCertFile)
	keyPath := filepath.Join(dir, rootKeyFile)
	_, certErr := os.Lstat(certPath)
	_, keyErr := os.Lstat(keyPath)
	certMissing := errors.Is(certErr, fs.ErrNotExist)
	keyMissing := errors.Is(keyErr, fs.ErrNotExist)

	switch {
	case certMissing && keyMissing:
		return createRoot(dir, certPath, keyPath, td, now, log)
	case certMissing:
		return nil, fmt.Errorf("ca: %s exists but %s does not: restore the certificate, or remove both files to generate a new root (every workload then needs new SVIDs)", keyPath, certPath)
	case keyMissing:
		return nil, fmt.Errorf("ca: %s exists but %s does not: restore the key, or remove both files to generate a new root (every workload then needs new SVIDs)", certPath, keyPath)
	}

	auth, err := loadAuthority(certPath, keyPath, now)
	if err != nil {
		return nil, err
	}
	// A root generated for another trust domain names it in its URI SAN.
	for _, u := range auth.cert.URIs {
		id, err := spiffeid.FromURI(u)
		if err != nil || id.Path() != "" {
			continue
		}
		if id.TrustDomain() != td {
			return nil, fmt.Errorf("ca: root %s was made for trust domain %q, not %q: use another Dir, or remove %s and %s to generate a new root",
				certPath, id.TrustDomain().Name(), td.Name(), rootCertFile, rootKeyFile)
		}
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("ca: the root key can be read by other users; chmod 600 it",
			"file", keyPath, "mode", fi.Mode().Perm().String())
	}
	log.Info("ca: loaded root", "file", certPath, "expires", auth.notAfter.UTC().Format(time.RFC3339))
	return auth, nil
}

// createRoot generates a root and writes it to dir, key first, each file
// atomically.
func createRoot(dir, certPath, keyPath string, td spiffeid.TrustDomain, now time.Time, log *slog.Logger) (*authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: create root directory %s: %w", dir, err)
	}
	cert, key, err := generateRoot(td, now)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: encode root key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("ca: write root key: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("ca: write root certificate: %w", err)
	}
	log.Info("ca: generated a new root", "file", certPath,
		"expires", cert.NotAfter.UTC().Format(time.RFC3339))
	return rootAuthority(cert, key), nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory and a rename, so that path never holds part of data.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// Make the rename durable. Not every file system can sync a
	// directory; the file itself is already synced.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// loadAuthority loads the CA from PEM files: certFile holds the signing
// certificate first, then its chain up to and including a root; keyFile
// holds the signing certificate's private key.
func loadAuthority(certFile, keyFile string, now time.Time) (*authority, error) {
	certPEM, err := readFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("ca: read CA certificate: %w", err)
	}
	certs, err := parseCertificates(certFile, certPEM)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("ca: read CA key: %w", err)
	}
	signer, err := parsePrivateKey(keyFile, keyPEM)
	if err != nil {
		return nil, err
	}

	cert := certs[0]
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("ca: %s: the first certificate (%s) is not a CA certificate (it lacks basic constraints CA:TRUE): use a root or intermediate CA certificate", certFile, describe(cert))
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca: %s: the first certificate (%s) may not sign certificates (its key usage lacks keyCertSign)", certFile, describe(cert))
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("ca: key %s does not match certificate %s (%s): use the key the certificate was issued for", keyFile, certFile, describe(cert))
	}

	var roots []*x509.Certificate
	rootPool := x509.NewCertPool()
	interPool := x509.NewCertPool()
	for i, c := range certs {
		kind := "CA certificate"
		if isSelfSigned(c) {
			kind = "root"
			roots = append(roots, c)
			rootPool.AddCert(c)
		} else if i > 0 {
			interPool.AddCert(c)
		}
		if err := checkValidity(certFile, i, kind, c, now); err != nil {
			return nil, err
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("ca: %s holds no root (self-signed) certificate: append the intermediates and the root after the CA certificate, so that workloads get a trust bundle", certFile)
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: interPool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("ca: %s: the CA certificate does not chain to a root in the file: %w", certFile, err)
	}
	path := chains[0] // cert, intermediates..., root
	auth := &authority{
		signer:   signer,
		cert:     cert,
		chain:    path[:len(path)-1],
		roots:    roots,
		notAfter: cert.NotAfter,
	}
	if len(path) == 1 {
		auth.chain = nil
	}
	for _, c := range path {
		if c.NotAfter.Before(auth.notAfter) {
			auth.notAfter = c.NotAfter
		}
		if c.NotBefore.After(auth.notBefore) {
			auth.notBefore = c.NotBefore
		}
	}
	for _, c := range auth.chain {
		if c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, fmt.Errorf("ca: %s: intermediate %s may not sign certificates (its key usage lacks keyCertSign); SPIFFE peers would reject the chain", certFile, describe(c))
		}
	}
	return auth, nil
}

// checkValidity reports a certificate that is not valid at now.
func checkValidity(file string, i int, kind string, c *x509.Certificate, now time.Time) error {
	where := file
	if i > 0 {
		where = fmt.Sprintf("%s (certificate %d, %s)", file, i+1, describe(c))
	}
	switch {
	case now.After(c.NotAfter):
		return fmt.Errorf("ca: %s %s expired at %s: replace it (for a generated root, remove %s and %s to generate a new one)",
			kind, where, c.NotAfter.UTC().Format(time.RFC3339), rootCertFile, rootKeyFile)
	case now.Before(c.NotBefore):
		return fmt.Errorf("ca: %s %s is not valid until %s: check the clock", kind, where, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// describe names a certificate in an error.
func describe(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return "subject " + s
	}
	return "serial " + c.SerialNumber.Text(16)
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// parseCertificates reads every CERTIFICATE block of a PEM file.
func parseCertificates(file string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("ca: %s: PEM block %d is %q, want CERTIFICATE (the key goes in the key file)", file, len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca: %s: certificate %d: %w", file, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("ca: %s holds no PEM CERTIFICATE block", file)
	}
	return certs, nil
}

// parsePrivateKey reads the private key of a PEM file: PKCS #8, SEC 1 (EC)
// or PKCS #1 (RSA). Errors never quote the key.
func parsePrivateKey(file string, data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("ca: %s holds no PEM private key block", file)
		}
		var key any
		var err error
		switch block.Type {
		case "EC PARAMETERS":
			continue // written by openssl ecparam -genkey before the key
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("ca: %s: encrypted private keys are not supported: decrypt it (openssl pkey -in %s -out <new file>)", file, file)
		default:
			return nil, fmt.Errorf("ca: %s: PEM block is %q, want a PRIVATE KEY", file, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("ca: %s: parse %s: %w", file, block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("ca: %s: key type %T cannot sign", file, key)
		}
		return signer, nil
	}
}
