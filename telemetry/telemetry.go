package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry is one process's tracing, metrics and access log. Give it to
// mesh.WithTelemetry; several meshes in one process may share it. It is
// safe for concurrent use. A nil *Telemetry records nothing and costs
// nothing.
type Telemetry struct {
	tracer     trace.Tracer // nil: no tracing at all
	tp         trace.TracerProvider
	propagator propagation.TextMapPropagator
	agg        *aggregator              // nil: no metrics (OTEL_SDK_DISABLED)
	mp         *sdkmetric.MeterProvider // nil: no reader
	promHTTP   http.Handler
	accessLog  *slog.Logger
	shutdown   []func(context.Context) error
}

// scope is the instrumentation scope of meshlet's spans and metrics.
const scope = "github.com/meshlet/meshlet/telemetry"

// New sets up telemetry from opts and, for what they leave open, the
// standard OTEL_* environment variables (see the package doc). An
// unsupported value is an error that names its variable. ctx bounds the
// exporters' setup only.
func New(ctx context.Context, opts ...Option) (*Telemetry, error) {
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	disabled, err := o.sdkDisabled()
	if err != nil {
		return nil, err
	}
	t := &Telemetry{propagator: o.propagator, accessLog: o.accessLog}
	if t.propagator == nil {
		t.propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	res, err := o.resource(ctx)
	if err != nil {
		return nil, err
	}
	if err := t.setupTracing(ctx, &o, res, disabled); err != nil {
		t.Shutdown(ctx)
		return nil, err
	}
	if err := t.setupMetrics(ctx, &o, res, disabled); err != nil {
		t.Shutdown(ctx)
		return nil, err
	}
	return t, nil
}

func (o *options) resource(ctx context.Context) (*resource.Resource, error) {
	ropts := []resource.Option{resource.WithFromEnv(), resource.WithTelemetrySDK()}
	if o.serviceName != "" {
		ropts = append(ropts, resource.WithAttributes(attribute.String("service.name", o.serviceName)))
	}
	res, err := resource.New(ctx, ropts...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource (%s, %s): %w", EnvServiceName, EnvResourceAttributes, err)
	}
	return res, nil
}

func (t *Telemetry) setupTracing(ctx context.Context, o *options, res *resource.Resource, disabled bool) error {
	if o.tracerProvider != nil {
		t.tp = o.tracerProvider
		t.tracer = o.tracerProvider.Tracer(scope)
		return nil
	}
	if disabled {
		return nil
	}
	exps, err := o.spanExporters(ctx)
	if err != nil {
		return err
	}
	if o.spanExporter != nil {
		exps = append(exps, o.spanExporter)
	}
	if len(exps) == 0 {
		return nil // no SDK tracer at all: tracing costs nothing
	}
	sampler, err := o.sampler()
	if err != nil {
		for _, e := range exps {
			e.Shutdown(ctx)
		}
		return err
	}
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	for _, e := range exps {
		topts = append(topts, sdktrace.WithBatcher(e))
	}
	tp := sdktrace.NewTracerProvider(topts...)
	t.shutdown = append(t.shutdown, tp.Shutdown)
	t.tp = tp
	t.tracer = tp.Tracer(scope)
	return nil
}

func (t *Telemetry) setupMetrics(ctx context.Context, o *options, res *resource.Resource, disabled bool) error {
	if disabled {
		return nil
	}
	// The aggregator exists even without a reader of ours, for
	// MetricProducer.
	t.agg = newAggregator()
	mp, err := t.sdkMeterProvider(ctx, o, res)
	if err != nil {
		return err
	}
	t.mp = mp
	return nil
}

// MetricProducer returns the producer of meshlet's metrics (Istio's
// request metrics, the policy counts and the meshes' state), for a
// metric pipeline of the caller's own: add it to a reader with
// sdkmetric.WithProducer (or otelprom.WithProducer), and set
// OTEL_METRICS_EXPORTER=none so that New builds no reader of its own. A
// MeterProvider given by the caller cannot carry meshlet's metrics: a
// reader takes producers only when it is built, and recording through
// the SDK's instruments costs about 8 µs a request (docs/telemetry.md).
// It is nil when metrics are off (OTEL_SDK_DISABLED) or t is nil.
func (t *Telemetry) MetricProducer() sdkmetric.Producer {
	if t == nil || t.agg == nil {
		return nil
	}
	return t.agg
}

// MeterProvider returns the SDK MeterProvider of the readers New built
// (Prometheus, OTLP), for libraries that record through OTel instruments:
// gRPC-Go's own metrics on its xDS path. It is nil when New built no
// reader, and such a library then records nothing.
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil || t.mp == nil {
		return nil
	}
	return t.mp
}

// TracerProvider returns the provider of the spans: WithTracerProvider's,
// or the SDK one New built; nil when nothing traces.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.tp
}

// Tracing reports whether requests get spans.
func (t *Telemetry) Tracing() bool { return t != nil && t.tracer != nil }

// Propagator returns how trace context crosses the wire.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// MetricsHandler serves the metrics in Prometheus' text format, from a
// registry of their own (not prometheus.DefaultRegisterer). It answers
// 404 when metrics are off or OTEL_METRICS_EXPORTER excludes prometheus.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil || t.promHTTP == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "telemetry: no Prometheus metrics here (OTEL_METRICS_EXPORTER excludes prometheus, or OTEL_SDK_DISABLED is set)", http.StatusNotFound)
		})
	}
	return t.promHTTP
}

// Shutdown flushes and stops what New started: the span batcher and
// exporters, and the metric readers. It waits until ctx ends at most.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		if err := t.shutdown[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	t.shutdown = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}
