package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ServerTLSConfig returns an mTLS server configuration: it presents src's
// SVID, requires a client certificate, verifies it against src's bundle for
// the client's trust domain, and lets authorizer decide on the client's
// SPIFFE ID. A nil authorizer allows any ID in the trust domain of src's
// SVID.
//
// The configuration reads src on every handshake (go-spiffe's
// GetCertificate and VerifyPeerCertificate callbacks), so a rotated SVID or
// bundle is used from the next connection on. Resumed TLS sessions, which
// skip VerifyPeerCertificate, are verified again against the current bundle
// and authorizer. Use it with net/http (http.Server.TLSConfig) or gRPC
// (credentials.NewTLS).
func ServerTLSConfig(src Source, authorizer tlsconfig.Authorizer) *tls.Config {
	authorizer = orOwnTrustDomain(src, authorizer)
	c := tlsconfig.MTLSServerConfig(src, src, authorizer)
	c.VerifyConnection = verifyResumed(src, authorizer)
	return c
}

// ClientTLSConfig returns an mTLS client configuration: it presents src's
// SVID, verifies the server's certificate against src's bundle for the
// server's trust domain, and lets authorizer decide on the server's SPIFFE
// ID (tlsconfig.AuthorizeID(want), typically). Host names are not checked:
// the SPIFFE ID is the server's identity. A nil authorizer allows any ID in
// the trust domain of src's SVID.
//
// Like ServerTLSConfig it reads src on every handshake. Use it with
// net/http (http.Transport.TLSClientConfig) or gRPC (credentials.NewTLS).
func ClientTLSConfig(src Source, authorizer tlsconfig.Authorizer) *tls.Config {
	authorizer = orOwnTrustDomain(src, authorizer)
	c := tlsconfig.MTLSClientConfig(src, src, authorizer)
	c.VerifyConnection = verifyResumed(src, authorizer)
	return c
}

// orOwnTrustDomain returns authorizer, or, if it is nil, an authorizer that
// allows the members of the trust domain of src's current SVID.
func orOwnTrustDomain(src Source, authorizer tlsconfig.Authorizer) tlsconfig.Authorizer {
	if authorizer != nil {
		return authorizer
	}
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		svid, err := src.GetX509SVID()
		if err != nil {
			return err
		}
		if td := svid.ID.TrustDomain(); !id.MemberOf(td) {
			return fmt.Errorf("security: peer %s is not in trust domain %q", id, td)
		}
		return nil
	}
}

// verifyResumed returns a VerifyConnection callback that verifies and
// authorizes the peer of a resumed session. Go does not call
// VerifyPeerCertificate on resumption, so without it a session ticket would
// outlive a bundle rotation.
func verifyResumed(src Source, authorizer tlsconfig.Authorizer) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if !cs.DidResume {
			return nil // VerifyPeerCertificate has run
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("security: resumed session without a peer certificate")
		}
		id, chains, err := x509svid.Verify(cs.PeerCertificates, src)
		if err != nil {
			return err
		}
		return authorizer(id, chains)
	}
}
