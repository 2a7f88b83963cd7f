package security

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// SANMatcher matches a certificate's subject alt name in a way other than
// exactly: a prefix, a suffix, a regex (resolver.StringMatch is one).
type SANMatcher interface {
	Match(san string) bool
	String() string
}

// AuthorizeServer returns the authorizer with which a client accepts the
// server of a cluster reached over TLS (use it with ClientTLSConfig). It
// matches the cluster's subject alt names as gRPC-Go does: the server is
// accepted if a SAN of its certificate (a DNS name, URI, IP address or
// email address, as a string) is one of sans exactly, or matches one of
// matchers. A SAN that is a SPIFFE ID is compared with the
// server's SPIFFE ID; an exact SAN compared with a DNS name ignores case,
// and a wildcard DNS name in the certificate ("*.example.com") stands for
// one label. A SAN that matches nothing is never taken as leave to accept
// any server: only with no SANs and no matchers at all is any server of
// trust domain td accepted.
//
// The authorizer is safe for concurrent use; the error it returns names
// the SANs the cluster expects.
func AuthorizeServer(td spiffeid.TrustDomain, sans []string, matchers ...SANMatcher) tlsconfig.Authorizer {
	if len(sans) == 0 && len(matchers) == 0 {
		return tlsconfig.AuthorizeMemberOf(td)
	}
	sans, matchers = slices.Clone(sans), slices.Clone(matchers)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		var leaf *x509.Certificate
		if len(chains) > 0 && len(chains[0]) > 0 {
			leaf = chains[0][0]
		}
		if serverSANsMatch(id, leaf, sans, matchers) {
			return nil
		}
		want := slices.Clone(sans) // appended to; sans is shared
		for _, m := range matchers {
			want = append(want, m.String())
		}
		return fmt.Errorf("security: server %s matches none of the subject alt names the cluster expects (%s)", id, strings.Join(want, ", "))
	}
}

// serverSANsMatch reports whether the server with SPIFFE ID id and leaf
// certificate leaf proves one of sans or matchers.
func serverSANsMatch(id spiffeid.ID, leaf *x509.Certificate, sans []string, matchers []SANMatcher) bool {
	for _, san := range sans {
		if sid, err := spiffeid.FromString(san); err == nil {
			if sid == id {
				return true
			}
			continue
		}
		if leaf != nil && certHasSAN(leaf, exactSAN(san)) {
			return true
		}
	}
	for _, m := range matchers {
		if leaf != nil && certHasSAN(leaf, m) {
			return true
		}
	}
	return false
}

// exactSAN is a SAN compared exactly; against a DNS name, by DNS rules.
type exactSAN string

func (e exactSAN) Match(s string) bool { return string(e) == s }
func (e exactSAN) String() string      { return string(e) }

// certHasSAN reports whether one of c's SANs matches m. An exact match
// against a DNS name follows DNS rules, as gRPC-Go's does.
func certHasSAN(c *x509.Certificate, m SANMatcher) bool {
	exact, isExact := m.(exactSAN)
	for _, dns := range c.DNSNames {
		if isExact && dnsNameMatches(string(exact), dns) || !isExact && m.Match(dns) {
			return true
		}
	}
	for _, u := range c.URIs {
		if m.Match(u.String()) {
			return true
		}
	}
	for _, ip := range c.IPAddresses {
		if m.Match(ip.String()) {
			return true
		}
	}
	for _, e := range c.EmailAddresses {
		if m.Match(e) {
			return true
		}
	}
	return false
}

// dnsNameMatches reports whether a certificate's DNS name san stands for
// name: the same name, without regard to case or a final dot, or, for a
// wildcard "*.example.com", a name of one more label than example.com.
// A wildcard anywhere else stands for nothing.
func dnsNameMatches(name, san string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	san = strings.ToLower(strings.TrimSuffix(san, "."))
	if name == "" || san == "" {
		return false
	}
	rest, wildcard := strings.CutPrefix(san, "*.")
	if !wildcard {
		return !strings.Contains(san, "*") && name == san
	}
	if rest == "" || strings.Contains(rest, "*") {
		return false
	}
	label, ok := strings.CutSuffix(name, "."+rest)
	return ok && label != "" && !strings.Contains(label, ".")
}
