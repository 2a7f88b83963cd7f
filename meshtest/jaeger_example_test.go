package meshtest_test

import (
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/meshlet/meshlet/meshtest"
)

// In a test of your own service: a real Jaeger on loopback receives its
// spans over OTLP, and the test reads the trace back.
func ExampleStartJaeger() {
	var t *testing.T // the test's own t
	j := meshtest.StartJaeger(t)
	exporter, err := otlptracegrpc.New(t.Context(),
		otlptracegrpc.WithEndpoint(j.OTLPGRPCAddr()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter))
	_, span := provider.Tracer("example").Start(t.Context(), "checkout")
	span.End()
	if err := provider.Shutdown(t.Context()); err != nil { // flushes the batch
		t.Fatal(err)
	}
	spans := j.WaitTrace(t, span.SpanContext().TraceID().String(), 1)
	if spans[0].Operation != "checkout" || spans[0].ParentSpanID != "" {
		t.Errorf("span %v, want the root span checkout", spans[0])
	}
}
