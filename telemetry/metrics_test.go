package telemetry_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/telemetry"
)

var productpage = telemetry.Workload{Name: "productpage", Namespace: "default", App: "productpage", Version: "v1"}

// sendOne records one client request to reviews with the given response
// body size.
func sendOne(ctx context.Context, rec *telemetry.Recorder, resBytes int64) {
	r := rec.StartClient(ctx, telemetry.HTTP, "GET", "/reviews/0", "reviews.default.svc.cluster.local:9080")
	r.Route("reviews", "outbound|9080|v2|reviews.default.svc.cluster.local")
	r.Attempt("10.0.0.7:9080")
	r.AddBytes(0, resBytes)
	r.End(200, codes.OK)
}

// promLines returns the Prometheus text's lines that start with prefix.
func promLines(t *testing.T, tel *telemetry.Telemetry, prefix string) []string {
	t.Helper()
	w := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 {
		t.Fatalf("metrics: %d %s", w.Code, w.Body)
	}
	var out []string
	for _, l := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// The response-size histogram puts each size in Istio's bucket for it
// (upper bounds inclusive), and its sum and count are the sizes' sum and
// number, in the Prometheus text.
func TestMetricsHistogramBuckets(t *testing.T) {
	tel, err := telemetry.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	rec := tel.Recorder(productpage, "productpage.default.svc.cluster.local")
	sizes := []int64{0, 1, 10, 11, 512, 100000, 100001, 200000000}
	var sum int64
	for _, n := range sizes {
		sendOne(t.Context(), rec, n)
		sum += n
	}
	// Cumulative counts of sizes <= le.
	want := map[string]int{"1": 2, "10": 3, "100": 4, "1000": 5, "10000": 5, "100000": 6, "1e+06": 7, "1e+07": 7, "1e+08": 7, "+Inf": 8}
	lines := promLines(t, tel, "istio_response_bytes")
	got := map[string]string{}
	for _, l := range lines {
		name, _, _ := strings.Cut(l, "{")
		val := l[strings.LastIndexByte(l, ' ')+1:]
		if name == "istio_response_bytes_bucket" {
			i := strings.Index(l, `le="`)
			le, _, _ := strings.Cut(l[i+4:], `"`)
			got[le] = val
		} else {
			got[name] = val
		}
	}
	for le, n := range want {
		if got[le] != fmt.Sprint(n) {
			t.Errorf("bucket le=%s: %q, want %d", le, got[le], n)
		}
	}
	if got["istio_response_bytes_count"] != fmt.Sprint(len(sizes)) {
		t.Errorf("count %q, want %d", got["istio_response_bytes_count"], len(sizes))
	}
	if got["istio_response_bytes_sum"] != fmt.Sprint(sum) && got["istio_response_bytes_sum"] != fmt.Sprintf("%g", float64(sum)) {
		t.Errorf("sum %q, want %d", got["istio_response_bytes_sum"], sum)
	}
	if t.Failed() {
		t.Logf("lines: %s", strings.Join(lines, "\n"))
	}
}

// MetricProducer on a reader of the caller's own gives the same series:
// cumulative, monotonic, started when the series was, with Istio's
// labels. Requests recorded from several goroutines all count, and a
// histogram's count is always the sum of its buckets.
func TestMetricProducerOnOwnReader(t *testing.T) {
	t.Setenv(telemetry.EnvMetricsExporter, "none")
	tel, err := telemetry.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(tel.MetricProducer()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	start := time.Now()
	rec := tel.Recorder(productpage, "productpage.default.svc.cluster.local")
	const workers, each = 4, 500
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				sendOne(t.Context(), rec, 512)
			}
		})
	}
	collect := func() map[string]metricdata.Aggregation {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(t.Context(), &rm); err != nil {
			t.Fatal(err)
		}
		out := map[string]metricdata.Aggregation{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				out[m.Name] = m.Data
			}
		}
		return out
	}
	// Collections while recording: never a count short of the buckets.
	for range 20 {
		h, ok := collect()[telemetry.MetricResponseBytes].(metricdata.Histogram[int64])
		if !ok {
			continue
		}
		for _, dp := range h.DataPoints {
			var n uint64
			for _, c := range dp.BucketCounts {
				n += c
			}
			if n != dp.Count {
				t.Fatalf("histogram count %d, buckets sum %d", dp.Count, n)
			}
		}
	}
	wg.Wait()
	data := collect()
	sum, ok := data[telemetry.MetricRequests].(metricdata.Sum[int64])
	if !ok || len(sum.DataPoints) != 1 {
		t.Fatalf("%s: %#v, want one cumulative sum point", telemetry.MetricRequests, data[telemetry.MetricRequests])
	}
	dp := sum.DataPoints[0]
	if !sum.IsMonotonic || sum.Temporality != metricdata.CumulativeTemporality || dp.Value != workers*each {
		t.Errorf("requests: monotonic %v, %v, value %d; want monotonic, cumulative, %d", sum.IsMonotonic, sum.Temporality, dp.Value, workers*each)
	}
	if dp.StartTime.Before(start.Add(-time.Second)) || dp.Time.Before(dp.StartTime) {
		t.Errorf("start %v, time %v: want the series' start, then now", dp.StartTime, dp.Time)
	}
	for k, v := range map[string]string{"reporter": "source", "destination_service_name": "reviews", "destination_version": "v2", "route": "reviews", "response_flags": "-"} {
		if got, _ := dp.Attributes.Value(attribute.Key(k)); got.AsString() != v {
			t.Errorf("label %s = %q, want %q", k, got.AsString(), v)
		}
	}
	h := data[telemetry.MetricResponseBytes].(metricdata.Histogram[int64])
	if got := h.DataPoints[0]; got.Count != workers*each || got.Sum != 512*workers*each {
		t.Errorf("response bytes: count %d sum %d, want %d and %d", got.Count, got.Sum, workers*each, 512*workers*each)
	}
	d := data[telemetry.MetricRequestDuration].(metricdata.Histogram[float64])
	if got := d.DataPoints[0]; got.Count != workers*each || got.Sum <= 0 {
		t.Errorf("duration: count %d sum %v, want %d and more than 0", got.Count, got.Sum, workers*each)
	}
}
