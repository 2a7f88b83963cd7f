package telemetry

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The standard OpenTelemetry environment variables that New reads. The
// OTLP exporters read their own endpoint, header, TLS and timeout
// variables (OTEL_EXPORTER_OTLP_*).
const (
	EnvSDKDisabled           = "OTEL_SDK_DISABLED"
	EnvTracesExporter        = "OTEL_TRACES_EXPORTER"
	EnvMetricsExporter       = "OTEL_METRICS_EXPORTER"
	EnvOTLPProtocol          = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvOTLPTracesProtocol    = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvOTLPMetricsProtocol   = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
	EnvTracesSampler         = "OTEL_TRACES_SAMPLER"
	EnvTracesSamplerArg      = "OTEL_TRACES_SAMPLER_ARG"
	EnvServiceName           = "OTEL_SERVICE_NAME"
	EnvResourceAttributes    = "OTEL_RESOURCE_ATTRIBUTES"
	defaultOTLPProtocol      = "http/protobuf"
	protocolGRPC             = "grpc"
	protocolHTTPProtobuf     = "http/protobuf"
	exporterNone             = "none"
	exporterOTLP             = "otlp"
	exporterConsole          = "console"
	exporterPrometheus       = "prometheus"
	samplerParentRatio       = "parentbased_traceidratio"
	defaultSampleRatio       = 0.01
	supportedTracesExporters = "otlp, console or none"
)

// DefaultSampleRatio is the share of new traces sampled when neither
// WithSampleRatio nor OTEL_TRACES_SAMPLER says otherwise: 1%, Istio's
// default (meshConfig.defaultConfig.tracing.sampling: 1.0 percent). A
// request that comes with a sampled parent is always traced.
const DefaultSampleRatio = defaultSampleRatio

// envList splits a comma-separated exporter list, lower-cased, without
// blanks.
func envList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (o *options) env(name string) string {
	if o.getenv != nil {
		return o.getenv(name)
	}
	return os.Getenv(name)
}

// sdkDisabled reports OTEL_SDK_DISABLED=true.
func (o *options) sdkDisabled() (bool, error) {
	v := o.env(EnvSDKDisabled)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("telemetry: %s=%q: not true or false", EnvSDKDisabled, v)
	}
	return b, nil
}

// protocol is the OTLP protocol for a signal: its own variable, else the
// general one, else http/protobuf (the specification's default).
func (o *options) protocol(signalVar string) (string, error) {
	name, v := signalVar, o.env(signalVar)
	if v == "" {
		name, v = EnvOTLPProtocol, o.env(EnvOTLPProtocol)
	}
	if v == "" {
		return defaultOTLPProtocol, nil
	}
	switch v {
	case protocolGRPC, protocolHTTPProtobuf:
		return v, nil
	}
	return "", fmt.Errorf("telemetry: %s=%q is not supported (use grpc or http/protobuf)", name, v)
}

// spanExporters builds the exporters OTEL_TRACES_EXPORTER names; none when
// it is unset or "none".
func (o *options) spanExporters(ctx context.Context) ([]sdktrace.SpanExporter, error) {
	var exps []sdktrace.SpanExporter
	for _, name := range envList(o.env(EnvTracesExporter)) {
		switch name {
		case exporterNone:
			continue
		case exporterConsole:
			exp, err := stdouttrace.New()
			if err != nil {
				return nil, fmt.Errorf("telemetry: %s=console: %w", EnvTracesExporter, err)
			}
			exps = append(exps, exp)
		case exporterOTLP:
			proto, err := o.protocol(EnvOTLPTracesProtocol)
			if err != nil {
				return nil, err
			}
			var exp sdktrace.SpanExporter
			if proto == protocolGRPC {
				exp, err = otlptracegrpc.New(ctx)
			} else {
				exp, err = otlptracehttp.New(ctx)
			}
			if err != nil {
				return nil, fmt.Errorf("telemetry: %s=otlp (%s): %w", EnvTracesExporter, proto, err)
			}
			exps = append(exps, exp)
		default:
			return nil, fmt.Errorf("telemetry: %s=%q: %q is not supported (use %s)", EnvTracesExporter, o.env(EnvTracesExporter), name, supportedTracesExporters)
		}
	}
	return exps, nil
}

// sampler is the sampler WithSampleRatio or OTEL_TRACES_SAMPLER says;
// parentbased_traceidratio at DefaultSampleRatio by default.
func (o *options) sampler() (sdktrace.Sampler, error) {
	if o.sampleRatio != nil {
		r := *o.sampleRatio
		if math.IsNaN(r) || r < 0 || r > 1 {
			return nil, fmt.Errorf("telemetry: WithSampleRatio(%v): want a share from 0 to 1", r)
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	name := strings.ToLower(strings.TrimSpace(o.env(EnvTracesSampler)))
	ratio := func() (float64, error) {
		arg := o.env(EnvTracesSamplerArg)
		if arg == "" {
			return 1, nil // the specification's default for a ratio sampler named without one
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("telemetry: %s=%q: want a share from 0 to 1 for %s=%s", EnvTracesSamplerArg, arg, EnvTracesSampler, name)
		}
		return r, nil
	}
	switch name {
	case "":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(defaultSampleRatio)), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", samplerParentRatio:
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("telemetry: %s=%q is not supported (use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio)", EnvTracesSampler, name)
}

// metricsExporters reads OTEL_METRICS_EXPORTER: whether the Prometheus
// handler serves (the default), and the OTLP push reader, reading
// producer, if asked for.
func (o *options) metricsExporters(ctx context.Context, producer sdkmetric.Producer) (prom bool, push []sdkmetric.Reader, err error) {
	v := o.env(EnvMetricsExporter)
	names := envList(v)
	if len(names) == 0 {
		return true, nil, nil
	}
	for _, name := range names {
		switch name {
		case exporterNone:
		case exporterPrometheus:
			prom = true
		case exporterOTLP:
			proto, err := o.protocol(EnvOTLPMetricsProtocol)
			if err != nil {
				return false, nil, err
			}
			var exp sdkmetric.Exporter
			if proto == protocolGRPC {
				exp, err = otlpmetricgrpc.New(ctx)
			} else {
				exp, err = otlpmetrichttp.New(ctx)
			}
			if err != nil {
				return false, nil, fmt.Errorf("telemetry: %s=otlp (%s): %w", EnvMetricsExporter, proto, err)
			}
			// The reader's interval follows OTEL_METRIC_EXPORT_INTERVAL.
			push = append(push, sdkmetric.NewPeriodicReader(exp, sdkmetric.WithProducer(producer)))
		default:
			return false, nil, fmt.Errorf("telemetry: %s=%q: %q is not supported (use prometheus, otlp or none)", EnvMetricsExporter, v, name)
		}
	}
	return prom, push, nil
}
