package mesh_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/resolver"
)

// TestHTTPListenerPathSettings covers each path setting a server Listener
// can carry, including those meshlet's control plane does not send.
func TestHTTPListenerPathSettings(t *testing.T) {
	denyAdmin := []resolver.HTTPFilter{{Name: "deny", RBAC: &resolver.RBAC{Action: resolver.RBACDeny, Policies: []resolver.RBACPolicy{{
		Name:        "deny-admin",
		Permissions: []resolver.Permission{{Kind: resolver.PermissionURLPath, String: resolver.StringMatch{Kind: resolver.StringExact, Value: "/admin"}}},
		Principals:  []resolver.Principal{{Kind: resolver.PrincipalAny}},
	}}}}}
	listener := func(normalize, merge bool, escaped resolver.EscapedSlashesAction) *resolver.Listener {
		return &resolver.Listener{HTTPFilters: denyAdmin, NormalizePath: normalize, MergeSlashes: merge, EscapedSlashes: escaped}
	}
	tests := []struct {
		name     string
		l        *resolver.Listener
		target   string
		status   int
		path     string // the handler's URL.EscapedPath when served
		location string // the redirect's Location
	}{
		{"nothing set: left as sent", listener(false, false, resolver.KeepEscapedSlashes), "/./admin", 200, "/./admin", ""},
		{"nothing set: %00 still refused", listener(false, false, resolver.KeepEscapedSlashes), "/a%00", 400, "", ""},
		{"merge only", listener(false, true, resolver.KeepEscapedSlashes), "//admin", 403, "", ""},
		{"merge only keeps dots", listener(false, true, resolver.KeepEscapedSlashes), "//x/../b", 200, "/x/../b", ""},
		{"normalize only keeps //", listener(true, false, resolver.KeepEscapedSlashes), "//x/./b", 200, "//x/b", ""},
		{"keep", listener(true, true, resolver.KeepEscapedSlashes), "/a%2fb%5C", 200, "/a%2Fb%5C", ""},
		{"keep: no dot segments across %2F", listener(true, true, resolver.KeepEscapedSlashes), "/x%2F..%2Fadmin", 200, "/x%2F..%2Fadmin", ""},
		{"reject", listener(true, true, resolver.RejectEscapedSlashes), "/a%2Fb", 400, "", ""},
		{"reject: backslash", listener(true, true, resolver.RejectEscapedSlashes), "/a%5cb", 400, "", ""},
		{"reject: none there", listener(true, true, resolver.RejectEscapedSlashes), "/a/b", 200, "/a/b", ""},
		{"redirect", listener(true, true, resolver.RedirectEscapedSlashes), "/x%2F..%2Fadmin?q=1", 307, "", "/admin?q=1"},
		{"redirect: backslash", listener(true, true, resolver.RedirectEscapedSlashes), "/a%5Cb", 307, "", "/a/b"},
		{"redirect: none there", listener(true, true, resolver.RedirectEscapedSlashes), "/a/./b", 200, "/a/b", ""},
		{"redirect never leaves the host", listener(true, false, resolver.RedirectEscapedSlashes), "/%2Fevil.example/x", 400, "", ""},
		{"forward", listener(true, true, resolver.UnescapeEscapedSlashes), "/a%2Fb", 200, "/a/b", ""},
		{"forward then normalize", listener(true, true, resolver.UnescapeEscapedSlashes), "/x%2F..%2Fadmin", 403, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var served string
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served = r.URL.EscapedPath() })
			w := httptest.NewRecorder()
			mesh.EnforceHTTPListener(tt.l, nil, w, httptest.NewRequest("GET", tt.target, nil), next)
			if w.Code != tt.status {
				t.Fatalf("got %d (%s), want %d", w.Code, w.Body, tt.status)
			}
			if served != tt.path {
				t.Errorf("the handler saw %q, want %q", served, tt.path)
			}
			if got := w.Header().Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
		})
	}
}
