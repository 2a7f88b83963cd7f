package telemetry_test

import (
	"strings"
	"testing"

	"github.com/meshlet/meshlet/telemetry"
)

// An unsupported value is refused by New, naming its variable.
func TestEnvRefused(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{telemetry.EnvTracesExporter, "zipkin", `OTEL_TRACES_EXPORTER="zipkin": "zipkin" is not supported`},
		{telemetry.EnvMetricsExporter, "statsd", `OTEL_METRICS_EXPORTER="statsd"`},
		{telemetry.EnvSDKDisabled, "maybe", "OTEL_SDK_DISABLED"},
		{telemetry.EnvTracesSampler, "sometimes", `OTEL_TRACES_SAMPLER="sometimes" is not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			if tc.name == telemetry.EnvTracesSampler {
				t.Setenv(telemetry.EnvTracesExporter, "console")
			}
			tel, err := telemetry.New(t.Context())
			if err == nil {
				tel.Shutdown(t.Context())
				t.Fatalf("%s=%s: no error", tc.name, tc.value)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s=%s: %v, want it to say %s", tc.name, tc.value, err, tc.want)
			}
		})
	}
	t.Run("protocol", func(t *testing.T) {
		t.Setenv(telemetry.EnvTracesExporter, "otlp")
		t.Setenv(telemetry.EnvOTLPTracesProtocol, "thrift")
		if _, err := telemetry.New(t.Context()); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
			t.Errorf("got %v, want an error naming OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", err)
		}
	})
}
