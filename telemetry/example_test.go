package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"strings"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/telemetry"
)

// A mesh calls a Recorder for every request; here one request is
// recorded by hand, and the Prometheus text shows it under Istio's name
// and labels.
func Example() {
	ctx := context.Background()
	tel, err := telemetry.New(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tel.Shutdown(ctx)

	rec := tel.Recorder(telemetry.Workload{Name: "productpage", Namespace: "default", App: "productpage", Version: "v1"}, "productpage.default.svc.cluster.local")
	r := rec.StartClient(ctx, telemetry.HTTP, "GET", "/reviews/0", "reviews.default.svc.cluster.local:9080")
	r.Route("reviews", "outbound|9080|v2|reviews.default.svc.cluster.local")
	r.Attempt("10.0.0.7:9080")
	r.End(200, codes.OK)

	w := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(w.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "istio_requests_total{") {
			for _, label := range []string{`reporter="source"`, `destination_service_name="reviews"`, `destination_version="v2"`, `response_code="200"`, `response_flags="-"`, `route="reviews"`} {
				fmt.Println(label, strings.Contains(line, label))
			}
			fmt.Println("value:", line[strings.LastIndexByte(line, ' ')+1:])
		}
	}
	// Output:
	// reporter="source" true
	// destination_service_name="reviews" true
	// destination_version="v2" true
	// response_code="200" true
	// response_flags="-" true
	// route="reviews" true
	// value: 1
}

// A metric pipeline of the caller's own reads meshlet's metrics through
// MetricProducer: here a manual reader, with OTEL_METRICS_EXPORTER=none
// so that New builds no reader of its own.
func ExampleTelemetry_MetricProducer() {
	os.Setenv(telemetry.EnvMetricsExporter, "none")
	defer os.Unsetenv(telemetry.EnvMetricsExporter)
	ctx := context.Background()
	tel, err := telemetry.New(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tel.Shutdown(ctx)
	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(tel.MetricProducer()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)

	rec := tel.Recorder(telemetry.Workload{Name: "productpage", Namespace: "default"}, "productpage.default.svc.cluster.local")
	for range 3 {
		r := rec.StartClient(ctx, telemetry.HTTP, "GET", "/reviews/0", "reviews.default.svc.cluster.local:9080")
		r.End(200, codes.OK)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == telemetry.MetricRequests {
				fmt.Println(m.Name, s.DataPoints[0].Value)
			}
		}
	}
	// Output:
	// istio_requests_total 3
}
