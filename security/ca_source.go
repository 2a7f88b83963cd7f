package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/internal/capb"
)

const (
	// signTimeout bounds one Sign call.
	signTimeout = 30 * time.Second
	// minRetry and maxRetry bound the backoff between failed Sign calls.
	minRetry = 250 * time.Millisecond
	maxRetry = 30 * time.Second
	// maxClockSkew is how far in the future a new certificate may start.
	maxClockSkew = time.Minute
)

// CAConfig configures NewCASource.
type CAConfig struct {
	// Conn is a connection to the control plane, which serves
	// meshlet.ca.v1.CertificateAuthority. Required. The source does not
	// close it. It should be TLS that verifies the control plane: the token
	// crosses it.
	Conn grpc.ClientConnInterface
	// RenewConn, if set, carries renewals: a connection on which the
	// workload proves itself with its current SVID (mTLS), so that no token
	// is needed. A renewal that fails there is tried on Conn with the
	// token, if there is one.
	RenewConn grpc.ClientConnInterface
	// Roots verify the CA's answer: the SVID it returns must chain to
	// them. They are held out of band (the roots the control plane is
	// verified with); the bundle in the answer, which a man in the middle
	// could write, is never what the SVID is checked against. Required
	// unless InsecureTrustResponse.
	Roots x509bundle.Source
	// InsecureTrustResponse checks the SVID against the bundle in the
	// answer itself: for a plaintext control plane in development, where
	// nothing is proven anyway.
	InsecureTrustResponse bool
	// Token authenticates the workload to the CA. It is sent as
	// "authorization: Bearer <token>" request metadata. When empty, no
	// authorization metadata is sent (Conn's own per-RPC credentials, if
	// any, authenticate).
	Token string
	// ID is the identity to ask for,
	// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. Required.
	ID spiffeid.ID
	// TTL is the lifetime to ask for, rounded up to whole seconds. 0 means
	// the CA's default. The CA may shorten it.
	TTL time.Duration
	// Log receives rotations (Info) and failed renewals (Warn while the
	// current SVID is valid, Error after it expired). nil means
	// slog.Default().
	Log *slog.Logger
}

// CASource is a Source whose SVID is issued by meshlet's built-in CA. It
// renews the SVID, with a new key, when half of its lifetime has passed, and
// retries with backoff when renewal fails. Rotation only changes what the
// next handshake reads: connections already established are not touched.
// Its methods are safe for concurrent use and do not block.
type CASource struct {
	client      capb.CertificateAuthorityClient
	renewClient capb.CertificateAuthorityClient // nil without RenewConn
	cfg         CAConfig
	log         *slog.Logger

	cur atomic.Pointer[material]

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ Source = (*CASource)(nil)

// errBadResponse marks a Sign response that cannot be used. Retrying the
// first request would not help.
var errBadResponse = errors.New("unusable CA response")

// NewCASource asks the CA for an SVID for cfg.ID and blocks until it has
// one, or until ctx ends. An unavailable CA is retried with backoff; a
// refusal (a bad token, say) or an unusable answer (a certificate for
// another identity, or one that does not chain to the returned bundle) is
// returned at once, with the CA's status message in the error. The SVID is
// then renewed in the background until Close.
func NewCASource(ctx context.Context, cfg CAConfig) (*CASource, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("security: CA source: CAConfig.Conn is nil (give it a connection to the control plane)")
	case cfg.ID.IsZero():
		return nil, errors.New("security: CA source: CAConfig.ID is empty (want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)")
	case cfg.TTL < 0:
		return nil, fmt.Errorf("security: CA source: CAConfig.TTL is negative (%s)", cfg.TTL)
	case cfg.Roots == nil && !cfg.InsecureTrustResponse:
		return nil, errors.New("security: CA source: CAConfig.Roots is nil (give it the roots the control plane is verified with)")
	}
	s := &CASource{
		client: capb.NewCertificateAuthorityClient(cfg.Conn),
		cfg:    cfg,
		log:    orDefault(cfg.Log),
	}
	if cfg.RenewConn != nil {
		s.renewClient = capb.NewCertificateAuthorityClient(cfg.RenewConn)
	}

	var b backoff
	var lastErr error // of the last attempt that ctx did not cut short
	for {
		m, err := s.sign(ctx, s.client, true)
		if err == nil {
			s.cur.Store(m)
			break
		}
		if cutShort(ctx, err) {
			if lastErr == nil {
				lastErr = err
			}
			<-ctx.Done()
			return nil, fmt.Errorf("security: CA source: no SVID for %s before the context ended: %w (last failure: %w)", cfg.ID, ctx.Err(), lastErr)
		}
		if permanent(err) {
			return nil, err
		}
		lastErr = err
		s.log.Warn("security: CA source: sign failed; retrying", "id", cfg.ID.String(), "error", err)
		t := time.NewTimer(b.next())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("security: CA source: no SVID for %s before the context ended: %w (last failure: %w)", cfg.ID, ctx.Err(), lastErr)
		}
	}

	// Renewals outlive ctx, but keep its values.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(1)
	go s.renew(rctx)
	return s, nil
}

// GetX509SVID returns the current SVID. It implements x509svid.Source.
func (s *CASource) GetX509SVID() (*x509svid.SVID, error) {
	return s.cur.Load().getSVID()
}

// GetX509BundleForTrustDomain returns the bundle the CA returned with the
// current SVID, if td is the SVID's trust domain. It implements
// x509bundle.Source.
func (s *CASource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b, err := s.cur.Load().getBundle(td)
	if err != nil {
		return nil, fmt.Errorf("security: CA source: %w", err)
	}
	return b, nil
}

// Close stops renewing and waits for the renewing goroutine to end. The
// source keeps returning the last SVID. It does not close CAConfig.Conn.
func (s *CASource) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

func (s *CASource) renew(ctx context.Context) {
	defer s.wg.Done()
	next := renewAt(s.cur.Load(), time.Now())
	var b backoff
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}

		m, err := s.renewOnce(ctx)
		now := time.Now()
		if err == nil {
			old := s.cur.Swap(m)
			b = backoff{}
			next = renewAt(m, now)
			leaf := m.svid.Certificates[0]
			s.log.Info("security: CA source: rotated SVID",
				"id", m.svid.ID.String(), "serial", leaf.SerialNumber.String(), "expires", leaf.NotAfter,
				"previous_serial", old.svid.Certificates[0].SerialNumber.String(), "next_renewal", next)
			continue
		}
		if ctx.Err() != nil {
			return
		}

		wait := b.next()
		expires := s.cur.Load().svid.Certificates[0].NotAfter
		if left := expires.Sub(now); left > 0 {
			// Try again at least twice more before the SVID expires.
			wait = max(min(wait, left/2), minRetry)
			s.log.Warn("security: CA source: renewal failed; the current SVID is still valid, retrying",
				"id", s.cfg.ID.String(), "expires", expires, "retry_in", wait, "error", err)
		} else {
			s.log.Error("security: CA source: renewal failed and the SVID has expired; handshakes will fail until renewal succeeds",
				"id", s.cfg.ID.String(), "expired", expires, "retry_in", wait, "error", err)
		}
		next = now.Add(wait)
	}
}

// renewAt is half-way between now (when m was received) and m's expiry.
// Counting from NotBefore instead would renew too early when the CA
// backdates certificates.
func renewAt(m *material, now time.Time) time.Time {
	return now.Add(m.svid.Certificates[0].NotAfter.Sub(now) / 2)
}

// renewOnce renews over the mTLS connection, then, if that fails and there
// is a token, over Conn with the token (the SVID may have expired while
// the process was suspended).
func (s *CASource) renewOnce(ctx context.Context) (*material, error) {
	if s.renewClient == nil {
		return s.sign(ctx, s.client, true)
	}
	m, err := s.sign(ctx, s.renewClient, false)
	if err == nil || s.cfg.Token == "" || ctx.Err() != nil {
		return m, err
	}
	m, err2 := s.sign(ctx, s.client, true)
	if err2 != nil {
		return nil, fmt.Errorf("%w; with the token: %w", err, err2)
	}
	return m, nil
}

// sign makes a new key, asks the CA to sign it over client and checks the
// answer. withToken sends the token.
func (s *CASource) sign(ctx context.Context, client capb.CertificateAuthorityClient, withToken bool) (*material, error) {
	id := s.cfg.ID
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("security: CA source: generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("security: CA source: create CSR: %w", err)
	}
	req := &capb.SignRequest{Csr: csr}
	if s.cfg.TTL > 0 {
		req.TtlSeconds = int64((s.cfg.TTL + time.Second - 1) / time.Second)
	}

	ctx, cancel := context.WithTimeout(ctx, signTimeout)
	defer cancel()
	if s.cfg.Token != "" && withToken {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.cfg.Token)
	}
	resp, err := client.Sign(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("security: CA source: sign %s: %w", id, err)
	}
	m, err := checkSignResponse(resp, id, key, s.cfg.Roots)
	if err != nil {
		return nil, fmt.Errorf("security: CA source: sign %s: %w: %w", id, errBadResponse, err)
	}
	return m, nil
}

func checkSignResponse(resp *capb.SignResponse, id spiffeid.ID, key *ecdsa.PrivateKey, trusted x509bundle.Source) (*material, error) {
	td := id.TrustDomain()
	if resp.GetTrustDomain() != "" && resp.GetTrustDomain() != td.Name() {
		return nil, fmt.Errorf("the CA serves trust domain %q, not %q", resp.GetTrustDomain(), td.Name())
	}
	if len(resp.GetCertChain()) == 0 {
		return nil, errors.New("no certificate in the response")
	}
	if len(resp.GetTrustBundle()) == 0 {
		return nil, errors.New("no trust bundle in the response")
	}
	var chain []byte
	for _, der := range resp.GetCertChain() {
		chain = append(chain, der...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	svid, err := x509svid.ParseRaw(chain, keyDER)
	if err != nil {
		return nil, err
	}
	if svid.ID != id {
		return nil, fmt.Errorf("the CA returned a certificate for %s, but %s was asked for", svid.ID, id)
	}
	var roots []*x509.Certificate
	for i, der := range resp.GetTrustBundle() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("trust bundle certificate %d: %w", i, err)
		}
		roots = append(roots, c)
	}
	bundle := x509bundle.FromX509Authorities(td, roots)
	// A CA whose clock runs a little ahead issues certificates that start
	// in our future; accept those, as peers' clocks may be ahead too.
	at := time.Now()
	if nb := svid.Certificates[0].NotBefore; nb.After(at) && nb.Sub(at) <= maxClockSkew {
		at = nb
	}
	leafErr, bundleErr, chainErr := checkMaterial(svid, bundle, at)
	if err := errors.Join(leafErr, bundleErr, chainErr); err != nil {
		return nil, err
	}
	if trusted != nil {
		// What the SVID must chain to is held out of band; the bundle in
		// the answer is only what peers are verified with.
		if _, _, err := x509svid.Verify(svid.Certificates, trusted, x509svid.WithTime(at)); err != nil {
			return nil, fmt.Errorf("the SVID from the CA does not chain to the roots the control plane is trusted with: %w", err)
		}
	}
	return &material{svid: svid, bundle: bundle}, nil
}

// permanent reports whether retrying err cannot help: the CA refused the
// request, or answered with something unusable.
func permanent(err error) bool {
	if errors.Is(err, errBadResponse) {
		return true
	}
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument,
		codes.FailedPrecondition, codes.Unimplemented, codes.NotFound,
		codes.AlreadyExists, codes.OutOfRange:
		return true
	}
	return false
}

// backoff doubles from minRetry to maxRetry, with ±20% jitter.
type backoff struct{ d time.Duration }

func (b *backoff) next() time.Duration {
	if b.d == 0 {
		b.d = minRetry
	} else {
		b.d = min(2*b.d, maxRetry)
	}
	jitter := time.Duration((mrand.Float64()*0.4 - 0.2) * float64(b.d))
	return b.d + jitter
}

// cutShort reports whether ctx ended the attempt that failed with err. A
// gRPC call may report DeadlineExceeded a moment before ctx itself says
// it is done.
func cutShort(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && status.Code(err) == codes.DeadlineExceeded && !time.Now().Before(deadline.Add(-time.Millisecond))
}
