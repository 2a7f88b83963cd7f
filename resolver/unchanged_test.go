package resolver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// TestNameReadWithoutDecoding checks, for each of the four resource
// types, that the name the client reads from a resource's bytes without
// decoding them is the one decoding reads: with the name first, as
// proto.Marshal writes it, last, and given twice.
func TestNameReadWithoutDecoding(t *testing.T) {
	for _, m := range []proto.Message{clientListener(t, "reviews:9080"), serverListener(t), routeConfig(), cluster(t, "outbound|9080|v1|reviews"), loadAssignment("outbound|9080|v2|reviews")} {
		url := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
		// The name field is the one string field that ends in "name" and
		// has number 1.
		f := m.ProtoReflect().Descriptor().Fields().ByNumber(1)
		if f == nil || f.Kind() != protoreflect.StringKind || !strings.HasSuffix(string(f.Name()), "name") {
			t.Fatalf("%s: field 1 is %v, want the name", url, f)
		}
		want := m.ProtoReflect().Get(f).String()
		first, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		unnamed := proto.Clone(m)
		unnamed.ProtoReflect().Clear(f)
		rest, err := proto.Marshal(unnamed)
		if err != nil {
			t.Fatal(err)
		}
		last := protowire.AppendString(protowire.AppendTag(rest, 1, protowire.BytesType), want)
		twice := protowire.AppendString(protowire.AppendTag(append([]byte(nil), first...), 1, protowire.BytesType), want+"-2")
		for _, tc := range []struct {
			what string
			raw  []byte
			want string
		}{{"first", first, want}, {"last", last, want}, {"twice", twice, want + "-2"}} {
			cheap, decoded, err := resolver.Names(url, tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if cheap != tc.want || decoded != tc.want {
				t.Errorf("%s, name %s: read %q without decoding and %q decoding; want %q", f.ContainingMessage().Name(), tc.what, cheap, decoded, tc.want)
			}
		}
	}
}

// endpointRequests returns the ClusterLoadAssignment requests received.
func (s *rawServer) endpointRequests() []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*discoveryv3.DiscoveryRequest
	for _, r := range s.reqs {
		if r.GetTypeUrl() == resource.EndpointType {
			out = append(out, r)
		}
	}
	return out
}

func (s *rawServer) setEndpoints(t *testing.T, version string, clas []*endpointv3.ClusterLoadAssignment) {
	t.Helper()
	res := make([]types.Resource, len(clas))
	for i, c := range clas {
		res[i] = c
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.EndpointType: res})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), "k", snap); err != nil {
		t.Fatal(err)
	}
}

// TestUnchangedEndpointsSkipped has a real go-control-plane server send
// ten ClusterLoadAssignments, then the ten with one changed, then with
// one more changed and another made invalid: the client takes the
// changes, NACKs the invalid one alone, keeps the unchanged ones, and
// counts them as not decoded again.
func TestUnchangedEndpointsSkipped(t *testing.T) {
	srv := startRawServer(t)
	// The server sends a rejected version again at once; a long backoff
	// holds the client's second NACK back, so that it gets one repeat.
	c := newClient(t, nodeID(t), []string{srv.addr}, resolver.WithBackoff(time.Minute, time.Minute))
	clas := make([]*endpointv3.ClusterLoadAssignment, 10)
	ws := make([]*watcher[resolver.Endpoints], 10)
	for i := range clas {
		name := fmt.Sprintf("outbound|9080||svc%d", i)
		clas[i] = loadAssignment(name)
		ws[i] = watch(t, c.WatchEndpoints, name)
	}
	// The server has nothing until every name is asked for, so that v1 is
	// one response holding all ten.
	meshtest.WaitUntil(t, 5*time.Second, "a request for all ten", func() bool {
		rs := srv.endpointRequests()
		return len(rs) > 0 && len(rs[len(rs)-1].GetResourceNames()) == 10
	})
	ack := func(version string, nack bool) *discoveryv3.DiscoveryRequest {
		t.Helper()
		var found *discoveryv3.DiscoveryRequest
		meshtest.WaitUntil(t, 5*time.Second, "the answer to "+version, func() bool {
			for _, r := range srv.endpointRequests() {
				if (nack && r.GetErrorDetail() != nil && r.GetResponseNonce() != "") || (!nack && r.GetVersionInfo() == version) {
					found = r
					return true
				}
			}
			return false
		})
		return found
	}
	srv.setEndpoints(t, "1", clas)
	for _, w := range ws {
		w.value(t, 5*time.Second)
	}
	ack("1", false)

	clas[3] = loadAssignment(clas[3].GetClusterName())
	clas[3].Endpoints[0].LbEndpoints[0] = lbEndpoint("10.0.9.9", 9080, 1)
	srv.setEndpoints(t, "2", clas)
	if got := ws[3].value(t, 5*time.Second); got.Localities[0].Endpoints[0].Address != "10.0.9.9:9080" {
		t.Errorf("changed endpoints: %+v", got)
	}
	ack("2", false)

	clas[4] = loadAssignment(clas[4].GetClusterName())
	clas[4].Endpoints[0].LbEndpoints[0] = lbEndpoint("10.0.9.8", 9080, 1)
	clas[7] = loadAssignment(clas[7].GetClusterName())
	clas[7].Endpoints[1].LbEndpoints[0] = lbEndpoint("10.0.1.1", 9080, 1) // listed in the other locality too
	srv.setEndpoints(t, "3", clas)
	if got := ws[4].value(t, 5*time.Second); got.Localities[0].Endpoints[0].Address != "10.0.9.8:9080" {
		t.Errorf("changed endpoints: %+v", got)
	}
	if u := ws[7].next(t, 5*time.Second); u.err == nil || u.v.Localities[1].Endpoints[0].Address != "10.0.1.2:9080" {
		t.Errorf("invalid endpoints: %+v, %v; want the last good value and an error", u.v, u.err)
	}
	msg := ack("3", true).GetErrorDetail().GetMessage()
	if !strings.Contains(msg, `ClusterLoadAssignment "outbound|9080||svc7": endpoints[1].lb_endpoints[0]: duplicate endpoint address 10.0.1.1:9080`) || strings.Count(msg, "ClusterLoadAssignment ") != 1 {
		t.Errorf("NACK reason %q, want svc7's alone", msg)
	}
	for i, w := range ws {
		if i != 3 && i != 4 && i != 7 {
			w.quiet(t, 0)
		}
	}

	var got resolver.TypeStats
	meshtest.WaitUntil(t, 5*time.Second, "the repeat of v3", func() bool {
		for _, s := range c.Counts() {
			if s.Type == "ClusterLoadAssignment" {
				got = s
			}
		}
		return got.Responses == 4 && got.NACKs == 2
	})
	// v2 held nine unchanged resources, v3 eight, its repeat nine (svc4's
	// change is in force); svc7 was decoded and rejected each time.
	if got.Unchanged != 9+8+9 || got.Updates != 10+1+1 || got.Rejected != 2 {
		t.Errorf("counts %+v; want 26 unchanged, 12 updates, 2 rejected", got)
	}
}
