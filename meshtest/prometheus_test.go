package meshtest_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/meshlet/meshlet/meshtest"
)

// TestStartPrometheusScrapesACounter needs Debian's prometheus: it fails,
// saying to run scripts/install-prometheus, when it is missing. A counter
// exported through OpenTelemetry's Prometheus exporter on a loopback server
// comes back from PromQL with the count the test made, and again after
// more increments, so the value is scraped live and not a leftover.
func TestStartPrometheusScrapesACounter(t *testing.T) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		t.Fatal(err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	t.Cleanup(func() {
		if err := provider.Shutdown(t.Context()); err != nil {
			t.Errorf("meter provider shutdown: %v", err)
		}
	})
	counter, err := provider.Meter("meshtest").Int64Counter("meshtest.requests")
	if err != nil {
		t.Fatal(err)
	}
	target := httptest.NewServer(promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	defer target.Close()
	targetAddr := strings.TrimPrefix(target.URL, "http://")

	p := meshtest.StartPrometheus(t, targetAddr)

	const query = `sum by (job, instance) (meshtest_requests_total)`
	for _, step := range []struct{ add, want int64 }{{7, 7}, {5, 12}} {
		for range step.add {
			counter.Add(t.Context(), 1)
		}
		got := p.WaitQuery(t, 30*time.Second, query, func(s []meshtest.Sample) bool {
			return len(s) == 1 && s[0].Value == float64(step.want)
		})
		if job, instance := got[0].Metric["job"], got[0].Metric["instance"]; job != "meshtest" || instance != targetAddr {
			t.Errorf("series labels job=%q instance=%q, want job=meshtest instance=%s", job, instance, targetAddr)
		}
	}

	// A scalar result comes back as one sample without labels.
	got, err := p.Query(t.Context(), `scalar(`+query+`) * 2`)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Value != 24 || len(got[0].Metric) != 0 {
		t.Errorf("scalar query = %v, want one unlabelled sample of 24", got)
	}
	// A range vector is refused with a reason.
	if _, err := p.Query(t.Context(), `meshtest_requests_total[1m]`); err == nil || !strings.Contains(err.Error(), "want an instant vector") {
		t.Errorf("range query error = %v, want one saying an instant vector is wanted", err)
	}
}

// TestPrometheusBinaryNamesTheFix: a directory without prometheus in
// MESHLET_PROMETHEUS_BIN is an error that says how to install it.
func TestPrometheusBinaryNamesTheFix(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MESHLET_PROMETHEUS_BIN", dir)
	_, err := meshtest.PrometheusBinary()
	if err == nil {
		t.Fatalf("PrometheusBinary with MESHLET_PROMETHEUS_BIN=%s (empty) = nil error", dir)
	}
	for _, want := range []string{"MESHLET_PROMETHEUS_BIN=" + dir, "scripts/install-prometheus"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
