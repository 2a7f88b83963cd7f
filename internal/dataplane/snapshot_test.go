package dataplane_test

import (
	"math"
	"net"
	"testing"
	"time"

	"github.com/meshlet/meshlet/internal/dataplane"
)

// An InboundSet's Snapshot shows each filter's buckets, keyed ones by
// caller, with the tokens they hold and the requests they refused.
func TestInboundSnapshot(t *testing.T) {
	src := &listenerSource{}
	in := dataplane.WatchInbound(src, "10.0.0.1:9081", dataplane.InboundOptions{})
	var set dataplane.InboundSet
	defer set.Close()
	set.Add(&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 9081}, in)
	src.send(limited(3, true), nil)
	allowed(t, in, 5, "x", "POST") // 3 allowed, 2 limited
	allowed(t, in, 1, "", "POST")  // the bucket of callers without a key

	snaps := set.Snapshot(time.Now())
	if len(snaps) != 1 || snaps[0].Address != "10.0.0.1:9081" || snaps[0].Listener != in.Name() || len(snaps[0].RateLimits) != 1 {
		t.Fatalf("snapshot = %+v, want the one address with its one filter", snaps)
	}
	rl := snaps[0].RateLimits[0]
	if rl.Filter != "ratelimit/default/api" || len(rl.Descriptors) != 2 || rl.Default != nil {
		t.Fatalf("filter = %+v, want its two descriptors", rl)
	}
	keyed, plain := rl.Descriptors[0], rl.Descriptors[1]
	// One token an hour: what refilled in the test's few milliseconds is
	// far below 0.01.
	near := func(got, want float64) bool { return math.Abs(got-want) < 0.01 }
	if keyed.MaxKeys != 10 || keyed.Keys != 1 || len(keyed.Keyed) != 1 || keyed.Keyed[0].Key != "spiffe://cluster.local/ns/default/sa/x" ||
		!near(keyed.Keyed[0].Tokens, 0) || keyed.Allowed != 3 || keyed.Limited != 2 || keyed.Burst != 3 || !near(keyed.Rate, 1.0/3600) {
		t.Errorf("keyed descriptor = %+v, want x's bucket empty, 3 allowed and 2 limited", keyed)
	}
	if !near(plain.Tokens, 2) || plain.Allowed != 1 || plain.Limited != 0 || plain.Keys != 0 {
		t.Errorf("descriptor of callers without a key = %+v, want 2 tokens left of 3", plain)
	}
	if again := set.Snapshot(time.Now()); !near(again[0].RateLimits[0].Descriptors[1].Tokens, 2) {
		t.Errorf("a second snapshot shows %v tokens: the first took some", again[0].RateLimits[0].Descriptors[1].Tokens)
	}
}
