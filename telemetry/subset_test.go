package telemetry

import (
	"testing"

	"github.com/meshlet/meshlet/internal/wire"
)

// clusterSubset reads cluster names as wire.ParseClusterName does.
func TestClusterSubsetAsWire(t *testing.T) {
	for _, name := range []string{
		"outbound|9080|v2|reviews.default.svc.cluster.local",
		"outbound|9080||reviews.default.svc.cluster.local",
		"outbound||v2|reviews", "outbound|9080|v2|", "inbound|9080|v2|reviews",
		"outbound|9080|v2|reviews|x", "outbound|9080|v2", "", "reviews",
	} {
		_, want, _, _ := wire.ParseClusterName(name)
		if got := clusterSubset(name); got != want {
			t.Errorf("clusterSubset(%q) = %q, want %q", name, got, want)
		}
	}
}
