package resolver_test

import (
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/resolver"
)

// FuzzResponse feeds arbitrary bytes to the client's handling of a
// DiscoveryResponse: unmarshalling, then the per-type validation and
// conversion. It must never panic, and what it refuses it refuses with a
// reason (the NACK's error_detail).
func FuzzResponse(f *testing.F) {
	seed := func(typeURL string, res ...proto.Message) {
		resp := &discoveryv3.DiscoveryResponse{VersionInfo: "1", TypeUrl: typeURL, Nonce: "1"}
		for _, m := range res {
			resp.Resources = append(resp.Resources, mustAny(f, m))
		}
		b, err := proto.Marshal(resp)
		if err != nil {
			f.Fatal(err)
		}
		if err := resolver.ValidateResponse(b); err != nil {
			f.Fatalf("seed %s is refused: %v", typeURL, err)
		}
		f.Add(b)
	}
	url := func(m proto.Message) string {
		return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
	}
	seed(url(clientListener(f, "")), clientListener(f, reviewsTarget), serverListener(f))
	seed(url(routeConfig()), routeConfig())
	seed(url(plainCluster("")), cluster(f, clusterName("v1")), plainCluster(clusterName("")))
	seed(url(loadAssignment("")), loadAssignment(clusterName("")))
	// A resource in the Resource wrapper.
	wrapped := &discoveryv3.DiscoveryResponse{TypeUrl: url(plainCluster("")), Resources: []*anypb.Any{
		mustAny(f, &discoveryv3.Resource{Name: "c", Resource: mustAny(f, plainCluster("c"))}),
	}}
	b, _ := proto.Marshal(wrapped)
	f.Add(b)

	f.Fuzz(func(t *testing.T, b []byte) {
		err := resolver.ValidateResponse(b)
		if err != nil && strings.TrimSpace(err.Error()) == "" {
			t.Fatal("refused without a reason")
		}
	})
}
