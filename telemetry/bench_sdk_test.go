package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// The OTel SDK's cost for one request's four measurements over Istio's
// labels, through its instruments with a cached attribute set: the
// design the aggregator replaced, measured in the same run as
// BenchmarkRequest/metrics for a ratio.
func BenchmarkSDKInstruments(b *testing.B) {
	ctx := context.Background()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(ctx)
	m := mp.Meter(scope)
	requests, _ := m.Int64Counter(MetricRequests)
	duration, _ := m.Float64Histogram(MetricRequestDuration, metric.WithExplicitBucketBoundaries(durationBuckets...))
	reqSize, _ := m.Int64Histogram(MetricRequestBytes, metric.WithExplicitBucketBoundaries(sizeBuckets...))
	resSize, _ := m.Int64Histogram(MetricResponseBytes, metric.WithExplicitBucketBoundaries(sizeBuckets...))
	local := Workload{Name: "productpage", Namespace: "default", App: "productpage", Version: "v1"}
	k := labelKey{proto: HTTP, code: 200, grpcCode: -1, route: "reviews", host: "reviews.default.svc.cluster.local", subset: "v2", peer: Workload{Name: "reviews.default.svc.cluster.local"}}
	opt := metric.WithAttributeSet(attribute.NewSet(istioLabels(&k, &local)...))
	add, rec := []metric.AddOption{opt}, []metric.RecordOption{opt}
	b.ReportAllocs()
	for b.Loop() {
		requests.Add(ctx, 1, add...)
		duration.Record(ctx, 1.5, rec...)
		reqSize.Record(ctx, 0, rec...)
		resSize.Record(ctx, 512, rec...)
	}
}
