package translate_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
)

type (
	endpointLA = endpointv3.ClusterLoadAssignment
	clusterT   = clusterv3.Cluster
	listenerT  = listenerv3.Listener
	routeT     = routev3.RouteConfiguration
)

// fleet is a config of services svc-0..svc-(n-1), each a ServiceEntry
// selecting app=svc-k, with a DestinationRule of two subsets by version,
// and WorkloadEntries spread over them.
type fleet struct {
	services int
	wes      []*model.WorkloadEntry
	rng      *rand.Rand
	next     int
}

func newFleet(services, endpoints int, seed uint64) *fleet {
	f := &fleet{services: services, rng: rand.New(rand.NewPCG(seed, 0))}
	for i := range endpoints {
		f.wes = append(f.wes, f.workloadEntry(fmt.Sprintf("we-%d", i), i%services))
	}
	return f
}

func (f *fleet) workloadEntry(name string, svc int) *model.WorkloadEntry {
	f.next++
	return &model.WorkloadEntry{
		Meta: model.Meta{Kind: "WorkloadEntry", Name: name, Namespace: "default", File: fmt.Sprintf("svc-%d.yaml", svc)},
		Spec: &networking.WorkloadEntry{
			Address:  fmt.Sprintf("10.%d.%d.%d", svc, f.next>>8&255, f.next&255),
			Labels:   map[string]string{"app": fmt.Sprintf("svc-%d", svc), "version": fmt.Sprintf("v%d", 1+f.rng.IntN(2))},
			Locality: []string{"", "r1/z1", "r1/z2"}[f.rng.IntN(3)],
			Weight:   uint32(f.rng.IntN(3)),
		},
	}
}

// service returns which service a WorkloadEntry is of.
func (f *fleet) service(we *model.WorkloadEntry) string { return we.Spec.Labels["app"] }

func (f *fleet) config() *model.Config {
	cfg := &model.Config{WorkloadEntries: slices.Clone(f.wes)}
	for k := range f.services {
		app := fmt.Sprintf("svc-%d", k)
		host := app + ".default.svc.cluster.local"
		cfg.ServiceEntries = append(cfg.ServiceEntries, &model.ServiceEntry{
			Meta: model.Meta{Kind: "ServiceEntry", Name: app, Namespace: "default"},
			Spec: &networking.ServiceEntry{
				Hosts:            []string{host},
				Ports:            []*networking.ServicePort{{Number: 9080, Name: "grpc", Protocol: "GRPC"}, {Number: 9090, Name: "http", Protocol: "HTTP"}},
				Resolution:       networking.ServiceEntry_STATIC,
				WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": app}},
			},
		})
		cfg.DestinationRules = append(cfg.DestinationRules, destinationRule("default", app, &networking.DestinationRule{
			Host: host,
			Subsets: []*networking.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			},
		}))
	}
	return cfg
}

// edit changes the fleet as a file edit would, in service svc only: a
// WorkloadEntry gets a new address, labels, locality or weight, or is
// added or removed. The config's other WorkloadEntries keep their specs.
func (f *fleet) edit(svc int) {
	var mine []int
	for i, we := range f.wes {
		if f.service(we) == fmt.Sprintf("svc-%d", svc) {
			mine = append(mine, i)
		}
	}
	i := mine[f.rng.IntN(len(mine))]
	switch f.rng.IntN(7) {
	case 0: // removed, unless it is the service's last
		if len(mine) > 1 {
			f.wes = slices.Delete(f.wes, i, i+1)
			return
		}
		fallthrough
	case 1:
		f.wes = append(f.wes, f.workloadEntry(fmt.Sprintf("we-new-%d", f.next), svc))
	case 2: // the same address, another weight (a new spec, as a parse gives)
		we := f.wes[i]
		spec := proto.Clone(we.Spec).(*networking.WorkloadEntry)
		spec.Weight = (spec.Weight + 1) % 3
		f.wes[i] = &model.WorkloadEntry{Meta: we.Meta, Spec: spec}
	case 3: // the same address, another locality
		we := f.wes[i]
		spec := proto.Clone(we.Spec).(*networking.WorkloadEntry)
		spec.Locality += "/sz"
		f.wes[i] = &model.WorkloadEntry{Meta: we.Meta, Spec: spec}
	default: // the same name, a new spec, as a parse of the edited document gives
		f.wes[i] = f.workloadEntry(f.wes[i].Name, svc)
	}
}

// wireBytes returns each resource's deterministic bytes by name.
func wireBytes[M proto.Message](t *testing.T, ms []M, name func(M) string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, m := range ms {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out[name(m)] = b
	}
	return out
}

// sameOutput fails the test unless two outputs hold the same resources,
// byte for byte, in the same order.
func sameOutput(t *testing.T, got, want *translate.Output) {
	t.Helper()
	check := func(kind string, g, w map[string][]byte, gotNames, wantNames []string) {
		t.Helper()
		if !slices.Equal(gotNames, wantNames) {
			t.Fatalf("%s: names %v, want %v", kind, gotNames, wantNames)
		}
		for name, b := range w {
			if !bytes.Equal(g[name], b) {
				t.Fatalf("%s %s differs from a full build's", kind, name)
			}
		}
	}
	names := func(n int, name func(int) string) []string {
		var out []string
		for i := range n {
			out = append(out, name(i))
		}
		return out
	}
	check("ClusterLoadAssignment",
		wireBytes(t, got.Endpoints, (*endpointLA).GetClusterName), wireBytes(t, want.Endpoints, (*endpointLA).GetClusterName),
		names(len(got.Endpoints), func(i int) string { return got.Endpoints[i].GetClusterName() }),
		names(len(want.Endpoints), func(i int) string { return want.Endpoints[i].GetClusterName() }))
	check("Cluster",
		wireBytes(t, got.Clusters, (*clusterT).GetName), wireBytes(t, want.Clusters, (*clusterT).GetName),
		names(len(got.Clusters), func(i int) string { return got.Clusters[i].GetName() }),
		names(len(want.Clusters), func(i int) string { return want.Clusters[i].GetName() }))
	check("Listener",
		wireBytes(t, got.Listeners, (*listenerT).GetName), wireBytes(t, want.Listeners, (*listenerT).GetName),
		names(len(got.Listeners), func(i int) string { return got.Listeners[i].GetName() }),
		names(len(want.Listeners), func(i int) string { return want.Listeners[i].GetName() }))
	check("RouteConfiguration",
		wireBytes(t, got.Routes, (*routeT).GetName), wireBytes(t, want.Routes, (*routeT).GetName),
		names(len(got.Routes), func(i int) string { return got.Routes[i].GetName() }),
		names(len(want.Routes), func(i int) string { return want.Routes[i].GetName() }))
}

// Random edits of one service's WorkloadEntries at a time: a Builder's
// output is, byte for byte, a full build's; the assignments of the
// services the edit did not touch are the last build's values, and the
// edited service's are built again when its endpoints changed.
func TestBuilderRebuildsOnlyWhatChanged(t *testing.T) {
	const services, endpoints, rounds = 6, 120, 80
	f := newFleet(services, endpoints, 3)
	insts := []registry.Instance{{ID: "r-1", Service: "svc-0", Namespace: "default", Address: "11.0.0.1", Port: 9080,
		Protocol: "GRPC", Labels: map[string]string{"app": "svc-0", "version": "v1"}}}
	b := translate.NewBuilder()
	prev, err := b.Build(translate.Input{Config: f.config(), Instances: insts})
	if err != nil {
		t.Fatal(err)
	}
	sameOutput(t, prev, build(t, translate.Input{Config: f.config(), Instances: insts}))
	for round := range rounds {
		svc := f.rng.IntN(services)
		for range 1 + f.rng.IntN(3) {
			f.edit(svc)
		}
		in := translate.Input{Config: f.config(), Instances: insts}
		if round%10 == 9 { // a registry change, in a service the edit may not have touched
			insts = append(slices.Clone(insts), registry.Instance{ID: fmt.Sprintf("r-%d", round), Service: "svc-1", Namespace: "default",
				Address: fmt.Sprintf("11.0.1.%d", round), Port: 9080, Protocol: "GRPC", Labels: map[string]string{"app": "svc-1", "version": "v2"}})
			in.Instances = insts
		}
		got, err := b.Build(in)
		if err != nil {
			t.Fatal(err)
		}
		want := build(t, in)
		sameOutput(t, got, want)

		touched := map[string]bool{fmt.Sprintf("svc-%d.default.svc.cluster.local", svc): true}
		if round%10 == 9 {
			touched["svc-1.default.svc.cluster.local"] = true
		}
		before := map[string]*endpointLA{}
		for _, cla := range prev.Endpoints {
			before[cla.GetClusterName()] = cla
		}
		reused := 0
		for i, cla := range got.Endpoints {
			old := before[cla.GetClusterName()]
			host := cla.GetClusterName()[strings.LastIndex(cla.GetClusterName(), "|")+1:]
			switch {
			case old == cla && !proto.Equal(old, want.Endpoints[i]):
				t.Fatalf("round %d: %s changed but the last build's was served", round, cla.GetClusterName())
			case old != cla && !touched[host]:
				t.Fatalf("round %d: %s of a service no edit touched was built again", round, cla.GetClusterName())
			case old == cla:
				reused++
			}
		}
		if reused != b.Reused() {
			t.Errorf("round %d: %d assignments reused, Builder.Reused says %d", round, reused, b.Reused())
		}
		prev = got
	}
}

// A caller changing the labels map it handed in after a build cannot make
// the Builder serve an assignment built from the old labels.
func TestBuilderIsNotFooledByAMapChangedInPlace(t *testing.T) {
	f := newFleet(1, 4, 1)
	cfg := f.config()
	b := translate.NewBuilder()
	if _, err := b.Build(translate.Input{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	for _, we := range cfg.WorkloadEntries {
		we.Spec.Labels["version"] = "v3" // no subset selects it now
	}
	got, err := b.Build(translate.Input{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	sameOutput(t, got, build(t, translate.Input{Config: cfg}))
}
