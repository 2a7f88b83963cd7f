package telemetry_test

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/meshlet/meshlet/telemetry"
)

// The states of two sources are summed by label set; a cluster without
// a breaker has no breaker series; a removed source is no longer read.
func TestStateSources(t *testing.T) {
	t.Setenv(telemetry.EnvMetricsExporter, "none")
	tel, err := telemetry.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(t.Context())
	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(tel.MetricProducer()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(t.Context())

	a := telemetry.MeshState{XDSConnected: true, XDSReconnects: 2,
		XDSTypes: []telemetry.XDSTypeCounts{{Type: "Cluster", Updates: 3, NACKs: 1}},
		Clusters: []telemetry.ClusterState{{Name: "c1", Ejections: 4, BreakerOpens: 1, BreakerState: "open"}, {Name: "c2", Ejections: 1}}}
	b := telemetry.MeshState{XDSTypes: []telemetry.XDSTypeCounts{{Type: "Cluster", Updates: 2}},
		Clusters: []telemetry.ClusterState{{Name: "c1", Ejections: 1, BreakerState: "closed"}}}
	removeA := tel.AddStateSource(func() telemetry.MeshState { return a })
	tel.AddStateSource(func() telemetry.MeshState { return b })

	values := func() map[string]int64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(t.Context(), &rm); err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				var pts []metricdata.DataPoint[int64]
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					pts = d.DataPoints
				case metricdata.Gauge[int64]:
					pts = d.DataPoints
				}
				for _, dp := range pts {
					out[m.Name+"{"+dp.Attributes.Encoded(attribute.DefaultEncoder())+"}"] = dp.Value
				}
			}
		}
		return out
	}
	want := map[string]int64{
		"meshlet_xds_connected{}":                                   1,
		"meshlet_xds_reconnects_total{}":                            2,
		"meshlet_xds_updates_total{type=Cluster}":                   5,
		"meshlet_xds_nacks_total{type=Cluster}":                     1,
		"meshlet_outlier_ejections_total{cluster=c1}":               5,
		"meshlet_outlier_ejections_total{cluster=c2}":               1,
		"meshlet_circuit_breaker_opens_total{cluster=c1}":           1,
		"meshlet_circuit_breaker_state{cluster=c1,state=open}":      1,
		"meshlet_circuit_breaker_state{cluster=c1,state=closed}":    1,
		"meshlet_circuit_breaker_state{cluster=c1,state=half-open}": 0,
	}
	got := values()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %d (present %v), want %d", k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d series, want %d: %v", len(got), len(want), got)
	}
	removeA()
	got = values()
	if got["meshlet_xds_connected{}"] != 0 || got["meshlet_outlier_ejections_total{cluster=c1}"] != 1 || got["meshlet_circuit_breaker_state{cluster=c1,state=open}"] != 0 {
		t.Errorf("after removing a source: %v", got)
	}
}
