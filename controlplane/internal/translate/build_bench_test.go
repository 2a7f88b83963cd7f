package translate_test

import (
	"fmt"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
)

// BenchmarkBuild translates bench/scale's shape: S services, each a
// ServiceEntry selecting app=svc-k, N WorkloadEntries round robin, and
// N/10 registered instances.
func BenchmarkBuild(b *testing.B) {
	for _, size := range []struct{ services, endpoints int }{{10, 1000}, {100, 10000}} {
		b.Run(fmt.Sprintf("S=%d/N=%d", size.services, size.endpoints), func(b *testing.B) {
			cfg := &model.Config{}
			for k := range size.services {
				app := fmt.Sprintf("svc-%d", k)
				cfg.ServiceEntries = append(cfg.ServiceEntries, &model.ServiceEntry{
					Meta: model.Meta{Kind: "ServiceEntry", Name: app, Namespace: "default"},
					Spec: &networking.ServiceEntry{
						Hosts:            []string{app + ".default.svc.cluster.local"},
						Ports:            []*networking.ServicePort{{Number: 9080, Name: "grpc", Protocol: "GRPC"}},
						Resolution:       networking.ServiceEntry_STATIC,
						WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": app}},
					},
				})
			}
			for i := range size.endpoints {
				app := fmt.Sprintf("svc-%d", i%size.services)
				cfg.WorkloadEntries = append(cfg.WorkloadEntries, &model.WorkloadEntry{
					Meta: model.Meta{Kind: "WorkloadEntry", Name: fmt.Sprintf("we-%d", i), Namespace: "default"},
					Spec: &networking.WorkloadEntry{Address: fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255), Labels: map[string]string{"app": app}},
				})
			}
			var insts []registry.Instance
			for i := range size.endpoints / 10 {
				app := fmt.Sprintf("svc-%d", i%size.services)
				insts = append(insts, registry.Instance{ID: fmt.Sprintf("r-%d", i), Service: app, Namespace: "default",
					Address: fmt.Sprintf("11.0.%d.%d", i>>8, i&255), Port: 9080, Protocol: "GRPC", Labels: map[string]string{"app": app}})
			}
			in := translate.Input{Config: cfg, Instances: insts}
			b.Run("Build", func(b *testing.B) {
				for b.Loop() {
					if _, err := translate.Build(in); err != nil {
						b.Fatal(err)
					}
				}
			})
			// A Builder after one WorkloadEntry moved: one service's
			// assignment is built again.
			b.Run("Builder/one-moved", func(b *testing.B) {
				tb := translate.NewBuilder()
				if _, err := tb.Build(in); err != nil {
					b.Fatal(err)
				}
				gen := 0
				for b.Loop() {
					gen++
					we := cfg.WorkloadEntries[gen%len(cfg.WorkloadEntries)]
					spec := &networking.WorkloadEntry{Address: fmt.Sprintf("12.0.%d.%d", gen>>8&255, gen&255), Labels: we.Spec.Labels}
					cfg.WorkloadEntries[gen%len(cfg.WorkloadEntries)] = &model.WorkloadEntry{Meta: we.Meta, Spec: spec}
					if _, err := tb.Build(in); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
