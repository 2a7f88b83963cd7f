package security

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshlet/meshlet/resolver"
)

// AuthzRequest is what an authorization decision looks at, for any
// transport.
type AuthzRequest struct {
	// Peer is the caller's verified leaf certificate; nil for a plaintext
	// caller.
	Peer *x509.Certificate
	// Method, Path and Authority of the request. Path is without the
	// query and escaped as sent, as Envoy's RBAC filter sees it; a server
	// normalizes it first as its Listener says.
	Method, Path, Authority string
	// Header returns a request header's values, nil when absent. Names are
	// lower-case.
	Header func(name string) []string
	// Local is the server's address the request came in on; Remote is the
	// caller's.
	Local, Remote netip.AddrPort
	// ServerName is the TLS SNI, if any.
	ServerName string
}

// ErrDenied is wrapped by the error Authorize returns for a refused
// request.
var ErrDenied = errors.New("denied by policy")

// Authorize applies a server Listener's RBAC filters to a request, in
// order, with Envoy's and gRPC-Go's semantics: a DENY filter refuses a
// request that matches one of its policies; an ALLOW filter refuses one
// that matches none. Filters of other types are ignored. The error says
// which policy decided, in gRPC-Go's words, and wraps ErrDenied.
func Authorize(filters []resolver.HTTPFilter, req AuthzRequest) error {
	for _, f := range filters {
		if f.RBAC == nil {
			continue
		}
		matched := ""
		for _, p := range f.RBAC.Policies {
			if anyPermission(p.Permissions, &req) && anyPrincipal(p.Principals, &req) {
				matched = p.Name
				break
			}
		}
		switch f.RBAC.Action {
		case resolver.RBACDeny:
			if matched != "" {
				return fmt.Errorf("incoming request matched a deny policy %q: %w", matched, ErrDenied)
			}
		case resolver.RBACAllow:
			if matched == "" {
				return fmt.Errorf("incoming request did not match an allow policy: %w", ErrDenied)
			}
		}
	}
	return nil
}

func anyPermission(ps []resolver.Permission, req *AuthzRequest) bool {
	for _, p := range ps {
		if permission(p, req) {
			return true
		}
	}
	return false
}

func permission(p resolver.Permission, req *AuthzRequest) bool {
	switch p.Kind {
	case resolver.PermissionAny:
		return true
	case resolver.PermissionAnd:
		for _, r := range p.Rules {
			if !permission(r, req) {
				return false
			}
		}
		return true
	case resolver.PermissionOr:
		return anyPermission(p.Rules, req)
	case resolver.PermissionNot:
		return len(p.Rules) == 1 && !permission(p.Rules[0], req)
	case resolver.PermissionHeader:
		return p.Header.Match(header(req, p.Header.Name))
	case resolver.PermissionURLPath:
		return p.String.Match(req.Path)
	case resolver.PermissionDestinationIP:
		return req.Local.IsValid() && p.CIDR.Contains(req.Local.Addr())
	case resolver.PermissionDestinationPort:
		return uint32(req.Local.Port()) == p.Port
	case resolver.PermissionDestinationPortRange:
		port := uint32(req.Local.Port())
		return port >= p.Port && port < p.PortEnd
	case resolver.PermissionRequestedServerName:
		return p.String.Match(req.ServerName)
	}
	return false // a kind this evaluator does not know never matches
}

func anyPrincipal(ps []resolver.Principal, req *AuthzRequest) bool {
	for _, p := range ps {
		if principal(p, req) {
			return true
		}
	}
	return false
}

func principal(p resolver.Principal, req *AuthzRequest) bool {
	switch p.Kind {
	case resolver.PrincipalAny:
		return true
	case resolver.PrincipalAnd:
		for _, id := range p.IDs {
			if !principal(id, req) {
				return false
			}
		}
		return true
	case resolver.PrincipalOr:
		return anyPrincipal(p.IDs, req)
	case resolver.PrincipalNot:
		return len(p.IDs) == 1 && !principal(p.IDs[0], req)
	case resolver.PrincipalAuthenticated:
		if req.Peer == nil {
			return false
		}
		return p.Name == nil || p.Name.Match(certName(req.Peer))
	case resolver.PrincipalSourceIP, resolver.PrincipalDirectRemoteIP, resolver.PrincipalRemoteIP:
		return req.Remote.IsValid() && p.CIDR.Contains(req.Remote.Addr())
	case resolver.PrincipalHeader:
		return p.Header.Match(header(req, p.Header.Name))
	case resolver.PrincipalURLPath:
		return p.String.Match(req.Path)
	}
	return false
}

// certName is the name Envoy matches an authenticated principal against:
// the first URI SAN, else the first DNS SAN, else the subject.
func certName(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

// header gives the pseudo-headers from the request's fields, as HTTP/2
// carries them.
func header(req *AuthzRequest, name string) []string {
	switch name {
	case ":method":
		return []string{req.Method}
	case ":path":
		return []string{req.Path}
	case ":authority", "host":
		return []string{req.Authority}
	}
	if req.Header == nil {
		return nil
	}
	return req.Header(name)
}

// AuthorizeServer returns the authorizer with which a client accepts the
// server of a cluster reached over TLS (use it with ClientTLSConfig). It
// matches the cluster's subject alt names as gRPC-Go does: the server is
// accepted if a SAN of its certificate (a DNS name, URI, IP address or
// email address, as a string) is one of tls.SANs exactly, or matches one
// of tls.SANMatchers. A SAN that is a SPIFFE ID is compared with the
// server's SPIFFE ID; an exact SAN compared with a DNS name ignores case,
// and a wildcard DNS name in the certificate ("*.example.com") stands for
// one label. A SAN that matches nothing is never taken as leave to accept
// any server: only with no SANs and no matchers at all (tls nil included)
// is any server of trust domain td accepted.
//
// The authorizer is safe for concurrent use; the error it returns names
// the SANs the cluster expects.
func AuthorizeServer(tls *resolver.UpstreamTLS, td spiffeid.TrustDomain) tlsconfig.Authorizer {
	if tls == nil || len(tls.SANs) == 0 && len(tls.SANMatchers) == 0 {
		return tlsconfig.AuthorizeMemberOf(td)
	}
	sans, matchers := slices.Clone(tls.SANs), slices.Clone(tls.SANMatchers)
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
			want = append(want, m.Kind.String()+" "+m.Value)
		}
		return fmt.Errorf("security: server %s matches none of the subject alt names the cluster expects (%s)", id, strings.Join(want, ", "))
	}
}

// serverSANsMatch reports whether the server with SPIFFE ID id and leaf
// certificate leaf proves one of sans or matchers.
func serverSANsMatch(id spiffeid.ID, leaf *x509.Certificate, sans []string, matchers []resolver.StringMatch) bool {
	for _, san := range sans {
		if sid, err := spiffeid.FromString(san); err == nil {
			if sid == id {
				return true
			}
			continue
		}
		if leaf != nil && certHasSAN(leaf, resolver.StringMatch{Kind: resolver.StringExact, Value: san}) {
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

// certHasSAN reports whether one of c's SANs matches m. An exact match
// against a DNS name follows DNS rules, as gRPC-Go's does.
func certHasSAN(c *x509.Certificate, m resolver.StringMatch) bool {
	for _, dns := range c.DNSNames {
		if m.Kind == resolver.StringExact && dnsNameMatches(m.Value, dns) || m.Kind != resolver.StringExact && m.Match(dns) {
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
