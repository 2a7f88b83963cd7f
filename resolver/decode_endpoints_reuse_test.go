package resolver_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// TestEndpointsReuseEquivalence decodes a random walk of
// ClusterLoadAssignments, each a random edit of the last one of its name
// (endpoints and localities changed, added, removed and reordered, some
// of them invalid, some bytes malformed), with one decoder that reuses
// endpoints, and checks that every decode gives the value and error a
// fresh full decode gives.
func TestEndpointsReuseEquivalence(t *testing.T) {
	const steps = 3000
	r := rand.New(rand.NewPCG(12, 7))
	d := resolver.NewEndpointsDecoder()
	names := []string{"outbound|9080||a", "outbound|9080||b", "outbound|9080||c"}
	last := map[string]*endpointv3.ClusterLoadAssignment{}
	wasInvalid := map[string]bool{}
	lastValid := map[string]int{} // endpoints of the last valid assignment of each name
	var valid, reusing, invalid, malformed int
	// Each refusal the walk must reach, by a part of its text.
	refusals := []string{
		"duplicate endpoint address", "load_balancing_weight 0", "port_value must be a port number", "no locality",
		"health_status: unknown value", "is listed twice at priority", "is missing (priorities must run from 0", "drop_overloads",
		"endpoint_name is not supported", "cannot unmarshal",
	}
	seen := map[string]int{}
	for step := range steps {
		name := names[r.IntN(len(names))]
		cla := last[name]
		// Edits seldom make an invalid assignment valid again.
		if cla == nil || r.IntN(20) == 0 || wasInvalid[name] && r.IntN(3) == 0 {
			cla = randomAssignment(r, name)
		} else {
			cla = proto.Clone(cla).(*endpointv3.ClusterLoadAssignment)
			for range 1 + r.IntN(3) {
				editAssignment(r, cla)
			}
		}
		last[name] = cla
		raw, err := proto.MarshalOptions{Deterministic: r.IntN(2) == 0}.Marshal(cla)
		if err != nil {
			t.Fatal(err)
		}
		if r.IntN(30) == 0 { // malformed: cut short, or a byte changed
			malformed++
			raw = append([]byte(nil), raw...)
			if len(raw) > 0 && r.IntN(2) == 0 {
				raw = raw[:r.IntN(len(raw))]
			} else if len(raw) > 0 {
				raw[r.IntN(len(raw))] ^= byte(1 + r.IntN(255))
			}
		}
		before := d.Unmarshals()
		gotName, got, gotErr := d.Decode(raw)
		wantName, want, wantErr := resolver.DecodeEndpointsFull(raw)
		if gotName != wantName || !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("step %d: %s\nreusing decoder: %q %+v %v\nfull decode:     %q %+v %v", step, cla, gotName, got, gotErr, wantName, want, wantErr)
		}
		wasInvalid[name] = wantErr != nil
		n := 0
		if wantErr == nil { // decoded from raw, which may differ from cla
			got := &endpointv3.ClusterLoadAssignment{}
			if err := proto.Unmarshal(raw, got); err != nil {
				t.Fatalf("step %d: valid, but: %v", step, err)
			}
			for _, l := range got.GetEndpoints() {
				n += len(l.GetLbEndpoints())
			}
			lastValid[wantName] = n // a changed byte may have changed the name
		}
		// What the decoder holds is bounded by the last valid assignment.
		for _, name := range []string{name, wantName} {
			if held, _ := d.Held(name); held > lastValid[name] {
				t.Fatalf("step %d: holds %d endpoints of %q, whose last valid assignment has %d", step, held, name, lastValid[name])
			}
		}
		if wantErr != nil {
			invalid++
			for _, k := range refusals {
				if strings.Contains(wantErr.Error(), k) {
					seen[k]++
				}
			}
			continue
		}
		if n == 0 {
			continue
		}
		valid++
		if d.Unmarshals()-before < n {
			reusing++
		}
	}
	t.Logf("%d decodes: %d valid with endpoints (%d reused some), %d invalid, %d of them malformed", steps, valid, reusing, invalid, malformed)
	t.Logf("refusals: %v", seen)
	for _, k := range refusals {
		if seen[k] == 0 {
			t.Errorf("no decode was refused with %q", k)
		}
	}
	// The walk must cover both paths, or it checks little.
	if valid < steps/5 || invalid < steps/10 || reusing < valid/2 {
		t.Errorf("walk too one-sided: %d valid, %d of them reusing endpoints, %d invalid", valid, reusing, invalid)
	}
}

// randomAssignment is a ClusterLoadAssignment of a few localities, mostly
// valid: its random parts collide now and then (duplicate addresses and
// localities, priority gaps, weights of 0, unknown health).
func randomAssignment(r *rand.Rand, name string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for range r.IntN(4) {
		cla.Endpoints = append(cla.Endpoints, randomLocality(r))
	}
	if r.IntN(40) == 0 {
		cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{DropOverloads: []*endpointv3.ClusterLoadAssignment_Policy_DropOverload{{
			Category: "throttle", DropPercentage: &typev3.FractionalPercent{Numerator: 1},
		}}}
	}
	return cla
}

func randomLocality(r *rand.Rand) *endpointv3.LocalityLbEndpoints {
	l := &endpointv3.LocalityLbEndpoints{
		Locality: &corev3.Locality{Region: "eu-west", Zone: fmt.Sprintf("zone-%d", r.IntN(12))},
		Priority: uint32(max(r.IntN(10)-7, 0)), // mostly 0; 2 may make a gap
	}
	switch r.IntN(20) {
	case 0:
		l.Locality = nil // invalid
	case 1:
		l.Locality.SubZone = "rack-1"
	}
	switch r.IntN(20) {
	case 0: // weight 0: left out
		l.LoadBalancingWeight = wrapperspb.UInt32(0)
	case 1: // unset: left out too
	default:
		l.LoadBalancingWeight = wrapperspb.UInt32(uint32(1 + r.IntN(3)))
	}
	for range r.IntN(8) {
		l.LbEndpoints = append(l.LbEndpoints, randomEndpoint(r))
	}
	return l
}

// randomEndpoint draws from 1,000 addresses, so that a few collide in an
// assignment of a few dozen.
func randomEndpoint(r *rand.Rand) *endpointv3.LbEndpoint {
	port := uint32(9080)
	if r.IntN(60) == 0 {
		port = 0 // invalid
	}
	e := lbEndpoint(fmt.Sprintf("10.0.%d.%d", r.IntN(10), r.IntN(100)), port, uint32(1+r.IntN(5)))
	switch r.IntN(30) {
	case 0:
		e.LoadBalancingWeight = wrapperspb.UInt32(0) // invalid
	case 1:
		e.LoadBalancingWeight = nil // 1
	}
	e.HealthStatus = corev3.HealthStatus(r.IntN(6))
	if r.IntN(60) == 0 {
		e.HealthStatus = 9 // unknown value
	}
	if r.IntN(3) == 0 {
		e.GetEndpoint().Hostname = fmt.Sprintf("pod-%d.default", r.IntN(10))
	}
	if r.IntN(4) == 0 { // ignored by the client, but makes bytes differ (and map order vary)
		md, _ := structpb.NewStruct(map[string]any{"version": fmt.Sprint("v", r.IntN(3)), "zone": "a", "rev": "1"})
		e.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": md}}
	}
	if r.IntN(80) == 0 {
		e.HostIdentifier = &endpointv3.LbEndpoint_EndpointName{EndpointName: "named"} // refused
	}
	return e
}

// editAssignment changes cla at random in one of the ways churn does.
func editAssignment(r *rand.Rand, cla *endpointv3.ClusterLoadAssignment) {
	if len(cla.Endpoints) == 0 {
		cla.Endpoints = append(cla.Endpoints, randomLocality(r))
		return
	}
	l := cla.Endpoints[r.IntN(len(cla.Endpoints))]
	eps := l.LbEndpoints
	switch r.IntN(10) {
	case 0, 1, 2: // one endpoint changed
		if len(eps) > 0 {
			e := eps[r.IntN(len(eps))]
			switch r.IntN(3) {
			case 0:
				if sa := e.GetEndpoint().GetAddress().GetSocketAddress(); sa != nil {
					sa.Address = fmt.Sprintf("10.0.%d.%d", r.IntN(10), r.IntN(100))
				}
			case 1:
				e.HealthStatus = corev3.HealthStatus(r.IntN(6))
			default:
				e.LoadBalancingWeight = wrapperspb.UInt32(uint32(1 + r.IntN(5)))
			}
		}
	case 3: // one added
		l.LbEndpoints = append(eps, randomEndpoint(r))
	case 4: // one removed
		if len(eps) > 0 {
			i := r.IntN(len(eps))
			l.LbEndpoints = append(eps[:i:i], eps[i+1:]...)
		}
	case 5: // reordered
		r.Shuffle(len(eps), func(i, j int) { eps[i], eps[j] = eps[j], eps[i] })
	case 6: // one moved to another locality
		if len(eps) > 0 {
			i := r.IntN(len(eps))
			to := cla.Endpoints[r.IntN(len(cla.Endpoints))]
			e := eps[i]
			l.LbEndpoints = append(eps[:i:i], eps[i+1:]...)
			to.LbEndpoints = append(to.LbEndpoints, e)
		}
	case 7: // localities reordered, or one's weight or priority changed
		switch r.IntN(3) {
		case 0:
			r.Shuffle(len(cla.Endpoints), func(i, j int) { cla.Endpoints[i], cla.Endpoints[j] = cla.Endpoints[j], cla.Endpoints[i] })
		case 1:
			l.LoadBalancingWeight = wrapperspb.UInt32(uint32(r.IntN(4)))
		default:
			l.Priority = uint32(max(r.IntN(10)-7, 0))
		}
	case 8: // a locality added
		cla.Endpoints = append(cla.Endpoints, randomLocality(r))
	case 9: // a locality removed
		i := r.IntN(len(cla.Endpoints))
		cla.Endpoints = append(cla.Endpoints[:i:i], cla.Endpoints[i+1:]...)
	}
}

// churnAssignment is version v (0 to 19) of one locality of 100
// endpoints. Endpoints fall in 10 groups by index; version v+1 (and 0
// after 19) changes the hostnames of one group: 10% of the endpoints.
func churnAssignment(tb testing.TB, v int) []byte {
	b, err := proto.Marshal(churnCLA("outbound|9080||reviews.default.svc.cluster.local", v))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func churnCLA(name string, v int) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	l := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Region: "eu-west", Zone: "zone-a"}, LoadBalancingWeight: wrapperspb.UInt32(1)}
	for i := range 100 {
		e := lbEndpoint(fmt.Sprintf("10.1.0.%d", i), 9080, 1)
		e.GetEndpoint().Hostname = fmt.Sprintf("reviews-%d.default", i)
		if g := i % 10; v > g && v <= g+10 {
			e.GetEndpoint().Hostname += "-new"
		}
		l.LbEndpoints = append(l.LbEndpoints, e)
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{l}
	return cla
}

// TestEndpointsReuse checks that an assignment decoded again with one
// endpoint changed unmarshals that endpoint alone, that one decoded again
// unchanged unmarshals none, and that what a decoder holds for a name is
// the endpoints of its last valid decode, and nothing once forgotten.
func TestEndpointsReuse(t *testing.T) {
	d := resolver.NewEndpointsDecoder()
	const name = "outbound|9080||reviews.default.svc.cluster.local"
	base := churnAssignment(t, 0)
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := proto.Unmarshal(base, cla); err != nil {
		t.Fatal(err)
	}
	oneChanged := proto.Clone(cla).(*endpointv3.ClusterLoadAssignment)
	oneChanged.Endpoints[0].LbEndpoints[42].HealthStatus = corev3.HealthStatus_DRAINING
	invalid := proto.Clone(cla).(*endpointv3.ClusterLoadAssignment)
	invalid.Endpoints[0].LbEndpoints[7].LoadBalancingWeight = wrapperspb.UInt32(0)
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i, tc := range []struct {
		what          string
		raw           []byte
		unmarshals    int
		held, heldAll int
		wantErr       bool
		forgetBefore  bool
	}{
		{what: "first decode", raw: base, unmarshals: 100, held: 100, heldAll: 100},
		{what: "same bytes again", raw: base, unmarshals: 0, held: 100, heldAll: 100},
		{what: "one endpoint changed", raw: marshal(oneChanged), unmarshals: 1, held: 100, heldAll: 100},
		{what: "back", raw: base, unmarshals: 1, held: 100, heldAll: 100},
		{what: "one endpoint invalid", raw: marshal(invalid), unmarshals: 1, held: 100, heldAll: 100, wantErr: true},
		{what: "after the invalid one", raw: marshal(oneChanged), unmarshals: 1, held: 100, heldAll: 100},
		{what: "forgotten", raw: base, unmarshals: 100, held: 100, heldAll: 100, forgetBefore: true},
	} {
		if tc.forgetBefore {
			d.Forget(name)
			if held, all := d.Held(name); held != 0 || all != 0 {
				t.Fatalf("after Forget: holds %d endpoints of %s, %d in all; want none", held, name, all)
			}
		}
		before := d.Unmarshals()
		_, got, err := d.Decode(tc.raw)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%d %s: error %v, want one: %v", i, tc.what, err, tc.wantErr)
		}
		_, want, wantErr := resolver.DecodeEndpointsFull(tc.raw)
		if !reflect.DeepEqual(got, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("%d %s: decoded %+v, %v; full decode %+v, %v", i, tc.what, got, err, want, wantErr)
		}
		if n := d.Unmarshals() - before; n != tc.unmarshals {
			t.Errorf("%d %s: unmarshalled %d LbEndpoints, want %d", i, tc.what, n, tc.unmarshals)
		}
		if held, all := d.Held(name); held != tc.held || all != tc.heldAll {
			t.Errorf("%d %s: holds %d endpoints of %s, %d in all; want %d, %d", i, tc.what, held, name, all, tc.held, tc.heldAll)
		}
	}
}

// BenchmarkDecodeEndpointsChurn decodes one ClusterLoadAssignment of 100
// endpoints of which 10% changed since the last decode, as a client does
// when a service's endpoints churn: full decodes all of it, reuse reuses
// the endpoints whose bytes it decoded last time, and first is a decoder's
// first decode. unmarshals/op counts the LbEndpoints unmarshalled one by
// one.
func BenchmarkDecodeEndpointsChurn(b *testing.B) {
	versions := make([][]byte, 20)
	for i := range versions {
		versions[i] = churnAssignment(b, i)
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if _, _, err := resolver.DecodeEndpointsFull(versions[i%len(versions)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reuse", func(b *testing.B) {
		d := resolver.NewEndpointsDecoder()
		if _, _, err := d.Decode(versions[len(versions)-1]); err != nil {
			b.Fatal(err)
		}
		before := d.Unmarshals()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, _, err := d.Decode(versions[i%len(versions)]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(d.Unmarshals()-before)/float64(b.N), "unmarshals/op")
	})
	// A name's first decode, which has nothing to reuse and keeps every
	// endpoint for the next one.
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if _, _, err := resolver.NewEndpointsDecoder().Decode(versions[i%len(versions)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzEndpointsReuse decodes two serialized ClusterLoadAssignments in
// turn with one decoder, and checks that the second gives what a full
// decode gives, whatever the bytes.
func FuzzEndpointsReuse(f *testing.F) {
	f.Add(churnAssignment(f, 0), churnAssignment(f, 1))
	b, err := proto.Marshal(loadAssignment(clusterName("v1")))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, b[:len(b)-3])
	f.Fuzz(func(t *testing.T, first, second []byte) {
		d := resolver.NewEndpointsDecoder()
		d.Decode(first)
		gotName, got, gotErr := d.Decode(second)
		wantName, want, wantErr := resolver.DecodeEndpointsFull(second)
		if gotName != wantName || !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("reusing decoder: %q %+v %v\nfull decode:     %q %+v %v", gotName, got, gotErr, wantName, want, wantErr)
		}
	})
}

// TestClientReusesEndpoints has a real go-control-plane server send a
// client an assignment of 100 endpoints, then one with 10 of them
// changed: the client unmarshals the 10 alone, and once the watch ends
// it holds nothing for the name.
func TestClientReusesEndpoints(t *testing.T) {
	srv := startRawServer(t)
	c := newClient(t, nodeID(t), []string{srv.addr})
	const name = "outbound|9080||reviews.default.svc.cluster.local"
	d := c.EndpointsDecoder()
	w := watch(t, c.WatchEndpoints, name)
	meshtest.WaitUntil(t, 5*time.Second, "a request for "+name, func() bool {
		rs := srv.endpointRequests()
		return len(rs) > 0 && len(rs[len(rs)-1].GetResourceNames()) == 1
	})
	for v, want := range []struct{ unmarshals, held int }{{100, 100}, {110, 100}, {120, 100}} {
		srv.setEndpoints(t, fmt.Sprint(v+1), []*endpointv3.ClusterLoadAssignment{churnCLA(name, v)})
		got := w.value(t, 5*time.Second)
		if full, err := resolver.Decode(churnCLA(name, v)); err != nil || !reflect.DeepEqual(got, full) {
			t.Fatalf("version %d: the client has %+v, a full decode gives %+v, %v", v+1, got, full, err)
		}
		held, all := d.Held(name)
		if n := d.Unmarshals(); n != want.unmarshals || held != want.held || all != want.held {
			t.Errorf("version %d: %d LbEndpoints unmarshalled, %d endpoints held (%d in all); want %d, %d", v+1, n, held, all, want.unmarshals, want.held)
		}
	}
	w.cancel()
	meshtest.WaitUntil(t, 5*time.Second, "the unwatched name's endpoints dropped", func() bool {
		_, all := d.Held(name)
		return all == 0
	})
}
