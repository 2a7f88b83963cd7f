//go:build linux

package main

import (
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
	"time"
)

// sidecarServerName is the name haproxy A checks in B's certificate. It
// is never looked up: A dials B by address.
const sidecarServerName = "sidecar-b.invalid"

// sidecarCerts are the PEM files of the sidecars' mTLS: a throwaway CA,
// and for each sidecar its certificate chain followed by its key, as
// haproxy's crt wants.
type sidecarCerts struct {
	CA, A, B string
}

// writeSidecarCerts makes a CA and two certificates signed by it, ECDSA
// P-256 as meshlet's SVIDs, with SPIFFE IDs as SANs (and B's name, which A
// verifies), and writes them into dir.
func writeSidecarCerts(dir string) (sidecarCerts, error) {
	files := sidecarCerts{CA: filepath.Join(dir, "ca.pem"), A: filepath.Join(dir, "a.pem"), B: filepath.Join(dir, "b.pem")}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return files, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench sidecar CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return files, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return files, err
	}
	if err := os.WriteFile(files.CA, pemBlock("CERTIFICATE", caDER), 0o600); err != nil {
		return files, err
	}
	leaf := func(serial int64, sa string, dnsNames []string, file string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		id, _ := url.Parse("spiffe://bench.invalid/ns/default/sa/" + sa)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			NotBefore:    now.Add(-time.Minute),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			URIs:         []*url.URL{id},
			DNSNames:     dnsNames,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		return os.WriteFile(file, append(pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER)...), 0o600)
	}
	if err := leaf(2, "client", nil, files.A); err != nil {
		return files, err
	}
	return files, leaf(3, "greeter", []string{sidecarServerName}, files.B)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
