package dataplane

import (
	"crypto/x509"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

// ServerAuthorizer accepts the server of cluster by its subject alt names
// (security.AuthorizeServer), with none given (tls nil) any server of
// trust domain td. Its refusal says which cluster expected the names and
// where the control plane took them from.
func ServerAuthorizer(cluster string, tls *resolver.UpstreamTLS, td spiffeid.TrustDomain) tlsconfig.Authorizer {
	if tls == nil {
		return security.AuthorizeServer(td, nil)
	}
	matchers := make([]security.SANMatcher, len(tls.SANMatchers))
	for i, m := range tls.SANMatchers {
		matchers[i] = m
	}
	authz := security.AuthorizeServer(td, tls.SANs, matchers...)
	from := "the service accounts of its endpoints, unless a ServiceEntry for the host sets subjectAltNames"
	for _, san := range tls.SANs {
		if _, err := spiffeid.FromString(san); err != nil {
			from = "the subjectAltNames of the ServiceEntry for the host"
			break
		}
	}
	if len(tls.SANMatchers) > 0 {
		from = "the cluster's match_subject_alt_names"
	}
	what := DescribeCluster(cluster)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if err := authz(id, chains); err != nil {
			return fmt.Errorf("mesh: %s: %w; the control plane took the expected names from %s", what, err, from)
		}
		return nil
	}
}

// TLSKey tells TLS settings apart: equal keys, equal settings.
func TLSKey(tls *resolver.UpstreamTLS) string {
	if tls == nil {
		return "plaintext"
	}
	return fmt.Sprintf("tls %q %q %v", tls.SNI, tls.SANs, tls.SANMatchers)
}
