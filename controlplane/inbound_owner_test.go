package controlplane

import (
	"testing"

	"github.com/meshlet/meshlet/controlplane/internal/authn"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
)

// Two hosts' instances of one identity, both bound to 0.0.0.0:9080, ask
// for the same server Listener name: each stream gets its own instance's,
// told apart by the address it comes from.
func TestInboundOwnerOfAWildcardBind(t *testing.T) {
	id := authn.Identity{Namespace: "default", ServiceAccount: "reviews"}
	insts := []registry.Instance{
		{ID: "a", Namespace: "default", ServiceAccount: "reviews", Address: "10.0.0.1", ListenAddress: "0.0.0.0", Port: 9080, Labels: map[string]string{"version": "v1"}},
		{ID: "b", Namespace: "default", ServiceAccount: "reviews", Address: "10.0.0.2", ListenAddress: "0.0.0.0", Port: 9080, Labels: map[string]string{"version": "v2"}},
		{ID: "c", Namespace: "default", ServiceAccount: "other", Address: "10.0.0.3", ListenAddress: "0.0.0.0", Port: 9080},
	}
	for _, tc := range []struct {
		addr, peer, want string
	}{
		{"0.0.0.0:9080", "10.0.0.1:50000", "a"},
		{"0.0.0.0:9080", "10.0.0.2:50000", "b"},
		{"0.0.0.0:9080", "10.0.0.9:50000", ""},   // neither: ambiguous
		{"10.0.0.2:9080", "10.0.0.1:50000", "b"}, // an advertised address names its instance
		{"10.0.0.3:9080", "10.0.0.3:50000", ""},  // another identity's
	} {
		got, ok := inboundOwner(insts, id, tc.addr, tc.peer)
		if tc.want == "" && ok || tc.want != "" && (!ok || got.ID != tc.want) {
			t.Errorf("inboundOwner(%s from %s) = %q %v, want %q", tc.addr, tc.peer, got.ID, ok, tc.want)
		}
	}
	one := insts[:1]
	if got, ok := inboundOwner(one, id, "0.0.0.0:9080", "192.168.1.5:40000"); !ok || got.ID != "a" {
		t.Errorf("the only candidate behind NAT: %q %v, want a", got.ID, ok)
	}
}
