package security_test

import (
	"crypto/x509"
	"fmt"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshlet/meshlet/security"
)

// A cluster whose SAN is a DNS name accepts only a server whose
// certificate carries that name: being in the trust domain is not enough.
func ExampleAuthorizeServer() {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	authorize := security.AuthorizeServer(td, []string{"secure.example"})

	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/greeter")
	cert := &x509.Certificate{URIs: []*url.URL{id.URL()}}
	fmt.Println(authorize(id, [][]*x509.Certificate{{cert}}))

	cert.DNSNames = []string{"secure.example"}
	fmt.Println(authorize(id, [][]*x509.Certificate{{cert}}))
	// Output:
	// security: server spiffe://cluster.local/ns/default/sa/greeter matches none of the subject alt names the cluster expects (secure.example)
	// <nil>
}
