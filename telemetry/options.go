package telemetry

import (
	"log/slog"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Option configures New. An option given here wins over the OTEL_*
// environment variable that sets the same thing.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	tracerProvider trace.TracerProvider
	spanExporter   sdktrace.SpanExporter
	propagator     propagation.TextMapPropagator
	sampleRatio    *float64
	accessLog      *slog.Logger
	serviceName    string
	getenv         func(string) string
}

// WithTracerProvider traces with tp, which the caller owns and shuts
// down. OTEL_TRACES_EXPORTER and the sampler variables are then not read.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(o *options) { o.tracerProvider = tp })
}

// WithSpanExporter traces into exp through a batching span processor of
// an SDK TracerProvider that Shutdown flushes and shuts down (with exp).
// The sampler still follows WithSampleRatio or OTEL_TRACES_SAMPLER.
func WithSpanExporter(exp sdktrace.SpanExporter) Option {
	return optionFunc(func(o *options) { o.spanExporter = exp })
}

// WithPropagator sets how trace context crosses the wire. Default W3C
// trace context and baggage.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(o *options) { o.propagator = p })
}

// WithSampleRatio samples the given share of new traces (0 to 1), and
// follows the caller's decision for traces that come with a parent
// (parentbased_traceidratio). It overrides OTEL_TRACES_SAMPLER.
func WithSampleRatio(r float64) Option {
	return optionFunc(func(o *options) { o.sampleRatio = &r })
}

// WithAccessLog writes one record per request, client and server side,
// to l, at level Info. Default: no access log.
func WithAccessLog(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.accessLog = l })
}

// WithServiceName sets the resource's service.name. Default
// OTEL_SERVICE_NAME, else the OTel SDK's default.
func WithServiceName(name string) Option {
	return optionFunc(func(o *options) { o.serviceName = name })
}
