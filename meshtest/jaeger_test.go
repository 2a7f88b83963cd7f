package meshtest_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshlet/meshlet/meshtest"
)

// TestStartJaegerFindsATrace needs the jaeger binary: it fails, saying to
// run scripts/install-jaeger, when it is missing. A trace of three spans,
// exported with the plain OpenTelemetry SDK over OTLP/gRPC and over
// OTLP/HTTP, comes back from Jaeger's query API with its parent links,
// service name and attributes.
func TestStartJaegerFindsATrace(t *testing.T) {
	j := meshtest.StartJaeger(t)
	for _, tc := range []struct {
		name     string
		exporter func(context.Context) (sdktrace.SpanExporter, error)
	}{
		{"grpc", func(ctx context.Context) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(j.OTLPGRPCAddr()), otlptracegrpc.WithInsecure())
		}},
		{"http", func(ctx context.Context) (sdktrace.SpanExporter, error) {
			return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(j.OTLPHTTPURL()))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exporter, err := tc.exporter(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			service := "meshtest-" + tc.name
			provider := sdktrace.NewTracerProvider(
				sdktrace.WithSyncer(exporter),
				sdktrace.WithResource(resource.NewSchemaless(
					semconv.ServiceName(service),
					attribute.String("deployment.environment.name", "test"),
				)),
			)
			tracer := provider.Tracer("meshtest")

			ctx, root := tracer.Start(t.Context(), "checkout", trace.WithSpanKind(trace.SpanKindServer))
			ctx, child := tracer.Start(ctx, "reserve", trace.WithAttributes(
				attribute.String("item", "book"),
				attribute.Int64("count", 3),
				attribute.Bool("gift", true),
			))
			_, grandchild := tracer.Start(ctx, "db.query", trace.WithSpanKind(trace.SpanKindClient))
			grandchild.End()
			child.End()
			root.End()
			if err := provider.Shutdown(t.Context()); err != nil {
				t.Fatalf("tracer provider shutdown (exports the spans): %v", err)
			}

			traceID := root.SpanContext().TraceID().String()
			spans := j.WaitTrace(t, traceID, 3)
			if len(spans) != 3 {
				t.Fatalf("trace %s has %d spans, want 3: %v", traceID, len(spans), spans)
			}
			byName := map[string]meshtest.Span{}
			for _, s := range spans {
				byName[s.Operation] = s
				if s.TraceID != traceID {
					t.Errorf("span %s: trace ID %s, want %s", s.Operation, s.TraceID, traceID)
				}
				if s.Service != service {
					t.Errorf("span %s: service %q, want %q", s.Operation, s.Service, service)
				}
				if got := s.Resource["deployment.environment.name"]; got != "test" {
					t.Errorf("span %s: resource deployment.environment.name = %q, want test", s.Operation, got)
				}
			}
			for _, want := range []struct {
				span   trace.Span
				name   string
				parent string
				kind   string
			}{
				{root, "checkout", "", "server"},
				{child, "reserve", root.SpanContext().SpanID().String(), "internal"},
				{grandchild, "db.query", child.SpanContext().SpanID().String(), "client"},
			} {
				got, ok := byName[want.name]
				if !ok {
					t.Errorf("no span %q in %v", want.name, spans)
					continue
				}
				if id := want.span.SpanContext().SpanID().String(); got.SpanID != id {
					t.Errorf("span %s: ID %s, want %s", want.name, got.SpanID, id)
				}
				if got.ParentSpanID != want.parent {
					t.Errorf("span %s: parent %q, want %q", want.name, got.ParentSpanID, want.parent)
				}
				if kind := got.Attributes["span.kind"]; kind != want.kind {
					t.Errorf("span %s: span.kind %q, want %q", want.name, kind, want.kind)
				}
			}
			reserve := byName["reserve"]
			for k, want := range map[string]string{"item": "book", "count": "3", "gift": "true"} {
				if got := reserve.Attributes[k]; got != want {
					t.Errorf("span reserve: attribute %s = %q, want %q (all: %v)", k, got, want, reserve.Attributes)
				}
			}
			if spans[0].Operation != "checkout" {
				t.Errorf("first span by start time is %s, want checkout", spans[0].Operation)
			}
		})
	}

	// A trace Jaeger does not have is no spans and no error.
	spans, err := j.Trace(t.Context(), strings.Repeat("ab", 16))
	if err != nil || len(spans) != 0 {
		t.Errorf("Trace(unknown ID) = %v, %v; want no spans and no error", spans, err)
	}
}

// TestJaegerBinaryNamesTheFix: a directory without jaeger in
// MESHLET_JAEGER_BIN is an error that says how to build it.
func TestJaegerBinaryNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MESHLET_JAEGER_BIN", dir)
	_, err := meshtest.JaegerBinary()
	if err == nil {
		t.Fatalf("JaegerBinary with MESHLET_JAEGER_BIN=%s (empty) = nil error", dir)
	}
	for _, want := range []string{"MESHLET_JAEGER_BIN=" + dir, "scripts/install-jaeger"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
