package mesh

import (
	"context"
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

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
		ca, err := security.NewCASource(ctx, security.CAConfig{Conn: m.cpConn, Token: token, ID: m.spiffeID, Log: m.log})
		if err != nil {
			return fmt.Errorf("mesh: identity from the control plane's CA: %w", err)
		}
		m.closers = append(m.closers, func() { ca.Close() })
		m.identity = ca
	} else if svid, err := m.identity.GetX509SVID(); err == nil {
		m.spiffeID = svid.ID
	} else {
		return fmt.Errorf("mesh: identity source: %w", err)
	}
	key, unregister := security.RegisterProviderSource(m.identity)
	m.closers = append(m.closers, unregister)
	m.providerKey = key
	return nil
}

// Identity returns the workload's identity, for TLS configs of its own:
// security.ServerTLSConfig and security.ClientTLSConfig take it.
func (m *Mesh) Identity() security.Source { return m.identity }

// SPIFFEID returns the workload's SPIFFE ID.
func (m *Mesh) SPIFFEID() spiffeid.ID { return m.spiffeID }
