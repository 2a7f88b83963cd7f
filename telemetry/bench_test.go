package telemetry_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/telemetry"
)

// discard is a span exporter that drops what it is given.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

var _ sdktrace.SpanExporter = discard{}

// recordOne is what an adapter does for one request.
func recordOne(ctx context.Context, rec *telemetry.Recorder) {
	r := rec.StartClient(ctx, telemetry.HTTP, "GET", "/reviews/0", "reviews.default.svc.cluster.local:9080")
	r.Route("reviews", "outbound|9080|v2|reviews.default.svc.cluster.local")
	r.Attempt("10.0.0.7:9080")
	r.AddBytes(0, 512)
	r.End(200, codes.OK)
}

func benchRecorder(b *testing.B, opts ...telemetry.Option) {
	ctx := context.Background()
	tel, err := telemetry.New(ctx, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	rec := tel.Recorder(telemetry.Workload{Name: "productpage", Namespace: "default", App: "productpage", Version: "v1"}, "productpage.default.svc.cluster.local")
	b.ReportAllocs()
	for b.Loop() {
		recordOne(ctx, rec)
	}
}

// The per-request cost of telemetry, as an adapter pays it.
func BenchmarkRequest(b *testing.B) {
	b.Run("off", func(b *testing.B) {
		// No WithTelemetry: a nil Recorder.
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			recordOne(ctx, nil)
		}
	})
	b.Run("metrics", func(b *testing.B) {
		// Metrics on, OTEL_TRACES_EXPORTER unset: no tracer at all.
		benchRecorder(b)
	})
	b.Run("metrics+noop-tracer", func(b *testing.B) {
		// The bound for "no tracer": OTel's no-op tracer.
		benchRecorder(b, telemetry.WithTracerProvider(noop.NewTracerProvider()))
	})
	b.Run("metrics+unsampled", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithBatcher(discard{}))
		defer tp.Shutdown(context.Background())
		benchRecorder(b, telemetry.WithTracerProvider(tp))
	})
	b.Run("metrics+sampled", func(b *testing.B) {
		benchRecorder(b, telemetry.WithSpanExporter(discard{}), telemetry.WithSampleRatio(1))
	})
}

// The OTel no-op tracer's cost for one span, the bound that telemetry
// with no tracer configured must not pass (compare with
// BenchmarkRequest/metrics minus the metrics).
func BenchmarkNoopTracerSpan(b *testing.B) {
	tr := noop.NewTracerProvider().Tracer("x")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, s := tr.Start(ctx, "GET /reviews/0", trace.WithSpanKind(trace.SpanKindClient))
		s.End()
	}
}
