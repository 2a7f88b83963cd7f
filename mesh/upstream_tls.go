package mesh

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

// serverAuthorizer accepts the server of a cluster by the cluster's
// subject alt names (security.AuthorizeServer), with none given (tls nil)
// any server of trust domain td.
func serverAuthorizer(tls *resolver.UpstreamTLS, td spiffeid.TrustDomain) tlsconfig.Authorizer {
	if tls == nil {
		return security.AuthorizeServer(td, nil)
	}
	matchers := make([]security.SANMatcher, len(tls.SANMatchers))
	for i, m := range tls.SANMatchers {
		matchers[i] = m
	}
	return security.AuthorizeServer(td, tls.SANs, matchers...)
}
