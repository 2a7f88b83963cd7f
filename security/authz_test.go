package security_test

import (
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

func TestAuthorize(t *testing.T) {
	ca := newTestCA("cluster.local")
	x := ca.issue(ca.id("default", "x"), 0).Certificates[0]
	y := ca.issue(ca.id("default", "y"), 0).Certificates[0]
	exact := func(s string) *resolver.StringMatch {
		return &resolver.StringMatch{Kind: resolver.StringExact, Value: s}
	}
	principalIs := func(id string) resolver.Principal {
		return resolver.Principal{Kind: resolver.PrincipalAuthenticated, Name: exact(id)}
	}
	filters := []resolver.HTTPFilter{
		{Name: "deny", RBAC: &resolver.RBAC{Action: resolver.RBACDeny, Policies: []resolver.RBACPolicy{{
			Name:        "ns[default]-policy[deny-admin]-rule[0]",
			Permissions: []resolver.Permission{{Kind: resolver.PermissionURLPath, String: resolver.StringMatch{Kind: resolver.StringPrefix, Value: "/admin"}}},
			Principals:  []resolver.Principal{{Kind: resolver.PrincipalAny}},
		}}}},
		{Name: "allow", RBAC: &resolver.RBAC{Action: resolver.RBACAllow, Policies: []resolver.RBACPolicy{{
			Name: "ns[default]-policy[allow-x]-rule[0]",
			Permissions: []resolver.Permission{{Kind: resolver.PermissionAnd, Rules: []resolver.Permission{
				{Kind: resolver.PermissionHeader, Header: resolver.HeaderMatch{Name: ":method", String: resolver.StringMatch{Kind: resolver.StringExact, Value: "GET"}}},
				{Kind: resolver.PermissionDestinationPort, Port: 9080},
			}}},
			Principals: []resolver.Principal{principalIs(ca.id("default", "x").String())},
		}, {
			Name:        "ns[default]-policy[allow-header]-rule[0]",
			Permissions: []resolver.Permission{{Kind: resolver.PermissionHeader, Header: resolver.HeaderMatch{Name: "x-token", String: resolver.StringMatch{Kind: resolver.StringExact, Value: "open"}}}},
			Principals:  []resolver.Principal{{Kind: resolver.PrincipalNot, IDs: []resolver.Principal{principalIs(ca.id("default", "x").String())}}},
		}}}},
	}
	local := netip.MustParseAddrPort("127.0.0.1:9080")
	cases := []struct {
		name   string
		req    security.AuthzRequest
		denied string // "" when allowed, else a part of the reason
	}{
		{"x GET on 9080", security.AuthzRequest{Peer: x, Method: "GET", Path: "/a", Local: local}, ""},
		{"x POST", security.AuthzRequest{Peer: x, Method: "POST", Path: "/a", Local: local}, "did not match an allow policy"},
		{"x on another port", security.AuthzRequest{Peer: x, Method: "GET", Path: "/a", Local: netip.MustParseAddrPort("127.0.0.1:9081")}, "did not match an allow policy"},
		{"y GET", security.AuthzRequest{Peer: y, Method: "GET", Path: "/a", Local: local}, "did not match an allow policy"},
		{"y with the header", security.AuthzRequest{Peer: y, Method: "GET", Path: "/a", Local: local, Header: func(n string) []string {
			if n == "x-token" {
				return []string{"open"}
			}
			return nil
		}}, ""},
		{"plaintext with the header", security.AuthzRequest{Method: "GET", Path: "/a", Local: local, Header: func(n string) []string {
			if n == "x-token" {
				return []string{"open"}
			}
			return nil
		}}, ""},
		{"plaintext without", security.AuthzRequest{Method: "GET", Path: "/a", Local: local}, "did not match an allow policy"},
		{"x on /admin", security.AuthzRequest{Peer: x, Method: "GET", Path: "/admin/users", Local: local}, `deny policy "ns[default]-policy[deny-admin]-rule[0]"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := security.Authorize(filters, tc.req)
			switch {
			case tc.denied == "" && err != nil:
				t.Errorf("denied: %v", err)
			case tc.denied != "" && (err == nil || !errors.Is(err, security.ErrDenied) || !strings.Contains(err.Error(), tc.denied)):
				t.Errorf("got %v, want a denial saying %q", err, tc.denied)
			}
		})
	}
	if err := security.Authorize(nil, security.AuthzRequest{}); err != nil {
		t.Errorf("no filters: %v", err)
	}
}

func TestAuthorizeServer(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	greeter := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/greeter")
	other := spiffeid.RequireFromString("spiffe://other.example/ns/default/sa/greeter")
	cert := func(id spiffeid.ID, dns ...string) *x509.Certificate {
		return &x509.Certificate{
			URIs:           []*url.URL{id.URL()},
			DNSNames:       dns,
			IPAddresses:    []net.IP{net.ParseIP("10.0.0.7")},
			EmailAddresses: []string{"ops@secure.example"},
		}
	}
	exact := func(sans ...string) *resolver.UpstreamTLS { return &resolver.UpstreamTLS{SANs: sans} }
	matcher := func(m resolver.StringMatch) *resolver.UpstreamTLS {
		return &resolver.UpstreamTLS{SANMatchers: []resolver.StringMatch{m}}
	}
	tests := []struct {
		name string
		tls  *resolver.UpstreamTLS
		id   spiffeid.ID
		cert *x509.Certificate
		ok   bool
	}{
		{"no SANs: own trust domain", nil, greeter, cert(greeter), true},
		{"no SANs: another trust domain", &resolver.UpstreamTLS{}, other, cert(other), false},
		{"SPIFFE SAN: that ID", exact(greeter.String()), greeter, cert(greeter), true},
		{"SPIFFE SAN: another ID", exact("spiffe://cluster.local/ns/default/sa/reviews"), greeter, cert(greeter), false},
		{"SPIFFE SAN: same path, other trust domain", exact(greeter.String()), other, cert(other), false},
		{"DNS SAN the certificate lacks", exact("secure.example"), greeter, cert(greeter), false},
		{"DNS SAN the certificate has", exact("secure.example"), greeter, cert(greeter, "secure.example"), true},
		{"DNS SAN, other case", exact("Secure.Example"), greeter, cert(greeter, "secure.example."), true},
		{"DNS SAN, prefix of the certificate's", exact("secure.example"), greeter, cert(greeter, "secure.example.evil"), false},
		{"DNS SAN under a wildcard", exact("api.secure.example"), greeter, cert(greeter, "*.secure.example"), true},
		{"wildcard covers one label only", exact("a.api.secure.example"), greeter, cert(greeter, "*.secure.example"), false},
		{"wildcard does not cover its parent", exact("secure.example"), greeter, cert(greeter, "*.secure.example"), false},
		{"partial wildcard stands for nothing", exact("api.secure.example"), greeter, cert(greeter, "a*.secure.example"), false},
		{"IP SAN", exact("10.0.0.7"), greeter, cert(greeter), true},
		{"email SAN", exact("ops@secure.example"), greeter, cert(greeter), true},
		{"URI SAN that is not SPIFFE", exact("https://secure.example/x"), greeter, cert(greeter), false},
		{"one of several", exact("secure.example", greeter.String()), greeter, cert(greeter), true},
		{"prefix matcher on the URI", matcher(resolver.StringMatch{Kind: resolver.StringPrefix, Value: "spiffe://cluster.local/ns/default/"}), greeter, cert(greeter), true},
		{"prefix matcher, other namespace", matcher(resolver.StringMatch{Kind: resolver.StringPrefix, Value: "spiffe://cluster.local/ns/prod/"}), greeter, cert(greeter), false},
		{"suffix matcher on a DNS name", matcher(resolver.StringMatch{Kind: resolver.StringSuffix, Value: ".secure.example"}), greeter, cert(greeter, "api.secure.example"), true},
		{"contains matcher", matcher(resolver.StringMatch{Kind: resolver.StringContains, Value: "secure"}), greeter, cert(greeter), true},
		{"regex matcher", matcher(resolver.StringMatch{Kind: resolver.StringRegex, Value: "api-[0-9]+", Regex: regexp.MustCompile("^(?:api-[0-9]+)$")}), greeter, cert(greeter, "api-42"), true},
		{"regex matcher, whole string only", matcher(resolver.StringMatch{Kind: resolver.StringRegex, Value: "api", Regex: regexp.MustCompile("^(?:api)$")}), greeter, cert(greeter, "api-42"), false},
		{"ignore-case exact on a DNS name", matcher(resolver.StringMatch{Kind: resolver.StringExact, Value: "SECURE.example", IgnoreCase: true}), greeter, cert(greeter, "secure.example"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := security.AuthorizeServer(tt.tls, td)(tt.id, [][]*x509.Certificate{{tt.cert}})
			if (err == nil) != tt.ok {
				t.Fatalf("got %v, want accepted: %v", err, tt.ok)
			}
		})
	}

	err := security.AuthorizeServer(exact("secure.example"), td)(greeter, [][]*x509.Certificate{{cert(greeter)}})
	if err == nil || !strings.Contains(err.Error(), "secure.example") || !strings.Contains(err.Error(), greeter.String()) {
		t.Errorf("got %v, want an error naming the server and the SAN expected", err)
	}
}
