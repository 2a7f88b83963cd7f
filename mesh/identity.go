package mesh

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/security"
)

// EnvCAToken names the environment variable that gives the token the
// control plane's CA asks for, when WithCAToken is not used.
const EnvCAToken = "MESHLET_CA_TOKEN"

// WithIdentity makes the workload use src for its identity (a SPIRE
// Workload API source, files, or one of your own) instead of asking the
// control plane's built-in CA. The caller keeps ownership: Close does not
// close src.
func WithIdentity(src security.Source) Option {
	return optionFunc(func(o *options) { o.identity = src })
}

// WithCAToken sets the token that authenticates this workload to the
// control plane's built-in CA. Default: the MESHLET_CA_TOKEN environment
// variable.
func WithCAToken(token string) Option { return optionFunc(func(o *options) { o.caToken = token }) }

// WithTrustDomain sets the SPIFFE trust domain. Default "cluster.local",
// Istio's.
func WithTrustDomain(td string) Option { return optionFunc(func(o *options) { o.trustDomain = td }) }

// setupIdentity gets the workload's first SVID and makes it available to
// gRPC-Go's xDS credentials through meshlet's certificate provider.
func (m *Mesh) setupIdentity(ctx context.Context) error {
	o := m.opts
	td, err := spiffeid.TrustDomainFromString(o.trustDomain)
	if err != nil {
		return fmt.Errorf("mesh: trust domain %q: %w", o.trustDomain, err)
	}
	m.spiffeID, err = spiffeid.FromSegments(td, "ns", o.namespace, "sa", o.serviceAccount)
	if err != nil {
		return fmt.Errorf("mesh: identity of ns %q sa %q: %w", o.namespace, o.serviceAccount, err)
	}
	m.identity = o.identity
	if m.identity == nil {
		token := o.caToken
		if token == "" {
			token = os.Getenv(EnvCAToken)
		}
		// The first CSR goes over TLS that verifies the control plane and
		// carries the token; renewals go over m.cpConn, mTLS with the SVID
		// being renewed, which the holder gives once there is one.
		holder := &svidHolder{}
		bootCreds, renewCreds := credentials.NewTLS(m.cpTrust.serverAuthConfig()), credentials.NewTLS(m.cpTrust.mtlsConfig(holder))
		if o.cpInsecure {
			bootCreds, renewCreds = insecure.NewCredentials(), insecure.NewCredentials()
		}
		boot, err := dialControlPlane(o.controlPlane, bootCreds)
		if err != nil {
			return fmt.Errorf("mesh: control plane %s: %w", o.controlPlane, err)
		}
		m.closers = append(m.closers, func() { boot.Close() })
		if m.cpConn, err = dialControlPlane(o.controlPlane, renewCreds); err != nil {
			return fmt.Errorf("mesh: control plane %s: %w", o.controlPlane, err)
		}
		// The CA source warns on every failed attempt; once per few
		// seconds says as much.
		cfg := security.CAConfig{Conn: boot, RenewConn: m.cpConn, Token: token, ID: m.spiffeID, Log: throttled(m.log, retryWarnEvery), Roots: m.cpTrust}
		if o.cpInsecure {
			cfg.Roots, cfg.InsecureTrustResponse = nil, true
		}
		ca, err := security.NewCASource(ctx, cfg)
		if err != nil {
			if status.Code(err) == codes.Unauthenticated {
				return fmt.Errorf("mesh: identity from the control plane's CA at %s: %w (give the workload its token: %s, or WithCAToken; the control plane's --ca-tokens-file lists them)", o.controlPlane, err, EnvCAToken)
			}
			return fmt.Errorf("mesh: identity from the control plane's CA at %s: %w (the control plane %s is verified with: %s)", o.controlPlane, err, m.cpTrust.id, m.cpTrust.describe())
		}
		holder.v.Store(x509svid.Source(ca))
		m.closers = append(m.closers, func() { ca.Close() })
		m.identity = ca
	} else if svid, err := m.identity.GetX509SVID(); err == nil {
		m.spiffeID = svid.ID
		// SPIRE or files: their bundle verifies the control plane too.
		m.cpTrust.setSource(m.identity)
	} else {
		return fmt.Errorf("mesh: identity source: %w", err)
	}
	// The service account is what the certificate proves.
	if seg := strings.Split(strings.TrimPrefix(m.spiffeID.Path(), "/"), "/"); len(seg) == 4 && seg[0] == "ns" && seg[2] == "sa" {
		m.opts.serviceAccount = seg[3]
	}
	key, unregister := security.RegisterProviderSource(m.identity)
	m.closers = append(m.closers, unregister)
	m.providerKey = key
	return nil
}

// svidHolder is an x509svid.Source that is set once the first SVID is
// there: the renewal connection's credentials are made before it.
type svidHolder struct{ v atomic.Value }

func (h *svidHolder) GetX509SVID() (*x509svid.SVID, error) {
	src, ok := h.v.Load().(x509svid.Source)
	if !ok {
		return nil, errors.New("mesh: no SVID yet")
	}
	return src.GetX509SVID()
}

// Identity returns the workload's identity, for TLS configs of its own:
// security.ServerTLSConfig and security.ClientTLSConfig take it.
func (m *Mesh) Identity() security.Source { return m.identity }

// SPIFFEID returns the workload's SPIFFE ID.
func (m *Mesh) SPIFFEID() spiffeid.ID { return m.spiffeID }
