package security

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// material is one SVID with the bundle of its trust domain. It is never
// changed after it is built; sources swap whole values.
type material struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (m *material) getSVID() (*x509svid.SVID, error) {
	return m.svid, nil
}

func (m *material) getBundle(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != m.bundle.TrustDomain() {
		return nil, fmt.Errorf("no bundle for trust domain %q (this source has only %q)", td, m.bundle.TrustDomain())
	}
	return m.bundle, nil
}

// checkMaterial checks that the SVID is valid at now, that the bundle holds
// a root valid at now, and that the SVID chains to the bundle. Errors name
// what expired and when.
func checkMaterial(svid *x509svid.SVID, bundle *x509bundle.Bundle, now time.Time) (leafErr, bundleErr, chainErr error) {
	var problems []string
	leaf := svid.Certificates[0]
	if now.After(leaf.NotAfter) {
		problems = append(problems, fmt.Sprintf("certificate for %s expired at %s", svid.ID, stamp(leaf.NotAfter)))
	} else if now.Before(leaf.NotBefore) {
		problems = append(problems, fmt.Sprintf("certificate for %s is not valid before %s", svid.ID, stamp(leaf.NotBefore)))
	}
	for _, c := range svid.Certificates[1:] {
		if now.After(c.NotAfter) {
			problems = append(problems, fmt.Sprintf("intermediate CA %q expired at %s", subject(c), stamp(c.NotAfter)))
		}
	}
	if len(problems) > 0 {
		leafErr = errors.New(strings.Join(problems, "; "))
	}

	// An expired root next to a valid one is harmless (a bundle keeps the
	// old root for a while after a rotation); a bundle with no valid root
	// verifies nothing.
	roots := bundle.X509Authorities()
	if len(roots) == 0 {
		return leafErr, fmt.Errorf("bundle for %q holds no certificates", bundle.TrustDomain()), nil
	}
	var expired []string
	for _, r := range roots {
		if now.After(r.NotAfter) {
			expired = append(expired, fmt.Sprintf("root CA %q expired at %s", subject(r), stamp(r.NotAfter)))
		}
	}
	if len(expired) == len(roots) {
		bundleErr = errors.New(strings.Join(expired, "; "))
	}
	if leafErr != nil || bundleErr != nil {
		return leafErr, bundleErr, nil
	}

	if _, _, err := x509svid.Verify(svid.Certificates, bundle, x509svid.WithTime(now)); err != nil {
		chainErr = fmt.Errorf("certificate for %s does not chain to the bundle for %q: %w", svid.ID, bundle.TrustDomain(), err)
	}
	return nil, nil, chainErr
}

func stamp(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

func subject(c *x509.Certificate) string {
	if s := c.Subject.String(); s != "" {
		return s
	}
	return fmt.Sprintf("serial %s", c.SerialNumber)
}
