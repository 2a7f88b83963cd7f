package resolver_test

import (
	"crypto/x509"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/meshlet/meshlet/resolver"
)

func TestAuthorize(t *testing.T) {
	id := func(sa string) string { return "spiffe://cluster.local/ns/default/sa/" + sa }
	peer := func(sa string) *x509.Certificate {
		u, _ := url.Parse(id(sa))
		return &x509.Certificate{URIs: []*url.URL{u}}
	}
	x, y := peer("x"), peer("y")
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
			Principals: []resolver.Principal{principalIs(id("x"))},
		}, {
			Name:        "ns[default]-policy[allow-header]-rule[0]",
			Permissions: []resolver.Permission{{Kind: resolver.PermissionHeader, Header: resolver.HeaderMatch{Name: "x-token", String: resolver.StringMatch{Kind: resolver.StringExact, Value: "open"}}}},
			Principals:  []resolver.Principal{{Kind: resolver.PrincipalNot, IDs: []resolver.Principal{principalIs(id("x"))}}},
		}}}},
	}
	local := netip.MustParseAddrPort("127.0.0.1:9080")
	cases := []struct {
		name   string
		req    resolver.AuthzRequest
		denied string // "" when allowed, else a part of the reason
	}{
		{"x GET on 9080", resolver.AuthzRequest{Peer: x, Method: "GET", Path: "/a", Local: local}, ""},
		{"x POST", resolver.AuthzRequest{Peer: x, Method: "POST", Path: "/a", Local: local}, "did not match an allow policy"},
		{"x on another port", resolver.AuthzRequest{Peer: x, Method: "GET", Path: "/a", Local: netip.MustParseAddrPort("127.0.0.1:9081")}, "did not match an allow policy"},
		{"y GET", resolver.AuthzRequest{Peer: y, Method: "GET", Path: "/a", Local: local}, "did not match an allow policy"},
		{"y with the header", resolver.AuthzRequest{Peer: y, Method: "GET", Path: "/a", Local: local, Header: func(n string) []string {
			if n == "x-token" {
				return []string{"open"}
			}
			return nil
		}}, ""},
		{"plaintext with the header", resolver.AuthzRequest{Method: "GET", Path: "/a", Local: local, Header: func(n string) []string {
			if n == "x-token" {
				return []string{"open"}
			}
			return nil
		}}, ""},
		{"plaintext without", resolver.AuthzRequest{Method: "GET", Path: "/a", Local: local}, "did not match an allow policy"},
		{"x on /admin", resolver.AuthzRequest{Peer: x, Method: "GET", Path: "/admin/users", Local: local}, `deny policy "ns[default]-policy[deny-admin]-rule[0]"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := resolver.Authorize(filters, tc.req)
			switch {
			case tc.denied == "" && err != nil:
				t.Errorf("denied: %v", err)
			case tc.denied != "" && (err == nil || !errors.Is(err, resolver.ErrDenied) || !strings.Contains(err.Error(), tc.denied)):
				t.Errorf("got %v, want a denial saying %q", err, tc.denied)
			}
		})
	}
	// The denial says which filter and policy decided, for each transport
	// to word.
	var d *resolver.Denial
	err := resolver.Authorize(filters, resolver.AuthzRequest{Peer: x, Method: "GET", Path: "/admin", Local: local})
	if !errors.As(err, &d) || *d != (resolver.Denial{Filter: "deny", Action: resolver.RBACDeny, Policy: "ns[default]-policy[deny-admin]-rule[0]"}) {
		t.Errorf("denied by the deny filter: got %#v", err)
	}
	err = resolver.Authorize(filters, resolver.AuthzRequest{Peer: y, Method: "GET", Path: "/a", Local: local})
	if !errors.As(err, &d) || *d != (resolver.Denial{Filter: "allow", Action: resolver.RBACAllow}) || d.Reason() != "did not match an allow policy" {
		t.Errorf("denied by the allow filter: got %#v", err)
	}
	if err := resolver.Authorize(nil, resolver.AuthzRequest{}); err != nil {
		t.Errorf("no filters: %v", err)
	}
}
