package xdsclient_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

// A resource that comes again with the bytes of the value in force is
// named from its name field alone and not decoded again; these tests
// count the calls of the type's Decode.

// countingClusters is fullStateClusters with its name field set, and a
// Decode that counts its calls.
func countingClusters() (*xdsclient.ResourceType, *atomic.Int64) {
	rt := *fullStateClusters
	rt.NameField = 1 // envoy.config.cluster.v3.Cluster.name
	n := new(atomic.Int64)
	rt.Decode = func(a *anypb.Any) (string, any, error) {
		n.Add(1)
		return fullStateClusters.Decode(a)
	}
	return &rt, n
}

func newClientOf(t *testing.T, rt *xdsclient.ResourceType, addr string) *xdsclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	clock := meshtest.NewClock(epoch())
	c, err := xdsclient.New(ctx, xdsclient.Config{
		Servers:     []string{addr},
		Node:        &corev3.Node{Id: "test"},
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Log:         meshtest.Logger(),
		BackoffBase: time.Second,
		BackoffMax:  4 * time.Second,
		Types:       []*xdsclient.ResourceType{rt},
		NotFound:    errNotFound,
		Now:         clock.Now,
		AfterFunc:   clock.AfterFunc,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// answer waits for the client's request carrying nonce, its ACK or NACK,
// skipping the others. The response it answers has been handled by then.
func (s *scriptedServer) answer(t *testing.T, nonce string) *discoveryv3.DiscoveryRequest {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-s.reqs:
			if r.GetResponseNonce() == nonce {
				return r
			}
		case <-deadline:
			t.Fatalf("no request with nonce %q", nonce)
			return nil
		}
	}
}

// TestUnchangedResourcesNotDecoded sends ten Clusters, then the same ten
// with one changed, then with another made invalid, then with that one
// back as it was: only changed bytes are decoded, the invalid one alone is
// NACKed while the unchanged ones stay valid, and the one that comes back
// with the bytes in force is valid again without a decode.
func TestUnchangedResourcesNotDecoded(t *testing.T) {
	srv := startScripted(t)
	rt, decodes := countingClusters()
	c := newClientOf(t, rt, srv.addr)
	names := make([]string, 10)
	ws := make([]<-chan update, 10)
	clusters := make([]*clusterv3.Cluster, 10)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
		ws[i] = watch(c, names[i])
		clusters[i] = cluster(names[i], clusterv3.Cluster_ROUND_ROBIN)
	}
	// quiet checks that only the watchers of changed got a call.
	quiet := func(when string, changed ...int) {
		t.Helper()
		for i, w := range ws {
			if !slices.Contains(changed, i) {
				none(t, w, fmt.Sprintf("%s, %s", when, names[i]))
			}
		}
	}
	type step struct {
		version  string
		change   func([]*clusterv3.Cluster) // from the last step's
		decodes  int64                      // in all, by the end of the step
		nackOf   string                     // the only cluster the NACK names
		changed  int                        // the watcher told, -1 for none
		want     any                        // what it is told
		statuses map[string]string          // of Dump, the others ACKED at version
	}
	steps := []step{
		{version: "v1", change: func([]*clusterv3.Cluster) {}, decodes: 10, changed: -1},
		{version: "v2", change: func(cs []*clusterv3.Cluster) { cs[3] = cluster("c3", clusterv3.Cluster_RANDOM) }, decodes: 11, changed: 3, want: "RANDOM"},
		{version: "v3", change: func(cs []*clusterv3.Cluster) { cs[5] = cluster("c5", clusterv3.Cluster_MAGLEV) }, decodes: 12, nackOf: "c5", changed: 5, want: "ROUND_ROBIN",
			statuses: map[string]string{"c5": xdsclient.StatusNACKed + " v2"}},
		{version: "v4", change: func(cs []*clusterv3.Cluster) { cs[5] = cluster("c5", clusterv3.Cluster_ROUND_ROBIN) }, decodes: 12, changed: -1},
	}
	for k, st := range steps {
		nonce := fmt.Sprint(k + 1)
		st.change(clusters)
		srv.respond(t, nonce, st.version, clusters...)
		req := srv.answer(t, nonce)
		if got := decodes.Load(); got != st.decodes {
			t.Errorf("%s: %d decodes in all, want %d", st.version, got, st.decodes)
		}
		msg := req.GetErrorDetail().GetMessage()
		switch {
		case st.nackOf == "" && req.GetErrorDetail() != nil:
			t.Errorf("%s: NACKed (%s), want an ACK", st.version, msg)
		case st.nackOf != "" && (!strings.Contains(msg, fmt.Sprintf("Cluster %q: lb_policy: MAGLEV is refused", st.nackOf)) || strings.Count(msg, "Cluster ") != 1):
			t.Errorf("%s: NACK reason %q, want %s's alone", st.version, msg, st.nackOf)
		}
		if st.version == "v1" {
			for i, w := range ws {
				if u := next(t, w, names[i]); u.err != nil || u.v != "ROUND_ROBIN" {
					t.Fatalf("%s: %v, %v", names[i], u.v, u.err)
				}
			}
		} else if st.changed >= 0 {
			u := next(t, ws[st.changed], "the change of "+names[st.changed])
			if u.v != st.want || (u.err != nil) != (st.nackOf != "") {
				t.Errorf("%s: %s told %v, %v; want %v", st.version, names[st.changed], u.v, u.err, st.want)
			}
		}
		quiet("after "+st.version, st.changed)
		for _, d := range c.Dump() {
			want := xdsclient.StatusACKed + " " + st.version
			if s, ok := st.statuses[d.Name]; ok {
				want = s // a NACKed one keeps the version of its value in force
			}
			if got := d.Status + " " + d.Version; got != want {
				t.Errorf("%s: %s is %s, want %s", st.version, d.Name, got, want)
			}
		}
	}
	// v2 and v3 held nine unchanged clusters, v4 ten.
	if got := c.Counts()[0]; got.Unchanged != 9+9+10 || got.Updates != 11 || got.Rejected != 1 {
		t.Errorf("counts: %d unchanged, %d updates, %d rejected; want 28, 11, 1", got.Unchanged, got.Updates, got.Rejected)
	}
}

// TestDecodeResponseNames checks how DecodeResponse names a resource
// without decoding it: as proto.Unmarshal does, from the last name field
// of a string's wire type, and never from malformed bytes.
func TestDecodeResponseNames(t *testing.T) {
	rt, decodes := countingClusters()
	raw := func(c *clusterv3.Cluster) []byte {
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := raw(cluster("A", clusterv3.Cluster_ROUND_ROBIN))
	anyOf := func(b []byte) *anypb.Any { return &anypb.Any{TypeUrl: resource.ClusterType, Value: b} }
	wrap := func(name string, b []byte) *anypb.Any {
		w, err := anypb.New(&discoveryv3.Resource{Name: name, Resource: anyOf(b)})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	tests := []struct {
		name      string
		res       []*anypb.Any
		asked     []string // the names looked up in the cache, all hits
		decodes   int64
		unchanged []bool // of each resource decoded
		err       string // in the NACK reason, "" for an ACK
	}{
		{"plain", []*anypb.Any{anyOf(a)}, []string{"A"}, 0, []bool{true}, ""},
		{"name twice: the last wins", []*anypb.Any{anyOf(protowire.AppendString(protowire.AppendTag(raw(cluster("X", clusterv3.Cluster_ROUND_ROBIN)), 1, protowire.BytesType), "A"))}, []string{"A"}, 0, []bool{true}, ""},
		{"name field of another wire type is unknown", []*anypb.Any{anyOf(protowire.AppendVarint(protowire.AppendTag(slices.Clone(a), 1, protowire.VarintType), 7))}, []string{"A"}, 0, []bool{true}, ""},
		{"truncated: decoded", []*anypb.Any{anyOf(a[:len(a)-1])}, nil, 1, nil, "resources[0]"},
		{"no name: decoded", []*anypb.Any{anyOf(raw(cluster("", clusterv3.Cluster_ROUND_ROBIN)))}, nil, 1, nil, "resources[0]: resource has no name"},
		{"wrapped", []*anypb.Any{wrap("A", a)}, []string{"A"}, 0, []bool{true}, ""},
		{"wrapper of another name", []*anypb.Any{wrap("B", a)}, []string{"A"}, 0, []bool{false}, `the Resource wrapper names "B" but holds "A"`},
		{"sent twice", []*anypb.Any{anyOf(a), anyOf(a)}, []string{"A", "A"}, 0, []bool{false, false}, `"A": sent twice in one response`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decodes.Store(0)
			var asked []string
			dec := xdsclient.DecodeResponse(rt, &discoveryv3.DiscoveryResponse{TypeUrl: resource.ClusterType, Resources: tt.res},
				func(name string, raw []byte) (any, []byte, bool) {
					asked = append(asked, name)
					return "cached", raw, true
				})
			if !slices.Equal(asked, tt.asked) || decodes.Load() != tt.decodes {
				t.Errorf("looked up %q and decoded %d, want %q and %d", asked, decodes.Load(), tt.asked, tt.decodes)
			}
			var unchanged []bool
			for _, r := range dec.Resources {
				unchanged = append(unchanged, r.Unchanged)
				if r.Unchanged && (r.Value != "cached" || r.Name != "A" || r.Err != nil) {
					t.Errorf("unchanged resource %+v, want A's cached value", r)
				}
			}
			if !slices.Equal(unchanged, tt.unchanged) {
				t.Errorf("unchanged %v, want %v", unchanged, tt.unchanged)
			}
			if tt.err == "" && dec.Err != nil || tt.err != "" && (dec.Err == nil || !strings.Contains(dec.Err.Error(), tt.err)) {
				t.Errorf("error %v, want one with %q", dec.Err, tt.err)
			}
		})
	}

	// Without a cache, or without a name field, everything is decoded.
	plain := *rt
	plain.NameField = 0
	for _, tc := range []struct {
		rt     *xdsclient.ResourceType
		cached xdsclient.Cached
	}{{rt, nil}, {&plain, func(string, []byte) (any, []byte, bool) { return "cached", nil, true }}} {
		decodes.Store(0)
		dec := xdsclient.DecodeResponse(tc.rt, &discoveryv3.DiscoveryResponse{TypeUrl: resource.ClusterType, Resources: []*anypb.Any{anyOf(a)}}, tc.cached)
		if decodes.Load() != 1 || dec.Err != nil || dec.Resources[0].Unchanged || dec.Resources[0].Value != "ROUND_ROBIN" {
			t.Errorf("NameField %d, cache %v: %d decodes, %+v; want one decode", tc.rt.NameField, tc.cached != nil, decodes.Load(), dec)
		}
	}
}
