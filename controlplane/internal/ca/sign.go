package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/controlplane/internal/authn"
	"github.com/meshlet/meshlet/internal/capb"
)

// The sizes of RSA key the CA certifies. Below the minimum a key is
// weak; above the maximum every handshake that verifies with it costs its
// peers more (RSA verification grows with the square of the size), for no
// security a 4096-bit key lacks.
const (
	minRSABits = 2048
	maxRSABits = 4096
)

// acceptedKeys says which keys checkKey accepts, for its errors.
const acceptedKeys = "this CA signs ECDSA P-256 or P-384 keys and RSA keys of 2048 to 4096 bits"

// errCAExpired is returned by issue when the CA certificates have expired.
var errCAExpired = errors.New("ca: the CA certificate has expired")

// server serves capb.CertificateAuthority for a CA.
type server struct {
	capb.UnimplementedCertificateAuthorityServer
	ca *CA
}

// Sign issues an X.509 SVID for the CSR in req. It does not block.
func (s *server) Sign(ctx context.Context, req *capb.SignRequest) (*capb.SignResponse, error) {
	resp, err := s.ca.sign(ctx, req)
	if err != nil {
		st, _ := status.FromError(err)
		s.ca.log.Warn("ca: refused", "code", st.Code().String(), "reason", st.Message(), "peer", peerAddr(ctx))
		return nil, err
	}
	return resp, nil
}

func (c *CA) sign(ctx context.Context, req *capb.SignRequest) (*capb.SignResponse, error) {
	// A workload renewing over mTLS proves its identity with its current
	// SVID and needs no token; it may ask only for that identity.
	peerID, hasPeer := authn.FromContext(ctx)
	var tokenID Identity
	hasToken := false
	if !hasPeer || len(metadata.ValueFromIncomingContext(ctx, "authorization")) > 0 {
		var err error
		tokenID, hasToken, err = c.authenticate(ctx)
		if err != nil {
			return nil, err
		}
	}
	csr, reqID, err := c.checkCSR(req.GetCsr())
	if err != nil {
		return nil, err
	}
	id := Identity{Namespace: reqID.ns, ServiceAccount: reqID.sa}
	if hasToken && id != tokenID {
		return nil, status.Errorf(codes.PermissionDenied, "ca: token for %s cannot ask for %s", tokenID, reqID.id)
	}
	if hasPeer && reqID.id != peerID.ID {
		return nil, status.Errorf(codes.PermissionDenied, "ca: a workload with the SVID of %s cannot ask for %s", peerID.ID, reqID.id)
	}
	hasToken = hasToken || hasPeer

	ttl, err := c.ttl(req.GetTtlSeconds())
	if err != nil {
		return nil, err
	}
	now := c.now()
	leaf, err := c.issue(csr.PublicKey, reqID.id, ttl, now)
	if errors.Is(err, errCAExpired) {
		return nil, status.Errorf(codes.FailedPrecondition, "ca: the CA certificate expired at %s: the operator must replace it", c.auth.notAfter.UTC().Format(time.RFC3339))
	} else if err != nil {
		return nil, status.Errorf(codes.Internal, "ca: sign: %v", err)
	}

	attrs := []any{
		"spiffe_id", reqID.id.String(),
		"serial", leaf.SerialNumber.Text(16),
		"expires", leaf.NotAfter.UTC().Format(time.RFC3339),
		"peer", peerAddr(ctx),
	}
	if hasToken {
		c.log.Info("ca: signed", attrs...)
	} else {
		c.log.Warn("ca: signed without a token (insecure development mode)", attrs...)
	}

	resp := &capb.SignResponse{
		CertChain:   make([][]byte, 0, 1+len(c.auth.chain)),
		TrustBundle: make([][]byte, 0, len(c.auth.roots)),
		TrustDomain: c.td.Name(),
	}
	resp.CertChain = append(resp.CertChain, leaf.Raw)
	for _, ic := range c.auth.chain {
		resp.CertChain = append(resp.CertChain, ic.Raw)
	}
	for _, r := range c.auth.roots {
		resp.TrustBundle = append(resp.TrustBundle, r.Raw)
	}
	return resp, nil
}

// authenticate returns the identity of the request's bearer token. With
// no token, it returns hasToken false in insecure development mode and an
// Unauthenticated error otherwise. Errors never quote the token.
func (c *CA) authenticate(ctx context.Context) (id Identity, hasToken bool, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch len(vals) {
	case 0:
		if c.insecureDev {
			return Identity{}, false, nil
		}
		return Identity{}, false, status.Error(codes.Unauthenticated, `ca: no valid token: the request has no "authorization: Bearer <token>" metadata`)
	case 1:
	default:
		return Identity{}, false, status.Errorf(codes.Unauthenticated, "ca: no valid token: the request has %d authorization values, want one", len(vals))
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, false, status.Error(codes.Unauthenticated, `ca: no valid token: the authorization metadata is not "Bearer <token>"`)
	}
	id, ok = c.lookup(token)
	if !ok {
		return Identity{}, false, status.Error(codes.Unauthenticated, "ca: no valid token: the token is not known to this CA (check the tokens file, or ask the operator for a token)")
	}
	return id, true, nil
}

// workloadID is a SPIFFE ID of the form spiffe://<td>/ns/<ns>/sa/<sa>.
type workloadID struct {
	id     spiffeid.ID
	ns, sa string
}

// checkCSR parses der and returns it and the identity it asks for. Errors
// are gRPC status errors.
func (c *CA) checkCSR(der []byte) (*x509.CertificateRequest, workloadID, error) {
	var none workloadID
	if len(der) == 0 {
		return nil, none, status.Error(codes.InvalidArgument, "ca: the request has no CSR (csr: a DER-encoded PKCS #10 request)")
	}
	if bytes.HasPrefix(bytes.TrimSpace(der), []byte("-----BEGIN")) {
		return nil, none, status.Error(codes.InvalidArgument, "ca: the CSR is PEM; send it DER-encoded (the bytes inside the PEM block)")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, none, status.Errorf(codes.InvalidArgument, "ca: the CSR is not a DER-encoded PKCS #10 request: %v", err)
	}
	// Before the signature, which is checked with this key: a huge RSA
	// key would make the check itself costly.
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, none, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, none, status.Errorf(codes.InvalidArgument, "ca: the CSR's signature does not verify: %v", err)
	}
	switch {
	case len(csr.DNSNames) > 0:
		return nil, none, status.Errorf(codes.InvalidArgument, "ca: the CSR has DNS SANs %q; an SVID carries only its SPIFFE ID (remove them)", csr.DNSNames)
	case len(csr.IPAddresses) > 0:
		return nil, none, status.Errorf(codes.InvalidArgument, "ca: the CSR has IP SANs %v; an SVID carries only its SPIFFE ID (remove them)", csr.IPAddresses)
	case len(csr.EmailAddresses) > 0:
		return nil, none, status.Errorf(codes.InvalidArgument, "ca: the CSR has email SANs %q; an SVID carries only its SPIFFE ID (remove them)", csr.EmailAddresses)
	case len(csr.URIs) != 1:
		return nil, none, status.Errorf(codes.InvalidArgument, "ca: the CSR has %d URI SANs, want exactly one, the workload's SPIFFE ID", len(csr.URIs))
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return nil, none, status.Errorf(codes.InvalidArgument, "ca: the CSR's URI SAN %q is not a SPIFFE ID: %v", csr.URIs[0].String(), err)
	}
	if !id.MemberOf(c.td) {
		return nil, none, status.Errorf(codes.PermissionDenied, "ca: this CA signs only for trust domain %q, and cannot sign %s", c.td.Name(), id)
	}
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 4 || seg[0] != "ns" || seg[2] != "sa" {
		return nil, none, status.Errorf(codes.InvalidArgument, "ca: %s is not of the form spiffe://%s/ns/<namespace>/sa/<service-account>", id, c.td.Name())
	}
	return csr, workloadID{id: id, ns: seg[1], sa: seg[3]}, nil
}

// checkKey accepts the keys that every TLS stack in a mesh (Go, BoringSSL,
// Java) verifies in X.509 certificates, and whose cost is bounded: ECDSA
// P-256 and P-384, and RSA of 2048 to 4096 bits. Anything else is an
// InvalidArgument error that names the key.
func checkKey(pub any) error {
	var key string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		key = "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits >= minRSABits && bits <= maxRSABits {
			return nil
		}
		key = fmt.Sprintf("RSA of %d bits", k.N.BitLen())
	case ed25519.PublicKey:
		key = "Ed25519"
	default:
		key = fmt.Sprintf("of type %T", pub)
	}
	return status.Errorf(codes.InvalidArgument, "ca: the CSR's key is %s; %s (ECDSA P-256 is the usual choice)", key, acceptedKeys)
}

// ttl returns the lifetime for a request that asked for seconds.
func (c *CA) ttl(seconds int64) (time.Duration, error) {
	switch {
	case seconds < 0:
		return 0, status.Errorf(codes.InvalidArgument, "ca: ttl_seconds %d is negative (0 asks for the default, %v)", seconds, c.defaultTTL)
	case seconds == 0:
		return c.defaultTTL, nil
	case seconds > int64(c.maxTTL/time.Second):
		return c.maxTTL, nil
	}
	return time.Duration(seconds) * time.Second, nil
}

// issue signs a leaf SVID for pub and id, valid from a minute before now
// (clock skew) for ttl, within the CA certificates' lifetime.
func (c *CA) issue(pub crypto.PublicKey, id spiffeid.ID, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(c.auth.notBefore) {
		notBefore = c.auth.notBefore
	}
	notAfter := now.Add(ttl)
	if notAfter.After(c.auth.notAfter) {
		notAfter = c.auth.notAfter
	}
	if !notAfter.After(now) {
		return nil, errCAExpired
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"meshlet"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.auth.cert, pub, c.auth.signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// selfTest issues an SVID for a throwaway key and checks it against the
// CA's own bundle, so that a CA that cannot issue usable SVIDs fails at New
// rather than at a workload.
func (c *CA) selfTest() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca: self-test key: %w", err)
	}
	id, err := spiffeid.FromSegments(c.td, "ns", "meshlet-system", "sa", "ca-self-test")
	if err != nil {
		return fmt.Errorf("ca: self-test identity: %w", err)
	}
	now := c.now()
	leaf, err := c.issue(key.Public(), id, time.Minute, now)
	if err != nil {
		return fmt.Errorf("ca: self-test: issue an SVID: %w", err)
	}
	certs := append([]*x509.Certificate{leaf}, c.auth.chain...)
	bundle := x509bundle.FromX509Authorities(c.td, c.auth.roots)
	if _, _, err := x509svid.Verify(certs, bundle, x509svid.WithTime(now)); err != nil {
		return fmt.Errorf("ca: self-test: an SVID from %s does not verify against the CA's own bundle: %w", describe(c.auth.cert), err)
	}
	// Peers that verify with plain crypto/x509 check the extended key
	// usage along the chain, which x509svid.Verify does not.
	roots := x509.NewCertPool()
	for _, r := range c.auth.roots {
		roots.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, ic := range c.auth.chain {
		inter.AddCert(ic)
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{eku}}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("ca: self-test: the CA chain of %s does not allow SVIDs for TLS (extended key usage): %w", describe(c.auth.cert), err)
		}
	}
	return nil
}

func peerAddr(ctx context.Context) slog.Value {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return slog.StringValue(p.Addr.String())
	}
	return slog.StringValue("")
}
