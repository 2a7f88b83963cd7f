package telemetry

import "testing"

func TestPeerHeaderRoundTrip(t *testing.T) {
	for _, w := range []Workload{
		{Name: "reviews", Namespace: "default", App: "reviews", Version: "v2"},
		{Name: "a;b", Namespace: "n%s", App: "x+y", Version: ""},
		{},
	} {
		if got := decodePeer(w.encode()); got != w {
			t.Errorf("decodePeer(%q) = %+v, want %+v", w.encode(), got, w)
		}
	}
	for _, bad := range []string{"", "a;b;c", "a;b;c;d;e", "justone"} {
		if got := decodePeer(bad); got != (Workload{}) {
			t.Errorf("decodePeer(%q) = %+v, want nothing", bad, got)
		}
	}
}
