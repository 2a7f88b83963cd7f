package security_test

import (
	"crypto/x509"
	"net"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

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
	type sanSet struct {
		sans     []string
		matchers []security.SANMatcher
	}
	exact := func(sans ...string) *sanSet { return &sanSet{sans: sans} }
	matcher := func(m resolver.StringMatch) *sanSet { return &sanSet{matchers: []security.SANMatcher{m}} }
	tests := []struct {
		name string
		tls  *sanSet
		id   spiffeid.ID
		cert *x509.Certificate
		ok   bool
	}{
		{"no SANs: own trust domain", nil, greeter, cert(greeter), true},
		{"no SANs: another trust domain", &sanSet{}, other, cert(other), false},
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
			var set sanSet
			if tt.tls != nil {
				set = *tt.tls
			}
			err := security.AuthorizeServer(td, set.sans, set.matchers...)(tt.id, [][]*x509.Certificate{{tt.cert}})
			if (err == nil) != tt.ok {
				t.Fatalf("got %v, want accepted: %v", err, tt.ok)
			}
		})
	}

	err := security.AuthorizeServer(td, []string{"secure.example"})(greeter, [][]*x509.Certificate{{cert(greeter)}})
	if err == nil || !strings.Contains(err.Error(), "secure.example") || !strings.Contains(err.Error(), greeter.String()) {
		t.Errorf("got %v, want an error naming the server and the SAN expected", err)
	}
}
