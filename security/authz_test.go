package security_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

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
